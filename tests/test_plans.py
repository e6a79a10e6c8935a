"""Best plan per SLO tier and the cheapest plans for a target load."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from simulator.catalogue import get_sku
from simulator.errors import ConfigError
from tests.test_pareto import trial_row, trials_frame
from vidur_search.plans import (
    LATENCY_COLUMNS,
    best_per_slo,
    pareto_front_by_workload,
    pareto_mask_by_workload,
    plan_for_load,
)

TIERS = {"strict": {"ttft_p90": 0.3, "tbt_p99": 0.03}, "relaxed": {"ttft_p90": 2.0}}


def _table() -> pd.DataFrame:
    return trials_frame([
        # chat: cheap but slow, fast but dearer, and a failed/zero trial that would win
        trial_row(trial_id="slow", workload="chat", capacity_qps=10.0, ttft_p90=1.5,
                  tbt_p99=0.05),
        trial_row(trial_id="fast", workload="chat", sku="h100-sxm", capacity_qps=8.0,
                  ttft_p90=0.2, tbt_p99=0.02),
        trial_row(trial_id="broken", workload="chat", status="failed", capacity_qps=100.0),
        trial_row(trial_id="zero", workload="chat", capacity_qps=0.0),
        # docs: only one plan, meets nothing strict
        trial_row(trial_id="docs1", workload="docs", capacity_qps=2.0, ttft_p90=1.0,
                  tbt_p99=0.06),
        # code: no plan at all
        trial_row(trial_id="code0", workload="code", status="failed"),
    ])


def test_best_per_slo_picks_highest_capacity_per_dollar_meeting_each_tier():
    out = best_per_slo(_table(), TIERS)
    assert list(out.columns[:5]) == ["tier", "workload", "met", "reason", "bounds"]
    got = {(r.workload, r.tier): (r.met, r.trial_id, r.reason) for r in out.itertuples()}
    assert len(out) == 6   # 3 workloads x 2 tiers, workloads with no plan included
    assert got["chat", "relaxed"] == (True, "slow", "")      # 10/1.79 > 8/2.99
    assert got["chat", "strict"] == (True, "fast", "")
    assert got["docs", "relaxed"][:2] == (True, "docs1")
    met, tid, reason = got["docs", "strict"]
    assert not met and pd.isna(tid)
    assert reason.startswith("none: ") and "ttft_p90 <= 0.3 s" in reason
    met, _, reason = got["code", "relaxed"]
    assert not met and reason.startswith("none: ") and "no plan" in reason
    # order: workloads sorted, tiers as given; integer columns stay integers
    assert out["workload"].tolist() == ["chat", "chat", "code", "code", "docs", "docs"]
    assert out["tier"].tolist()[:2] == ["strict", "relaxed"]
    assert pd.api.types.is_integer_dtype(out["tp"])
    assert out.loc[out["met"], "tp"].tolist() == [1, 1, 1]


def test_nan_latency_never_meets_a_tier_and_ties_go_to_the_cheaper_plan():
    df = trials_frame([
        trial_row(trial_id="nan", capacity_per_dollar=9.0, ttft_p90=math.nan),
        trial_row(trial_id="dear", capacity_per_dollar=2.0, cost_per_hour=5.0),
        trial_row(trial_id="cheap", capacity_per_dollar=2.0, cost_per_hour=3.0),
    ])
    out = best_per_slo(df, {"any": {"ttft_p90": 10.0}})
    assert out["trial_id"].tolist() == ["cheap"]


def test_tier_keys_are_validated_against_latency_columns():
    with pytest.raises(ConfigError) as exc:
        best_per_slo(_table(), {"x": {"ttft_p95": 1.0}})
    msg = str(exc.value)
    assert "tiers.x" in msg and "ttft_p95" in msg
    assert all(c in msg for c in LATENCY_COLUMNS)
    with pytest.raises(ConfigError, match="seconds > 0"):
        best_per_slo(_table(), {"x": {"ttft_p90": -1}})
    with pytest.raises(ConfigError, match="non-empty"):
        best_per_slo(_table(), {"x": {}})


def test_best_per_slo_with_no_tiers_or_no_trials():
    assert best_per_slo(_table(), {}).empty
    out = best_per_slo(trials_frame([]), TIERS)
    assert out.empty and "reason" in out.columns


def test_plan_for_load_scales_replicas_and_sorts_cheapest_first():
    df = trials_frame([
        # 2 replicas at 10 QPS -> 5 QPS per replica; a100 1.79 $/GPU-h
        trial_row(trial_id="a", replicas=2, capacity_qps=10.0, ttft_p90=0.4),
        # tp2 at 12 QPS per replica on h100 (2.99)
        trial_row(trial_id="b", sku="h100-sxm", tp=2, capacity_qps=12.0, ttft_p90=0.3),
        # tp2 at 12 QPS per replica on a100: 2 GPUs, cheapest
        trial_row(trial_id="c", tp=2, capacity_qps=12.0, ttft_p90=0.9),
        # same cost as "c" (one GPU at twice the price), fewer GPUs -> ranks first on the tie
        trial_row(trial_id="d", capacity_qps=12.0, price_per_gpu_hour=2 * 1.79, ttft_p90=0.9),
        trial_row(trial_id="x", status="failed"),
    ])
    out = plan_for_load(df, 12.0, top=None)
    assert out["trial_id"].tolist() == ["d", "c", "a", "b"]
    rows = out.set_index("trial_id")
    assert rows.loc["a", "replicas_needed"] == 3 and rows.loc["a", "gpus_needed"] == 3
    assert rows.loc["a", "cost_per_hour_at_target"] == pytest.approx(3 * 1.79)
    assert rows.loc["a", "headroom"] == pytest.approx(15 / 12 - 1)
    assert rows.loc["a", "per_replica_qps"] == pytest.approx(5.0)
    assert rows.loc["c", "gpus_needed"] == 2 and rows.loc["c", "headroom"] == pytest.approx(0)
    assert rows.loc["b", "cost_per_hour_at_target"] == pytest.approx(2 * 2.99)
    assert (out["target_qps"] == 12.0).all() and out["rank"].tolist() == [1, 2, 3, 4]
    assert plan_for_load(df, 12.0, top=2)["trial_id"].tolist() == ["d", "c"]


def test_plan_for_load_ties_on_cost_and_gpus_go_to_lower_ttft():
    df = trials_frame([trial_row(trial_id="slow", ttft_p90=0.9),
                       trial_row(trial_id="quick", ttft_p90=0.2, scheduler="sarathi")])
    assert plan_for_load(df, 3.0)["trial_id"].tolist() == ["quick", "slow"]


def test_plan_for_load_rounding_does_not_add_a_replica():
    df = trials_frame([trial_row(capacity_qps=0.1, replicas=1)])
    assert plan_for_load(df, 0.3)["replicas_needed"].tolist() == [3]
    assert plan_for_load(df, 0.30001)["replicas_needed"].tolist() == [4]
    assert plan_for_load(df, 0.01)["replicas_needed"].tolist() == [1]


def test_plan_for_load_per_workload_and_catalogue_price_fallback():
    df = trials_frame([trial_row(trial_id="c1", workload="chat"),
                       trial_row(trial_id="d1", workload="docs", capacity_qps=1.0),
                       trial_row(trial_id="d2", workload="docs", capacity_qps=2.0)])
    out = plan_for_load(df, 4.0)
    assert out["workload"].tolist() == ["chat", "docs", "docs"]
    assert out["rank"].tolist() == [1, 1, 2]
    assert plan_for_load(df, 4.0, workload="docs")["trial_id"].tolist() == ["d2", "d1"]
    no_price = df.drop(columns="price_per_gpu_hour")
    got = plan_for_load(no_price, 4.0, workload="chat")
    assert got["cost_per_hour_at_target"].iloc[0] == pytest.approx(get_sku("a100-80gb")
                                                                  .price_per_hour)
    with pytest.raises(ConfigError, match="chat, docs"):
        plan_for_load(df, 4.0, workload="nope")


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, "5", True])
def test_plan_for_load_rejects_bad_targets(bad):
    with pytest.raises(ConfigError, match="target_qps"):
        plan_for_load(_table(), bad)


def test_plan_for_load_without_plans_is_empty_with_columns():
    out = plan_for_load(trials_frame([trial_row(status="failed")]), 5.0)
    assert out.empty
    assert {"target_qps", "replicas_needed", "gpus_needed", "cost_per_hour_at_target",
            "headroom"} <= set(out.columns)


def test_pareto_is_computed_within_each_workload():
    df = trials_frame([
        trial_row(workload="chat", capacity_per_dollar=5.0, ttft_p90=0.1, tbt_p99=0.01),
        # would be dominated by the chat plan, but it is another workload
        trial_row(workload="docs", capacity_per_dollar=1.0, ttft_p90=1.0, tbt_p99=0.1),
        trial_row(workload="docs", capacity_per_dollar=0.5, ttft_p90=1.0, tbt_p99=0.1),
    ])
    assert pareto_mask_by_workload(df).tolist() == [True, True, False]
    front = pareto_front_by_workload(df)
    assert front["workload"].tolist() == ["chat", "docs"]
    assert np.array_equal(front.index, [0, 1])
