"""Capacity search, search space and single trials, without Ray."""

from __future__ import annotations

import dataclasses
import math

import pytest

from simulator import ConfigError
from vidur_search.capacity import CapacitySettings, Slo, base_stream, find_capacity, probe
from vidur_search.space import Candidate, build_space, simulation_config
from vidur_search.trial import TrialContext, run_trial

PROMPT = 2048


def _base(model: str = "llama-3-8b", **lengths: int) -> dict:
    lengths = {"kind": "fixed", "prefill_tokens": PROMPT, "decode_tokens": 1, **lengths}
    return {"model": model, "nodes": {}, "execution": {"kind": "roofline"}, "seed": 0,
            "workload": {"arrival": {"kind": "gamma", "rate": 1.0, "cv": 1e-6},
                         "lengths": lengths}}


def test_bisection_finds_the_closed_form_capacity_of_a_deterministic_queue() -> None:
    """One request class, one request at a time, near-deterministic arrivals (D/D/1).

    Each request costs one prefill of ``s`` seconds. Above 1/s the k-th request waits
    k (s - 1/q), so TTFT P90 over n requests is s + 0.9 (n - 1)(s - 1/q) (linear
    interpolation of a linear sequence): the SLO TTFT P90 <= T holds up to
    q* = 1 / (s - (T - s) / (0.9 (n - 1))).
    """
    n, target = 300, 2.0
    cfg = simulation_config(_base(), Candidate("h100-sxm", 1, 1, 1, "vllm_v0", 1, 0), n)
    reqs, rate = base_stream(cfg)
    s = probe(cfg, reqs, rate, 0.1, Slo()).metrics["ttft_p50"]  # service time, no queue
    q_star = 1.0 / (s - (target - s) / (0.9 * (n - 1)))
    slo = Slo(ttft_s=target, tbt_s=1.0, max_sched_delay_p99_s=1e9)
    res = find_capacity(cfg, slo, CapacitySettings(precision=0.01, min_requests=n, window_s=1))
    assert q_star * 0.99 <= res.capacity_qps <= q_star
    assert res.metrics["ttft_p90"] <= target
    failing = [p for p in res.probes if not p.passed]
    assert failing and min(p.qps for p in failing) > res.capacity_qps
    assert all(p.passed for p in res.probes if p.qps <= res.capacity_qps)


def test_same_seed_same_capacity() -> None:
    cfg = simulation_config(_base(decode_tokens=64),
                            Candidate("h100-sxm", 1, 1, 1, "sarathi", 64, 512), 200)
    a = find_capacity(cfg, Slo(), CapacitySettings(min_requests=200))
    b = find_capacity(cfg, Slo(), CapacitySettings(min_requests=200))
    assert a.capacity_qps == b.capacity_qps > 0 and a.metrics == b.metrics


def test_a_latency_floor_above_the_slo_is_capacity_zero_with_its_reason() -> None:
    # a 70B prefill of 4K tokens on one A100-class GPU pair cannot meet TTFT <= 0.05 s
    cfg = simulation_config(_base("llama-2-70b", prefill_tokens=4000),
                            Candidate("h100-sxm", 4, 1, 1, "vllm_v0", 32, 0), 100)
    res = find_capacity(cfg, Slo(ttft_s=0.05), CapacitySettings(min_requests=100))
    assert res.capacity_qps == 0 and res.metrics == {}
    assert "TTFT p90" in res.reason and "> 0.05s" in res.reason
    assert res.simulations <= 3  # stops once 8x less load no longer helps


def test_rejected_requests_stop_the_search_at_once() -> None:
    # vLLM v0 rejects prompts longer than its token budget at any rate
    base = _base(prefill_tokens=3000)
    cand = Candidate("h100-sxm", 1, 1, 1, "vllm_v0", 32, 0)
    cfg = simulation_config(base, cand, 50)
    cfg = dataclasses.replace(cfg, scheduler=dataclasses.replace(cfg.scheduler,
                                                                 max_tokens_per_batch=2048))
    res = find_capacity(cfg, Slo(), CapacitySettings(min_requests=50))
    assert res.capacity_qps == 0 and res.simulations == 1
    assert "rejected" in res.reason


def _space(**over) -> dict:
    space = {"skus": ["a100-80gb", "h100-sxm"], "tensor_parallel": [1, 2, 4, 8],
             "pipeline_parallel": [1, 2], "max_gpus": 8, "fill_budget": True,
             "schedulers": ["vllm_v0", "sarathi"], "batch_caps": [64, 128],
             "chunk_sizes": [512, 1024]}
    space.update(over)
    return space


def test_space_drops_what_cannot_run_and_says_why() -> None:
    space = build_space(_base("llama-2-70b"), _space(), 1)
    summary = space.summary()
    assert "does not fit on a100-80gb with tensor_parallel=1, pipeline_parallel=1" in summary
    assert all(c.tp * c.pp >= 2 for c in space.candidates)  # 140 GB never fits one GPU
    assert all(c.num_gpus <= 8 and c.replicas == 8 // (c.tp * c.pp) for c in space.candidates)
    assert all((c.chunk_size > 0) == (c.scheduler == "sarathi") for c in space.candidates)
    # 2 SKUs x 8 layouts x (vLLM: 2 caps + Sarathi: 2 caps x 2 chunks), all accounted for
    assert len(space.candidates) + sum(space.dropped.values()) == 2 * 8 * 6
    assert space.dropped["more than search.space.max_gpus=8 GPUs"] == 2 * 6  # TP8 x PP2


def test_space_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"search\.space\.schedulers.*allowed.*sarathi"):
        build_space(_base(), _space(schedulers=["sarathii"]), 1)
    with pytest.raises(ConfigError, match=r"search\.space\.batch_caps"):
        build_space(_base(), _space(batch_caps=[]), 1)


def test_nearest_maps_a_sample_onto_a_runnable_candidate() -> None:
    space = build_space(_base("llama-2-70b"), _space(), 1)
    exact = space.candidates[0]
    params = {"sku": exact.sku, "parallel": f"tp{exact.tp}-pp{exact.pp}",
              "scheduler": exact.scheduler, "batch_cap": exact.batch_cap,
              "chunk_size": exact.chunk_size}
    assert space.nearest(params) == exact
    # TP1/PP1 cannot hold 70B: the nearest runnable layout on the same SKU and scheduler
    got = space.nearest({"sku": "h100-sxm", "parallel": "tp1-pp1", "scheduler": "sarathi",
                         "batch_cap": 128, "chunk_size": 512})
    assert (got.sku, got.scheduler, got.batch_cap, got.chunk_size) == (
        "h100-sxm", "sarathi", 128, 512)
    assert got.tp * got.pp == 2


def _ctx(**over) -> TrialContext:
    fields = {"base": _base(decode_tokens=32), "workload_name": "w", "slo": Slo(),
              "capacity": CapacitySettings(min_requests=100), "requests_per_replica": 200,
              "replica_scaling": "linear", "prices": {"h100-sxm": 2.0}}
    fields.update(over)
    return TrialContext(**fields)


def test_trial_row_has_cost_and_scales_one_replica_linearly() -> None:
    one = run_trial(_ctx(), Candidate("h100-sxm", 1, 1, 1, "sarathi", 64, 512))
    four = run_trial(_ctx(), Candidate("h100-sxm", 1, 1, 4, "sarathi", 64, 512))
    assert one["status"] == four["status"] == "ok" and one["error"] == ""
    assert four["capacity_qps"] == pytest.approx(4 * one["capacity_qps"])
    assert four["cost_per_hour"] == 4 * 2.0 and four["num_gpus"] == 4
    assert four["capacity_per_dollar"] == pytest.approx(one["capacity_per_dollar"])
    assert math.isfinite(one["cost_per_million_tokens"]) and one["ttft_p90"] > 0


def test_a_trial_that_raises_is_a_failed_row_not_an_exception() -> None:
    row = run_trial(_ctx(max_trial_s=1e-9), Candidate("h100-sxm", 1, 1, 1, "sarathi", 64, 512))
    assert row["status"] == "failed" and "max_trial_s" in row["error"]
    assert row["capacity_qps"] == 0 and row["key"] == "h100-sxm|tp1|pp1|r1|sarathi|b64|c512"


def test_a_worker_reuses_an_execution_model_only_where_the_trial_would_build_the_same(
        tmp_path) -> None:
    """Measured profiles compile lookup tables for the scheduler's batch and token range;
    a model built for a batch cap of 32 must not serve a trial with a cap of 512 (its
    result would depend on the trial the worker ran before)."""
    from vidur_search.trial import execution_model

    light = {"cache_dir": str(tmp_path), "n_estimators": 4, "base": [False], "cv_folds": 2,
             "max_cv_rows": 500}

    def cfg(cap: int, kind: str, **extra: object):
        execution = {"kind": kind, "profiled": light} if kind == "profiled" else {"kind": kind}
        base = {**_base(), "execution": execution, **extra}
        return simulation_config(base, Candidate("h100-sxm", 1, 1, 1, "sarathi", cap, 512), 10)

    assert execution_model(cfg(32, "roofline")) is execution_model(cfg(512, "roofline"))
    assert execution_model(cfg(32, "profiled")) is not execution_model(cfg(512, "profiled"))
    # a search passes the space's widest range: one model per layout serves every trial
    wide = (512, 2048, 4096)
    assert execution_model(cfg(32, "profiled"), wide) is execution_model(cfg(512, "profiled"),
                                                                         wide)
    fp8 = cfg(32, "roofline", precision={"weights": "fp8", "kv_cache": "fp8"})
    assert execution_model(fp8) is not execution_model(cfg(32, "roofline"))


def test_expert_parallel_candidates_exist_for_moe_models_only_and_run_as_one_group() -> None:
    """``search.space.expert_parallel: [false, true]`` adds each MoE deployment as one EP
    group over all its GPUs; a trial simulates the whole group (its ranks step together)."""
    space_cfg = {"skus": ["h100-sxm"], "tensor_parallel": [1, 2], "pipeline_parallel": [1, 2],
                 "max_gpus": 4, "fill_budget": True, "schedulers": ["sarathi"],
                 "batch_caps": [64], "chunk_sizes": [512], "expert_parallel": [False, True]}
    moe = build_space(_base("mixtral-8x7b"), space_cfg, 1)
    ep = [c for c in moe.candidates if c.ep > 1]
    assert ep and all(c.ep == c.tp * c.replicas and c.pp == 1 for c in ep)
    assert {c.key for c in ep}.isdisjoint(c.key for c in moe.candidates if c.ep == 1)
    assert any("expert_parallel" in reason for reason in moe.dropped)  # PP 2 cannot
    dense = build_space(_base(), space_cfg, 1)
    assert not [c for c in dense.candidates if c.ep > 1]
    assert any("dense model" in reason or "expert_parallel" in reason
               for reason in dense.dropped)

    ctx = _ctx(base=_base("mixtral-8x7b", prefill_tokens=256, decode_tokens=32))
    cand = max(ep, key=lambda c: c.replicas)
    row = run_trial(ctx, cand)
    assert row["status"] == "ok", row["error"]
    assert row["expert_parallel"] == cand.ep and row["key"].endswith(f"|ep{cand.ep}")
    assert row["capacity_qps"] > 0


def test_every_candidate_round_trips_through_the_samplers_parameters() -> None:
    """What TPE samples (ordinal indices, EP as a switch) maps back to the same candidate,
    so warm starts and the prior's first points measure what they name."""
    from vidur_search.search import DefineByRun

    space = build_space(_base("mixtral-8x7b"), {
        "skus": ["h100-sxm", "a100-80gb"], "tensor_parallel": [1, 2, 4],
        "pipeline_parallel": [1, 2], "max_gpus": 4, "fill_budget": True,
        "schedulers": ["sarathi", "vllm_v0"], "batch_caps": [64, 256],
        "chunk_sizes": [512, 2048], "expert_parallel": [False, True]}, 1)
    sampled = DefineByRun(space)
    assert sampled.ep and any(c.ep > 1 for c in space.candidates)
    for c in space.candidates:
        assert space.nearest(sampled.decode(sampled.encode(c))) == c
