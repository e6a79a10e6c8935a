"""Pick deployment plans from the trials table: best plan per SLO tier, plan for a target load.

Pure functions of the trials DataFrame (see the trials table contract). A *plan* is a trial
with ``status == "ok"`` and ``capacity_qps > 0``; its latency columns were measured at its
capacity, so a tier's bounds are compared with those values.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from simulator.catalogue import get_sku
from simulator.errors import ConfigError
from vidur_search.pareto import (
    DEFAULT_OBJECTIVES,
    ok_plans,
    pareto_mask,
    require_columns,
    validate_objectives,
)

#: Latency columns of the trials table (seconds, measured at capacity) a tier may bound.
LATENCY_COLUMNS: tuple[str, ...] = (
    "ttft_p50", "ttft_p90", "ttft_p99", "tbt_p50", "tbt_p99", "tpot_p50", "tpot_p90",
    "e2e_p50", "e2e_p90", "sched_delay_p99",
)

# Relative slack when rounding target / per-replica capacity up, so that 0.1 * 3 / 0.1 does
# not ask for a fourth replica because of binary floating point.
_CEIL_SLACK = 1e-9


def validate_tiers(tiers: Mapping[str, Mapping[str, float]], *,
                   field: str = "tiers") -> dict[str, dict[str, float]]:
    """Check SLO tiers (name -> {latency column: upper bound in seconds}); return plain dicts.

    Raises ConfigError naming the tier and key (under ``field``, e.g. ``output.slo_tiers``
    for the search app's setting) when a key is not a latency column (listing the allowed
    ones) or a bound is not a number > 0.
    """
    if not isinstance(tiers, Mapping):
        raise ConfigError(field, tiers, "must be a mapping tier name -> {latency column: s}")
    out: dict[str, dict[str, float]] = {}
    for name, bounds in tiers.items():
        if not isinstance(bounds, Mapping) or not bounds:
            raise ConfigError(
                f"{field}.{name}", bounds,
                "must be a non-empty mapping latency column -> upper bound in seconds; "
                "allowed columns are " + ", ".join(LATENCY_COLUMNS),
            )
        checked: dict[str, float] = {}
        for key, bound in bounds.items():
            if key not in LATENCY_COLUMNS:
                raise ConfigError(
                    f"{field}.{name}.{key}", bound,
                    "unknown latency column; allowed are " + ", ".join(LATENCY_COLUMNS),
                )
            if (not isinstance(bound, int | float) or isinstance(bound, bool)
                    or not math.isfinite(bound) or bound <= 0):
                raise ConfigError(f"{field}.{name}.{key}", bound,
                                  "must be a number of seconds > 0")
            checked[key] = float(bound)
        out[str(name)] = checked
    return out


def describe_tier(bounds: Mapping[str, float]) -> str:
    """Readable form of a tier's bounds, e.g. ``ttft_p90 <= 0.5 s, tbt_p99 <= 0.05 s``."""
    return ", ".join(f"{k} <= {v:g} s" for k, v in bounds.items())


def _restore_dtypes(out: pd.DataFrame, source: pd.DataFrame) -> pd.DataFrame:
    """Give columns copied from ``source`` their dtype back (integers with gaps as ``Int64``)."""
    for c in source.columns:
        if c not in out.columns or not len(out):
            continue
        dtype = source[c].dtype
        if not out[c].notna().all():
            # missing values (tiers no plan meets): integers become nullable, the rest stay
            if not (pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)):
                continue
            dtype = "Int64"
        with contextlib.suppress(TypeError, ValueError):
            out[c] = out[c].astype(dtype)
    return out


def _workloads(df: pd.DataFrame) -> list[str]:
    return sorted(df["workload"].astype(str).unique().tolist())


def best_per_slo(
    df: pd.DataFrame, tiers: Mapping[str, Mapping[str, float]]
) -> pd.DataFrame:
    """For each workload and SLO tier, the plan with the most capacity per dollar meeting it.

    ``tiers`` maps a tier name to upper bounds on latency columns (seconds at capacity), e.g.
    ``{"interactive": {"ttft_p90": 0.5, "tbt_p99": 0.05}}``. A plan meets a tier when every
    bounded latency is <= its bound (a NaN latency does not). Ties in capacity per dollar go
    to the lower cost per hour, then the lower TTFT P90.

    Returns one row per (workload, tier), workloads sorted and tiers in the given order, with
    columns ``tier, workload, met, reason, bounds`` followed by the plan's columns. When no
    plan meets a tier, ``met`` is False, ``reason`` starts with ``"none: "`` and says why, and
    the plan columns are missing (NaN). Workloads with no plan at all still appear.
    """
    tiers = validate_tiers(tiers)
    require_columns(df, ("status", "workload", "capacity_qps", "capacity_per_dollar"))
    used = sorted({k for b in tiers.values() for k in b})
    require_columns(df, used)
    plans = ok_plans(df)
    plan_cols = [c for c in df.columns if c != "workload"]
    records: list[dict[str, Any]] = []
    for workload in _workloads(df):
        wl = plans[plans["workload"].astype(str) == workload]
        for name, bounds in tiers.items():
            rec: dict[str, Any] = {"tier": name, "workload": workload, "met": False,
                                   "reason": "", "bounds": describe_tier(bounds)}
            if wl.empty:
                n = int((df["workload"].astype(str) == workload).sum())
                rec["reason"] = (f"none: workload {workload} has no plan ({n} trial(s), all "
                                 "failed or with zero capacity)")
                records.append(rec)
                continue
            meets = np.ones(len(wl), dtype=bool)
            for col, bound in bounds.items():
                vals = pd.to_numeric(wl[col], errors="coerce").to_numpy(dtype=np.float64)
                with np.errstate(invalid="ignore"):
                    meets &= vals <= bound
            cand = wl.loc[meets]
            if cand.empty:
                rec["reason"] = (f"none: no plan of workload {workload} meets "
                                 f"{describe_tier(bounds)} ({len(wl)} plan(s) checked)")
                records.append(rec)
                continue
            best = _rank_best(cand).iloc[0]
            rec["met"] = True
            rec.update({c: best[c] for c in plan_cols})
            records.append(rec)
    columns = ["tier", "workload", "met", "reason", "bounds", *plan_cols]
    out = pd.DataFrame.from_records(records, columns=columns)
    out["met"] = out["met"].astype(bool)
    return _restore_dtypes(out, df)


def _rank_best(plans: pd.DataFrame) -> pd.DataFrame:
    """Plans sorted best first: capacity per dollar desc, then cost per hour, then TTFT P90."""
    keys, asc = ["capacity_per_dollar"], [False]
    for col in ("cost_per_hour", "ttft_p90"):
        if col in plans.columns:
            keys.append(col)
            asc.append(True)
    return plans.sort_values(keys, ascending=asc, kind="stable", na_position="last")


def _prices(plans: pd.DataFrame) -> np.ndarray:
    """Price per GPU-hour of each plan: its own column, else the catalogue's SKU price."""
    price = (pd.to_numeric(plans["price_per_gpu_hour"], errors="coerce").to_numpy(np.float64)
             if "price_per_gpu_hour" in plans.columns else np.full(len(plans), np.nan))
    missing = ~np.isfinite(price) | (price <= 0)
    for i in np.flatnonzero(missing):
        sku = str(plans["sku"].iloc[i])
        try:
            price[i] = get_sku(sku).price_per_hour
        except (ConfigError, KeyError) as exc:
            raise ConfigError(
                "trials.price_per_gpu_hour", plans["price_per_gpu_hour"].iloc[i]
                if "price_per_gpu_hour" in plans.columns else None,
                f"row {plans.index[i]!r} (sku {sku}) has no valid price and the SKU is not in "
                f"the built-in catalogue ({exc})",
            ) from exc
    return price


def plan_for_load(
    df: pd.DataFrame, target_qps: float, workload: str | None = None, top: int | None = 5
) -> pd.DataFrame:
    """The cheapest ways to serve ``target_qps`` by scaling each plan out in whole replicas.

    Each plan's capacity is assumed to scale linearly with replicas: per-replica capacity is
    ``capacity_qps / replicas``, ``replicas_needed = ceil(target_qps / per-replica capacity)``,
    ``gpus_needed = replicas_needed * tp * pp`` and ``cost_per_hour_at_target = gpus_needed *
    price_per_gpu_hour`` (the catalogue price when the column is missing). ``headroom`` is
    the spare fraction ``replicas_needed * per-replica capacity / target_qps - 1``.

    Rows are sorted cheapest first (ties: fewer GPUs, then lower TTFT P90) with a 1-based
    ``rank``. With ``workload=None`` every workload is ranked separately (workloads sorted);
    ``top`` keeps the first rows per workload (None keeps all). Returns an empty frame with
    the same columns when there is no plan.
    """
    if (not isinstance(target_qps, int | float) or isinstance(target_qps, bool)
            or not math.isfinite(target_qps) or target_qps <= 0):
        raise ConfigError("target_qps", target_qps, "must be a finite number of requests/s > 0")
    if top is not None and (not isinstance(top, int) or isinstance(top, bool) or top < 1):
        raise ConfigError("top", top, "must be an integer >= 1, or None for all plans")
    require_columns(df, ("status", "workload", "capacity_qps", "replicas", "tp", "pp", "sku"))
    if workload is not None:
        known = _workloads(df)
        if workload not in known:
            raise ConfigError("workload", workload,
                              "allowed are the trials' workloads: " + (", ".join(known) or "none"))
    plans = ok_plans(df)
    if workload is not None:
        plans = plans[plans["workload"].astype(str) == workload]
    cap = pd.to_numeric(plans["capacity_qps"], errors="coerce").to_numpy(np.float64)
    replicas = pd.to_numeric(plans["replicas"], errors="coerce").to_numpy(np.float64)
    gpus_per_replica = (pd.to_numeric(plans["tp"], errors="coerce").to_numpy(np.float64)
                        * pd.to_numeric(plans["pp"], errors="coerce").to_numpy(np.float64))
    bad = ~(np.isfinite(replicas) & (replicas >= 1) & np.isfinite(gpus_per_replica)
            & (gpus_per_replica >= 1) & np.isfinite(cap))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ConfigError(
            "trials", plans.iloc[i][["capacity_qps", "replicas", "tp", "pp"]].to_dict(),
            f"row {plans.index[i]!r}: a plan needs finite capacity_qps and replicas, tp, pp >= 1",
        )
    per_replica = cap / replicas
    ratio = target_qps / per_replica
    needed = np.maximum(1.0, np.ceil(ratio * (1.0 - _CEIL_SLACK)))
    gpus = needed * gpus_per_replica
    price = _prices(plans) if len(plans) else np.zeros(0)
    lead = pd.DataFrame({
        "target_qps": np.full(len(plans), float(target_qps)),
        "replicas_needed": needed.astype(np.int64),
        "gpus_needed": gpus.astype(np.int64),
        "cost_per_hour_at_target": gpus * price,
        "headroom": needed * per_replica / target_qps - 1.0,
        "per_replica_qps": per_replica,
    }, index=plans.index)
    out = pd.concat([lead, plans], axis=1)
    ttft = (pd.to_numeric(out["ttft_p90"], errors="coerce") if "ttft_p90" in out.columns
            else pd.Series(np.nan, index=out.index))
    out = out.assign(_ttft=ttft, _wl=out["workload"].astype(str))
    out = out.sort_values(["_wl", "cost_per_hour_at_target", "gpus_needed", "_ttft"],
                          kind="stable", na_position="last")
    out = out.drop(columns=["_ttft", "_wl"])
    out.insert(0, "rank", out.groupby(out["workload"].astype(str), sort=False).cumcount() + 1)
    if top is not None:
        out = out[out["rank"] <= top]
    return out.reset_index(drop=True)


def pareto_mask_by_workload(
    df: pd.DataFrame, objectives: Mapping[str, str] = DEFAULT_OBJECTIVES
) -> np.ndarray:
    """Pareto mask computed separately within each workload.

    Capacities of different workloads are not comparable (a chat workload and a long-document
    workload have different request sizes), so a plan competes only with plans of its own
    workload. Same rules as :func:`vidur_search.pareto.pareto_mask` otherwise.
    """
    objectives = validate_objectives(df, objectives)
    require_columns(df, ("workload",))
    out = np.zeros(len(df), dtype=bool)
    keys = df["workload"].astype(str).to_numpy()
    for workload in np.unique(keys):
        pos = np.flatnonzero(keys == workload)
        out[pos] = pareto_mask(df.iloc[pos], objectives)
    return out


def pareto_front_by_workload(
    df: pd.DataFrame, objectives: Mapping[str, str] = DEFAULT_OBJECTIVES
) -> pd.DataFrame:
    """The per-workload Pareto fronts, sorted by workload then the first objective, best first."""
    objectives = validate_objectives(df, objectives)
    front = df.loc[pareto_mask_by_workload(df, objectives)]
    first, direction = next(iter(objectives.items()))
    front = front.assign(_wl=front["workload"].astype(str))
    front = front.sort_values(["_wl", first], ascending=[True, direction == "min"],
                              kind="stable")
    return front.drop(columns="_wl")
