"""Bad input to ``python -m vidur_search.simulate`` and the simulator core, second audit:
sampled lengths longer than the context, an ignored chunk size, ``catalogue=DIR``,
message wording, and the output folder a configuration error leaves behind."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra import compose, initialize_config_dir

from simulator import ConfigError, SimulationConfig
from simulator.errors import ConfigWarning
from simulator.workload import WorkloadConfig
from vidur_search.simulate import config_from_hydra

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
FAST = {"execution": {"kind": "roofline"}}


def make(**kw: Any) -> SimulationConfig:
    return SimulationConfig.from_dict({**FAST, **kw})


def lengths(kind: str, **kw: Any) -> dict[str, Any]:
    return {"workload": {"num_requests": 8, "lengths": {"kind": kind, **kw}}}


# 1 ------------------------------------------------------------ shortest request too long
def test_sampled_lengths_whose_shortest_request_exceeds_the_context() -> None:
    with pytest.raises(ConfigError) as err:
        make(**lengths("uniform", min_prefill=9000, max_prefill=9500))
    assert err.value.field == "workload.lengths.min_prefill"
    assert "max context of 8192" in err.value.allowed and "shortest" in err.value.allowed
    with pytest.raises(ConfigError) as err:
        make(**lengths("zipf", min_prefill=100, min_decode=8100, max_decode=8200))
    assert err.value.field == "workload.lengths.min_decode"
    # only some requests too long: counted in the summary, not a config error
    make(**lengths("uniform", min_prefill=8000, max_prefill=9500))
    make(**lengths("uniform", min_prefill=9000, max_prefill=9500, max_total_tokens=8192))
    # the shortest does not fit the KV cache: every request would be rejected
    c = make(scheduler={"num_blocks_override": 10}, **lengths("uniform", min_prefill=200))
    with pytest.raises(ConfigError, match="even the shortest") as err:
        c.check_workload_fits()
    assert err.value.field == "workload.lengths.min_prefill"


# 2 ------------------------------------------------------------ chunk size ignored
def test_a_chunk_size_a_scheduler_ignores_warns_but_no_preset_does() -> None:
    for name, chunk in (("orca", 99999), ("vllm_v0", 2048)):
        with pytest.warns(ConfigWarning, match="scheduler.chunk_size=") as caught:
            make(scheduler={"name": name, "chunk_size": chunk})
        assert "sarathi, vllm_v1" in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        for path in sorted((CONF / "scheduler").glob("*.yaml")):
            preset = yaml.safe_load(path.read_text())
            for model in ("llama-3-8b", "llama-3.1-8b"):  # vllm_0_6 chunks past 32K
                make(model=model, scheduler=preset)
        make(scheduler={"name": "sarathi", "chunk_size": 2048})  # it chunks: no warning
        make(scheduler={"name": "vllm_v0", "chunked_prefill": "on", "chunk_size": 2048})


# 3 ------------------------------------------------------------ catalogue=DIR
def test_catalogue_is_a_plain_override(tmp_path: Path) -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(config_name="simulate",
                      overrides=[f"catalogue={tmp_path}", "execution.kind=roofline"])
    assert config_from_hydra(cfg).catalogue == str(tmp_path)


# 4 ------------------------------------------------------------ wording
def test_warmup_message_says_what_it_must_be() -> None:
    with pytest.raises(ConfigError) as err:
        WorkloadConfig(num_requests=20, warmup_requests=25)
    assert err.value.allowed == "must be fewer than workload.num_requests=20"


# 5 ------------------------------------------------------------ no folder left behind
def test_a_config_error_leaves_no_output_folder_behind(tmp_path: Path) -> None:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}

    def cli(out: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "vidur_search.simulate", "output.progress=false",
             "workload.arrival.rate=fast", f"output.dir={out}"],
            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)

    new = tmp_path / "new"
    p = cli(new)
    assert p.returncode == 2 and "workload.arrival.rate" in p.stderr, p.stderr
    assert not new.exists()
    mine = tmp_path / "mine"  # a folder the user had: only what Hydra made goes
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    (mine / "old.log").write_text("")
    assert cli(mine).returncode == 2
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt", "old.log"]


def test_validate_never_removes_its_working_directory(tmp_path: Path) -> None:
    """validate's run folder is the directory it runs in: a configuration error there
    removes nothing (not an empty log of the user's, not the directory)."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.log").write_text("")
    bench = tmp_path / "bench.csv"
    bench.write_text("arrival,input_tokens,output_tokens,ttft,e2e\n0.0,100,10,0.05,0.2\n")
    p = subprocess.run(
        [sys.executable, "-m", "vidur_search.validate", f"bench={bench}", "model=nosuch",
         "sku=h100-sxm"], capture_output=True, text=True, cwd=work, timeout=120,
        env={**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"})
    assert p.returncode == 2 and "model" in p.stderr, p.stderr
    assert work.is_dir() and (work / "keep.log").exists()


def test_huge_request_counts_and_unused_stores_are_reported(tmp_path: Path) -> None:
    """A request count that cannot be held in memory is a ConfigError (it was a numpy
    allocation traceback); a profile store with a kind that reads no profiles warns."""
    from simulator import ConfigError, SimulationConfig
    from simulator.errors import ConfigWarning

    with pytest.raises(ConfigError, match=r"workload\.num_requests"):
        SimulationConfig.from_dict({"workload": {"num_requests": 10**12}})
    with pytest.warns(ConfigWarning, match=r"execution\.profiled\.store.*ignored"):
        SimulationConfig.from_dict({"execution": {"kind": "calibrated",
                                                  "profiled": {"store": [str(tmp_path)]}}})
