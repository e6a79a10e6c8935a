"""One trial = one capacity measurement: the highest request rate a configuration sustains.

The rate is found by bisection over simulations that share one request stream (common
random numbers): the stream is generated once at its configured rate and, for a probe at
``qps``, its arrival times are scaled by ``base_rate / qps``. Every probe therefore sees the
same requests in the same order, only closer together or further apart, so "meets the SLO"
is (nearly) monotone in the rate and the bisection is not fooled by sampling noise.

A rate *passes* when every request completes (none rejected), the TTFT and TBT quantiles
meet the SLO, and the P99 scheduling delay stays under the queue bound (a growing queue
means the rate is above what the replica drains).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulator import SimulationConfig
from simulator.engine import Simulation
from simulator.execution.base import ExecutionModel
from simulator.metrics.summary import span_s, tbt_values
from simulator.records import SimulationRecords
from simulator.workload import RequestTable, generate_requests

QUANTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0}


@dataclass(frozen=True)
class Slo:
    """Latency objectives a rate must meet (seconds), and the queue bound."""

    ttft_quantile: str = "p90"
    ttft_s: float = 2.0
    tbt_quantile: str = "p99"
    tbt_s: float = 0.2
    max_sched_delay_p99_s: float = 5.0


@dataclass(frozen=True)
class CapacitySettings:
    """How precisely and how expensively the capacity is searched."""

    precision: float = 0.02  # stop when (hi - lo) / hi <= precision
    min_qps: float = 0.01  # below this the configuration counts as unable to serve
    max_qps: float = 10_000.0
    max_simulations: int = 24
    # Each probe simulates the first max(min_requests, qps * window_s) requests of the
    # stream, at most all of them: the arrivals must span a window long against request
    # latencies, else a burst that a big batch absorbs once passes for a sustainable rate.
    min_requests: int = 200
    window_s: float = 60.0


@dataclass
class Probe:
    """The outcome of one simulation at one rate."""

    qps: float
    passed: bool
    reason: str
    metrics: dict[str, float]
    violated: str = ""  # metric name of the violated objective ("" when passed)


@dataclass
class CapacityResult:
    """Highest passing rate, the latencies there, and what it took to find it."""

    capacity_qps: float
    reason: str  # "" when capacity > 0, else why no rate passes
    metrics: dict[str, float]  # at capacity; empty when capacity is 0
    simulations: int
    wall_s: float
    probes: list[Probe] = field(default_factory=list)


def rate_metrics(rec: SimulationRecords) -> dict[str, float]:
    """The latency quantiles and throughput the SLO check and the trials table need (the
    warm-up requests left out, as in the summary)."""
    done = ~np.isnan(rec.completed_at) & (rec.reject_reason == "")
    out: dict[str, float] = {"completed": float(done.sum()), "rejected": float((~done).sum())}
    done[: int(rec.warmup_requests)] = False
    ttft = (rec.first_token_at - rec.arrival)[done]
    e2e = (rec.completed_at - rec.arrival)[done]
    delay = (rec.scheduled_at - rec.arrival)[done]
    steps = np.maximum(rec.num_decode[done] - 1, 1)
    tpot = (rec.completed_at - rec.first_token_at)[done] / steps
    tbt = tbt_values(rec)
    for name, values, qs in (
        ("ttft", ttft, ("p50", "p90", "p95", "p99")),
        ("tbt", tbt, ("p50", "p90", "p95", "p99")),
        ("tpot", tpot, ("p50", "p90")),
        ("e2e", e2e, ("p50", "p90")),
        ("sched_delay", delay, ("p99",)),
    ):
        if len(values):
            vals = np.percentile(values, [QUANTILES[q] for q in qs])
        else:
            vals = [math.nan] * len(qs)
        out.update({f"{name}_{q}": float(v) for q, v in zip(qs, vals, strict=True)})
    span = span_s(rec, int(rec.warmup_requests))
    tokens = float(rec.num_prefill[done].sum() + rec.num_decode[done].sum())
    out["tokens_per_s"] = tokens / span if span and span > 0 else math.nan
    out["output_tokens_per_s"] = float(rec.num_decode[done].sum()) / span if span else math.nan
    return out


def check_slo(m: dict[str, float], slo: Slo) -> str:
    """'' when the metrics meet ``slo``, else the first violated objective."""
    return violation(m, slo)[0]


def violation(m: dict[str, float], slo: Slo) -> tuple[str, str]:
    """(reason, metric name) of the first objective ``m`` violates; ('', '') when none."""
    if m["rejected"] > 0:
        return f"{int(m['rejected'])} requests rejected (too long for the KV cache)", "rejected"
    key = f"ttft_{slo.ttft_quantile}"
    if not m[key] <= slo.ttft_s:
        return f"TTFT {slo.ttft_quantile} {m[key]:.3g}s > {slo.ttft_s:g}s", key
    key = f"tbt_{slo.tbt_quantile}"
    if not (math.isnan(m[key]) or m[key] <= slo.tbt_s):  # NaN: only one-token outputs
        return f"TBT {slo.tbt_quantile} {m[key]:.3g}s > {slo.tbt_s:g}s", key
    key = "sched_delay_p99"
    if not m[key] <= slo.max_sched_delay_p99_s:
        return (f"scheduling delay p99 {m[key]:.3g}s > {slo.max_sched_delay_p99_s:g}s "
                "(queue grows)"), key
    return "", ""


def base_stream(cfg: SimulationConfig) -> tuple[RequestTable, float]:
    """The shared request stream of ``cfg``'s workload and the rate it was generated at."""
    w = cfg.workload
    kind = w.arrival.kind
    if kind not in ("poisson", "gamma", "trace"):
        from simulator.errors import ConfigError

        raise ConfigError("workload.arrival.kind", kind,
                          "poisson, gamma or trace (a capacity search scales the arrival rate)")
    reqs = generate_requests(w, np.random.default_rng(cfg.seed))
    if kind == "trace":
        span = float(reqs.arrival[-1] - reqs.arrival[0])
        rate = (len(reqs) - 1) / span if span > 0 else 1.0
    else:
        rate = float(w.arrival.rate)
    return reqs, rate


def probe(cfg: SimulationConfig, reqs: RequestTable, base_rate: float, qps: float,
          slo: Slo, execution: ExecutionModel | None = None,
          settings: CapacitySettings | None = None) -> Probe:
    """Simulate ``reqs`` compressed to ``qps`` and check the SLO; with ``settings``, only
    the prefix of ``reqs`` that covers ``settings.window_s`` seconds of arrivals."""
    if settings is not None:
        n = min(len(reqs), max(settings.min_requests, math.ceil(qps * settings.window_s)))
        reqs = RequestTable(reqs.arrival[:n], reqs.num_prefill[:n], reqs.num_decode[:n])
    scaled = dataclasses.replace(reqs, arrival=reqs.arrival * (base_rate / qps))
    rec = Simulation(cfg, scaled, execution).run()
    m = rate_metrics(rec)
    reason, key = violation(m, slo)
    return Probe(qps, not reason, reason, m, key)


def find_capacity(
    cfg: SimulationConfig,
    slo: Slo,
    settings: CapacitySettings = CapacitySettings(),
    *,
    execution: ExecutionModel | None = None,
    start_qps: float | None = None,
    on_probe: Callable[[Probe], None] | None = None,
) -> CapacityResult:
    """Bisect for the highest rate that meets ``slo`` (see the module docstring).

    The bracket starts at ``start_qps`` (default: the rate of ``cfg``'s workload); it grows
    by 4x until a rate fails, or shrinks by 8x until one passes, then is halved
    (geometrically while wide, arithmetically after) until its relative width is at most
    ``settings.precision``. Shrinking stops early when requests are rejected (no rate
    helps) or when 8x less load improves the violated latency by under 10% (the latency
    floor itself misses the SLO). Either way, or no pass at ``min_qps``, the result is
    capacity 0 with the reason of the lowest failing probe, not an error.
    """
    t0 = time.perf_counter()
    reqs, base_rate = base_stream(cfg)
    probes: list[Probe] = []

    def run(qps: float) -> Probe:
        p = probe(cfg, reqs, base_rate, qps, slo, execution, settings)
        probes.append(p)
        if on_probe is not None:
            on_probe(p)  # progress, or a time limit that raises
        return p

    def budget_left() -> bool:
        return len(probes) < settings.max_simulations

    qps = min(max(start_qps or base_rate, settings.min_qps), settings.max_qps)
    first = run(qps)
    lo: Probe | None = first if first.passed else None
    hi: Probe | None = None if first.passed else first
    while lo is None and budget_left():  # shrink until a rate passes
        assert hi is not None
        if hi.violated == "rejected" or hi.qps / 8 < settings.min_qps:
            break  # rejections do not depend on the rate; or nothing lower to try
        p = run(hi.qps / 8)
        if p.passed:
            lo = p
        elif _load_independent(hi, p):
            hi = p
            break  # 8x less load barely helped: the latency floor itself misses the SLO
        else:
            hi = p
    if lo is None:
        worst = hi or first
        return CapacityResult(0.0, f"no rate >= {settings.min_qps:g} QPS meets the SLO: "
                              f"{worst.reason}", {}, len(probes), time.perf_counter() - t0,
                              probes)
    while hi is None and budget_left():  # grow until a rate fails
        nxt = lo.qps * 4
        if nxt > settings.max_qps:
            break
        p = run(nxt)
        lo, hi = (p, None) if p.passed else (lo, p)
    while hi is not None and budget_left() and (hi.qps - lo.qps) / hi.qps > settings.precision:
        p = run(math.sqrt(lo.qps * hi.qps) if hi.qps / lo.qps > 2 else (lo.qps + hi.qps) / 2)
        lo, hi = (p, hi) if p.passed else (lo, p)
    return CapacityResult(lo.qps, "", lo.metrics, len(probes), time.perf_counter() - t0, probes)


def _load_independent(higher: Probe, lower: Probe) -> bool:
    """True when ``lower`` (at 1/8 the rate) fails the same objective by nearly as much:
    the violation comes from the batch latency at low load, not from queueing."""
    key = higher.violated
    if key != lower.violated or key in ("", "rejected"):
        return False
    before, after = higher.metrics[key], lower.metrics[key]
    return after >= 0.9 * before


def result_row(res: CapacityResult) -> dict[str, Any]:
    """The capacity columns of a trials-table row."""
    m = res.metrics
    keys = ("ttft_p50", "ttft_p90", "ttft_p99", "tbt_p50", "tbt_p99", "tpot_p50", "tpot_p90",
            "e2e_p50", "e2e_p90", "sched_delay_p99", "tokens_per_s")
    row: dict[str, Any] = {k: float(m.get(k, math.nan)) for k in keys}
    row.update(capacity_qps=float(res.capacity_qps), capacity_reason=res.reason,
               simulations=int(res.simulations), wall_s=float(res.wall_s))
    return row
