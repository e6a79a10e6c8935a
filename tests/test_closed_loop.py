"""Closed-loop workloads: N users, each sending its next request when one completes."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import ConfigError, SimulationConfig
from simulator.engine import Simulation
from simulator.metrics.summary import summarize


def _cfg(concurrency: int = 8, think: float = 0.0, warmup: int = 0, n: int = 200,
         scheduler: str = "sarathi", ff: bool = True) -> SimulationConfig:
    return SimulationConfig.from_dict({
        "model": "llama-3-8b", "sku": "h100-sxm",
        "scheduler": {"name": scheduler, "max_batch_size": 64},
        "workload": {"num_requests": n, "warmup_requests": warmup,
                     "arrival": {"kind": "closed", "concurrency": concurrency,
                                 "think_time_s": think},
                     "lengths": {"kind": "uniform", "min_prefill": 32, "max_prefill": 512,
                                 "min_decode": 8, "max_decode": 128}},
        "engine": {"fast_forward": ff}, "seed": 3,
    })


def _in_system(rec, t: float) -> int:
    return int(((rec.arrival <= t) & ~(rec.completed_at <= t)).sum())


@pytest.mark.parametrize("scheduler", ["sarathi", "vllm_v0", "orca", "lightllm"])
def test_never_more_requests_in_flight_than_users(scheduler: str) -> None:
    rec = Simulation(_cfg(concurrency=8, scheduler=scheduler)).run()
    assert np.isfinite(rec.completed_at).all()
    assert (rec.arrival[:8] == 0).all() and np.all(np.diff(rec.arrival) >= 0)
    # just after any arrival or completion, at most 8 requests are in the system
    for t in np.unique(np.concatenate([rec.arrival, rec.completed_at])):
        assert _in_system(rec, t) <= 8
    # each later request is sent at a completion (zero think time)
    completions = np.sort(rec.completed_at)
    assert np.allclose(rec.arrival[8:], completions[: len(rec.arrival) - 8])


def test_think_time_delays_the_next_request() -> None:
    rec = Simulation(_cfg(concurrency=4, think=0.5)).run()
    completions = np.sort(rec.completed_at)
    assert np.allclose(rec.arrival[4:], completions[: len(rec.arrival) - 4] + 0.5)


def test_throughput_grows_with_users_until_the_replica_saturates() -> None:
    def rate(c: int) -> float:
        s = summarize(Simulation(_cfg(concurrency=c)).run())
        return s["throughput"]["requests_per_s"]
    r1, r8, r64 = rate(1), rate(8), rate(64)
    assert r1 < r8 < r64
    assert r8 < 8 * r1  # batching is not free


def test_warmup_requests_are_left_out_of_the_summary() -> None:
    rec = Simulation(_cfg(warmup=50)).run()
    s = summarize(rec)
    assert s["counts"]["requests"] == 150 and s["counts"]["warmup_excluded"] == 50
    ttft = rec.first_token_at[50:] - rec.arrival[50:]
    assert s["ttft"]["p50"] == pytest.approx(float(np.percentile(ttft, 50)))


def test_fast_forward_changes_nothing_in_a_closed_loop() -> None:
    fast = Simulation(_cfg(concurrency=16, think=0.2, ff=True)).run()
    slow = Simulation(_cfg(concurrency=16, think=0.2, ff=False)).run()
    for name in ("arrival", "completed_at", "first_token_at", "token_time", "batch_end"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name), err_msg=name)


def test_closed_loop_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"workload\.arrival\.concurrency"):
        _cfg(concurrency=0)
    with pytest.raises(ConfigError, match=r"workload\.warmup_requests"):
        _cfg(warmup=200)
    with pytest.raises(ConfigError, match=r"workload\.arrival\.think_time_s"):
        _cfg(think=-1.0)
