"""Pareto front of capacity plans over the trials table (see the trials table contract).

A *plan* is a trial with ``status == "ok"`` and ``capacity_qps > 0``: only those have a
capacity, a cost per unit of capacity and latencies at that capacity. Everything here is a
pure function of the trials DataFrame so that it can be tested without Ray.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from simulator.errors import ConfigError

#: Columns that identify one configuration (two trials with equal values measured the same
#: deployment); the nightly diff keys Pareto points by them.
IDENTITY_COLUMNS: tuple[str, ...] = (
    "model", "sku", "tp", "pp", "replicas", "scheduler", "batch_cap", "chunk_size", "workload",
)
#: Identity columns a table may lack (written before they existed), with their value then.
OPTIONAL_IDENTITY: dict[str, Any] = {"expert_parallel": 1}

#: The search's objectives: most capacity per dollar, lowest TTFT P90 and TBT P99.
DEFAULT_OBJECTIVES: dict[str, str] = {
    "capacity_per_dollar": "max",
    "ttft_p90": "min",
    "tbt_p99": "min",
}

DIRECTIONS = ("max", "min")

# Rows compared at once by the dominance test: a block of B rows against all n rows costs
# B * n * k bytes of booleans, kept near 8 MB.
_BLOCK_CELLS = 8_000_000


def require_columns(df: pd.DataFrame, columns: Iterable[str], what: str = "trials") -> None:
    """Raise ConfigError naming every column of ``columns`` that ``df`` lacks."""
    if not isinstance(df, pd.DataFrame):
        raise ConfigError(what, type(df).__name__, "must be a pandas DataFrame (the trials table)")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ConfigError(
            f"{what} columns",
            missing,
            "the trials table needs these columns (see the trials table contract); "
            f"it has {', '.join(map(str, df.columns)) or 'none'}",
        )


def plan_mask(df: pd.DataFrame) -> np.ndarray:
    """Boolean mask of the rows that are plans: ``status == "ok"`` and ``capacity_qps > 0``."""
    require_columns(df, ("status", "capacity_qps"))
    cap = pd.to_numeric(df["capacity_qps"], errors="coerce").to_numpy(dtype=np.float64)
    ok = (df["status"].astype(str) == "ok").to_numpy()
    with np.errstate(invalid="ignore"):
        return ok & (cap > 0)


def ok_plans(df: pd.DataFrame) -> pd.DataFrame:
    """The plan rows of the trials table (original index kept)."""
    return df.loc[plan_mask(df)]


def validate_objectives(df: pd.DataFrame, objectives: Mapping[str, str]) -> dict[str, str]:
    """Check ``objectives`` (column -> "max" | "min") against ``df``; returns a plain dict.

    Raises ValueError (ConfigError) naming unknown columns, non-numeric columns or bad
    directions together with what is allowed.
    """
    if not isinstance(objectives, Mapping) or not objectives:
        raise ConfigError(
            "objectives", objectives, 'must be a non-empty mapping column -> "max" | "min"'
        )
    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])
               and not pd.api.types.is_bool_dtype(df[c])]
    unknown = [c for c in objectives if c not in df.columns]
    if unknown:
        raise ConfigError(
            "objectives", unknown, "unknown column(s); allowed are numeric columns: "
            + ", ".join(map(str, numeric)),
        )
    not_numeric = [c for c in objectives if c not in numeric]
    if not_numeric:
        raise ConfigError(
            "objectives", not_numeric, "not numeric; allowed are numeric columns: "
            + ", ".join(map(str, numeric)),
        )
    bad = {c: d for c, d in objectives.items() if d not in DIRECTIONS}
    if bad:
        raise ConfigError("objectives", bad, "directions must be one of " + ", ".join(DIRECTIONS))
    return dict(objectives)


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Mask of the non-dominated rows of ``points`` (n x k, every column minimised).

    Row j dominates row i when it is no worse in every column and strictly better in one;
    identical rows therefore never dominate each other and are all kept. Vectorised by
    blocks of rows so memory stays bounded for large tables.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2:
        raise ValueError(f"points must be a 2-D array (rows x objectives), got shape {pts.shape}")
    n, k = pts.shape
    keep = np.ones(n, dtype=bool)
    if n == 0:
        return keep
    block = max(1, _BLOCK_CELLS // max(1, n * k))
    for start in range(0, n, block):
        cand = pts[start:start + block]                      # (b, k)
        le = pts[None, :, :] <= cand[:, None, :]             # (b, n, k): others no worse
        lt = pts[None, :, :] < cand[:, None, :]              # strictly better somewhere
        dominated = (le.all(axis=2) & lt.any(axis=2)).any(axis=1)
        keep[start:start + block] = ~dominated
    return keep


def pareto_mask(
    df: pd.DataFrame, objectives: Mapping[str, str] = DEFAULT_OBJECTIVES
) -> np.ndarray:
    """Boolean mask over ``df``'s rows: True for plans on the Pareto front of ``objectives``.

    Rows that are not plans (failed, zero capacity) or have a NaN objective are never on it.
    """
    objectives = validate_objectives(df, objectives)
    mask = plan_mask(df)
    values = df[list(objectives)].to_numpy(dtype=np.float64, na_value=np.nan)
    mask &= ~np.isnan(values).any(axis=1)
    signs = np.array([-1.0 if d == "max" else 1.0 for d in objectives.values()])
    out = np.zeros(len(df), dtype=bool)
    out[np.flatnonzero(mask)] = non_dominated(values[mask] * signs)
    return out


def pareto_front(
    df: pd.DataFrame, objectives: Mapping[str, str] = DEFAULT_OBJECTIVES
) -> pd.DataFrame:
    """The non-dominated plans of ``df`` under ``objectives`` (column -> "max" | "min").

    Only plans count (``status == "ok"``, ``capacity_qps > 0``, no NaN objective). Identical
    points are all kept. Rows are sorted stably by the first objective, best first; the
    original index is kept so rows can be traced back to the trials table.
    """
    objectives = validate_objectives(df, objectives)
    front = df.loc[pareto_mask(df, objectives)]
    first, direction = next(iter(objectives.items()))
    return front.sort_values(first, ascending=direction == "min", kind="stable")
