"""Validation against real measurements: benchmark readers, the validate CLI, the
LLMServingSim importer and the cases of experiments/validation/run.py."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from profiler.import_llmservingsim import import_llmservingsim
from profiler.import_llmservingsim import main as import_main
from simulator import SimulationConfig
from simulator.engine import Simulation
from simulator.errors import ConfigError
from simulator.profiles import ProfileStore
from simulator.workload import RequestTable
from vidur_search.bench_formats import read_bench
from vidur_search.validate import RunMetrics, compare, simulation_for, workload_for

ROOT = Path(__file__).resolve().parents[1]


def _run_module():
    spec = importlib.util.spec_from_file_location(
        "validation_run", ROOT / "experiments" / "validation" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["validation_run"] = module
    spec.loader.exec_module(module)
    return module


def _vllm_doc(**extra) -> dict:
    doc = {
        "request_rate": "inf", "burstiness": 1.0, "max_concurrency": None, "duration": 4.0,
        "input_lens": [100, 200, 300], "output_lens": [3, 2, 0],
        "ttfts": [0.1, 0.2, 0.0], "itls": [[0.05, 0.07], [0.1], []],
        "start_times": [11.5, 10.0, 12.0], "errors": ["", "", "timeout"],
    }
    doc.update(extra)
    return doc


# --------------------------------------------------------------------------- readers


def test_vllm_result_json(tmp_path: Path) -> None:
    path = tmp_path / "vllm.json"
    path.write_text(json.dumps(_vllm_doc()))
    b = read_bench(path)
    assert b.format == "vllm_bench" and len(b) == 2 and b.failed == 1
    # sorted by send time, first at 0; E2E = TTFT + the request's inter-token latencies
    np.testing.assert_allclose(b.arrival, [0.0, 1.5])
    np.testing.assert_array_equal(b.input_tokens, [200, 100])
    np.testing.assert_allclose(b.e2e, [0.3, 0.22])
    np.testing.assert_allclose(b.tpot, [0.1, 0.06])
    assert b.has_arrivals and b.output_throughput == pytest.approx(5 / 1.72)


def test_vllm_result_without_send_times_uses_concurrency_or_rate(tmp_path: Path) -> None:
    path = tmp_path / "vllm.json"
    doc = _vllm_doc(max_concurrency=4, e2els=[0.5, 0.3, 0.0])
    doc.pop("start_times")
    path.write_text(json.dumps(doc))
    b = read_bench(path)
    assert not b.has_arrivals and b.max_concurrency == 4
    np.testing.assert_allclose(b.e2e, [0.5, 0.3])  # the saved end-to-end list wins
    assert b.output_throughput == pytest.approx(5 / 4.0)  # over the reported duration
    wl, table, load = workload_for(b)
    assert wl["arrival"] == {"kind": "closed", "concurrency": 4} and "closed loop" in load
    doc.update(max_concurrency=None, request_rate=2.0)
    path.write_text(json.dumps(doc))
    wl, table, load = workload_for(read_bench(path), seed=1)
    assert "Poisson" in load and table.arrival[0] == 0 and table.arrival[1] > 0


def test_aiperf_records(tmp_path: Path) -> None:
    def rec(start_ns: int, isl: int, osl: int, ttft_ms: float, lat_ms: float) -> dict:
        return {"metadata": {"request_start_ns": start_ns, "benchmark_phase": "profiling"},
                "metrics": {"input_sequence_length": {"value": isl, "unit": "tokens"},
                            "output_sequence_length": {"value": osl, "unit": "tokens"},
                            "time_to_first_token": {"value": ttft_ms, "unit": "ms"},
                            "request_latency": {"value": lat_ms, "unit": "ms"}},
                "error": None}
    lines = [rec(2_000_000_000, 550, 9, 40.0, 300.0), rec(1_000_000_000, 100, 5, 20.0, 120.0),
             {"metadata": {"request_start_ns": 1}, "metrics": {"error_isl": {"value": 3}},
              "error": {"code": 499, "type": "RequestCancellationError"}}]
    path = tmp_path / "profile_export.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines))
    b = read_bench(path)
    assert b.format == "aiperf" and len(b) == 2 and b.failed == 1
    np.testing.assert_allclose(b.arrival, [0.0, 1.0])
    np.testing.assert_array_equal(b.output_tokens, [5, 9])
    np.testing.assert_allclose(b.ttft, [0.02, 0.04])
    np.testing.assert_allclose(b.tpot, [0.025, 0.0325])


def _aiperf_lines(n: int = 6) -> str:
    recs = [{"metadata": {"request_start_ns": 1_000_000_000 + i * 50_000_000,
                          "benchmark_phase": "profiling"},
             "metrics": {"input_sequence_length": {"value": 100 + i, "unit": "tokens"},
                         "output_sequence_length": {"value": 8, "unit": "tokens"},
                         "time_to_first_token": {"value": 20.0, "unit": "ms"},
                         "request_latency": {"value": 90.0, "unit": "ms"}},
             "error": None} for i in range(n)]
    return "\n".join(json.dumps(r) for r in recs)


def test_aiperf_load_from_the_summary_next_to_the_records(tmp_path: Path) -> None:
    path = tmp_path / "profile_export.jsonl"
    path.write_text(_aiperf_lines())
    b = read_bench(path)  # no summary: the load is unknown, and the note says so
    assert b.max_concurrency == 0 and math.isnan(b.request_rate)
    assert any("concurrency and request rate are unknown" in x for x in b.notes)
    summary = tmp_path / "profile_export_aiperf.json"
    summary.write_text(json.dumps({"request_latency": {"unit": "ms", "avg": 90.0},
                                   "input_config": {"loadgen": {"concurrency": 4}}}))
    b = read_bench(path)
    assert b.max_concurrency == 4 and math.isnan(b.request_rate)
    wl, table, load = workload_for(b)
    assert wl["arrival"] == {"kind": "closed", "concurrency": 4}
    assert load.startswith("closed loop of 4 users") and "not replayed" in load
    np.testing.assert_array_equal(table.num_prefill, b.input_tokens)  # lengths in send order
    # the flags of the command line when input_config.loadgen has neither
    summary.write_text(json.dumps({"input_config": {
        "cli_command": "aiperf profile -m x --request-rate 2.5 --concurrency 3 "
                       "--request-rate-mode constant"}}))
    b = read_bench(path)
    assert (b.max_concurrency, b.request_rate) == (3, 2.5)
    summary.write_text(json.dumps({"input_config": {"loadgen": {
        "request_rate": 4.0, "arrival_pattern": "constant"}}}))
    b = read_bench(path)
    assert b.max_concurrency == 0 and b.request_rate == 4.0 and math.isinf(b.burstiness)
    assert workload_for(b)[2].startswith("replayed")  # open loop: the send times
    summary.write_text(json.dumps({"input_config": {"loadgen": {"concurrency": 0}}}))
    with pytest.raises(ConfigError, match=r"loadgen\.concurrency"):
        read_bench(path)


def test_per_request_tables(tmp_path: Path) -> None:
    csv = tmp_path / "runs.csv"
    csv.write_text("Arrival_Time,prompt_tokens,completion_tokens,TTFT_ms,e2e_latency_ms\n"
                   "0.5,10,4,20,80\n0.0,12,2,10,40\n")
    b = read_bench(csv)
    assert b.format == "per_request"
    np.testing.assert_allclose(b.ttft, [0.01, 0.02])
    np.testing.assert_allclose(b.tpot, [0.03, 0.02])
    # timestamps instead of latencies (LLMServingSim's requests.jsonl): TTFT and E2E
    # from the queue-entry clock, not the client's arrival_time on another clock
    jl = tmp_path / "requests.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in [
        {"input_toks": 7, "output_toks": 3, "arrival_time": 1.7e9, "queued_ts": 100.0,
         "first_token_ts": 100.4, "last_token_ts": 101.0},
        {"input_toks": 9, "output_toks": 5, "arrival_time": 1.7e9 + 1, "queued_ts": 101.0,
         "first_token_ts": 101.1, "last_token_ts": 101.9}]))
    b = read_bench(jl)
    np.testing.assert_allclose(b.arrival, [0.0, 1.0])
    np.testing.assert_allclose(b.ttft, [0.4, 0.1])
    np.testing.assert_allclose(b.e2e, [1.0, 0.9])


@pytest.mark.parametrize(("name", "content", "needle"), [
    ("no_ttfts.json", json.dumps({"input_lens": [1], "output_lens": [2], "itls": [[0.1]]}),
     "ttfts"),
    ("short.json", json.dumps(_vllm_doc(ttfts=[0.1])), "ttfts"),
    ("no_ttft.csv", "arrival,input_tokens,output_tokens,e2e\n0,5,5,1.0\n", "TTFT"),
    ("no_out.csv", "arrival,input_tokens,ttft,e2e\n0,5,0.1,1.0\n", "output tokens"),
    ("bad.csv", "arrival,input_tokens,output_tokens,ttft,e2e\n0,5,x,0.1,1.0\n",
     "output_tokens[row 0]"),
    ("agg.csv", "Metric,avg,p50\nttft,1,1\n", "aggregate"),
    ("genai.json", json.dumps({"experiments": []}), "token counts"),
    ("other.json", json.dumps({"hello": 1}), "not recognised"),
    ("ai.jsonl", json.dumps({"metadata": {}, "metrics": {"request_latency": {
        "value": 1, "unit": "ms"}}, "error": None}), "input_sequence_length"),
])
def test_malformed_files_name_what_is_missing(tmp_path: Path, name: str, content: str,
                                              needle: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ConfigError) as err:
        read_bench(path)
    assert needle in str(err.value) and name in str(err.value)


# --------------------------------------------------------------------------- load models


def test_a_concurrency_cap_is_a_closed_loop_even_with_send_times(tmp_path: Path) -> None:
    path = tmp_path / "vllm.json"
    path.write_text(json.dumps(_vllm_doc(max_concurrency=2)))  # start_times, rate "inf"
    b = read_bench(path)
    assert b.has_arrivals
    wl, table, load = workload_for(b)
    assert wl["arrival"] == {"kind": "closed", "concurrency": 2}
    assert "closed loop of 2 users" in load and "max_concurrency" in load
    np.testing.assert_array_equal(table.num_decode, b.output_tokens)
    # without a cap the send times are replayed; load=replay forces them
    path.write_text(json.dumps(_vllm_doc()))
    wl, table, load = workload_for(read_bench(path))
    assert wl["arrival"] == {"kind": "static"} and load.startswith("replayed")
    np.testing.assert_allclose(table.arrival, [0.0, 1.5])
    wl, table, load = workload_for(b, load="replay")
    assert wl["arrival"] == {"kind": "static"} and "load=replay" in load
    np.testing.assert_allclose(table.arrival, b.arrival)
    # concurrency=N says what the file does not
    wl, _, load = workload_for(read_bench(path), concurrency=3)
    assert wl["arrival"]["concurrency"] == 3 and "concurrency=3" in load


def test_bad_load_settings_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "vllm.json"
    path.write_text(json.dumps(_vllm_doc()))
    b = read_bench(path)
    with pytest.raises(ConfigError, match=r"load='open'.*auto, closed, replay"):
        workload_for(b, load="open")
    for bad in (-1, "4", True):
        with pytest.raises(ConfigError, match="concurrency"):
            workload_for(b, concurrency=bad)
    with pytest.raises(ConfigError, match=r"concurrency=0.*load=closed needs"):
        workload_for(b, load="closed")
    doc = _vllm_doc()
    doc.pop("start_times")
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"load='replay'.*no per-request send times"):
        workload_for(read_bench(path), load="replay")


def test_rate_and_cap_wait_for_a_slot(tmp_path: Path) -> None:
    path = tmp_path / "vllm.json"
    path.write_text(json.dumps(_vllm_doc(request_rate=4.0, max_concurrency=1)))
    b = read_bench(path)
    cfg, table, load = simulation_for(b, model="llama-3-8b", sku="h100-sxm", seed=2)
    a = cfg.workload.arrival
    assert (a.kind, a.rate, a.concurrency, a.catch_up) == ("capped", 4.0, 1, True)
    assert "at most 1 in flight" in load and "Poisson arrivals at 4 req/s" in load
    rec = Simulation(cfg, table).run()
    # one slot: each request is sent at its scheduled time or when the previous completes
    assert rec.arrival[0] == 0.0
    assert rec.arrival[1] == pytest.approx(max(table.arrival[1], rec.completed_at[0]))


def _capped(n: int, concurrency: int, catch_up: bool = True, kind: str = "capped",
            replicas: int = 1, ff: bool = True) -> tuple[SimulationConfig, RequestTable]:
    cfg = SimulationConfig.from_dict({
        "model": "llama-3-8b", "sku": "h100-sxm", "seed": 5, "engine": {"fast_forward": ff},
        "parallel": {"replicas": replicas},
        "scheduler": {"name": "vllm_v1", "max_batch_size": 64},
        "workload": {"num_requests": n,
                     "arrival": {"kind": kind, "rate": 40.0, "concurrency": concurrency,
                                 "catch_up": catch_up},
                     "lengths": {"kind": "uniform", "min_prefill": 64, "max_prefill": 1024,
                                 "min_decode": 16, "max_decode": 256}}})
    rng = np.random.default_rng(7)
    sched = np.cumsum(rng.exponential(1 / 40.0, n))
    table = RequestTable(sched, rng.integers(64, 1024, n), rng.integers(16, 256, n))
    return cfg, table


@pytest.mark.parametrize("replicas", [1, 2])
def test_capped_arrivals_hold_the_cap_and_keep_order(replicas: int) -> None:
    cfg, table = _capped(150, 6, replicas=replicas)
    rec = Simulation(cfg, table).run()
    assert np.isfinite(rec.completed_at).all()
    assert np.all(np.diff(rec.arrival) >= 0) and np.all(rec.arrival >= table.arrival - 1e-12)
    for t in np.unique(rec.arrival):  # just after each send, at most 6 in flight
        assert int(((rec.arrival <= t) & ~(rec.completed_at <= t)).sum()) <= 6
    late = rec.arrival > table.arrival + 1e-12  # a late send happens at a completion
    assert late.any()
    assert np.isin(rec.arrival[late], rec.completed_at).all()
    # overdue requests catch up: some go closer together than scheduled
    assert (np.diff(rec.arrival) < np.diff(table.arrival) - 1e-9).any()
    # no catch-up (aiperf): a wait shifts the rest of the schedule, keeping its gaps
    cfg2, _ = _capped(150, 6, catch_up=False, replicas=replicas)
    rec2 = Simulation(cfg2, table).run()
    assert np.all(np.diff(rec2.arrival) >= np.diff(table.arrival) - 1e-9)
    late = np.diff(rec2.arrival) > np.diff(table.arrival) + 1e-9
    assert late.any() and np.isin(rec2.arrival[1:][late], rec2.completed_at).all()


def test_capped_without_a_binding_cap_is_the_open_loop_bit_for_bit() -> None:
    cfg, table = _capped(120, 1000)
    open_cfg, _ = _capped(120, 1000, kind="poisson")
    a, b = Simulation(cfg, table).run(), Simulation(open_cfg, table).run()
    for name in ("arrival", "first_token_at", "completed_at", "token_time", "batch_end"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("catch_up", [True, False])
def test_fast_forward_changes_nothing_with_capped_arrivals(catch_up: bool) -> None:
    (fast, table), (slow, _) = (_capped(150, 6, catch_up, replicas=2, ff=ff)
                                for ff in (True, False))
    a, b = Simulation(fast, table).run(), Simulation(slow, table).run()
    for name in ("arrival", "first_token_at", "completed_at", "token_time"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_capped_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"workload\.arrival\.catch_up"):
        SimulationConfig.from_dict({"model": "llama-3-8b", "sku": "h100-sxm", "workload": {
            "arrival": {"kind": "capped", "catch_up": "yes"}}})


# --------------------------------------------------------------------------- CLI


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vidur_search.validate", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_validate_cli_end_to_end(tmp_path: Path) -> None:
    rows = ["arrival,input_tokens,output_tokens,ttft_ms,e2e_ms"]
    rows += [f"{0.2 * i},{256 + 32 * i},{16 + i},{30 + i},{200 + 10 * i}" for i in range(12)]
    (tmp_path / "bench.csv").write_text("\n".join(rows) + "\n")
    p = _cli("bench=bench.csv", "model=llama-3-8b", "sku=h100-sxm", "tp=1",
             "scheduler=vllm_0_8", "scheduler.max_batch_size=64", "output.json=cmp.json",
             cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "replayed" in p.stdout and "12 completed" in p.stdout
    for label in ("TTFT ms", "TPOT ms", "E2E ms", "throughput tok/s"):
        assert label in p.stdout
    out = json.loads((tmp_path / "cmp.json").read_text())
    mean_ttft = next(r for r in out["rows"] if r["metric"] == "ttft" and r["stat"] == "mean")
    assert mean_ttft["measured"] == pytest.approx(35.5)
    assert mean_ttft["err_pct"] == pytest.approx(
        (mean_ttft["simulated"] / mean_ttft["measured"] - 1) * 100)
    assert out["config"]["scheduler"]["max_batch_size"] == 64
    assert sorted(x.name for x in tmp_path.iterdir()) == ["bench.csv", "cmp.json"]

    (tmp_path / "bad.csv").write_text("arrival,input_tokens,output_tokens,e2e\n0,5,5,1\n")
    p = _cli("bench=bad.csv", "model=llama-3-8b", "sku=h100-sxm", cwd=tmp_path)
    assert p.returncode == 2 and "TTFT" in p.stderr and "bad.csv" in p.stderr
    p = _cli("bench=bench.csv", "sku=h100-sxm", cwd=tmp_path)
    assert p.returncode == 2 and "model" in p.stderr
    p = _cli("bench=bench.csv", "model=llama-3-8b", "sku=h100-sxm", "load=open", cwd=tmp_path)
    assert p.returncode == 2 and "load='open'" in p.stderr and "auto, closed, replay" in p.stderr
    p = _cli("bench=bench.csv", "model=llama-3-8b", "sku=h100-sxm", "load=closed",
             "concurrency=4", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "closed loop of 4 users" in p.stdout and "load=closed" in p.stdout


def test_compare_errors_are_signed_against_the_measurement() -> None:
    m = RunMetrics(np.array([1.0, 3.0]), np.array([0.1, 0.1]), np.array([2.0, 4.0]), 10.0, 2)
    s = RunMetrics(np.array([1.5, 3.0]), np.array([0.05, 0.1]), np.array([2.0, 6.0]), 8.0, 2)
    t = compare(m, s).set_index(["metric", "stat"])
    assert t.loc[("ttft", "mean"), "err_pct"] == pytest.approx(12.5)
    assert t.loc[("tpot", "p50"), "err_pct"] == pytest.approx(-25.0)
    assert t.loc[("e2e", "mean"), "request_abs_err_p50"] == pytest.approx(25.0)
    assert t.loc[("throughput", "output_tok_s"), "err_pct"] == pytest.approx(-20.0)


# --------------------------------------------------------------------------- importer


def test_importer_maps_a_small_tree(tmp_path: Path) -> None:
    """dense (qk_norm into rope, layernorm twice, final norm left out), attention (decode
    kv_len = cached + 1, mixed rows their own family), MoE rows at min(experts, tokens x
    top_k)."""
    src = tmp_path / "perf" / "RTXPRO6000" / "Qwen" / "Qwen3-30B-A3B" / "bf16"
    (src / "tp1").mkdir(parents=True)
    (src / "meta.yaml").write_text("tp_degrees: [1]\nmeasurement_iterations: 3\n"
                                   "profiled_at: '2026-04-24T12:44:06+00:00'\n")
    dense = [(layer, t, 1.0 + t) for layer in ("embedding", "layernorm", "qkv_proj", "qk_norm",
                                               "rotary_emb", "o_proj", "final_layernorm")
             for t in (1, 2, 4)]
    pd.DataFrame(dense, columns=["layer", "tokens", "time_us"]).to_csv(src / "tp1/dense.csv",
                                                                       index=False)
    pd.DataFrame([("lm_head", 1, 5.0), ("sampler", 1, 2.0)],
                 columns=["layer", "sequences", "time_us"]).to_csv(
        src / "tp1/per_sequence.csv", index=False)
    pd.DataFrame([(16, 0, 0, 0, 3.0), (0, 0, 4, 15, 4.0), (16, 0, 4, 15, 9.0)],
                 columns=["prefill_chunk", "kv_prefill", "n_decode", "kv_decode",
                          "time_us"]).to_csv(src / "tp1/attention.csv", index=False)
    pd.DataFrame([(1, 8, 50.0), (2, 8, 56.0), (2, 16, 130.0), (32, 128, 800.0),
                  (32, 64, 400.0)], columns=["tokens", "activated_experts", "time_us"]).to_csv(
        src / "tp1/moe.csv", index=False)
    dest = tmp_path / "store"
    written = import_llmservingsim(tmp_path / "perf", dest)
    assert len(written) == 5
    store = ProfileStore(dest)
    ops, meta = store.load("rtx-pro-6000", "qwen3-30b-a3b", 1, "layer_ops")
    assert meta.origin.startswith("llmservingsim:") and meta.date == "2026-04-24"
    counts = ops["op"].value_counts().to_dict()
    assert counts == {"embedding": 3, "input_norm": 3, "post_norm": 3, "qkv_proj": 3,
                      "rope": 3, "o_proj": 3, "lm_head": 1, "moe_experts": 3}
    rope = ops[(ops["op"] == "rope") & (ops["num_tokens"] == 2)]
    assert rope["mean_us"].iloc[0] == pytest.approx(6.0)  # rotary 3.0 + qk_norm 3.0
    moe = ops[ops["op"] == "moe_experts"].sort_values("num_tokens")
    assert moe["activated_experts"].tolist() == [8, 16, 128]
    assert moe["mean_us"].tolist() == [50.0, 130.0, 800.0] and set(moe["count"]) == {3}
    dec, _ = store.load("rtx-pro-6000", "qwen3-30b-a3b", 1, "attention_decode")
    assert dec[["batch_size", "kv_len", "mean_us"]].values.tolist() == [[4, 16, 4.0]]
    pre, _ = store.load("rtx-pro-6000", "qwen3-30b-a3b", 1, "attention_prefill")
    assert pre[["chunk_tokens", "prior_kv", "mean_us"]].values.tolist() == [[16, 0, 3.0]]
    mix, _ = store.load("rtx-pro-6000", "qwen3-30b-a3b", 1, "attention_mixed")
    assert mix[["chunk_tokens", "prior_kv", "batch_size", "kv_len", "mean_us"]
               ].values.tolist() == [[16, 0, 4, 16, 9.0]]
    cpu, _ = store.load("rtx-pro-6000", "qwen3-30b-a3b", 1, "cpu_overhead")
    assert cpu[["op", "batch_size", "mean_us"]].values.tolist() == [["sampling", 1, 2.0]]


def test_importer_on_the_reference(reference_dir: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    src = reference_dir / "llmservingsim"
    assert import_main([str(src), str(tmp_path)]) == 0
    entries = ProfileStore(tmp_path).entries()
    assert "35 files" in capsys.readouterr().out and len(entries) == 35
    tp_dirs = sorted(src.glob("profiles/*/*/*/bf16/tp*"))
    assert len(tp_dirs) == 7 and len(entries) == 5 * len(tp_dirs)
    tp1 = src / "profiles/RTX4090/meta-llama/Llama-3.1-8B/bf16/tp1"
    dense = pd.read_csv(tp1 / "dense.csv")
    per_seq = pd.read_csv(tp1 / "per_sequence.csv")
    attn = pd.read_csv(tp1 / "attention.csv")
    store = ProfileStore(tmp_path)
    ops, _ = store.load("rtx-4090", "llama-3.1-8b", 1, "layer_ops")
    n_layers = dense["layer"].value_counts()
    # layernorm twice, final_layernorm not mapped, plus one lm_head row per sequence count
    assert len(ops) == len(dense) + n_layers["layernorm"] - n_layers["final_layernorm"] \
        + (per_seq["layer"] == "lm_head").sum()
    dec, _ = store.load("rtx-4090", "llama-3.1-8b", 1, "attention_decode")
    assert len(dec) == ((attn["prefill_chunk"] == 0) & (attn["n_decode"] > 0)).sum()
    # a value round trip: the CSV's microseconds at one shape
    row = dense[(dense["layer"] == "gate_up_proj") & (dense["tokens"] == 512)].iloc[0]
    got = ops[(ops["op"] == "gate_up_proj") & (ops["num_tokens"] == 512)]
    assert got["mean_us"].iloc[0] == row["time_us"] and got["n"].iloc[0] == 2 * 14336
    arow = attn[(attn["prefill_chunk"] == 0) & (attn["n_decode"] == 32)].iloc[3]
    got = dec[(dec["batch_size"] == 32) & (dec["kv_len"] == arow["kv_decode"] + 1)]
    assert got["mean_us"].iloc[0] == arow["time_us"]
    mixed, _ = store.load("rtx-4090", "llama-3.1-8b", 1, "attention_mixed")
    both = (attn["prefill_chunk"] > 0) & (attn["n_decode"] > 0)
    assert len(mixed) == both.sum()
    mrow = attn[both].iloc[100]
    got = mixed[(mixed["chunk_tokens"] == mrow["prefill_chunk"])
                & (mixed["prior_kv"] == mrow["kv_prefill"])
                & (mixed["batch_size"] == mrow["n_decode"])
                & (mixed["kv_len"] == mrow["kv_decode"] + 1)]
    assert got["mean_us"].iloc[0] == mrow["time_us"]


def test_mixed_batches_cost_the_measured_mixed_call(reference_dir: Path,
                                                     tmp_path: Path) -> None:
    """vLLM runs a mixed batch as one attention call, in which decodes cost more than in a
    decode-only call: the profiled model prices it within a few % of the measured call."""
    from simulator.catalogue import load_catalogue
    from simulator.execution.profiled import ProfiledModel, ProfiledParams

    src = reference_dir / "llmservingsim"
    import_llmservingsim(src, tmp_path / "store")
    cat = load_catalogue()
    spec, sku = cat.model("llama-3.1-8b"), cat.sku("rtx-pro-6000")
    params = ProfiledParams(store=(str(tmp_path / "store"),), fallback="calibrated",
                            cache_dir=str(tmp_path / "cache"))
    pm = ProfiledModel(spec, sku, cat.node("rtx-pro-6000-pcie"), 1, 1, params, max_batch=128,
                       max_tokens=16384)
    assert "attention_mixed" in pm.sources
    attn = pd.read_csv(src / "profiles/RTXPRO6000/meta-llama/Llama-3.1-8B/bf16/tp1/"
                       "attention.csv").set_index(["prefill_chunk", "kv_prefill", "n_decode",
                                                    "kv_decode"])["time_us"]
    errs, gain = [], []
    for c in (256, 1024, 2048):
        for p in (0, 1024, 8192):  # the chunk's prior context changes the call too
            for n in (8, 32, 128):
                for kv in (512, 2048):
                    parts = pm.breakdown([c], [p], [kv + 1] * n)[0]
                    sim = (parts["attention_prefill"] + parts["attention_decode"]) / 32 * 1e6
                    errs.append(abs(sim / attn[(c, p, n, kv)] - 1))
                    alone = pm._decode_attn(n, n * (kv + 1))  # as in a decode-only batch
                    gain.append(parts["attention_decode"] / 32 / alone)
    assert np.median(errs) < 0.03 and max(errs) < 0.1, sorted(errs)[-5:]
    # the decodes cost more than in a decode-only call (their share is the whole call's
    # fit less the chunk's, so a few decodes beside a long chunk are within its error)
    assert np.median(gain) > 1.2 and min(gain) > 0.5, sorted(gain)
    # a lookup outside the measured mixed range counts once per batch, under one name;
    # one chunk's prior context beyond the measured ones counts though the mean is inside
    for chunks, priors, decodes in (([4096], [0], 5), ([16, 2000], [100000, 0], 8)):
        pm.out_of_range.clear()
        pm.stage_times(chunks, priors, [1000] * decodes)
        assert pm.out_of_range["attention_mixed"] == 1, (chunks, dict(pm.out_of_range))
    pm.out_of_range.clear()
    pm.stage_times([512], [0], [1000] * 8)
    assert pm.out_of_range["attention_mixed"] == 0
    # several chunks: priced at their tokens and token-weighted mean prior context
    two = pm.breakdown([512, 512], [0, 2048], [1025] * 16)[0]["attention_decode"]
    one = pm.breakdown([1024], [1024], [1025] * 16)[0]["attention_decode"]
    assert two == pytest.approx(one, rel=1e-12)
    # between the grid's prior contexts the share is interpolated, not held
    a, b = (pm.breakdown([1024], [q], [2049] * 32)[0]["attention_decode"] for q in (1024, 4096))
    mid = pm.breakdown([1024], [2048], [2049] * 32)[0]["attention_decode"]
    assert min(a, b) <= mid <= max(a, b) and a != b


def test_an_fp8_kv_cache_keeps_the_measured_mixed_call(reference_dir: Path,
                                                       tmp_path: Path) -> None:
    """With bf16 tables only, an FP8 KV cache still prices a mixed batch's decodes from
    the measured mixed call (carried to fp8 as the decode-only table is), not as
    decode-only calls."""
    from simulator.catalogue import load_catalogue
    from simulator.execution.profiled import ProfiledModel, ProfiledParams
    from simulator.precision import Precision

    import_llmservingsim(reference_dir / "llmservingsim", tmp_path / "store")
    cat = load_catalogue()
    args = (cat.model("llama-3.1-8b"), cat.sku("rtx-pro-6000"), cat.node("rtx-pro-6000-pcie"),
            1, 1, ProfiledParams(store=(str(tmp_path / "store"),), fallback="calibrated",
                                 cache_dir=str(tmp_path / "cache")))
    bf = ProfiledModel(*args, max_batch=128, max_tokens=16384)
    f8 = ProfiledModel(*args, max_batch=128, max_tokens=16384,
                       precision=Precision(kv_cache="fp8"))
    assert "fp8 / bf16 KV ratio" in f8.sources["attention_mixed"]
    scaled, gain = [], []
    for c in (256, 1024, 2048):
        for n in (8, 32, 128):
            for kv in (512, 2048, 8192):
                ctx = [kv + 1] * n
                m16, m8 = (pm.breakdown([c], [0], ctx)[0]["attention_decode"] for pm in (bf, f8))
                a16, a8 = (pm._decode_attn(n, n * (kv + 1)) * 32 for pm in (bf, f8))
                scaled.append((m8 / m16) / (a8 / a16))
                gain.append(m8 / a8)
    assert a8 < a16  # fp8 KV reads are cheaper
    assert max(abs(x - 1) for x in scaled) < 0.03, sorted(scaled)
    assert np.median(gain) > 1.2, sorted(gain)  # still the mixed call, not decode-only


# --------------------------------------------------------------------------- run.py


def test_serving_case_mirrors_the_run(reference_dir: Path, tmp_path: Path) -> None:
    run = _run_module()
    lss = reference_dir / "llmservingsim"
    case = run.serving_case(lss / "runs/RTX4090/Llama-3.1-8B", lss, tmp_path,
                            cache_dir=str(tmp_path / "cache"))
    cfg = case.config
    assert (cfg.model, cfg.sku, cfg.parallel.tensor_parallel) == ("llama-3.1-8b", "rtx-4090", 1)
    assert (cfg.scheduler.name, cfg.scheduler.max_batch_size, cfg.scheduler.chunk_size) == \
        ("vllm_v1_async", 256, 2048)  # the vllm_0_19 preset with the run's flags
    assert cfg.kv_capacity().num_tokens == 41408  # the capacity the run reports
    raw = [json.loads(x) for x in (lss / "runs/RTX4090/Llama-3.1-8B/requests.jsonl")
           .read_text().splitlines()]
    queued = np.array([r["queued_ts"] for r in raw])
    np.testing.assert_allclose(case.requests.arrival, np.sort(queued) - queued.min())
    assert case.requests.num_decode.sum() == sum(r["output_toks"] for r in raw)

    ep = run.serving_case(lss / "runs/RTXPRO6000/Qwen3-30B-A3B-Instruct-2507", lss, tmp_path,
                          cache_dir=str(tmp_path / "cache"))
    par = ep.config.parallel
    assert (par.replicas, par.tensor_parallel, par.expert_parallel) == (2, 1, 2)
    assert ep.config.model == "qwen3-30b-a3b" and ep.config.model_spec.num_experts == 128

    pro = run.serving_case(lss / "runs/RTXPRO6000/Llama-3.1-8B", lss, tmp_path,
                           cache_dir=str(tmp_path / "cache"))
    result = run.run_serving(pro)
    assert result.simulated.completed == 300
    errors = result.mean_errors()
    assert all(math.isfinite(v) for v in errors.values())
    assert abs(errors["tpot"]) < 25, errors


def test_splitwise_case_prices_the_measured_batches(reference_dir: Path) -> None:
    run = _run_module()
    groups = run.splitwise_groups(reference_dir / "splitwise" / "perf_model.csv")
    assert sorted(groups) == [(s, tp) for s in ("a100-80gb", "h100-sxm") for tp in (2, 4, 8)]
    rows = groups[("h100-sxm", 8)]
    assert len(rows) == 19
    model = run.CalibratedModel(*run._specs("h100-sxm"), 8, 1)
    case = run.splitwise_case("h100-sxm", 8, rows, model, "calibrated")
    np.testing.assert_allclose(case.measured.ttft, rows["prompt_time"] / 1e3)
    i = int(np.flatnonzero((rows["batch_size"] == 4).to_numpy())[0])
    assert case.simulated.ttft[i] == pytest.approx(sum(model.stage_times([512] * 4, [0] * 4, [])))
    line = run.summary_line([case])
    assert line.startswith("validation cases=1 median_ttft_err=")
