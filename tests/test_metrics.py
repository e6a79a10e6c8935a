"""Metrics and outputs on small hand-built SimulationRecords with known answers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator.metrics import (
    batch_frame,
    format_summary,
    replica_frame,
    request_frame,
    summarize,
    tbt_values,
    token_frame,
    write_chrome_trace,
    write_outputs,
)
from simulator.records import SimulationRecords

NAN = math.nan


def make_records() -> SimulationRecords:
    """4 requests on 2 replicas with pp=2 (dyadic times, so arithmetic is exact).

    Request 0 (replica 0): arrives 0, scheduled 0.125, tokens 0.5, 0.75, 1.25.
    Request 1 (replica 0): arrives 0.25, scheduled 0.25, tokens 0.75, 1.0; one preemption.
    Request 2 (replica 1): arrives 0.5, scheduled 0.5, a single token at 1.5.
    Request 3: rejected before routing ("prompt too long").
    Replica 0 batches 0 and 1 overlap (pipeline), so their union is shorter than the sum.
    """
    stage_start = np.array([[0.25, 0.5], [0.5, 0.75], [1.0, 1.125], [0.5, 1.0]])
    stage_end = np.array([[0.5, 0.75], [0.75, 1.0], [1.125, 1.25], [1.0, 1.5]])
    return SimulationRecords(
        arrival=np.array([0.0, 0.25, 0.5, 0.75]),
        num_prefill=np.array([10, 5, 8, 100_000]),
        num_decode=np.array([3, 2, 1, 4]),
        replica=np.array([0, 0, 1, -1]),
        scheduled_at=np.array([0.125, 0.25, 0.5, NAN]),
        first_token_at=np.array([0.5, 0.75, 1.5, NAN]),
        completed_at=np.array([1.25, 1.0, 1.5, NAN]),
        preemptions=np.array([0, 1, 0, 0]),
        reject_reason=np.array(["", "", "", "prompt too long"], dtype=object),
        # emission order interleaves requests 0 and 1
        token_request=np.array([0, 0, 1, 1, 0, 2]),
        token_time=np.array([0.5, 0.75, 0.75, 1.0, 1.25, 1.5]),
        batch_replica=np.array([0, 0, 0, 1]),
        batch_start=stage_start[:, 0].copy(),
        batch_end=stage_end[:, -1].copy(),
        batch_num_prefills=np.array([2, 0, 0, 1]),
        batch_prefill_tokens=np.array([15, 0, 0, 8]),
        batch_num_decodes=np.array([0, 2, 1, 0]),
        batch_kv_blocks_used=np.array([4, 5, 5, 2]),
        batch_stage_start=stage_start,
        batch_stage_end=stage_end,
        replica_kv_blocks=np.array([10, 8]),
        num_stages=2,
        gpus_per_replica=2,
        peak_flops_per_gpu=1e12,
        active_params=1_000_000_000,
        block_size=16,
        sim_end=1.5,
        wall_s=0.5,
        events=40,
        config={"model": "toy", "parallel": {"pipeline_parallel": 2}, "x": NAN},
    )


def random_records(seed: int = 0, n: int = 200, replicas: int = 3) -> SimulationRecords:
    """A larger random (not physically consistent) record for vectorisation checks."""
    rng = np.random.default_rng(seed)
    num_decode = rng.integers(1, 20, n)
    arrival = np.sort(rng.uniform(0, 10, n))
    tok_req = np.repeat(np.arange(n), num_decode)
    tok_time = np.repeat(arrival, num_decode) + rng.uniform(0.01, 5, len(tok_req))
    shuffle = rng.permutation(len(tok_req))
    tok_req, tok_time = tok_req[shuffle], tok_time[shuffle]
    first = np.full(n, np.inf)
    last = np.full(n, -np.inf)
    np.minimum.at(first, tok_req, tok_time)
    np.maximum.at(last, tok_req, tok_time)
    nb = 500
    start = rng.uniform(0, 15, nb)
    end = start + rng.exponential(0.5, nb)
    return SimulationRecords(
        arrival=arrival,
        num_prefill=rng.integers(1, 100, n),
        num_decode=num_decode,
        replica=rng.integers(0, replicas, n),
        scheduled_at=arrival + 0.001,
        first_token_at=first,
        completed_at=last,
        preemptions=np.zeros(n, dtype=np.int64),
        reject_reason=np.array([""] * n, dtype=object),
        token_request=tok_req,
        token_time=tok_time,
        batch_replica=rng.integers(0, replicas, nb),
        batch_start=start,
        batch_end=end,
        batch_num_prefills=rng.integers(0, 3, nb),
        batch_prefill_tokens=rng.integers(0, 300, nb),
        batch_num_decodes=rng.integers(0, 30, nb),
        batch_kv_blocks_used=rng.integers(0, 100, nb),
        batch_stage_start=start[:, None],
        batch_stage_end=end[:, None],
        replica_kv_blocks=np.full(replicas, 100),
        num_stages=1,
        gpus_per_replica=1,
        peak_flops_per_gpu=1e12,
        active_params=10**9,
        block_size=16,
        sim_end=float(end.max()),
    )


def test_request_frame_exact_values() -> None:
    df = request_frame(make_records())
    assert df["request_id"].tolist() == [0, 1, 2, 3]
    assert df["ttft"].tolist()[:3] == [0.5, 0.5, 1.0]
    assert df["e2e"].tolist()[:3] == [1.25, 0.75, 1.0]
    assert df["scheduling_delay"].tolist()[:3] == [0.125, 0.0, 0.0]
    assert df["tpot"].tolist()[:2] == [0.375, 0.25]
    assert np.isnan(df["tpot"][2])  # one output token: TPOT undefined
    assert df["normalized_e2e"].tolist()[:3] == pytest.approx([1.25 / 3, 0.375, 1.0])
    assert df["max_tbt"].tolist()[:2] == [0.5, 0.25]
    assert df["max_tbt"][2:].isna().all()
    assert df["rejected"].tolist() == [False, False, False, True]
    assert df["reject_reason"].tolist() == ["", "", "", "prompt too long"]
    assert df.loc[3, ["ttft", "e2e", "tpot"]].isna().all()


def test_tbt_is_per_request_gap_not_batch_duration() -> None:
    rec = make_records()
    tbt = tbt_values(rec)
    # request 0: 0.25, 0.5; request 1: 0.25 (request 2 has one token)
    assert sorted(tbt.tolist()) == [0.25, 0.25, 0.5]
    assert tbt.tolist() == [0.25, 0.5, 0.25]  # grouped by request, time order within
    durations = batch_frame(rec)["duration"].tolist()
    assert sorted(durations) != sorted(tbt.tolist())
    # consecutive emissions 0.75 (req 0) -> 0.75 (req 1) would be a 0-gap if mixed up
    assert 0.0 not in tbt.tolist()


def test_tbt_matches_naive_per_request_loop() -> None:
    rec = random_records()
    expected = []
    for rid in range(len(rec.arrival)):
        t = np.sort(rec.token_time[rec.token_request == rid])
        expected.extend(np.diff(t).tolist())
    assert tbt_values(rec) == pytest.approx(np.array(expected))
    # the engine's already-sorted log takes the no-sort fast path: same answer
    order = np.lexsort((rec.token_time, rec.token_request))
    rec_sorted = SimulationRecords(
        **{
            **vars(rec),
            "token_request": rec.token_request[order],
            "token_time": rec.token_time[order],
        }
    )
    np.testing.assert_array_equal(tbt_values(rec_sorted), tbt_values(rec))
    df = request_frame(rec)
    for rid in range(0, len(rec.arrival), 17):
        t = np.sort(rec.token_time[rec.token_request == rid])
        want = np.diff(t).max() if len(t) > 1 else np.nan
        assert df["max_tbt"][rid] == pytest.approx(want, nan_ok=True)


def test_summary_quantiles_match_numpy() -> None:
    rec = random_records(seed=3)
    s = summarize(rec)
    df = request_frame(rec)
    for key in ("ttft", "e2e", "tpot", "normalized_e2e", "scheduling_delay"):
        v = df[key].dropna().to_numpy()
        assert s[key]["mean"] == pytest.approx(v.mean())
        assert s[key]["max"] == pytest.approx(v.max())
        for p in (50, 90, 95, 99):
            assert s[key][f"p{p}"] == pytest.approx(np.percentile(v, p))
    gaps = tbt_values(rec)
    assert s["tbt"]["p99"] == pytest.approx(np.percentile(gaps, 99))
    assert s["tbt"]["mean"] == pytest.approx(gaps.mean())


def test_summary_excludes_rejected_and_counts_them() -> None:
    s = summarize(make_records())
    assert s["counts"] == {
        "requests": 4,
        "warmup_excluded": 0,
        "completed": 3,
        "rejected": 1,
        "preemptions": 1,
        "batches": 4,
    }
    assert s["reject_reasons"] == {"prompt too long": 1}
    assert s["ttft"]["mean"] == pytest.approx(2.0 / 3)
    assert s["ttft"]["max"] == 1.0
    assert s["e2e"]["p50"] == 1.0
    assert s["tpot"]["mean"] == pytest.approx(0.3125)  # NaN TPOT of request 2 dropped
    assert s["tbt"]["max"] == 0.5
    tp = s["throughput"]
    assert tp["span_s"] == 1.5
    assert tp["requests_per_s"] == pytest.approx(3 / 1.5)
    assert tp["output_tokens_per_s"] == pytest.approx(6 / 1.5)
    assert tp["total_tokens_per_s"] == pytest.approx((6 + 23) / 1.5)
    # 26 tokens processed * 2 * 1e9 FLOPs over 1.5 s * 4 GPUs * 1e12 FLOP/s
    assert s["mfu"] == pytest.approx(26 * 2e9 / (1.5 * 4 * 1e12))
    assert s["batch"]["size_mean"] == pytest.approx(1.5)
    assert s["batch"]["num_tokens_mean"] == pytest.approx(26 / 4)
    assert s["sim_end"] == 1.5
    assert s["simulator"] == {"wall_s": 0.5, "events": 40, "requests_per_wall_s": 8.0}
    text = format_summary(s)
    assert "TTFT" in text and "rejected" in text and "MFU" in text


def test_batch_frame_and_kv_utilization() -> None:
    b = batch_frame(make_records())
    assert b["batch_size"].tolist() == [2, 2, 1, 1]
    assert b["num_tokens"].tolist() == [15, 2, 1, 8]
    assert b["duration"].tolist() == [0.5, 0.5, 0.25, 1.0]
    assert b["kv_utilization"].tolist() == [0.4, 0.5, 0.5, 0.25]
    s = summarize(make_records())
    weighted = (0.4 * 0.5 + 0.5 * 0.5 + 0.5 * 0.25 + 0.25 * 1.0) / 2.25
    assert s["kv_utilization"]["mean"] == pytest.approx(weighted)
    assert s["kv_utilization"]["peak"] == 0.5


def test_replica_frame_busy_union_and_kv() -> None:
    r = replica_frame(make_records())
    # replica 0: [0.25, 0.75] U [0.5, 1.0] U [1.0, 1.25] = 1.0 (sum of durations 1.25)
    assert r["busy_time"].tolist() == [1.0, 1.0]
    assert r["utilization"].tolist() == pytest.approx([1.0 / 1.5, 1.0 / 1.5])
    assert r["requests"].tolist() == [2, 1]
    assert r["completed"].tolist() == [2, 1]
    assert r["batches"].tolist() == [3, 1]
    assert r["tokens"].tolist() == [18, 8]
    assert r["kv_utilization_mean"].tolist() == pytest.approx([0.575 / 1.25, 0.25])
    assert r["kv_utilization_peak"].tolist() == [0.5, 0.25]
    assert r["mfu"].mean() == pytest.approx(summarize(make_records())["mfu"])


def test_busy_union_matches_brute_force() -> None:
    rec = random_records(seed=5)
    r = replica_frame(rec)
    grid = np.linspace(0, rec.sim_end, 200_001)
    step = grid[1] - grid[0]
    for rep in range(3):
        m = rec.batch_replica == rep
        s, e = rec.batch_start[m], rec.batch_end[m]
        mid = (grid[:-1] + grid[1:]) / 2
        covered = ((mid[:, None] >= s) & (mid[:, None] < e)).any(axis=1)
        assert r["busy_time"][rep] == pytest.approx(covered.sum() * step, abs=1e-3)
        assert r["busy_time"][rep] <= (e - s).sum()


def test_summary_json_roundtrip_without_nan() -> None:
    s = summarize(make_records())
    text = json.dumps(s, allow_nan=False)
    assert json.loads(text) == s


def test_empty_records_summarize() -> None:
    rec = make_records()
    empty = SimulationRecords(
        arrival=np.zeros(0),
        num_prefill=np.zeros(0, np.int64),
        num_decode=np.zeros(0, np.int64),
        replica=np.zeros(0, np.int64),
        scheduled_at=np.zeros(0),
        first_token_at=np.zeros(0),
        completed_at=np.zeros(0),
        preemptions=np.zeros(0, np.int64),
        reject_reason=np.zeros(0, dtype=object),
        token_request=np.zeros(0, np.int64),
        token_time=np.zeros(0),
        batch_replica=np.zeros(0, np.int64),
        batch_start=np.zeros(0),
        batch_end=np.zeros(0),
        batch_num_prefills=np.zeros(0, np.int64),
        batch_prefill_tokens=np.zeros(0, np.int64),
        batch_num_decodes=np.zeros(0, np.int64),
        batch_kv_blocks_used=np.zeros(0, np.int64),
        batch_stage_start=np.zeros((0, 2)),
        batch_stage_end=np.zeros((0, 2)),
        replica_kv_blocks=rec.replica_kv_blocks,
        num_stages=2,
        gpus_per_replica=1,
        peak_flops_per_gpu=1e12,
        active_params=1,
        block_size=16,
        sim_end=0.0,
    )
    s = summarize(empty)
    json.dumps(s, allow_nan=False)
    assert s["counts"]["requests"] == 0 and s["ttft"]["p90"] is None and s["mfu"] is None
    assert len(replica_frame(empty)) == 2
    format_summary(s)


def test_write_outputs_roundtrip_and_atomic(tmp_path: Path) -> None:
    rec = make_records()
    out = tmp_path / "run"
    paths = write_outputs(rec, out, chrome_trace=True, token_table=True)
    assert set(paths) == {"requests", "batches", "replicas", "summary", "tokens", "trace"}
    assert {p.name for p in out.iterdir()} == {
        "requests.parquet",
        "batches.parquet",
        "replicas.parquet",
        "summary.json",
        "tokens.parquet",
        "trace.json",
    }  # no temp files left behind
    for name, frame in (
        ("requests", request_frame(rec)),
        ("batches", batch_frame(rec)),
        ("replicas", replica_frame(rec)),
        ("tokens", token_frame(rec)),
    ):
        pd.testing.assert_frame_equal(pd.read_parquet(paths[name]), frame)
    tokens = pd.read_parquet(paths["tokens"])
    assert tokens["token_index"].tolist() == [0, 1, 2, 0, 1, 0]
    assert tokens["request_id"].tolist() == [0, 0, 0, 1, 1, 2]
    summary = json.loads(paths["summary"].read_text())
    assert summary["config"] == {"model": "toy", "parallel": {"pipeline_parallel": 2}, "x": None}
    assert summary["ttft"] == summarize(rec)["ttft"]
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(paths["requests"]).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_write_is_atomic_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = make_records()
    write_outputs(rec, tmp_path)
    before = (tmp_path / "summary.json").read_text()

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("crash mid-write")

    monkeypatch.setattr("simulator.metrics.outputs.json.dump", boom)
    with pytest.raises(RuntimeError):
        write_outputs(rec, tmp_path)
    assert (tmp_path / "summary.json").read_text() == before  # old file intact
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_chrome_trace(tmp_path: Path) -> None:
    rec = make_records()
    path = write_chrome_trace(rec, tmp_path / "trace.json")
    trace = json.loads(path.read_text())
    events = trace["traceEvents"]
    x = [e for e in events if e["ph"] == "X"]
    assert len(x) == 4 * 2  # one per batch per stage
    assert {(e["args"]["batch_id"], e["tid"]) for e in x} == {
        (b, s) for b in range(4) for s in (0, 1)
    }
    first = next(e for e in x if e["args"]["batch_id"] == 0 and e["tid"] == 1)
    assert first["pid"] == 0
    assert first["ts"] == pytest.approx(0.5e6) and first["dur"] == pytest.approx(0.25e6)
    assert first["args"]["prefill_tokens"] == 15 and first["args"]["decodes"] == 0
    procs = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert procs == {0: "replica 0", 1: "replica 1"}
    threads = {
        (e["pid"], e["tid"]): e["args"]["name"] for e in events if e["name"] == "thread_name"
    }
    assert threads == {(r, s): f"stage {s}" for r in (0, 1) for s in (0, 1)}
    assert [p.name for p in tmp_path.iterdir()] == ["trace.json"]
