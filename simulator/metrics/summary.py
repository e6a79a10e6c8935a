"""Per-request, per-batch and per-replica tables and the run summary of one simulation.

Everything is computed with vectorised numpy/pandas over :class:`SimulationRecords`
arrays (a run can emit millions of tokens, so there are no per-token Python loops).

Definitions used throughout:

* TTFT = first_token_at - arrived_at; E2E = completed_at - arrived_at;
  scheduling delay = scheduled_at - arrived_at; TPOT = (completed_at - first_token_at) /
  (num_decode - 1), undefined (NaN) for one-token outputs; normalized E2E = E2E / num_decode.
* TBT (time between tokens) is the gap between consecutive tokens *of one request*, not a
  batch duration: interleaved requests and pipeline overlap make the two differ.
* Span = first arrival to last completion; throughputs and MFU are over the span.
* MFU (model FLOPs utilisation) = ``2 * active_params * tokens_processed / (span *
  gpus * peak_flops_per_gpu)``. It counts only the GEMM FLOPs of the parameters each
  token touches (MoE: the top-k experts), not attention-score FLOPs, and tokens processed
  include recomputed ones after preemption (work the hardware actually did).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from simulator.records import SimulationRecords

#: Latency metrics in the summary: request_frame columns over completed requests, and
#: "tbt" over all per-request token gaps.
LATENCY_METRICS = ("ttft", "tbt", "tpot", "e2e", "normalized_e2e", "scheduling_delay")
#: Percentiles reported for every latency metric.
PERCENTILES = (50, 90, 95, 99)


def _sorted_tokens(rec: SimulationRecords) -> tuple[np.ndarray, np.ndarray]:
    """Token log stably sorted by (request, time), so a request's tokens are contiguous.

    The engine already hands the log over in that order; an O(n) check skips the sort then.
    """
    req = np.asarray(rec.token_request, dtype=np.int64)
    t = np.asarray(rec.token_time, dtype=np.float64)
    step = np.diff(req)
    if (step >= 0).all() and (np.diff(t)[step == 0] >= 0).all():
        return req, t
    order = np.lexsort((t, req))
    return req[order], t[order]


def _token_gaps(rec: SimulationRecords) -> tuple[np.ndarray, np.ndarray]:
    """(request id, gap) for every pair of consecutive tokens of the same request."""
    req, t = _sorted_tokens(rec)
    same = req[1:] == req[:-1]
    return req[1:][same], np.diff(t)[same]


def tbt_values(rec: SimulationRecords) -> np.ndarray:
    """All time-between-token gaps (seconds) of the requests after the warm-up ones, grouped
    by request, in time order within one."""
    gap_req, gaps = _token_gaps(rec)
    warm = int(rec.warmup_requests)
    return gaps[gap_req >= warm] if warm else gaps


def token_frame(rec: SimulationRecords) -> pd.DataFrame:
    """Every emitted token: request_id, token_index (0 = first token), emission time."""
    req, t = _sorted_tokens(rec)
    starts = np.r_[True, req[1:] != req[:-1]] if len(req) else np.zeros(0, dtype=bool)
    pos = np.arange(len(req), dtype=np.int64)
    seg_start = np.maximum.accumulate(np.where(starts, pos, 0)) if len(req) else pos
    return pd.DataFrame({"request_id": req, "token_index": pos - seg_start, "time": t})


def _max_tbt(req: np.ndarray, gaps: np.ndarray, n: int) -> np.ndarray:
    """Largest TBT of each of ``n`` requests (NaN with fewer than two tokens), from the
    request-sorted (request id, gap) pairs of :func:`_token_gaps`."""
    out = np.full(n, np.nan)
    if len(gaps):
        ids, starts = np.unique(req, return_index=True)  # req is sorted: segments are runs
        keep = (ids >= 0) & (ids < n)
        out[ids[keep]] = np.maximum.reduceat(gaps, starts)[keep]
    return out


def _reject_reasons(rec: SimulationRecords) -> np.ndarray:
    """Reject reasons as str, "" for served requests (None is treated as "")."""
    return pd.Series(rec.reject_reason, dtype=object).fillna("").astype(str).to_numpy()


def request_frame(rec: SimulationRecords) -> pd.DataFrame:
    """One row per request: raw timings plus derived latencies (NaN where undefined)."""
    return _request_frame(rec, *_token_gaps(rec))


def _request_frame(rec: SimulationRecords, gap_req: np.ndarray, gaps: np.ndarray) -> pd.DataFrame:
    """:func:`request_frame` with the token gaps already computed (summaries reuse them)."""
    n = len(rec.arrival)
    arrival = np.asarray(rec.arrival, dtype=np.float64)
    first = np.asarray(rec.first_token_at, dtype=np.float64)
    done = np.asarray(rec.completed_at, dtype=np.float64)
    sched = np.asarray(rec.scheduled_at, dtype=np.float64)
    num_decode = np.asarray(rec.num_decode, dtype=np.int64)
    reasons = _reject_reasons(rec)
    e2e = done - arrival
    with np.errstate(divide="ignore", invalid="ignore"):
        tpot = np.where(num_decode > 1, (done - first) / (num_decode - 1), np.nan)
        norm = np.where(num_decode > 0, e2e / num_decode, np.nan)
    return pd.DataFrame(
        {
            "request_id": np.arange(n, dtype=np.int64),
            "replica": np.asarray(rec.replica, dtype=np.int64),
            "arrived_at": arrival,
            "num_prefill_tokens": np.asarray(rec.num_prefill, dtype=np.int64),
            "num_decode_tokens": num_decode,
            "scheduled_at": sched,
            "first_token_at": first,
            "completed_at": done,
            "preemptions": np.asarray(rec.preemptions, dtype=np.int64),
            "rejected": reasons != "",
            "reject_reason": reasons,
            "ttft": first - arrival,
            "e2e": e2e,
            "scheduling_delay": sched - arrival,
            "tpot": tpot,
            "normalized_e2e": norm,
            "max_tbt": _max_tbt(gap_req, gaps, n),
        }
    )


def _kv_utilization(rec: SimulationRecords) -> np.ndarray:
    """Per-batch fraction of its replica's KV blocks in use (NaN for zero capacity)."""
    cap = np.asarray(rec.replica_kv_blocks, dtype=np.float64)
    replica = np.asarray(rec.batch_replica, dtype=np.int64)
    used = np.asarray(rec.batch_kv_blocks_used, dtype=np.float64)
    if not len(replica):
        return np.zeros(0)
    c = cap[replica]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(c > 0, used / c, np.nan)


def batch_frame(rec: SimulationRecords) -> pd.DataFrame:
    """One row per batch (iteration of a replica), with sizes and KV utilisation."""
    start = np.asarray(rec.batch_start, dtype=np.float64)
    end = np.asarray(rec.batch_end, dtype=np.float64)
    prefills = np.asarray(rec.batch_num_prefills, dtype=np.int64)
    prefill_tokens = np.asarray(rec.batch_prefill_tokens, dtype=np.int64)
    decodes = np.asarray(rec.batch_num_decodes, dtype=np.int64)
    return pd.DataFrame(
        {
            "batch_id": np.arange(len(start), dtype=np.int64),
            "replica": np.asarray(rec.batch_replica, dtype=np.int64),
            "start": start,
            "end": end,
            "duration": end - start,
            "num_prefills": prefills,
            "prefill_tokens": prefill_tokens,
            "num_decodes": decodes,
            "batch_size": prefills + decodes,
            "num_tokens": prefill_tokens + decodes,
            "kv_blocks_used": np.asarray(rec.batch_kv_blocks_used, dtype=np.int64),
            "kv_utilization": _kv_utilization(rec),
        }
    )


def _busy_time(replica: np.ndarray, start: np.ndarray, end: np.ndarray, n: int) -> np.ndarray:
    """Length of the union of [start, end] intervals per replica (intervals may overlap).

    Sorted by (replica, start), each interval adds only what reaches past the running
    maximum end of the earlier intervals of its replica.
    """
    if not len(start):
        return np.zeros(n)
    order = np.lexsort((start, replica))
    r, s, e = replica[order], start[order], end[order]
    running = pd.Series(e).groupby(r).cummax().to_numpy()
    prev = np.empty_like(running)
    prev[0] = -np.inf
    prev[1:] = running[:-1]
    prev[np.r_[True, r[1:] != r[:-1]]] = -np.inf  # first interval of each replica
    added = np.clip(e - np.maximum(s, prev), 0.0, None)
    return np.bincount(r, weights=added, minlength=n)[:n]


def span_s(rec: SimulationRecords, warmup: int = 0) -> float:
    """Seconds from the first arrival to the last completion (NaN when nothing completed),
    over the requests after the first ``warmup``."""
    done = np.asarray(rec.completed_at, dtype=np.float64)[warmup:]
    if not len(done) or np.isnan(done).all():
        return math.nan
    span = float(np.nanmax(done) - np.min(np.asarray(rec.arrival)[warmup:]))
    return span if span > 0 else math.nan


def _flops_per_token(rec: SimulationRecords) -> float:
    """GEMM FLOPs per processed token: a multiply-add per active parameter."""
    return 2.0 * float(rec.active_params)


def replica_frame(rec: SimulationRecords) -> pd.DataFrame:
    """One row per replica: load, busy time (interval union), KV utilisation and MFU.

    ``utilization`` is busy_time / sim_end; ``mfu`` uses the run span (first arrival to
    last completion) and this replica's GPUs, so the summary MFU is their mean.
    """
    n = len(rec.replica_kv_blocks)
    req_replica = np.asarray(rec.replica, dtype=np.int64)
    served = (req_replica >= 0) & (_reject_reasons(rec) == "")
    completed = served & ~np.isnan(np.asarray(rec.completed_at, dtype=np.float64))
    b = batch_frame(rec)
    br = b["replica"].to_numpy()
    dur = b["duration"].to_numpy()
    kv = b["kv_utilization"].to_numpy()
    valid = ~np.isnan(kv)

    def per_replica(ids: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(ids, weights=weights, minlength=n)[:n].astype(np.float64)

    busy = _busy_time(br, b["start"].to_numpy(), b["end"].to_numpy(), n)
    kv_time = per_replica(br[valid], dur[valid])
    kv_weighted = per_replica(br[valid], kv[valid] * dur[valid])
    kv_peak = np.full(n, np.nan)
    if valid.any():
        np.fmax.at(kv_peak, br[valid], kv[valid])
    tokens = per_replica(br, b["num_tokens"].to_numpy().astype(np.float64))
    span = span_s(rec)
    denom = span * rec.gpus_per_replica * rec.peak_flops_per_gpu
    with np.errstate(divide="ignore", invalid="ignore"):
        utilization = busy / rec.sim_end if rec.sim_end > 0 else np.full(n, np.nan)
        kv_mean = np.where(kv_time > 0, kv_weighted / kv_time, np.nan)
        mfu = tokens * _flops_per_token(rec) / denom if denom > 0 else np.full(n, np.nan)
    return pd.DataFrame(
        {
            "replica": np.arange(n, dtype=np.int64),
            "requests": per_replica(req_replica[served]).astype(np.int64),
            "completed": per_replica(req_replica[completed]).astype(np.int64),
            "batches": per_replica(br).astype(np.int64),
            "busy_time": busy,
            "utilization": utilization,
            "kv_utilization_mean": kv_mean,
            "kv_utilization_peak": kv_peak,
            "prefill_tokens": per_replica(br, b["prefill_tokens"].to_numpy()).astype(np.int64),
            "decode_tokens": per_replica(br, b["num_decodes"].to_numpy()).astype(np.int64),
            "tokens": tokens.astype(np.int64),
            "mfu": mfu,
        }
    )


def _num(x: Any) -> float | int | None:
    """Plain Python number for JSON; NaN/inf -> None."""
    if x is None:
        return None
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    x = float(x)
    return x if math.isfinite(x) else None


def _stats(values: np.ndarray) -> dict[str, float | None]:
    """mean, p50, p90, p95, p99, max of the finite values (all None when there are none)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    keys = ["mean", *(f"p{p}" for p in PERCENTILES), "max"]
    if not len(v):
        return dict.fromkeys(keys)
    vals = [v.mean(), *np.percentile(v, PERCENTILES), v.max()]
    return {k: _num(x) for k, x in zip(keys, vals, strict=True)}


def _ratio(num: float, den: float) -> float | None:
    return _num(num / den) if den and math.isfinite(den) and den > 0 else None


def summarize(rec: SimulationRecords) -> dict[str, Any]:
    """JSON-serialisable summary of a run (plain floats/ints; NaN becomes None).

    Latency stats are over completed requests (rejected ones only counted); TBT is over
    all per-request token gaps. See the module docstring for the MFU definition.
    """
    gap_req, gaps = _token_gaps(rec)
    req = _request_frame(rec, gap_req, gaps)
    b = batch_frame(rec)
    warm = int(rec.warmup_requests)
    if warm:  # warm-up requests: simulated, recorded, left out of the figures
        gaps = gaps[gap_req >= warm]
        req = req[req["request_id"] >= warm]
    completed = req["completed_at"].notna().to_numpy() & ~req["rejected"].to_numpy()
    done = req[completed]
    span = span_s(rec, warm)
    tokens = float(b["num_tokens"].sum())
    gpus_total = rec.gpus_per_replica * len(rec.replica_kv_blocks)
    mfu_den = span_s(rec) * gpus_total * rec.peak_flops_per_gpu  # the whole run's work
    out_tokens = float(done["num_decode_tokens"].sum())
    all_tokens = out_tokens + float(done["num_prefill_tokens"].sum())
    dur = b["duration"].to_numpy()
    kv = b["kv_utilization"].to_numpy()
    valid = ~np.isnan(kv)
    kv_time = float(dur[valid].sum())
    size = b["batch_size"].to_numpy()
    reasons = req.loc[req["rejected"], "reject_reason"].value_counts()

    summary: dict[str, Any] = {
        "counts": {
            "requests": len(req),
            "warmup_excluded": warm,
            "completed": int(completed.sum()),
            "rejected": int(req["rejected"].sum()),
            "preemptions": int(req["preemptions"].sum()),
            "batches": len(b),
        },
        "reject_reasons": {str(k): int(v) for k, v in reasons.items()},
    }
    for key in LATENCY_METRICS:
        summary[key] = _stats(gaps if key == "tbt" else done[key].to_numpy())
    summary["throughput"] = {
        "span_s": _num(span),
        "requests_per_s": _ratio(float(completed.sum()), span),
        "output_tokens_per_s": _ratio(out_tokens, span),
        "total_tokens_per_s": _ratio(all_tokens, span),
    }
    summary["mfu"] = _ratio(tokens * _flops_per_token(rec), mfu_den)
    summary["kv_utilization"] = {
        "mean": _ratio(float((kv[valid] * dur[valid]).sum()), kv_time),
        "peak": _num(kv[valid].max()) if valid.any() else None,
    }
    summary["batch"] = {
        "size_mean": _num(size.mean()) if len(size) else None,
        "size_p50": _num(np.percentile(size, 50)) if len(size) else None,
        "size_p99": _num(np.percentile(size, 99)) if len(size) else None,
        "num_tokens_mean": _num(b["num_tokens"].mean()) if len(b) else None,
    }
    summary["sim_end"] = _num(rec.sim_end)
    summary["simulator"] = {
        "wall_s": _num(rec.wall_s),
        "events": int(rec.events),
        "requests_per_wall_s": _ratio(float(len(req)), rec.wall_s),
    }
    if rec.execution:
        summary["execution"] = rec.execution
    return summary


def format_execution(ex: dict[str, Any]) -> list[str]:
    """Lines saying which source each operator's time came from."""
    kind = ex.get("kind", "?")
    asked = ex.get("requested", kind)
    head = kind if asked == kind else f"{kind} (asked: {asked})"
    lines = [f"execution  {head}"]
    by_source: dict[str, list[str]] = {}
    for op, src in (ex.get("measured") or {}).items():
        by_source.setdefault(src, []).append(op)
    for src, ops in by_source.items():
        lines.append(f"  {', '.join(ops)}: {src}")
    if ex.get("modelled"):
        lines.append(f"  {', '.join(ex['modelled'])}: {ex.get('model', '')}")
    oor = ex.get("out_of_range") or {}
    if oor:
        lines.append("  out of the measured range (extrapolated): "
                     + ", ".join(f"{k} {v}" for k, v in oor.items()))
    if ex.get("note"):
        lines.append(f"  note: {ex['note']}")
    return lines


def _fmt_time(x: float | None) -> str:
    """Seconds as a short human string (ms below one second)."""
    if x is None:
        return "-"
    return f"{x * 1e3:.1f} ms" if abs(x) < 1 else f"{x:.3f} s"


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


# Why requests were rejected, by a phrase of the scheduler's reason (``reject_reason``;
# first match wins, so the watermark's "KV blocks" comes before the plain KV case).
_REJECT_CAUSES = (
    ("max_context", "longer than the model's context"),
    ("max_tokens_per_batch", "prompt longer than the scheduler's token budget"),
    ("watermark", "does not fit the KV cache above the watermark"),
    ("KV blocks", "does not fit the KV cache"),
)


def reject_cause(reason: str) -> str:
    """The short cause of a rejection reason (the reason itself when it is none known)."""
    return next((cause for key, cause in _REJECT_CAUSES if key in reason), reason)


def format_rejections(reasons: dict[str, int]) -> list[str]:
    """One line per cause of rejection: how many requests, why, and the most frequent
    reason of that cause as an example."""
    causes: dict[str, list[tuple[int, str]]] = {}
    for reason, n in reasons.items():
        causes.setdefault(reject_cause(reason), []).append((int(n), reason))
    lines = []
    for cause, items in sorted(causes.items(), key=lambda kv: -sum(n for n, _ in kv[1])):
        total = sum(n for n, _ in items)
        example = max(items)[1]
        detail = "" if example == cause else f" (e.g. {example})"
        lines.append(f"rejected   {total} {cause}{detail}")
    return lines


def format_summary(summary: dict[str, Any]) -> str:
    """A short plain-text table of the key results (safe for logs and terminals); rejected
    requests get a line per cause (``format_rejections``)."""
    c = summary["counts"]
    tp = summary["throughput"]
    kv = summary["kv_utilization"]
    lines = [
        f"requests   {c['requests']} total, {c['completed']} completed, "
        f"{c['rejected']} rejected, {c['preemptions']} preemptions, {c['batches']} batches",
        *format_rejections(summary.get("reject_reasons") or {}),
        f"{'latency':<10} {'p50':>10} {'p90':>10} {'p99':>10} {'max':>10}",
    ]
    for key, label in (
        ("ttft", "TTFT"),
        ("tbt", "TBT"),
        ("tpot", "TPOT"),
        ("e2e", "E2E"),
        ("scheduling_delay", "sched"),
    ):
        s = summary[key]
        lines.append(
            f"{label:<10} "
            + " ".join(f"{_fmt_time(s[p]):>10}" for p in ("p50", "p90", "p99", "max"))
        )
    lines += [
        f"throughput {_fmt(tp['requests_per_s'], '.2f')} req/s, "
        f"{_fmt(tp['output_tokens_per_s'], '.1f')} output tok/s, "
        f"{_fmt(tp['total_tokens_per_s'], '.1f')} total tok/s",
        f"MFU        {_fmt(summary['mfu'], '.2%')}   "
        f"KV util mean {_fmt(kv['mean'], '.1%')} peak {_fmt(kv['peak'], '.1%')}",
        f"sim        {_fmt(summary['sim_end'], '.2f')} s simulated in "
        f"{_fmt(summary['simulator']['wall_s'], '.2f')} s wall "
        f"({summary['simulator']['events']} events)",
    ]
    if summary.get("execution"):
        lines += format_execution(summary["execution"])
    return "\n".join(lines)
