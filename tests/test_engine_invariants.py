"""Invariants every run must keep, on randomised small configurations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as s

from simulator.config import SCHEDULERS
from simulator.engine import Simulation
from simulator.workload import ArrivalConfig
from tests.helpers import config, run, table

# the cases draw a chunk size for every scheduler; those that do not chunk warn that it is
# ignored (simulator.config), which is expected here
pytestmark = pytest.mark.filterwarnings("ignore::simulator.errors.ConfigWarning")

cases = s.fixed_dictionaries({
    "scheduler": s.sampled_from(SCHEDULERS),
    "tp": s.sampled_from([1, 2]),
    "pp": s.sampled_from([1, 2, 4]),
    "replicas": s.integers(1, 3),
    "router": s.sampled_from(["round_robin", "random", "least_outstanding"]),
    "blocks": s.integers(12, 400),
    "block_size": s.sampled_from([1, 4, 16]),
    "cap": s.integers(1, 16),
    "chunk": s.integers(8, 300),
    "seed": s.integers(0, 2**16),
    "n": s.integers(1, 40),
    "rate": s.floats(0.5, 200),
    "users": s.integers(0, 6),  # > 0: a closed loop of that many users
})


def _simulate(c: dict, fast_forward: bool = True):
    rng = np.random.default_rng(c["seed"])
    n = c["n"]
    arrival = np.cumsum(rng.exponential(1 / c["rate"], n))
    reqs = table(arrival, rng.integers(1, 200, n), rng.integers(1, 60, n))
    cfg = config(c["scheduler"], max_batch_size=c["cap"], chunk_size=c["chunk"],
                 max_tokens_per_batch=max(c["chunk"], 64), block_size=c["block_size"],
                 num_blocks_override=c["blocks"], router=c["router"],
                 parallel={"tensor_parallel": c["tp"], "pipeline_parallel": c["pp"],
                           "replicas": c["replicas"]},
                 engine={"fast_forward": fast_forward})
    cfg.seed = c["seed"]
    if c.get("users"):
        cfg.workload.arrival = ArrivalConfig(kind="closed", concurrency=c["users"])
    return Simulation(cfg, reqs).run()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases)
# LightLLM with PP: an in-flight decode's token was missing from the admission peak
@example({"scheduler": "lightllm", "tp": 1, "pp": 2, "replicas": 1, "router": "round_robin",
          "blocks": 377, "block_size": 1, "cap": 2, "chunk": 8, "seed": 1412, "n": 21,
          "rate": 2.90625, "users": 0})
def test_invariants(c: dict) -> None:
    rec = _simulate(c)
    completed = ~np.isnan(rec.completed_at)
    rejected = rec.reject_reason != ""
    # every request completes or is rejected with a reason, never both
    assert np.all(completed ^ rejected)
    # tokens: exactly num_decode per completed request, strictly increasing in time
    ids, times = rec.token_request, rec.token_time
    counts = np.bincount(ids, minlength=len(rec.arrival))
    np.testing.assert_array_equal(counts[completed], rec.num_decode[completed])
    same = ids[1:] == ids[:-1]
    assert np.all(np.diff(times)[same] > 0)
    # first token no earlier than arrival; completion is the last token
    assert np.all(rec.first_token_at[completed] > rec.arrival[completed])
    last = np.full(len(rec.arrival), -1.0)
    np.maximum.at(last, ids, times)
    np.testing.assert_array_equal(last[completed], rec.completed_at[completed])
    # KV never exceeds capacity
    assert np.all(rec.batch_kv_blocks_used <= rec.replica_kv_blocks[rec.batch_replica])
    # stage intervals are ordered and never overlap on one stage
    assert np.all(rec.batch_stage_end >= rec.batch_stage_start)
    for r in np.unique(rec.batch_replica):
        for k in range(rec.num_stages):
            m = rec.batch_replica == r
            st, en = rec.batch_stage_start[m, k], rec.batch_stage_end[m, k]
            order = np.argsort(st, kind="stable")
            assert np.all(st[order][1:] >= en[order][:-1])


@settings(max_examples=150, deadline=None)
@given(cases)
def test_fast_forward_changes_nothing(c: dict) -> None:
    """The steady-phase fast path gives the same tables, bit for bit, as iteration steps."""
    fast, slow = _simulate(c, True), _simulate(c, False)
    for name in ("completed_at", "first_token_at", "scheduled_at", "token_time",
                 "token_request", "preemptions", "batch_start", "batch_end",
                 "batch_num_decodes", "batch_prefill_tokens", "batch_kv_blocks_used"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name), err_msg=name)
    assert fast.events <= slow.events


def test_same_seed_same_tables_different_seed_differs() -> None:
    def go(seed: int):
        cfg = config("sarathi", router="random",
                     parallel={"replicas": 2})
        cfg.seed = seed
        cfg.workload.num_requests = 200
        cfg.workload.arrival.rate = 20.0
        cfg.workload.lengths.kind = "uniform"
        return Simulation(cfg).run()

    a, b, c = go(7), go(7), go(8)
    for name in ("arrival", "completed_at", "token_time", "batch_end", "replica"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.completed_at, c.completed_at)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("pp", [1, 2])
def test_single_request_takes_the_sum_of_its_batch_times(scheduler: str, pp: int) -> None:
    """Alone on a replica, a request's E2E is exactly the sum of its batch runtimes."""
    prompt, out = 300, 20
    res = run(scheduler, table([0.0], [prompt], [out]), chunk_size=128,
              parallel={"pipeline_parallel": pp})
    rec = res.records
    sim = Simulation(config(scheduler, chunk_size=128, parallel={"pipeline_parallel": pp}),
                     table([0.0], [prompt], [out]))
    model = sim.execution
    chunked = scheduler in ("sarathi", "vllm_v1", "vllm_v1_async")
    chunks = [128, 128, 44] if chunked else [prompt]
    expected = 0.0
    done = 0
    for c in chunks:
        expected += sum(model.stage_times([c], [done], []))
        done += c
    for g in range(1, out):
        expected += sum(model.stage_times([], [], [prompt + g]))
    assert len(rec.batch_start) == len(chunks) + out - 1
    assert rec.completed_at[0] == pytest.approx(expected, rel=1e-12, abs=0)
    assert math.isclose(rec.completed_at[0],
                        float(np.sum(rec.batch_end - rec.batch_start)), rel_tol=1e-12)


@pytest.mark.parametrize("fast_forward", [True, False])
def test_arrival_at_a_batch_end_joins_the_next_batch(fast_forward: bool) -> None:
    """Same-time events: the batch end, then the arrival, then scheduling."""
    first = run("sarathi", table([0.0], [100], [30])).records
    t1 = float(first.batch_end[0])  # the prefill's end: request 0 starts decoding
    rec = run("sarathi", table([0.0, t1], [100, 50], [30, 5]),
              engine={"fast_forward": fast_forward}).records
    assert rec.batch_end[0] == t1
    # the batch starting at t1 decodes request 0 and prefills request 1
    i = int(np.flatnonzero(rec.batch_start == t1)[0])
    assert rec.batch_num_decodes[i] == 1 and rec.batch_prefill_tokens[i] == 50
    assert rec.scheduled_at[1] == t1
