"""Bad input to the search app (``python -m vidur_search``) is a ConfigError naming the field
and what is allowed, raised before Ray starts or any trial runs."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from simulator import ConfigError
from simulator.paths import check_output_dir
from vidur_search import settings
from vidur_search.space import build_space

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke() -> dict[str, Any]:
    """The smoke experiment's config as the app sees it (``app.plain_config``)."""
    settings.register()
    with initialize_config_module(config_module="vidur_search.conf.app", version_base=None):
        cfg = compose(config_name="config", overrides=["+experiment=smoke"])
    app = OmegaConf.to_container(cfg, resolve=True)
    app["workloads"] = {k: v for k, v in app["workloads"].items() if v is not None}
    return app


def _with(app: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of ``app`` with dotted keys (``search.space.max_gpus``) set."""
    out = copy.deepcopy(app)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return out


def _rejects(app: dict[str, Any], field: str) -> ConfigError:
    with pytest.raises(ConfigError) as exc:
        settings.check(app)
    assert exc.value.field == field, str(exc.value)
    return exc.value


def test_the_smoke_experiment_passes_every_check(smoke: dict[str, Any]) -> None:
    settings.check(smoke)


@pytest.mark.parametrize(("key", "value", "field"), [
    ("search.space.tensor_parallel", [0], "search.space.tensor_parallel[0]"),
    ("search.space.pipeline_parallel", [0], "search.space.pipeline_parallel[0]"),
    ("search.space.tensor_parallel", [1, -1], "search.space.tensor_parallel[1]"),
    ("search.space.batch_caps", [-1, 64], "search.space.batch_caps[0]"),
    ("search.space.chunk_sizes", [-512], "search.space.chunk_sizes[0]"),
    ("search.space.replicas", [0], "search.space.replicas[0]"),
    ("search.space.max_gpus", 0, "search.space.max_gpus"),
])
def test_a_bad_entry_of_the_search_space_is_named(
        smoke: dict[str, Any], key: str, value: Any, field: str) -> None:
    err = _rejects(_with(smoke, **{key: value, "search.space.fill_budget": False}), field)
    assert "integer >= 1" in err.allowed


def test_build_space_rejects_a_zero_layout_instead_of_dividing_by_it(
        smoke: dict[str, Any]) -> None:
    space = dict(smoke["search"]["space"], skus=["h100-sxm"], tensor_parallel=[0])
    with pytest.raises(ConfigError, match=r"search\.space\.tensor_parallel\[0\]"):
        build_space({"model": "llama-3-8b", "workload": {}}, space, 1)


def test_chunk_size_zero_keeps_meaning_the_presets_own(smoke: dict[str, Any]) -> None:
    settings.check(_with(smoke, **{"search.space.chunk_sizes": [0]}))


@pytest.mark.parametrize(("key", "value"), [
    ("search.capacity.max_trial_s", -1.0),
    ("output.regression_tolerance", -1.0),
    ("output.regression_tolerance", 1.5),
    ("output.target_qps", float("nan")),
    ("ray.cpus_per_trial", float("nan")),
])
def test_numeric_settings_out_of_range_are_rejected(
        smoke: dict[str, Any], key: str, value: float) -> None:
    _rejects(_with(smoke, **{key: value}), key)


@pytest.mark.parametrize(("tiers", "field"), [
    ({"fast": {"ttft_p90": -1.0}}, "output.slo_tiers.fast.ttft_p90"),
    ({"fast": {"bogus": 1.0}}, "output.slo_tiers.fast.bogus"),
])
def test_slo_tiers_are_checked_up_front_under_their_config_name(
        smoke: dict[str, Any], tiers: dict, field: str) -> None:
    _rejects(_with(smoke, **{"output.slo_tiers": tiers}), field)
    settings.check(_with(smoke, **{"output.slo_tiers": {"fast": {"ttft_p90": 0.5}}}))


@pytest.mark.parametrize("address", ["bogus_address", "http://localhost:1", "ray://",
                                     "host:", ":6379", "host:99999", "ray://head"])
def test_a_ray_address_ray_cannot_use_is_rejected(smoke: dict[str, Any], address: str) -> None:
    err = _rejects(_with(smoke, **{"ray.address": address}), "ray.address")
    assert "ray://<host>:<port>" in err.allowed and "auto" in err.allowed


@pytest.mark.parametrize("address", [None, "", "auto", "local", "10.0.0.1:6379",
                                     "localhost:6379", "[::1]:6379", "ray://127.0.0.1:10001"])
def test_the_ray_address_forms_of_the_docs_pass(smoke: dict[str, Any], address: str) -> None:
    settings.check(_with(smoke, **{"ray.address": address}))


@pytest.mark.parametrize("num_cpus", [0, -1])
def test_ray_num_cpus_must_be_a_cpu_count(smoke: dict[str, Any], num_cpus: int) -> None:
    _rejects(_with(smoke, **{"ray.num_cpus": num_cpus}), "ray.num_cpus")


@pytest.mark.parametrize("url", ["notaurl", "bogus://x"])
def test_a_storage_url_sqlalchemy_cannot_open_is_rejected(
        smoke: dict[str, Any], url: str) -> None:
    err = _rejects(_with(smoke, **{"search.storage": url}), "search.storage")
    assert "sqlite:///" in err.allowed


def test_a_sqlite_storage_url_passes(smoke: dict[str, Any], tmp_path: Path) -> None:
    settings.check(_with(smoke, **{"search.storage": f"sqlite:///{tmp_path}/o.db"}))


@pytest.mark.parametrize(("changes", "field"), [
    ({"search.sampler_seed": -1}, "search.sampler_seed"),
    ({"search.sampler_seed": 2**32}, "search.sampler_seed"),
    ({"seed": 2**32}, "seed"),  # the sampler's seed when search.sampler_seed is null
])
def test_a_sampler_seed_numpy_rejects_is_a_config_error(
        smoke: dict[str, Any], changes: dict, field: str) -> None:
    _rejects(_with(smoke, **changes), field)


def test_an_unknown_precision_names_the_field_not_the_space(smoke: dict[str, Any]) -> None:
    err = _rejects(_with(smoke, **{"precision.weights": "fp4"}), "precision.weights")
    assert "bf16" in err.allowed and "fp8" in err.allowed


def test_an_output_dir_that_cannot_be_written_is_a_config_error(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    for bad in (afile, afile / "sub"):
        with pytest.raises(ConfigError, match=r"output\.dir"):
            check_output_dir("output.dir", bad)
    check_output_dir("output.dir", tmp_path / "new" / "run")  # can be made: made later
    assert not (tmp_path / "new").exists()


def _backticked(text: str) -> set[str]:
    return set(re.findall(r"`([a-z0-9_]+)`", text))


def test_every_scheduler_the_docs_list_is_one_a_user_can_pass() -> None:
    from simulator.config import SCHEDULERS

    presets = {p.stem for p in (ROOT / "conf" / "scheduler").glob("*.yaml")}
    names = set(SCHEDULERS) | presets
    readme = (ROOT / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| `scheduler` |"))
    search_md = (ROOT / "docs" / "search.md").read_text()
    sentence = search_md[search_md.index("presets searched by name"):]
    sentence = sentence[:sentence.index(").") + 2]
    listed = (_backticked(row.split("knobs")[0]) | _backticked(sentence)) & names
    assert listed and listed <= presets, listed - presets


@pytest.mark.parametrize("override", ["+output.slo_tiers.fast.ttft_p90=-1", "OUTPUT_FILE"])
def test_the_command_exits_2_before_starting_ray(tmp_path: Path, override: str) -> None:
    out = tmp_path / "run"
    if override == "OUTPUT_FILE":  # Hydra would create this folder before the command
        out.write_text("")
        override = f"output.dir={out}"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    p = subprocess.run([sys.executable, "-m", "vidur_search", "+experiment=smoke",
                        "output.progress=false", f"output.dir={out}", override],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert p.returncode == 2, p.stderr[-2000:]
    assert "configuration error: output." in p.stderr and "Traceback" not in p.stderr
    assert "Started a local Ray instance" not in p.stdout + p.stderr
    assert not (out / "trials.parquet").exists()
