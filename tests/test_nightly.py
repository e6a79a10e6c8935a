"""Nightly diff: newest run folder, best plan and Pareto changes, regression exit code."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from simulator.errors import ConfigError
from tests.test_pareto import trial_row, trials_frame
from vidur_search.nightly import (
    EXIT_OK,
    EXIT_REGRESSION,
    diff_runs,
    exit_code,
    latest_run,
    write_diff,
)


def _run(root, name, with_trials=True):
    d = root / name
    d.mkdir(parents=True)
    if with_trials:
        trials_frame([trial_row()]).to_parquet(d / "trials.parquet")
    return d


def test_latest_run_picks_the_newest_dated_folder_with_trials(tmp_path):
    assert latest_run(tmp_path / "missing") is None
    assert latest_run(tmp_path) is None
    _run(tmp_path, "2026-11-20_02-00-00")
    newer = _run(tmp_path, "2026-11-23_02-00-00")
    _run(tmp_path, "2026-11-24_02-00-00", with_trials=False)    # crashed run: no trials
    _run(tmp_path, "2026-13-40_02-00-00")                        # not a date
    _run(tmp_path, "latest")
    (tmp_path / "2026-11-25_02-00-00").write_text("a file, not a run")
    assert latest_run(tmp_path) == newer
    current = _run(tmp_path, "2026-11-24_03-00-00")
    assert latest_run(tmp_path) == current
    assert latest_run(tmp_path, exclude=current) == newer
    assert latest_run(str(tmp_path), exclude=str(current)) == newer


def _prev() -> pd.DataFrame:
    return trials_frame([
        trial_row(trial_id="a", workload="chat", capacity_qps=10.0, ttft_p90=1.0, tbt_p99=0.05),
        trial_row(trial_id="b", workload="chat", sku="h100-sxm", capacity_qps=8.0,
                  ttft_p90=0.2, tbt_p99=0.02),
        trial_row(trial_id="c", workload="chat", capacity_qps=5.0, ttft_p90=2.0,
                  tbt_p99=0.09, scheduler="orca"),                 # dominated by a
        trial_row(trial_id="d", workload="docs", capacity_qps=3.0),
    ])


def test_identical_runs_have_no_changes_and_exit_zero():
    diff = diff_runs(_prev(), _prev())
    assert diff["regression"] is False and exit_code(diff) == EXIT_OK == 0
    for d in diff["workloads"].values():
        assert not d["best_changed"] and d["pareto_gained"] == [] == d["pareto_lost"]
        assert d["capacity_per_dollar_change_pct"] == pytest.approx(0.0)
    json.dumps(diff, allow_nan=False)


def test_diff_detects_a_new_best_plan_and_gained_and_lost_points():
    cur = _prev()
    # a new chat plan on tp2 beats "a" on every objective; "a" leaves the front
    cur = pd.concat([cur, trials_frame([
        trial_row(trial_id="e", workload="chat", tp=2, capacity_qps=40.0, ttft_p90=0.5,
                  tbt_p99=0.04)])], ignore_index=True)
    diff = diff_runs(_prev(), cur, before="runs/1", after="runs/2")
    chat = diff["workloads"]["chat"]
    assert chat["best_changed"] and chat["best_before"]["trial_id"] == "a"
    assert chat["best_after"]["trial_id"] == "e" and chat["best_after"]["tp"] == 2
    assert chat["capacity_per_dollar_change_pct"] == pytest.approx(100.0)   # 40/2 vs 10
    assert chat["cost_per_million_tokens_change_pct"] == pytest.approx(-50.0)
    assert [p["tp"] for p in chat["pareto_gained"]] == [2]
    assert chat["pareto_gained"][0] == {"model": "llama-2-7b", "sku": "a100-80gb", "tp": 2,
                                        "pp": 1, "replicas": 1, "scheduler": "vllm",
                                        "batch_cap": 128, "chunk_size": 0, "workload": "chat",
                                        "expert_parallel": 1}  # absent from the table: 1
    assert [p["sku"] for p in chat["pareto_lost"]] == ["a100-80gb"]
    assert chat["pareto_lost"][0]["tp"] == 1
    assert not chat["regression"] and exit_code(diff) == EXIT_OK
    assert not diff["workloads"]["docs"]["best_changed"]
    assert diff["before"] == "runs/1"
    json.dumps(diff, allow_nan=False)


def test_identity_not_trial_id_decides_whether_the_best_changed():
    cur = _prev()
    cur["trial_id"] = cur["trial_id"] + "-rerun"
    cur["tp"] = cur["tp"].astype("float64")   # e.g. read back from another writer
    diff = diff_runs(_prev(), cur)
    assert not any(d["best_changed"] for d in diff["workloads"].values())
    assert all(d["pareto_gained"] == [] for d in diff["workloads"].values())


def test_drop_beyond_tolerance_is_a_regression_with_exit_code_3(tmp_path):
    cur = _prev()
    cur.loc[cur["trial_id"] == "a", "capacity_per_dollar"] *= 0.97    # best drops 3 %
    diff = diff_runs(_prev(), cur)
    chat = diff["workloads"]["chat"]
    assert chat["regression"] and "fell 3.0%" in chat["reasons"][0]
    assert not chat["best_changed"]
    assert diff["regression"] and exit_code(diff) == EXIT_REGRESSION == 3
    # within a looser tolerance it is not
    assert exit_code(diff_runs(_prev(), cur, tolerance=0.05)) == 0
    # a 1 % drop is inside the default 2 %
    cur = _prev()
    cur.loc[cur["trial_id"] == "a", "capacity_per_dollar"] *= 0.99
    assert exit_code(diff_runs(_prev(), cur)) == 0

    paths = write_diff(tmp_path / "d", diff)
    assert json.loads(paths["json"].read_text()) == diff
    md = paths["markdown"].read_text()
    assert md.startswith("# Nightly sweep diff: REGRESSION")
    assert "| chat |" in md and "-3.0%" in md and "**regression**" in md


def test_workload_losing_all_plans_is_a_regression():
    cur = _prev()
    cur.loc[cur["workload"] == "docs", "status"] = "failed"
    diff = diff_runs(_prev(), cur)
    docs = diff["workloads"]["docs"]
    assert docs["regression"] and "lost all plans" in docs["reasons"][0]
    assert docs["best_after"] is None and docs["best_changed"]
    assert [p["workload"] for p in docs["pareto_lost"]] == ["docs"]
    assert exit_code(diff) == 3
    # a workload missing from the new run entirely counts too
    gone = diff_runs(_prev(), _prev()[_prev()["workload"] == "chat"])
    assert gone["workloads"]["docs"]["regression"] and exit_code(gone) == 3
    # a new workload is not a regression
    assert exit_code(diff_runs(_prev()[_prev()["workload"] == "chat"], _prev())) == 0


def test_bad_inputs_raise_config_errors():
    with pytest.raises(ConfigError, match="tolerance"):
        diff_runs(_prev(), _prev(), tolerance=1.5)
    with pytest.raises(ConfigError, match="scheduler"):
        diff_runs(_prev(), _prev().drop(columns="scheduler"))
    with pytest.raises(ConfigError, match="regression"):
        exit_code({"workloads": {}})
