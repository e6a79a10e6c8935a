"""Bad input to the search app, second audit: workloads (a trace without a file, entries
that are not workloads, fields simulate rejects, errors named by the app's key) and nightly
mode (an unusable previous run, a folder the next night would not find). Each is a
ConfigError naming the field, raised before Ray starts or any trial runs."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hydra import compose, initialize_config_module

from simulator import ConfigError
from vidur_search import nightly, settings
from vidur_search.app import plain_config
from vidur_search.results import _STR, COLUMNS, normalise

ROOT = Path(__file__).resolve().parents[1]


def _app(*overrides: str) -> dict[str, Any]:
    """The smoke experiment with ``overrides`` as the app sees it (``app.plain_config``)."""
    settings.register()
    with initialize_config_module(config_module="vidur_search.conf.app", version_base=None):
        cfg = compose(config_name="config", overrides=["+experiment=smoke", *overrides])
    return plain_config(cfg)


@pytest.fixture(scope="module")
def smoke() -> dict[str, Any]:
    return _app()


def _rejects(app: dict[str, Any], field: str) -> ConfigError:
    with pytest.raises(ConfigError) as exc:
        settings.check(app)
    assert exc.value.field == field, str(exc.value)
    return exc.value


def _with_workload(app: dict[str, Any], name: str, workload: Any) -> dict[str, Any]:
    out = copy.deepcopy(app)
    out["workloads"][name] = workload
    return out


@pytest.mark.parametrize("override", ["workload@workloads.chat=trace",
                                      "+workload@workloads.code=trace"])
def test_a_trace_workload_without_a_file_says_the_file_is_required(override: str) -> None:
    app = _app(override)
    name = override.split("workloads.")[1].split("=")[0]
    assert app["workloads"][name]["trace_file"] is None  # not made a path '/cwd/???'
    err = _rejects(app, f"workloads.{name}.trace_file")
    assert "is required" in err.allowed and f"set workloads.{name}.trace_file=PATH" in err.allowed


def test_a_workload_error_names_the_apps_key_in_its_message(smoke: dict[str, Any]) -> None:
    chat = copy.deepcopy(smoke["workloads"]["chat"])
    chat["lengths"].update(min_prefill=2000, max_prefill=100)
    err = _rejects(_with_workload(smoke, "chat", chat), "workloads.chat.lengths.min_prefill")
    assert "workloads.chat.lengths.max_prefill" in err.allowed
    assert " workload." not in str(err)


@pytest.mark.parametrize("value", [5, "chat", [1], {}])
def test_a_workload_that_is_not_a_workload_mapping_is_named(
        smoke: dict[str, Any], value: Any) -> None:
    err = _rejects(_with_workload(smoke, "extra", value), "workloads.extra")
    assert "+workload@workloads.extra=chat" in err.allowed


def test_a_partial_workload_takes_the_workload_defaults(smoke: dict[str, Any]) -> None:
    settings.check(_with_workload(smoke, "code", {"lengths": {"kind": "fixed"}}))


def test_a_workload_field_simulate_rejects_is_rejected_before_any_trial(
        smoke: dict[str, Any]) -> None:
    chat = dict(smoke["workloads"]["chat"], num_requests=0)
    err = _rejects(_with_workload(smoke, "chat", chat), "workloads.chat.num_requests")
    assert "integer >= 1" in err.allowed


def _previous(root: Path, df: pd.DataFrame | None = None, raw: bytes | None = None) -> Path:
    prev = root / "2025-12-31_00-00-00"
    prev.mkdir(parents=True)
    if raw is not None:
        (prev / nightly.TRIALS_FILE).write_bytes(raw)
    else:
        assert df is not None
        df.to_parquet(prev / nightly.TRIALS_FILE)
    return prev


@pytest.mark.parametrize("case", ["corrupt", "wrong columns", "no columns"])
def test_an_unusable_previous_nightly_run_is_a_config_error(tmp_path: Path, case: str) -> None:
    frames = {"wrong columns": pd.DataFrame({"a": [1, 2]}), "no columns": pd.DataFrame()}
    prev = _previous(tmp_path, frames.get(case), b"garbage!" if case == "corrupt" else None)
    cur = tmp_path / "2026-01-01_00-00-00"
    assert nightly.latest_run(tmp_path, exclude=cur) == prev
    with pytest.raises(ConfigError) as exc:
        nightly.read_previous(prev, cur)
    assert exc.value.field == "output.dir"
    assert str(prev / nightly.TRIALS_FILE) in exc.value.allowed
    assert f"move {prev} out of" in exc.value.allowed


def test_a_previous_nightly_run_without_newer_columns_still_compares(tmp_path: Path) -> None:
    row = {c: ("ok" if c == "status" else "x") if c in _STR else 1
           for c in COLUMNS if c != "expert_parallel"}  # a table from before EP
    prev = _previous(tmp_path, pd.DataFrame([row]))
    got = nightly.read_previous(prev, tmp_path / "2026-01-01_00-00-00")
    assert list(got.columns) == list(normalise([]).columns)
    assert got["expert_parallel"].tolist() == [1]


@pytest.mark.parametrize("name", ["mynight", "2026-13-01_00-00-00", "2026-01-01"])
def test_a_nightly_output_dir_the_next_night_cannot_find_is_rejected(
        smoke: dict[str, Any], tmp_path: Path, name: str) -> None:
    app = copy.deepcopy(smoke)
    app["output"].update(mode="nightly", dir=str(tmp_path / name))
    err = _rejects(app, "output.dir")
    assert "YYYY-MM-DD_HH-MM-SS" in err.allowed
    app["output"]["dir"] = str(tmp_path / "2026-01-01_02-00-00")
    settings.check(app)


@pytest.mark.parametrize("case", ["trace without file", "corrupt previous night"])
def test_the_command_exits_2_before_starting_ray(tmp_path: Path, case: str) -> None:
    out = tmp_path / "2026-01-01_00-00-00"
    if case == "trace without file":
        overrides = ["+workload@workloads.code=trace"]
        expect = "configuration error: workloads.code.trace_file=None is invalid: is required"
    else:
        _previous(tmp_path, raw=b"garbage!")
        overrides = ["output=nightly"]
        expect = str(tmp_path / "2025-12-31_00-00-00" / nightly.TRIALS_FILE)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    p = subprocess.run([sys.executable, "-m", "vidur_search", "+experiment=smoke", *overrides,
                        "output.progress=false", f"output.dir={out}"],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert p.returncode == 2, p.stderr[-2000:]
    assert expect in p.stderr and "Traceback" not in p.stderr
    assert "Started a local Ray instance" not in p.stdout + p.stderr
    assert not (out / "trials.parquet").exists()
