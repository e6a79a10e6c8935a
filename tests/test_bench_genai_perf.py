"""genai-perf's per-request export (``profile_export.json``) as a validate benchmark.

The files are written as perf_analyzer's ProfileDataExporter writes them (compact JSON:
``experiments[].{experiment: {mode, value}, requests, window_boundaries}``, ``version``,
``service_kind``, ``endpoint``; per request ``timestamp``, ``request_inputs``,
``response_timestamps`` in ns and ``response_outputs``), with the server-sent events a
vLLM OpenAI server streams, and genai-perf's summary ``<stem>_genai_perf.json``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simulator.errors import ConfigError
from vidur_search.bench_formats import FORMATS, read_bench
from vidur_search.validate import workload_for

ROOT = Path(__file__).resolve().parents[1]
T0 = 1_745_526_100_000_000_000  # ns since the epoch, as perf_analyzer writes them
MS = 1_000_000


def _dump(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))  # rapidjson's Writer: no whitespace


def _sse(obj: Any) -> str:
    return "data: " + (obj if isinstance(obj, str) else _dump(obj)) + "\n\n"


def _chunk(delta: dict | None = None, finish: str | None = None, usage: dict | None = None,
           completions: bool = False) -> dict:
    """One chunk of a vLLM OpenAI stream (chat, or legacy completions)."""
    body: dict[str, Any] = {"id": "cmpl-1", "created": 1, "model": "m"}
    if usage is not None:  # stream_options.include_usage: a last chunk without choices
        return {**body, "object": "chat.completion.chunk", "choices": [], "usage": usage}
    if completions:
        return {**body, "object": "text_completion", "choices": [
            {"index": 0, "text": (delta or {}).get("content", ""), "logprobs": None,
             "finish_reason": finish}]}
    return {**body, "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}]}


def _request(start_ms: float, ttft_ms: float, pieces: list[str], gap_ms: float = 10.0,
             usage: dict | None = None, stream: bool = True, completions: bool = False,
             error: bool = False) -> dict:
    """A streamed request: a role-only chunk just before the first token, one chunk per
    piece, an empty finishing chunk, the usage chunk (when given) and [DONE]."""
    start = T0 + int(start_ms * MS)
    payload = {"messages": [{"role": "user", "content": "some prompt"}], "model": "m",
               "stream": stream}
    if completions:
        payload = {"model": "m", "prompt": ["some prompt"], "stream": stream}
    if usage is not None:
        payload["stream_options"] = {"include_usage": True}
    events: list[tuple[float, str]] = []
    if not completions:
        events.append((ttft_ms - 1, _sse(_chunk({"role": "assistant", "content": ""}))))
    for k, piece in enumerate(pieces):
        events.append((ttft_ms + k * gap_ms,
                       _sse(_chunk({"content": piece}, completions=completions))))
    end = ttft_ms + (len(pieces) - 1) * gap_ms
    if error:
        events.append((end + 1, 'event: error\ndata: {"error":{"message":"boom"}}\n\n'))
    events.append((end + 1, _sse(_chunk({"content": ""}, "stop", completions=completions))))
    if usage is not None:
        events.append((end + 2, _sse(_chunk(usage=usage))))
    events.append((end + 3, _sse("[DONE]")))
    return {"timestamp": start, "request_inputs": {"payload": _dump(payload)},
            "response_timestamps": [start + int(t * MS) for t, _ in events],
            "response_outputs": [{"response": text} for _, text in events]}


def _export(requests: list[dict], mode: str = "concurrency", value: float = 2,
            service_kind: str = "openai", endpoint: str = "v1/chat/completions") -> dict:
    return {"experiments": [{"experiment": {"mode": mode, "value": value},
                             "requests": requests,
                             "window_boundaries": [T0, T0 + 10_000 * MS]}],
            "version": "2.0.0", "service_kind": service_kind, "endpoint": endpoint}


def _write(tmp_path: Path, doc: dict, name: str = "profile_export.json",
           summary: dict | None = None) -> Path:
    path = tmp_path / name
    path.write_text(_dump(doc))
    if summary is not None:
        (tmp_path / f"{path.stem}_genai_perf.json").write_text(json.dumps(summary, indent=2))
    return path


def _isl(lo: int, hi: int) -> dict:
    """genai-perf's summary: per-metric statistics and the run's input_config (flags)."""
    return {"request_latency": {"unit": "ms", "avg": 90.0},
            "input_sequence_length": {"unit": "tokens", "avg": (lo + hi) / 2, "min": lo,
                                      "max": hi, "std": 0.0},
            "input_config": {"synthetic_input_tokens_mean": lo,
                             "synthetic_input_tokens_stddev": 0 if lo == hi else 5,
                             "prompt_source": "synthetic", "concurrency": 2}}


def _message(err: pytest.ExceptionInfo) -> str:
    return str(err.value)


# --------------------------------------------------------------------------- reading


def test_streamed_chat_export_times_tokens_and_closed_loop(tmp_path: Path) -> None:
    reqs = [_request(50, 40, ["I", " like", " dogs"]),  # sent second
            _request(0, 20, ["Hi", "!", " there", " you"], gap_ms=5),  # sent first
            _request(60, 30, ["x", "y"], error=True),  # an error event: left out
            _request(70, 30, [])]  # a role chunk and [DONE] only: no output, left out
    path = _write(tmp_path, _export(reqs), summary=_isl(128, 128))
    b = read_bench(path)
    assert b.format == "genai_perf" and "genai_perf" in FORMATS
    assert len(b) == 2 and b.failed == 2
    np.testing.assert_allclose(b.arrival, [0.0, 0.05])  # sorted by send time, first at 0
    # TTFT to the first chunk with text (not the role chunk), E2E to the last one (not
    # the finishing chunk or [DONE])
    np.testing.assert_allclose(b.ttft, [0.020, 0.040])
    np.testing.assert_allclose(b.e2e, [0.035, 0.060])
    np.testing.assert_array_equal(b.output_tokens, [4, 3])  # chunks with text
    np.testing.assert_array_equal(b.input_tokens, [128, 128])  # the summary's one length
    np.testing.assert_allclose(b.tpot, [0.005, 0.010])
    assert b.max_concurrency == 2 and math.isnan(b.request_rate)
    notes = " | ".join(b.notes)
    assert "concurrency 2" in notes and "streamed chunks" in notes
    assert "input_sequence_length (min = max = 128)" in notes
    assert "1 request with an error" in notes and "1 request with no generated text" in notes
    wl, table, load = workload_for(b)
    assert wl["arrival"] == {"kind": "closed", "concurrency": 2}
    assert load.startswith("closed loop of 2 users")
    np.testing.assert_array_equal(table.num_decode, [4, 3])


def test_usage_in_the_stream_gives_exact_tokens_and_a_rate(tmp_path: Path) -> None:
    # the chunk " like dogs" carries two tokens: usage says 5, counting chunks would say 4
    reqs = [_request(0, 20, ["I", " like dogs", " a", " lot"],
                     usage={"prompt_tokens": 37, "completion_tokens": 5, "total_tokens": 42}),
            _request(400, 25, ["ok", "."],
                     usage={"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14})]
    path = _write(tmp_path, _export(reqs, mode="request_rate", value=2.5))  # no summary
    b = read_bench(path)
    np.testing.assert_array_equal(b.output_tokens, [5, 2])
    np.testing.assert_array_equal(b.input_tokens, [37, 12])
    np.testing.assert_allclose(b.e2e, [0.050, 0.035])  # the usage chunk is not a token
    assert b.request_rate == 2.5 and b.max_concurrency == 0
    assert not any("streamed chunks" in n for n in b.notes)
    wl, table, load = workload_for(b)  # open loop with send times: replayed
    assert wl["arrival"] == {"kind": "static"} and load.startswith("replayed")
    np.testing.assert_allclose(table.arrival, [0.0, 0.4])
    # an override is not needed and says so
    b = read_bench(path, input_tokens=99)
    np.testing.assert_array_equal(b.input_tokens, [37, 12])
    assert any("input_tokens=99 ignored" in n for n in b.notes)


def test_merged_and_split_events_count_once_each(tmp_path: Path) -> None:
    """perf_analyzer stores what each read returned: two events in one response count
    twice; an event split over two responses counts once, when it completes."""
    req = _request(0, 10, ["a", "b", "c", "d"], gap_ms=10)
    out, ts = req["response_outputs"], req["response_timestamps"]
    # responses: role, a, b, c, d, finish, [DONE] -> merge b and c into one read
    out[2] = {"response": out[2]["response"] + out[3]["response"]}
    del out[3], ts[3]
    # and split d in two reads: its second half arrives 7 ms later
    text = out[3]["response"]
    out[3:4] = [{"response": text[:15]}, {"response": text[15:]}]
    ts[3:4] = [ts[3], ts[3] + 7 * MS]
    path = _write(tmp_path, _export([req], endpoint="v1/chat/completions"),
                  summary=_isl(64, 64))
    b = read_bench(path)
    assert b.output_tokens[0] == 4
    assert b.e2e[0] == pytest.approx(0.040 + 0.007)  # d counts when its read completes


def test_completions_endpoint_and_summary_of_the_config_file_era(tmp_path: Path) -> None:
    reqs = [_request(0, 15, [" I", " like", " dogs"], completions=True)]
    summary = {"request_latency": {"unit": "ms", "avg": 40.0},
               "input_config": {"model_names": ["m"],
                                "input": {"synthetic_tokens": {"mean": 200, "stddev": 0},
                                          "prompt_source": "synthetic",
                                          "prefix_prompt": {"num": 0, "length": 100}},
                                "perf_analyzer": {"stimulus": {"concurrency": 1}}}}
    path = _write(tmp_path, _export(reqs, value=1, endpoint="v1/completions"),
                  name="my_run.json", summary=summary)  # summary: my_run_genai_perf.json
    b = read_bench(path)
    np.testing.assert_array_equal(b.input_tokens, [200])
    np.testing.assert_array_equal(b.output_tokens, [3])
    assert b.ttft[0] == pytest.approx(0.015) and b.max_concurrency == 1
    assert any("synthetic_tokens 200 with stddev 0" in n for n in b.notes)


def test_triton_exports_text_pieces_and_token_ids(tmp_path: Path) -> None:
    # Triton KServe (TensorRT-LLM / vLLM backends): one text piece per streamed response
    kserve = _export([{"timestamp": T0, "request_inputs": {"text_input": "hi", "stream": True},
                       "response_timestamps": [T0 + 20 * MS, T0 + 30 * MS, T0 + 45 * MS],
                       "response_outputs": [{"text_output": "I"}, {"text_output": " like"},
                                            {"text_output": " dogs"}]}],
                     service_kind="triton", endpoint="")
    b = read_bench(_write(tmp_path, kserve, summary=_isl(10, 10)))
    assert (b.output_tokens[0], b.input_tokens[0]) == (3, 10)
    np.testing.assert_allclose([b.ttft[0], b.e2e[0]], [0.020, 0.045])
    # Triton C API (TensorRT-LLM engine): token ids, so both counts are exact
    capi = _export([{"timestamp": T0, "request_inputs": {
        "streaming": True, "request_output_len": 3, "input_lengths": 4,
        "input_ids": [111, 222, 333, 444]},
        "response_timestamps": [T0 + 20 * MS, T0 + 30 * MS, T0 + 45 * MS],
        "response_outputs": [{"output_log_probs": [0, 0], "output_ids": 123},
                             {"output_log_probs": [0, 0], "output_ids": 456},
                             {"output_ids": 789}]}],
        service_kind="triton_c_api", endpoint="")
    (tmp_path / "capi").mkdir()
    b = read_bench(_write(tmp_path / "capi", capi))
    assert (b.output_tokens[0], b.input_tokens[0]) == (3, 4)


# --------------------------------------------------------------------------- prompt tokens


def test_prompt_tokens_need_usage_one_length_or_an_override(tmp_path: Path) -> None:
    reqs = [_request(0, 20, ["a", "b"]), _request(10, 20, ["c"])]
    path = _write(tmp_path, _export(reqs))
    with pytest.raises(ConfigError) as err:  # no usage, no summary
        read_bench(path)
    msg = _message(err)
    assert "input tokens" in msg and "usage.prompt_tokens" in msg and "input_tokens=N" in msg
    assert "profile_export_genai_perf.json" in msg and path.name in msg
    # a summary whose prompts had several lengths does not give one either
    (tmp_path / "profile_export_genai_perf.json").write_text(json.dumps(_isl(100, 140)))
    with pytest.raises(ConfigError) as err:
        read_bench(path)
    assert "input_sequence_length 100..140" in _message(err)
    # synthetic prompts with prefix prompts are longer than the synthetic mean
    summary = _isl(100, 140)
    summary["input_config"].update(synthetic_input_tokens_stddev=0, num_prefix_prompts=3)
    (tmp_path / "profile_export_genai_perf.json").write_text(json.dumps(summary))
    with pytest.raises(ConfigError, match="prefix prompts 3"):
        read_bench(path)
    # the override: every prompt that has no count
    b = read_bench(path, input_tokens=300)
    np.testing.assert_array_equal(b.input_tokens, [300, 300])
    assert any("300 from input_tokens=300" in n for n in b.notes)
    for bad in (-1, True, 2.5):
        with pytest.raises(ConfigError, match="input_tokens"):
            read_bench(path, input_tokens=bad)


def test_an_override_is_ignored_by_formats_that_count_prompts(tmp_path: Path) -> None:
    csv = tmp_path / "runs.csv"
    csv.write_text("arrival,input_tokens,output_tokens,ttft,e2e\n0,10,4,0.02,0.08\n")
    b = read_bench(csv, input_tokens=5)
    assert b.input_tokens[0] == 10 and any("input_tokens=5 ignored" in n for n in b.notes)


# --------------------------------------------------------------------------- errors


def _broken(**change: Any) -> dict:
    req = _request(0, 20, ["a", "b"], usage={"prompt_tokens": 3, "completion_tokens": 2})
    req.update(change)
    return _export([req])


def _unstreamed() -> dict:
    """A non-streaming chat request: no stream flag, one chat.completion body."""
    body = {"id": "x", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}
    payload = {"messages": [{"role": "user", "content": "hi"}], "model": "m"}
    return {"timestamp": T0, "request_inputs": {"payload": _dump(payload)},
            "response_timestamps": [T0 + 50 * MS], "response_outputs": [{"response": _dump(body)}]}


def _unstreamed_completion() -> dict:
    """A non-streaming completions request: genai-perf writes no stream flag, and the one
    body is a text_completion object, as a streamed chunk's is, but bare JSON."""
    body = {"id": "x", "object": "text_completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "text": "Hi there you", "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}
    return {"timestamp": T0, "request_inputs": {"payload": _dump({"model": "m",
                                                                  "prompt": ["hi"]})},
            "response_timestamps": [T0 + 50 * MS], "response_outputs": [{"response": _dump(body)}]}


@pytest.mark.parametrize(("doc", "needle"), [
    ({"experiments": []}, "experiments"),
    (_export([]), "experiments[0].requests"),
    ({"experiments": [{"experiment": {"mode": "concurrency", "value": 1}}]},
     "experiments[0].requests"),
    ({"experiments": [_export([])["experiments"][0]] * 2}, "holds several runs"),
    (_broken(timestamp="soon"), "experiments[0].requests[0].timestamp"),
    (_broken(timestamp=None), "timestamp"),
    (_broken(response_timestamps=None), "response_timestamps"),
    (_broken(response_outputs=[{"response": "data: [DONE]\n\n"}]), "response_outputs"),
    (_broken(response_outputs=[{"response": "data: {not json\n\n"}] * 6),
     "response_outputs[0].response"),
    (_export([_request(0, 20, ["a"], stream=False)]), "request_inputs.stream"),
    (_export([_unstreamed()]), "request_inputs.stream"),  # no stream flag, a whole answer
    (_export([_unstreamed_completion()]), "request_inputs.stream"),  # completions, bare JSON
    (_export([_request(0, 20, ["a"])], value=0), "experiment.value"),
])
def test_malformed_exports_name_the_field(tmp_path: Path, doc: dict, needle: str) -> None:
    path = _write(tmp_path, doc)
    with pytest.raises(ConfigError) as err:
        read_bench(path)
    assert needle in _message(err) and path.name in _message(err)


def test_summaries_are_rejected_naming_the_per_request_export(tmp_path: Path) -> None:
    summary = tmp_path / "profile_export_genai_perf.json"
    summary.write_text(json.dumps(_isl(10, 10)))
    with pytest.raises(ConfigError, match=r"aggregate summary.*genai-perf's profile_export\.json"):
        read_bench(summary)
    csv = tmp_path / "profile_export_genai_perf.csv"
    csv.write_text("Metric,avg,min,max,p99,p90,p75\n"
                   "Time To First Token (ms),20.00,10.00,30.00,29.00,28.00,25.00\n"
                   "Request Latency (ms),90.00,80.00,99.00,98.00,97.00,95.00\n\n"
                   "Metric,Value\nRequest Throughput (per sec),4.00\n")
    with pytest.raises(ConfigError, match=r"aggregate statistics.*profile_export\.json"):
        read_bench(csv)


def test_no_answered_request(tmp_path: Path) -> None:
    path = _write(tmp_path, _export([_request(0, 20, []), _request(5, 20, ["a"], error=True)]))
    with pytest.raises(ConfigError, match=r"experiments\[0\]\.requests=2.*generated tokens"):
        read_bench(path)


# --------------------------------------------------------------------------- CLI


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vidur_search.validate", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_validate_cli_on_a_genai_perf_export(tmp_path: Path) -> None:
    reqs = [_request(i * 30, 25 + i, [f"t{k}" for k in range(8 + i)], gap_ms=8)
            for i in range(6)]
    _write(tmp_path, _export(reqs), name="export.json")
    base = ["bench=export.json", "model=llama-3-8b", "sku=h100-sxm", "tp=1",
            "scheduler=vllm_0_8"]
    p = _cli(*base, cwd=tmp_path)  # no prompt counts anywhere: exit 2 naming the field
    assert p.returncode == 2 and "input tokens" in p.stderr and "input_tokens=N" in p.stderr
    p = _cli(*base, "input_tokens=256", "output.json=cmp.json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "genai_perf, 6 requests" in p.stdout and "closed loop of 2 users" in p.stdout
    assert "6 completed" in p.stdout and "256 from input_tokens=256" in p.stdout
    out = json.loads((tmp_path / "cmp.json").read_text())
    assert out["format"] == "genai_perf"
    mean_ttft = next(r for r in out["rows"] if r["metric"] == "ttft" and r["stat"] == "mean")
    assert mean_ttft["measured"] == pytest.approx(27.5)
