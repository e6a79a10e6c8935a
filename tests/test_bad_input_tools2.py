"""Bad input to validate, the profiler and profile coverage, second audit: each must be a
clear error naming the field or file (exit status 2), never a traceback, a silently
dropped value or a ``nan`` in the output; valid input keeps working identically."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from profiler.run import parse_args
from simulator.catalogue import get_model
from simulator.errors import ConfigError
from simulator.profiles import ProfileMeta, ProfileStore, model_shape_of
from simulator.profiles.__main__ import main as profiles_main
from vidur_search.bench_formats import read_bench
from vidur_search.validate import (
    RunMetrics,
    compare,
    format_comparison,
    measured_metrics,
    run_validation,
    simulation_for,
    workload_for,
)

REPO = Path(__file__).resolve().parents[1]
NAN = re.compile(r"\bnan\b", re.IGNORECASE)
SIM = ["model=llama-3-8b", "sku=h100-sxm"]


def _validate(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vidur_search.validate", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def _vllm(path: Path, **change: Any) -> Path:
    """A small vLLM benchmark result (4 requests, send times, no cap) with ``change``."""
    doc: dict[str, Any] = {
        "request_rate": 2.0, "burstiness": 1.0, "max_concurrency": None, "duration": 3.0,
        "input_lens": [200] * 4, "output_lens": [5] * 4, "ttfts": [0.05] * 4,
        "itls": [[0.01] * 4 for _ in range(4)], "start_times": [0.0, 0.5, 1.0, 1.5],
        "errors": [""] * 4}
    doc.update(change)
    doc = {k: v for k, v in doc.items() if v is not ...}  # ... drops a key
    path.write_text(json.dumps(doc))
    return path


# --------------------------------------------------------------------------- 1: keys


def test_validate_sets_simulation_keys_without_plus(tmp_path: Path) -> None:
    bench = _vllm(tmp_path / "run.json")
    for arg, field in (("precision.weights=fp4", "precision.weights='fp4'"),
                       ("execution.profiled.store=/nonexistent/x",
                        "execution.profiled.store='/nonexistent/x'"),
                       ("execution.roofline.gemm_efficiency=2",
                        "execution.roofline.gemm_efficiency=2"),
                       ("scheduler.kv_tokens_override=-1", "scheduler.kv_tokens_override=-1")):
        extra = ["execution.kind=profiled"] if "profiled" in arg else []
        p = _validate(f"bench={bench}", *SIM, "scheduler=sarathi", arg, *extra, cwd=tmp_path)
        assert p.returncode == 2, (arg, p.stderr)
        assert p.stderr.startswith(f"configuration error: {field} is invalid"), p.stderr
        assert "not in struct" not in p.stderr and "Traceback" not in p.stderr


def test_validate_defaults_build_the_same_simulation(tmp_path: Path) -> None:
    """The keys listed in conf/validate.yaml hold the simulator's defaults: every preset
    builds the same SimulationConfig as before (preset + execution.kind only)."""
    bench = read_bench(_vllm(tmp_path / "run.json"))
    presets = sorted(p.stem for p in (REPO / "conf" / "scheduler").glob("*.yaml"))
    with initialize_config_module(config_module="vidur_search.conf", version_base=None):
        for preset in presets:
            cfg = compose("validate", overrides=[f"scheduler={preset}", *SIM])
            plain: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore
            raw = yaml.safe_load((REPO / "conf" / "scheduler" / f"{preset}.yaml").read_text())
            new, _, _ = simulation_for(bench, model="llama-3-8b", sku="h100-sxm",
                                       scheduler=plain["scheduler"],
                                       execution=plain["execution"], engine=plain["engine"],
                                       precision=plain["precision"])
            old, _, _ = simulation_for(bench, model="llama-3-8b", sku="h100-sxm",
                                       scheduler=raw, execution={"kind": "calibrated"},
                                       engine=plain["engine"])
            assert new == old, preset


# --------------------------------------------------------------------------- 2: files


def _aiperf(path: Path, start: Any = 1_000_000_000) -> Path:
    recs = [{"metadata": {"request_start_ns": start if i == 1 else i * 10**8},
             "metrics": {"input_sequence_length": {"value": 100, "unit": "tokens"},
                         "output_sequence_length": {"value": 8, "unit": "tokens"},
                         "time_to_first_token": {"value": 20.0, "unit": "ms"},
                         "request_latency": {"value": 90.0, "unit": "ms"}}}
            for i in range(3)]
    path.write_text("\n".join(json.dumps(r) for r in recs))
    return path


def _genai(path: Path, mode: str, value: Any) -> Path:
    reqs = [{"timestamp": 10**9 * i, "response_timestamps": [10**9 * i + 10**7, 10**9 * i + 2e7],
             "response_outputs": [{"text_output": "a"}, {"text_output": "b"}],
             "request_inputs": {"input_lengths": 10}} for i in range(1, 3)]
    path.write_text(json.dumps({"experiments": [{"experiment": {"mode": mode, "value": value},
                                                 "requests": reqs}]}))
    return path


@pytest.mark.parametrize("change, field", [
    ({"itls": [[0.01] * 4, [0.01] * 4, [0.01, -0.5, 0.01, 0.01], [0.01] * 4]}, "itls[2][1]=-0.5"),
    ({"itls": [[0.01] * 4, [0.01] * 4, [0.01, "x", 0.01, 0.01], [0.01] * 4]}, "itls[2][1]='x'"),
    ({"request_rate": -3, "start_times": ...}, "request_rate=-3"),
    ({"request_rate": "fast", "start_times": ...}, "request_rate='fast'"),
    ({"max_concurrency": -4}, "max_concurrency=-4"),
    ({"max_concurrency": "abc"}, "max_concurrency='abc'"),
    ({"max_concurrency": 2.5}, "max_concurrency=2.5"),
    ({"burstiness": 0}, "burstiness=0"),
    ({"duration": -1}, "duration=-1"),
    ({"ttfts": [0.05, math.nan, 0.05, 0.05]}, "ttft[1]=nan"),
    ({"ttfts": [0.05, "0.05", 0.05, 0.05]}, "ttfts[1]='0.05'"),
    ({"e2els": [0.1, 0.1, -1.0, 0.1]}, "e2e[2]=-1.0"),
])
def test_corrupt_vllm_fields_are_errors(tmp_path: Path, change: dict, field: str) -> None:
    path = _vllm(tmp_path / "run.json", **change)
    with pytest.raises(ConfigError) as err:
        read_bench(path)
    assert str(err.value).startswith(f"{path}: {field} is invalid"), str(err.value)


def test_corrupt_aiperf_and_genai_perf_fields_are_errors(tmp_path: Path) -> None:
    read_bench(_aiperf(tmp_path / "ok.jsonl"))  # valid: read
    with pytest.raises(ConfigError, match=r"record 1: metadata\.request_start_ns='abc'"):
        read_bench(_aiperf(tmp_path / "a.jsonl", start="abc"))
    path = _aiperf(tmp_path / "profile_export.jsonl")
    (tmp_path / "profile_export_aiperf.json").write_text(json.dumps({"input_config": {
        "loadgen": {"request_rate": 2.0, "arrival_pattern": "gamma",
                    "arrival_smoothness": -1}}}))
    with pytest.raises(ConfigError, match=r"arrival_smoothness=-1 is invalid: must be a num"):
        read_bench(path)
    assert read_bench(_genai(tmp_path / "g.json", "request_rate", 2.0)).request_rate == 2.0
    for bad in (-3, "fast", None):
        with pytest.raises(ConfigError, match=r"g\.json: experiments\[0\]\.experiment\.value"):
            read_bench(_genai(tmp_path / "g.json", "request_rate", bad))


# --------------------------------------------------------------------------- 3: replay


def test_replay_with_a_concurrency_is_refused_before_reading(tmp_path: Path) -> None:
    bench = read_bench(_vllm(tmp_path / "run.json"))
    with pytest.raises(ConfigError, match=r"concurrency=4 is invalid: .*load=replay"):
        workload_for(bench, load="replay", concurrency=4)
    with pytest.raises(ConfigError, match=r"concurrency=4 is invalid: .*load=replay"):
        run_validation(tmp_path / "absent.json", model="llama-3-8b", sku="h100-sxm",
                       load="replay", concurrency=4)
    # the file's own cap is not applied by load=replay, and the sentence says so
    capped = read_bench(_vllm(tmp_path / "capped.json", max_concurrency=2))
    wl, _, load = workload_for(capped, load="replay")
    assert wl["arrival"] == {"kind": "static"}
    assert "max_concurrency 2 is not applied" in load


# --------------------------------------------------------------------------- 4: nan


def test_no_nan_throughput_without_duration_or_send_times(tmp_path: Path) -> None:
    path = _vllm(tmp_path / "run.json", duration=..., start_times=...)
    bench = read_bench(path)
    assert math.isnan(bench.output_throughput)
    m = measured_metrics(bench)
    s = RunMetrics(m.ttft, np.full(len(bench), np.nan), m.e2e, math.nan, 0)
    table = compare(m, s)
    assert "throughput" not in set(table["metric"])
    text = format_comparison(table)
    assert not NAN.search(text) and " -" in text  # TPOT unknown on one side: "-"
    p = _validate(f"bench={path}", *SIM, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert not NAN.search(p.stdout) and "throughput tok/s" not in p.stdout
    assert "no throughput row" in p.stdout and "no duration" in p.stdout
    # with send times the throughput is measured as before
    with_times = read_bench(_vllm(tmp_path / "t.json", duration=...))
    assert with_times.output_throughput == pytest.approx(20 / (1.5 + 0.05 + 0.04))


# --------------------------------------------------------------------------- 5: profiler


@pytest.mark.parametrize("args, field", [
    (["tp=1,,2"], "tp"),
    (["tp=1,2,"], "tp"),
    (["tp=1", "tp=2"], "tp"),
    (["tp=1,1"], "tp"),
    (["families=layer_ops,,collective"], "families"),
    (["prefill_batch=1,,4"], "prefill_batch"),
    (["tokens_max=64", "+tokens_max=128"], "tokens_max"),
    (["out=a", "out=b"], "out"),
])
def test_profiler_empty_entries_and_repeated_keys_are_errors(args: list[str],
                                                             field: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_args(["model=llama-3-8b", *args])
    assert err.value.field == field
    assert ("empty" in err.value.allowed or "twice" in err.value.allowed)
    assert parse_args(["model=llama-3-8b", "tp=1,2", "families=layer_ops"]).tp == (1, 2)


# --------------------------------------------------------------------------- 6, 7: coverage


def _decode_profile(store: ProfileStore) -> Path:
    n = 3
    t = 10.0 + np.arange(n, dtype="float64")
    df = pd.DataFrame({"n_q_heads": 32, "n_kv_heads": 8, "head_dim": 128, "batch_size": 1,
                       "kv_len": [16, 32, 64], "min_us": t, "median_us": t, "mean_us": t,
                       "max_us": t, "std_us": 0.0, "count": 1})
    meta = ProfileMeta(family="attention_decode", source="measured", device="h100-sxm",
                       model="llama-3-8b", tp=1,
                       model_shape=model_shape_of(get_model("llama-3-8b")), origin="test")
    return store.save(df, meta)


def _coverage(store: Path, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    rc = profiles_main(["coverage", "--store", str(store), "--model", "llama-3-8b",
                        "--sku", "h100-sxm", "--tp", "1"])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("where", ["llama-3-8b/tp1/layer_ops.parquet",
                                   "network-hgx-h100/tp1/collective.parquet",
                                   "llama-3-8b/tp1/attention_decode.parquet"])
def test_coverage_names_a_corrupt_parquet_file(tmp_path: Path, where: str,
                                               capsys: pytest.CaptureFixture) -> None:
    _decode_profile(ProfileStore(tmp_path))
    assert _coverage(tmp_path, capsys)[0] == 0
    path = tmp_path / "h100-sxm" / where
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a parquet file at all")
    rc, err = _coverage(tmp_path, capsys)
    assert rc == 2 and str(path) in err and "Parquet" in err and "Traceback" not in err


def test_coverage_applies_the_readers_schema_check(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    store = ProfileStore(tmp_path)
    path = _decode_profile(store)
    table = pq.read_table(path).drop(["median_us", "mean_us"])  # metadata kept
    pq.write_table(table, path)
    with pytest.raises(ConfigError, match="median_us"):  # what a profiled run says
        store.load("h100-sxm", "llama-3-8b", 1, "attention_decode")
    rc, err = _coverage(tmp_path, capsys)
    assert rc == 2 and str(path) in err and "column median_us" in err and "missing" in err
    # asking only for layer_ops (what a profiled run does first) still says it is missing
    with pytest.raises(ConfigError, match="missing layer_ops"):
        store.require("llama-3-8b", "h100-sxm", 1, ("layer_ops",))


def test_a_negative_send_time_is_refused(tmp_path: Path) -> None:
    """vLLM's start_times are perf_counter() readings: a negative one is a corrupt file
    (it stretched the measured span and cut the throughput tenfold)."""
    import json

    from vidur_search.bench_formats import read_bench

    n = 4
    doc = {"input_lens": [100] * n, "output_lens": [10] * n, "ttfts": [0.05] * n,
           "itls": [[0.01] * 9] * n, "e2els": [0.14] * n,
           "start_times": [10.0, 10.5, -100.0, 11.5], "duration": 2.0}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"start_times\[2\]"):
        read_bench(path)
