"""Bad input to the simulator core and ``python -m vidur_search.simulate``: a one-line
ConfigError naming the field and what is allowed, before any work; never a traceback,
never silently accepted (the audit's failures, one test each)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from simulator import ConfigError, SimulationConfig, simulate
from simulator.errors import ConfigWarning
from simulator.execution.predictors import cache as cache_mod
from simulator.execution.predictors.params import PredictorParams, ProfiledParams
from simulator.metrics import format_summary
from vidur_search.simulate import check_output, config_from_hydra

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
FAST = {"execution": {"kind": "roofline"}}


def make(**kw: Any) -> SimulationConfig:
    return SimulationConfig.from_dict({**FAST, **kw})


def error(**kw: Any) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        make(**kw)
    return err.value


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.run(
        [sys.executable, "-m", "vidur_search.simulate", "workload.num_requests=8",
         "output.progress=false", "execution.kind=roofline", *args],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)


def hydra_cfg(*overrides: str) -> Any:
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose(config_name="simulate", overrides=list(overrides))


# 1 ------------------------------------------------------------ words where numbers go
@pytest.mark.parametrize(("kw", "field"), [
    ({"workload": {"arrival": {"rate": "fast"}}}, "workload.arrival.rate"),
    ({"workload": {"arrival": {"rate": True}}}, "workload.arrival.rate"),
    ({"workload": {"arrival": {"kind": "gamma", "cv": "abc"}}}, "workload.arrival.cv"),
    ({"workload": {"arrival": {"time_scale": "abc"}}}, "workload.arrival.time_scale"),
    ({"workload": {"arrival": {"think_time_s": "abc"}}}, "workload.arrival.think_time_s"),
    ({"workload": {"lengths": {"zipf_theta": "abc"}}}, "workload.lengths.zipf_theta"),
    ({"scheduler": {"watermark": "abc"}}, "scheduler.watermark"),
    ({"scheduler": {"gpu_memory_utilization": "high"}}, "scheduler.gpu_memory_utilization"),
    ({"scheduler": {"gpu_memory_utilization": True}}, "scheduler.gpu_memory_utilization"),
    ({"execution": {"profiled": {"tie_tolerance": "abc"}}}, "execution.profiled.tie_tolerance"),
])
def test_a_word_where_a_number_goes_is_a_config_error(kw: dict, field: str) -> None:
    err = error(**kw)
    assert err.field == field and "must be a number" in err.allowed


def test_numeric_validators_keep_accepting_numbers() -> None:
    c = make(scheduler={"watermark": 0, "gpu_memory_utilization": 1},
             workload={"arrival": {"rate": 2}, "lengths": {"kind": "zipf", "zipf_theta": 1}})
    assert c.scheduler.watermark == 0 and c.workload.arrival.rate == 2
    with pytest.raises(ConfigError, match=r"must be a number in \[0, 1\)"):
        PredictorParams(tie_tolerance=1.0)


# 2 ------------------------------------------------------------ trace workload, no file
@pytest.mark.parametrize("workload", ["trace", "trace_lengths"])
def test_trace_workload_without_a_file_says_the_file_is_required(workload: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_hydra(hydra_cfg(f"workload={workload}"))
    assert err.value.field == "workload.trace_file"
    assert "is required" in err.value.allowed and "???" not in str(err.value.value)
    with pytest.raises(ConfigError, match="is required"):  # the placeholder as a value too
        make(workload={"trace_file": "???", "arrival": {"kind": "trace"},
                       "lengths": {"kind": "trace"}, "num_requests": 0})


# 3 ------------------------------------------------------------ on/off settings
@pytest.mark.parametrize("value", ["maybe", "no", 0, "false"])
def test_booleans_take_true_or_false_only(value: Any) -> None:
    err = error(engine={"fast_forward": value})
    assert err.field == "engine.fast_forward" and "true or false" in err.allowed
    for name in ("chrome_trace", "token_table", "progress"):
        out = OmegaConf.create({"dir": "x", "chrome_trace": False, "token_table": False,
                                "progress": False, name: value})
        with pytest.raises(ConfigError) as e:
            check_output(out)
        assert e.value.field == f"output.{name}" and "true or false" in e.value.allowed
    with pytest.raises(ConfigError, match="catch_up"):
        make(workload={"arrival": {"kind": "capped", "catch_up": value}})


def test_chrome_trace_no_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    p = cli(tmp_path, "output.chrome_trace=no", f"output.dir={tmp_path / 'o'}")
    assert p.returncode == 2, p.stderr
    assert "configuration error: output.chrome_trace='no'" in p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "o" / "trace.json").exists()


# 4 ------------------------------------------------------------ profile store path
def store_error(store: Any) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        make(execution={"kind": "profiled", "profiled": {"store": store}}).check_profile_stores()
    return err.value


def test_a_missing_profile_store_is_a_config_error(tmp_path: Path) -> None:
    for bad in ("/nonexistent/dir", [str(tmp_path), str(tmp_path / "nope")]):
        err = store_error(bad)
        assert err.field == "execution.profiled.store" and "no such directory" in err.allowed
    (tmp_path / "file").write_text("")
    assert "not a directory" in store_error(str(tmp_path / "file")).allowed
    assert "must be a profile-store directory" in store_error(5).allowed
    # the default (the packaged profiles) and an existing directory stay valid
    make(execution={"kind": "profiled"}).check_profile_stores()
    make(execution={"kind": "profiled",
                    "profiled": {"store": [str(tmp_path)]}}).check_profile_stores()
    with pytest.raises(ConfigError) as err:  # building the config checks, before any work
        config_from_hydra(hydra_cfg("execution.profiled.store=/nonexistent/dir"))
    assert err.value.field == "execution.profiled.store"


# 5 ------------------------------------------------------------ requests too long
def test_fixed_lengths_longer_than_the_context_are_a_config_error() -> None:
    err = error(workload={"lengths": {"kind": "fixed", "prefill_tokens": 9_999_999}})
    assert err.field == "workload.lengths.prefill_tokens" and "max context of 8192" in err.allowed
    err = error(workload={"lengths": {"kind": "fixed", "prefill_tokens": 512,
                                      "decode_tokens": 8000}})
    assert err.field == "workload.lengths.decode_tokens"
    # capped to the context, the same lengths are fine
    make(workload={"lengths": {"kind": "fixed", "prefill_tokens": 9_999_999,
                               "max_total_tokens": 8192}})


def test_fixed_lengths_that_do_not_fit_the_kv_cache_are_a_config_error() -> None:
    c = make(scheduler={"num_blocks_override": 10},
             workload={"lengths": {"kind": "fixed", "prefill_tokens": 512}})
    with pytest.raises(ConfigError) as err:
        c.check_workload_fits()
    assert err.value.field == "workload.lengths.prefill_tokens"
    assert "KV capacity per replica: 160 tokens" in err.value.allowed
    c = make(scheduler={"num_blocks_override": 10},
             workload={"lengths": {"kind": "fixed", "prefill_tokens": 64,
                                   "decode_tokens": 512}})
    with pytest.raises(ConfigError, match="decode_tokens"):
        c.check_workload_fits()
    make(workload={"lengths": {"kind": "fixed"}}).check_workload_fits()  # fits: no error


def test_summary_says_how_many_were_rejected_and_why() -> None:
    c = make(scheduler={"num_blocks_override": 40},
             workload={"num_requests": 12, "lengths": {"kind": "uniform", "min_prefill": 16,
                                                       "max_prefill": 1200, "min_decode": 4,
                                                       "max_decode": 8}})
    c.check_workload_fits()  # sampled lengths: counted, not an error
    summary = simulate(c).summary
    rejected = summary["counts"]["rejected"]
    assert 0 < rejected < 12
    assert f"rejected   {rejected} does not fit the KV cache (e.g. needs" in format_summary(summary)


# 6 ------------------------------------------------------------ unusable output.dir
def test_an_unusable_output_dir_is_a_config_error(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    flags = {"chrome_trace": False, "token_table": False, "progress": False}
    for bad, words in ((afile, "not a directory"), (afile / "sub", "cannot be created")):
        with pytest.raises(ConfigError) as err:
            check_output(OmegaConf.create({"dir": str(bad), **flags}))
        assert err.value.field == "output.dir" and words in err.value.allowed
    assert check_output(OmegaConf.create({"dir": str(tmp_path / "new" / "dir"), **flags})).is_dir()
    p = cli(tmp_path, f"output.dir={afile}")
    assert p.returncode == 2 and "configuration error: output.dir=" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and "FileExistsError" not in p.stderr


# 7 ------------------------------------------------------------ interp, cache_dir
def test_a_string_given_for_a_list_is_reported_as_the_string() -> None:
    with pytest.raises(ConfigError) as err:
        ProfiledParams(interp="bogus")
    assert err.value.value == "bogus" and "log, linear" in err.value.allowed
    assert ProfiledParams(interp="log", smooth=3).interp == ("log",)
    assert ProfiledParams(interp=["log", "linear"]).predictor_params().interp == ("log",
                                                                                  "linear")


def test_an_unwritable_cache_dir_warns_once_naming_the_field(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_mod, "content_hash", lambda df, family: family)
    monkeypatch.setattr(cache_mod, "fit_profile", lambda df, family, params: {})
    (tmp_path / "afile").write_text("")
    cache = cache_mod.PredictorCache(tmp_path / "afile")
    ident = {"device": "h100-sxm", "model": "m", "tp": 1}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for family in ("layer_ops", "attention_decode", "attention_prefill"):
            assert cache.fitted(ident, None, family, PredictorParams()) == {}
    assert [w.category for w in caught] == [ConfigWarning]
    assert "execution.profiled.cache_dir=" in str(caught[0].message)
    assert cache.fits == 3
