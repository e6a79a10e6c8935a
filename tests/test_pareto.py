"""Pareto front over the trials table: dominance, ties, NaN, non-plans, directions."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from simulator.errors import ConfigError
from vidur_search.pareto import (
    DEFAULT_OBJECTIVES,
    IDENTITY_COLUMNS,
    non_dominated,
    ok_plans,
    pareto_front,
    pareto_mask,
)

PRICES = {"a100-80gb": 1.79, "h100-sxm": 2.99, "a10g": 1.01}
_ids = itertools.count()


def trial_row(**over: Any) -> dict[str, Any]:
    """A valid trials-table row (see the trials table contract); keyword args override fields.

    Derived columns (num_gpus, cost_per_hour, capacity_per_dollar, cost per million tokens)
    follow from the others unless given. ``status="failed"`` or ``capacity_qps=0`` give the
    contract's failed / zero-capacity rows (NaN latencies, infinite cost per token).
    """
    row: dict[str, Any] = {
        "trial_id": f"t{next(_ids):05d}", "status": "ok", "error": "",
        "model": "llama-2-7b", "sku": "a100-80gb", "node": "dgx", "tp": 1, "pp": 1,
        "replicas": 1, "scheduler": "vllm", "batch_cap": 128, "chunk_size": 0,
        "workload": "chat", "capacity_qps": 4.0, "capacity_reason": "",
        "ttft_p50": 0.2, "ttft_p90": 0.5, "ttft_p99": 0.9, "tbt_p50": 0.02, "tbt_p99": 0.05,
        "tpot_p50": 0.03, "tpot_p90": 0.04, "e2e_p50": 5.0, "e2e_p90": 9.0,
        "sched_delay_p99": 0.1, "simulations": 12, "wall_s": 1.5,
        "finished_at": "2026-11-24T10:00:00+00:00", "node_ip": "10.0.0.1",
    }
    row.update(over)
    if row["status"] != "ok":
        row["error"] = over.get("error", "RuntimeError: simulation crashed")
        row["capacity_qps"] = over.get("capacity_qps", 0.0)
    if row["status"] != "ok" or row["capacity_qps"] <= 0:
        for k in ("ttft_p50", "ttft_p90", "ttft_p99", "tbt_p50", "tbt_p99", "tpot_p50",
                  "tpot_p90", "e2e_p50", "e2e_p90", "sched_delay_p99"):
            row[k] = over.get(k, math.nan)
        if row["status"] == "ok":
            row["capacity_reason"] = over.get("capacity_reason", "ttft_p90 over SLO at 0.01 QPS")
    row.setdefault("num_gpus", row["tp"] * row["pp"] * row["replicas"])
    row.setdefault("price_per_gpu_hour", PRICES.get(row["sku"], 2.0))
    row.setdefault("cost_per_hour", row["num_gpus"] * row["price_per_gpu_hour"])
    row.setdefault("capacity_per_dollar", row["capacity_qps"] / row["cost_per_hour"])
    tokens = row["capacity_qps"] * 1500.0
    row.setdefault("tokens_per_s", tokens)
    row.setdefault("cost_per_million_tokens",
                   row["cost_per_hour"] / (tokens * 3600) * 1e6 if tokens > 0 else math.inf)
    return row


def trials_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows as a trials table with the contract's dtypes (empty list: no rows)."""
    cols = list(trial_row().keys())
    df = pd.DataFrame(rows, columns=cols)
    ints = ("tp", "pp", "replicas", "batch_cap", "chunk_size", "num_gpus", "simulations")
    for c in cols:
        if c in ints:
            df[c] = df[c].astype("int64")
        elif c in ("trial_id", "status", "error", "model", "sku", "node", "scheduler",
                   "workload", "capacity_reason", "finished_at", "node_ip"):
            df[c] = df[c].astype("str")
        else:
            df[c] = df[c].astype("float64")
    return df


def _rows(points: list[tuple[float, float, float]], **over: Any) -> pd.DataFrame:
    """One plan per (capacity_per_dollar, ttft_p90, tbt_p99) point, distinct batch caps."""
    return trials_frame([
        trial_row(capacity_per_dollar=c, ttft_p90=t, tbt_p99=b, batch_cap=16 * (i + 1), **over)
        for i, (c, t, b) in enumerate(points)
    ])


def test_helper_rows_follow_the_contract():
    df = trials_frame([trial_row(tp=2, replicas=3, capacity_qps=6.0),
                       trial_row(status="failed"), trial_row(capacity_qps=0.0)])
    assert set(IDENTITY_COLUMNS) <= set(df.columns)
    assert df.loc[0, "num_gpus"] == 6
    assert df.loc[0, "cost_per_hour"] == pytest.approx(6 * 1.79)
    assert df.loc[0, "capacity_per_dollar"] == pytest.approx(6.0 / (6 * 1.79))
    assert df.loc[1, "error"] and math.isnan(df.loc[1, "ttft_p90"])
    assert df.loc[2, "cost_per_million_tokens"] == math.inf
    assert ok_plans(df).index.tolist() == [0]


def test_dominated_points_are_dropped_and_front_sorted_best_first():
    df = _rows([(1.0, 1.0, 0.1),     # dominated by row 1
                (2.0, 0.5, 0.05),
                (3.0, 2.0, 0.2),     # trades latency for cost
                (2.0, 0.6, 0.05)])   # worse TTFT than row 1, same otherwise -> dominated
    front = pareto_front(df)
    assert front.index.tolist() == [2, 1]   # capacity_per_dollar descending
    assert pareto_mask(df).tolist() == [False, True, True, False]


def test_identical_points_are_all_kept_and_one_better_coordinate_dominates():
    df = _rows([(2.0, 0.5, 0.05), (2.0, 0.5, 0.05), (2.0, 0.5, 0.04)])
    assert pareto_mask(df).tolist() == [False, False, True]
    df = _rows([(2.0, 0.5, 0.05), (2.0, 0.5, 0.05)])
    assert pareto_mask(df).tolist() == [True, True]


def test_nan_objectives_failed_and_zero_capacity_rows_never_on_the_front():
    rows = [trial_row(capacity_per_dollar=1.0, ttft_p90=1.0, tbt_p99=0.1),
            trial_row(capacity_per_dollar=9.0, ttft_p90=math.nan, tbt_p99=0.01),
            trial_row(status="failed", capacity_per_dollar=99.0, ttft_p90=0.01, tbt_p99=0.001),
            trial_row(capacity_qps=0.0, capacity_per_dollar=99.0, ttft_p90=0.01,
                      tbt_p99=0.001)]
    df = trials_frame(rows)
    assert pareto_mask(df).tolist() == [True, False, False, False]
    # nothing valid -> empty front with the table's columns
    assert pareto_front(df.iloc[1:]).empty
    assert list(pareto_front(df.iloc[:0]).columns) == list(df.columns)


def test_directions_are_honoured():
    df = _rows([(1.0, 1.0, 0.1), (2.0, 2.0, 0.2)])
    # both max: row 1 dominates; both min: row 0 dominates
    assert pareto_mask(df, {"capacity_per_dollar": "max", "ttft_p90": "max"}).tolist() == [
        False, True]
    assert pareto_mask(df, {"capacity_per_dollar": "min", "ttft_p90": "min"}).tolist() == [
        True, False]
    front = pareto_front(df, {"ttft_p90": "min", "capacity_per_dollar": "max"})
    assert front.index.tolist() == [0, 1]   # sorted by the first objective, lowest first


def test_bad_objectives_raise_config_errors_naming_what_is_allowed():
    df = _rows([(1.0, 1.0, 0.1)])
    with pytest.raises(ConfigError, match="capacity_per_dollar"):
        pareto_mask(df, {"latency": "min"})
    with pytest.raises(ConfigError, match="numeric"):
        pareto_mask(df, {"sku": "min"})
    with pytest.raises(ConfigError, match="max, min"):
        pareto_mask(df, {"ttft_p90": "lowest"})
    with pytest.raises(ConfigError, match="non-empty"):
        pareto_mask(df, {})


def _brute_force(values: np.ndarray, signs: np.ndarray) -> list[bool]:
    pts = values * signs
    keep = []
    for i in range(len(pts)):
        dominated = any(np.all(pts[j] <= pts[i]) and np.any(pts[j] < pts[i])
                        for j in range(len(pts)) if j != i)
        keep.append(not dominated)
    return keep


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_on_a_random_table(seed):
    rng = np.random.default_rng(seed)
    n = 150
    # coarse grids make ties and duplicates frequent
    cpd = rng.integers(1, 12, n) / 4.0
    ttft = rng.integers(1, 12, n) / 10.0
    tbt = rng.integers(1, 8, n) / 100.0
    ttft[rng.random(n) < 0.05] = np.nan
    status = np.where(rng.random(n) < 0.1, "failed", "ok")
    cap = np.where(rng.random(n) < 0.1, 0.0, 1.0)
    df = trials_frame([
        trial_row(capacity_per_dollar=cpd[i], ttft_p90=ttft[i], tbt_p99=tbt[i],
                  status=str(status[i]), capacity_qps=cap[i], batch_cap=i + 1)
        for i in range(n)
    ])
    # trial_row blanks the latencies of non-plans; restore them so only the mask excludes them
    df["ttft_p90"], df["tbt_p99"] = ttft, tbt
    mask = pareto_mask(df)
    valid = (status == "ok") & (cap > 0) & ~np.isnan(ttft)
    expected = np.zeros(n, dtype=bool)
    vals = np.column_stack([cpd, ttft, tbt])[valid]
    expected[np.flatnonzero(valid)] = _brute_force(vals, np.array([-1.0, 1.0, 1.0]))
    assert mask.tolist() == expected.tolist()
    assert mask.any()
    assert set(pareto_front(df).index) == set(np.flatnonzero(expected))


def test_non_dominated_blocks_agree_with_one_block(monkeypatch):
    rng = np.random.default_rng(7)
    pts = rng.integers(0, 6, size=(300, 3)).astype(float)
    whole = non_dominated(pts)
    monkeypatch.setattr("vidur_search.pareto._BLOCK_CELLS", 50)
    assert non_dominated(pts).tolist() == whole.tolist()
    assert non_dominated(np.zeros((0, 3))).tolist() == []


def test_default_objectives_are_the_search_objectives():
    assert DEFAULT_OBJECTIVES == {"capacity_per_dollar": "max", "ttft_p90": "min",
                                  "tbt_p99": "min"}
