"""Decode cohorts on profiled execution: ``ProfiledModel.stage_times_sum`` and
``decode_steps_sum`` let the engine carry a batch's steady decodes as (count, context sum),
and the tables must stay those of the reference path bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulator import SimulationConfig
from simulator.engine import Simulation, build_execution_model
from simulator.execution.profiled import ProfiledModel

# lighter predictor fits than the defaults (the packaged profiles fit in a few seconds);
# exactness does not depend on the fit
FIT = {"n_estimators": 4, "base": [False], "cv_folds": 2, "max_cv_rows": 500}
RECORDS = ("replica", "scheduled_at", "first_token_at", "completed_at", "preemptions",
           "reject_reason", "token_request", "token_time", "batch_replica", "batch_start",
           "batch_end", "batch_num_prefills", "batch_prefill_tokens", "batch_num_decodes",
           "batch_kv_blocks_used", "batch_stage_start", "batch_stage_end")


def cfg(cache: Path, fast: bool, pp: int = 1, n: int = 300, blocks: int = 0) -> SimulationConfig:
    """Llama-3-8B on H100 TP 1 from the packaged profile store, Sarathi-Serve."""
    sched = {"name": "sarathi", "chunk_size": 512, "max_batch_size": 96}
    if blocks:
        sched["num_blocks_override"] = blocks
    return SimulationConfig.from_dict({
        "model": "llama-3-8b", "sku": "h100-sxm",
        "parallel": {"tensor_parallel": 1, "pipeline_parallel": pp},
        "scheduler": sched,
        "workload": {"num_requests": n, "arrival": {"kind": "poisson", "rate": 20.0},
                     "lengths": {"kind": "uniform", "max_prefill": 1500, "max_decode": 400}},
        "engine": {"fast_forward": fast},
        "execution": {"kind": "profiled", "profiled": {"cache_dir": str(cache), **FIT}},
        "seed": 11,
    })


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("predictors")


@pytest.mark.parametrize(("pp", "blocks"), [(1, 0), (2, 0), (1, 1500)])
def test_cohorts_give_the_reference_tables_bit_for_bit(cache: Path, pp: int,
                                                       blocks: int) -> None:
    """Same records with ``engine.fast_forward`` on (cohorts, steady runs) and off; with
    1500 blocks the cohorts dissolve on preemptions and re-form."""
    model = build_execution_model(cfg(cache, True, pp))
    assert isinstance(model, ProfiledModel) and "attention_decode" in model.sources
    before = model.out_of_range.copy()
    sim = Simulation(cfg(cache, True, pp, blocks=blocks), execution=model)
    fast = sim.run()
    assert all(s.cohort_mode for s in sim.replicas)  # the cohorts were on for this model
    fast_oor = model.out_of_range - before
    before = model.out_of_range.copy()
    ref = Simulation(cfg(cache, False, pp, blocks=blocks), execution=model)
    slow = ref.run()
    assert not any(s.cohort_mode for s in ref.replicas)
    slow_oor = model.out_of_range - before
    for name in RECORDS:
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name), err_msg=name)
    assert fast.events <= slow.events
    assert fast_oor == slow_oor  # every iteration priced once on both paths
    assert fast.batch_num_decodes.max() > 30  # cohorts of many decodes
    if blocks:
        assert fast.preemptions.sum() > 0


def test_sum_methods_equal_the_per_request_ones(cache: Path) -> None:
    model = build_execution_model(cfg(cache, True, 2))
    kv = [17, 400, 3000, 9000, 123]
    for chunks, prior in (([], []), ([512], [0]), ([100, 33], [700, 0])):
        assert model.stage_times_sum(chunks, prior, len(kv), sum(kv)) == \
            model.stage_times(chunks, prior, kv)
    arr = np.array(kv, dtype=np.int64)
    np.testing.assert_array_equal(model.decode_steps_sum(len(kv), sum(kv), 40),
                                  model.decode_steps(arr, 40))
    np.testing.assert_array_equal(model.decode_steps_sum(len(kv), sum(kv), 40)[7],
                                  model.stage_times([], [], arr + 7))
    # beyond the decode table (more sequences than max_batch): per-iteration lookups
    big = np.full(300, 50, dtype=np.int64)
    np.testing.assert_array_equal(model.decode_steps_sum(300, 300 * 50, 3)[2],
                                  model.stage_times([], [], big + 2))
