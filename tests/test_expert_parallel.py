"""Expert parallelism: config checks, per-GPU expert memory, the MoE layers' expert work and
dispatch/combine traffic, and the lockstep of an EP group's data-parallel ranks."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest

from simulator import SimulationConfig, simulate
from simulator.catalogue import load_catalogue
from simulator.engine import Simulation, build_execution_model
from simulator.errors import ConfigError
from simulator.execution.calibrated import CalibratedModel
from simulator.execution.roofline import PARTS, RooflineModel
from simulator.memory import weight_bytes_per_gpu
from tests.helpers import table

MOE = "qwen3-30b-a3b"  # 128 experts, top-8


def cfg(ep: int = 2, replicas: int = 2, tp: int = 1, pp: int = 1, model: str = MOE,
        scheduler: str = "vllm_v1", kind: str = "roofline", **sched) -> SimulationConfig:
    return SimulationConfig.from_dict({
        "model": model, "sku": "h100-sxm", "router": "round_robin",
        "parallel": {"tensor_parallel": tp, "pipeline_parallel": pp, "replicas": replicas,
                     "expert_parallel": ep},
        "scheduler": {"name": scheduler, "chunk_size": 8192, "max_tokens_per_batch": 8192,
                      **sched},
        "execution": {"kind": kind},
    })


def moe_model(ep: int = 1, cls: type[RooflineModel] = RooflineModel) -> RooflineModel:
    cat = load_catalogue()
    m = cls(cat.model(MOE), cat.sku("h100-sxm"), cat.node("hgx-h100"), 1, 1)
    if ep > 1:
        m.set_expert_parallel(ep)
    return m


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(("kwargs", "field", "needle"), [
    ({"model": "llama-3-8b"}, "parallel.expert_parallel", "dense model"),
    ({"ep": 4}, "parallel.expert_parallel", "replicas x tensor_parallel = 2 x 1 = 2"),
    ({"ep": 3, "replicas": 3, "model": "mixtral-8x7b"}, "parallel.expert_parallel",
     "divide mixtral-8x7b's 8 experts"),
    ({"pp": 2}, "parallel.pipeline_parallel", "must be 1 with expert_parallel=2"),
    ({"ep": 0}, "parallel.expert_parallel", "integer >= 1"),
])
def test_config_errors_name_the_field_and_what_is_allowed(kwargs, field, needle) -> None:
    with pytest.raises(ConfigError) as err:
        cfg(**kwargs)
    assert err.value.field == field and needle in str(err.value)


def test_ep_group_is_every_gpu_of_the_replicas() -> None:
    c = cfg(ep=4, replicas=2, tp=2)  # vLLM: DP 2 x TP 2 with --enable-expert-parallel
    assert c.parallel.expert_parallel == 4 and c.num_gpus == 4
    assert build_execution_model(c).expert_parallel == 4


# --------------------------------------------------------------------------- memory


def test_each_gpu_holds_its_share_of_the_experts_and_gets_more_kv() -> None:
    spec = load_catalogue().model(MOE)
    mats = 3 if spec.gated_mlp else 2
    experts = spec.num_layers * spec.num_experts * mats * spec.hidden_size * spec.ffn_size
    one, two = weight_bytes_per_gpu(spec, 1, 1), weight_bytes_per_gpu(spec, 1, 1, ep=2)
    assert one - two == pytest.approx(experts / 2 * spec.dtype_bytes, rel=1e-9)
    assert moe_model(2).weight_bytes_per_gpu() == two
    kv1, kv2 = cfg(ep=1).kv_capacity(), cfg(ep=2).kv_capacity()
    assert kv2.weight_bytes == two and kv1.weight_bytes == one
    assert kv2.num_blocks > 3 * kv1.num_blocks  # 61 GB of weights on 80 GB -> about 31 GB


# --------------------------------------------------------------------------- execution


def test_ep_comm_appears_and_grows_with_the_group_tokens() -> None:
    m1, m2 = moe_model(1), moe_model(2)
    assert m1.breakdown([], [], [500] * 64)[0]["ep_comm"] == 0.0
    comm = [m2.breakdown([], [], [500] * 64, group_tokens=g)[0]["ep_comm"]
            for g in (65, 128, 1024, 8192)]
    assert comm[0] > 0 and all(b > a for a, b in itertools.pairwise(comm))
    # parts add up to the stage time, group tokens included
    bd = m2.breakdown([300], [0], [500] * 64, group_tokens=900)[0]
    assert set(bd) == set(PARTS)
    assert sum(bd.values()) == pytest.approx(m2.stage_times([300], [0], [500] * 64,
                                                            group_tokens=900)[0])
    # default: every rank carries the same batch (64 x 2 tokens in the group)
    assert m2.stage_times([], [], [500] * 64) == m2.stage_times([], [], [500] * 64,
                                                                group_tokens=128)


def test_each_gpu_reads_only_its_experts_for_the_routed_tokens_of_the_group() -> None:
    m1, m2 = moe_model(1), moe_model(2)
    # decode of 256 tokens on one GPU with all experts vs 128 per rank on two GPUs: the
    # same routed tokens per expert, half the expert weights read on each GPU
    full = m1.breakdown([], [], [500] * 256)[0]["mlp"]
    half = m2.breakdown([], [], [500] * 128, group_tokens=256)[0]["mlp"]
    assert 0.4 < half / full < 0.6
    # one rank's MoE work grows with the other rank's tokens
    alone = m2.breakdown([], [], [500] * 128, group_tokens=129)[0]["mlp"]
    assert m2.breakdown([], [], [500] * 128, group_tokens=8192)[0]["mlp"] > alone


def test_calibrated_ep_comm_uses_the_nodes_all_reduce_fit() -> None:
    c = cfg(kind="calibrated")
    model = build_execution_model(c)
    assert isinstance(model, CalibratedModel) and model.expert_parallel == 2
    fit = model.node_calibration.allreduce_fit(2)
    comm = model.breakdown([], [], [100], group_tokens=1)[0]["ep_comm"]
    per_layer = comm / c.model_spec.num_layers
    assert per_layer > 2 * fit.latency_us * 1e-6  # one all-gather + one reduce-scatter


def test_ep_one_is_the_model_without_expert_parallelism() -> None:
    fresh, back = moe_model(1), moe_model(2)
    back.set_expert_parallel(1)
    batch = ([700], [100], [300, 900, 2000])
    assert fresh.stage_times(*batch) == back.stage_times(*batch)
    assert fresh.stage_times(*batch, group_tokens=5000) == fresh.stage_times(*batch)
    np.testing.assert_array_equal(fresh.decode_steps_sum(16, 8000, 5),
                                  back.decode_steps_sum(16, 8000, 5))
    spec = load_catalogue().model(MOE)
    assert weight_bytes_per_gpu(spec, 2, 1, ep=1) == weight_bytes_per_gpu(spec, 2, 1)


# --------------------------------------------------------------------------- lockstep


def _intervals(result, replica: int) -> list[tuple[float, float]]:
    rec = result.records
    mine = rec.batch_replica == replica
    return list(zip(rec.batch_start[mine].tolist(), rec.batch_end[mine].tolist(), strict=True))


def test_ranks_step_together_and_the_slowest_sets_the_step() -> None:
    # round robin: rank 0 gets the short prompts, rank 1 the long ones; same outputs
    reqs = table([0.0, 0.0, 0.01, 0.01], [100, 3000, 100, 3000], [40, 40, 40, 40])
    lock = simulate(cfg(ep=2), requests=reqs)
    free = simulate(cfg(ep=1), requests=reqs)
    assert lock.summary["counts"]["completed"] == 4
    a, b = _intervals(lock, 0), _intervals(lock, 1)
    assert len(a) == len(b) and a == b  # same iterations, same start and end
    fa, fb = _intervals(free, 0), _intervals(free, 1)
    assert fa != fb  # independent replicas: rank 0's short prefills end first
    # the first step lasts as long as rank 1's long prefill, the MoE layers carrying both
    model = build_execution_model(cfg(ep=2))
    short, long = (model.stage_times([c], [0], [], group_tokens=3100)[0] for c in (100, 3000))
    assert long > 1.3 * short and a[0] == (0.0, long)


def test_a_long_prefill_on_one_rank_stalls_the_others_decodes() -> None:
    reqs = table([0.0, 0.3], [200, 8000], [400, 2])  # rank 0 decodes; rank 1 gets a prompt
    gaps = {}
    for ep in (1, 2):
        res = simulate(cfg(ep=ep), requests=reqs)
        rec = res.records
        times = np.sort(rec.token_time[rec.token_request == 0])
        gaps[ep] = np.diff(times)
    prefill = moe_model(2).stage_times([8000], [0], [], group_tokens=8001)[0]
    assert gaps[2].max() >= prefill > 5 * gaps[1].max()
    # decodes when rank 1 is idle run in dummy steps: as fast as alone
    assert np.median(gaps[2]) < 1.5 * np.median(gaps[1])


# a chunk_size set for every scheduler: those that do not chunk warn, as expected
@pytest.mark.filterwarnings("ignore::simulator.errors.ConfigWarning")
@pytest.mark.parametrize("scheduler", ["vllm_v0", "vllm_v1", "vllm_v1_async", "sarathi",
                                       "orca", "faster_transformer", "lightllm"])
def test_lockstep_invariants_hold_for_every_scheduler(scheduler: str) -> None:
    rng = np.random.default_rng(7)
    n = 60
    reqs = table(np.sort(rng.uniform(0, 2.0, n)), rng.integers(20, 1500, n),
                 rng.integers(1, 120, n))
    c = cfg(ep=2, scheduler=scheduler, max_batch_size=16)
    res = simulate(c, requests=reqs)
    rec = res.records
    assert res.summary["counts"]["completed"] == n
    assert np.array_equal(np.bincount(rec.token_request, minlength=n), reqs.num_decode)
    # batches of the two ranks either coincide or do not overlap at all
    steps = sorted(set(zip(rec.batch_start.tolist(), rec.batch_end.tolist(), strict=True)))
    for (s0, e0), (s1, _) in itertools.pairwise(steps):
        assert s1 >= e0 > s0
    closed = dataclasses.replace(c, workload=dataclasses.replace(
        c.workload, num_requests=20,
        arrival=dataclasses.replace(c.workload.arrival, kind="closed", concurrency=4)))
    assert simulate(closed).summary["counts"]["completed"] == 20


def test_simulation_refuses_an_execution_model_without_expert_parallelism() -> None:
    c = cfg(ep=2)
    with pytest.raises(ConfigError) as err:
        Simulation(c, execution=moe_model(1))
    assert err.value.field == "parallel.expert_parallel"


# --------------------------------------------------------------------------- profiles


def test_profiled_moe_under_ep_matches_the_measured_share_of_experts(
        reference_dir: Path, tmp_path: Path) -> None:
    """The profiled MoE layer at EP 2 (the all-experts profile at the group's tokens: the
    per-rank floor plus half the rest) against moe.csv's own 64-expert rows, which it does
    not read."""
    import pandas as pd

    from profiler.import_llmservingsim import import_llmservingsim

    lss = reference_dir / "llmservingsim"
    store = tmp_path / "store"
    import_llmservingsim(lss, store)
    c = SimulationConfig.from_dict({
        "model": MOE, "sku": "rtx-pro-6000",
        "parallel": {"replicas": 2, "expert_parallel": 2},
        "scheduler": {"name": "vllm_v1", "chunk_size": 2048, "max_batch_size": 128},
        "execution": {"kind": "profiled", "profiled": {
            "store": [str(store)], "fallback": "calibrated", "cache_dir": str(tmp_path)}},
    })
    model = build_execution_model(c)
    assert "per-rank floor" in model.sources["moe_experts"]
    moe = pd.read_csv(lss / "profiles/RTXPRO6000/Qwen/Qwen3-30B-A3B-Instruct-2507/bf16/tp1"
                      "/moe.csv")
    measured = moe[moe.activated_experts == 64].set_index("tokens")["time_us"]
    layers = c.model_spec.num_layers
    for tokens in (16, 64, 256, 1024):  # routed per GPU: 2 x tokens x top-8 / 2
        bd = model.breakdown([], [], [100] * tokens, group_tokens=2 * tokens)[0]
        # the 64-expert call computes what the rank computes; the rank also routes and
        # permutes the other rank's slots: never cheaper, and a bounded floor above it
        got = bd["mlp"] / layers * 1e6
        assert 0.97 * measured[tokens] <= got <= 1.25 * measured[tokens], (tokens, got)
