"""Readers of the benchmark results users already have, behind one function, ``read_bench``.

A benchmark result becomes a :class:`BenchRun`: per request (sorted by arrival) the
arrival time, prompt and output tokens, TTFT and end-to-end latency, plus how the load
was offered (request rate, max concurrency). Formats, recognised from the content:

- **vLLM benchmark_serving** (``vllm bench serve --save-result [--save-detailed]``, JSON):
  per-request lists ``input_lens``, ``output_lens``, ``ttfts`` (s) and ``itls`` (s, one
  list per request) or an end-to-end list (``e2els`` / ``latencies``, s); arrivals from
  ``start_times`` when saved; load from ``request_rate`` and ``max_concurrency``.
  Failed requests (a non-empty ``errors`` entry) are left out.
- **aiperf** ``profile_export.jsonl`` (one record per line, or a JSON list of records):
  ``metadata.request_start_ns`` and ``metrics.{input_sequence_length,
  output_sequence_length | output_token_count, time_to_first_token, request_latency}``
  as ``{"value", "unit"}``. Records with an ``error`` are left out. The load comes from
  the summary aiperf writes next to them (``<stem>_aiperf.json`` or
  ``profile_export_aiperf.json``): ``input_config.loadgen.concurrency``,
  ``request_rate`` and the arrival pattern (``arrival_pattern`` / ``request_rate_mode``:
  constant, poisson, gamma with ``arrival_smoothness``), else the ``--concurrency`` /
  ``--request-rate`` flags of its ``cli_command``; without a summary it is unknown.
- **genai-perf** ``profile_export.json`` (perf_analyzer's per-request export: one
  entry of ``experiments`` with ``experiment.{mode, value}`` and ``requests``, each with
  ``timestamp`` and ``response_timestamps`` in ns and ``response_outputs``: the raw
  server-sent events of an OpenAI stream, Triton ``text_output`` pieces or TensorRT-LLM
  ``output_ids``). As genai-perf computes them: TTFT and E2E run from ``timestamp`` to
  the first and last response that carries generated text (role-only, empty, usage-only
  and ``[DONE]`` events do not count). Output tokens are ``usage.completion_tokens``
  when the stream carries usage (or the ``output_ids``), else the number of chunks with
  generated text, one token each as vLLM and TensorRT-LLM stream (an undercount where a
  chunk carries several; a note says so). Prompt tokens are ``usage.prompt_tokens`` (or
  ``input_ids``), else the ``input_tokens`` override, else the one prompt length the
  summary next to the export states (``<stem>_genai_perf.json`` /
  ``profile_export_genai_perf.json``: ``input_sequence_length`` with min = max, or
  synthetic prompts with stddev 0); without any, ConfigError. The load is the experiment's
  ``concurrency`` (closed loop) or ``request_rate``. Requests with an error event or no
  generated text are left out; a non-streaming run (no TTFT) is rejected.
- **per-request table** (CSV, JSONL, or a JSON list of objects): one row per request
  with columns, matched ignoring case, for prompt tokens, output tokens, TTFT and
  end-to-end latency (or the absolute times of the first and last token) and, optional,
  the arrival time. A unit suffix on a column name (``_ms``, ``_us``, ``_ns``, ``_s``)
  sets its unit; no suffix means seconds. LLMServingSim's ``requests.jsonl`` (queue,
  first- and last-token timestamps) is one of these.

Aggregate-only files (aiperf's ``profile_export_aiperf.json`` and genai-perf's
``profile_export_genai_perf.json`` / ``.csv`` summaries) hold no per-request records;
they are recognised and rejected with a message naming the per-request export to use.
A file that matches no format, lacks a field or holds a value no benchmark writes raises
``ConfigError`` naming the file, the field (and entry) and what is allowed: latencies
(TTFT, E2E, every ``itls`` entry) are finite numbers >= 0, token counts whole numbers
>= 1; vLLM's ``request_rate`` is a number > 0 or "inf", ``max_concurrency`` an integer
>= 1 or null, ``burstiness`` and ``duration`` numbers > 0; aiperf's
``request_start_ns`` a time >= 0 and its summary's concurrency, request rate and
``arrival_smoothness`` in range; genai-perf's request rate a number > 0. None of them is
read as "not recorded" when it is present but wrong.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator.errors import ConfigError, is_number
from simulator.workload import RequestTable

__all__ = ["BenchRun", "aiperf_load", "genai_perf_prompt_length", "read_bench", "read_genai_perf"]

FORMATS = ("vllm_bench", "aiperf", "genai_perf", "per_request")

# Column roles of a per-request table, candidates in order of preference (lowercase; a
# unit suffix _ms/_us/_ns/_s may follow). The queue timestamp comes before the client
# arrival: when TTFT is derived from token timestamps they must share a clock.
ARRIVAL_NAMES = ("queued_ts", "arrival_time", "arrived_at", "arrival", "start_time",
                 "request_start", "send_time", "timestamp")
INPUT_NAMES = ("input_tokens", "input_toks", "prompt_tokens", "num_prefill_tokens",
               "input_len", "input_length", "prompt_len", "input_sequence_length", "isl")
OUTPUT_NAMES = ("output_tokens", "output_toks", "completion_tokens", "num_decode_tokens",
                "output_len", "output_length", "output_sequence_length", "osl")
TTFT_NAMES = ("ttft", "time_to_first_token")
E2E_NAMES = ("e2e", "e2el", "e2e_latency", "end_to_end_latency", "request_latency", "latency")
FIRST_TOKEN_NAMES = ("first_token_ts", "first_token_time", "first_token_at")
LAST_TOKEN_NAMES = ("last_token_ts", "last_token_time", "completed_at", "completion_time",
                    "end_time", "finish_time")
_UNITS = {"s": 1.0, "sec": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_SUFFIX = re.compile(r"^(?P<base>.+?)_(?P<unit>s|sec|ms|us|ns)$")


@dataclass(frozen=True)
class BenchRun:
    """One measured benchmark run, per request in arrival order (times in seconds).

    ``arrival`` starts at 0 (NaN everywhere when the file does not say when requests
    were sent); ``ttft`` and ``e2e`` are measured from each request's arrival.
    ``request_rate`` is requests/s (``inf``: all at once or closed loop; NaN: unknown);
    ``max_concurrency`` is 0 when the load was not capped by concurrency (or it is not
    known); ``burstiness`` is the Gamma shape of the scheduled gaps (1: Poisson, ``inf``:
    constant gaps).
    """

    path: str
    format: str
    arrival: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    ttft: np.ndarray
    e2e: np.ndarray
    request_rate: float = math.nan
    max_concurrency: int = 0
    burstiness: float = 1.0  # shape of the Gamma inter-arrival times (1 = Poisson, inf = constant)
    duration: float = math.nan  # s, as the benchmark reports it (NaN: not reported)
    failed: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return int(self.input_tokens.shape[0])

    @property
    def has_arrivals(self) -> bool:
        """Whether per-request send times are known (else the load must be rebuilt)."""
        return bool(len(self)) and bool(np.isfinite(self.arrival).all())

    @property
    def peak_in_flight(self) -> int:
        """Most requests in flight at once by the file's send and end times (0 when send
        times are unknown): a closed loop of N users stays at N."""
        if not self.has_arrivals:
            return 0
        t = np.concatenate([self.arrival, self.arrival + self.e2e])
        step = np.concatenate([np.ones(len(self)), -np.ones(len(self))])
        order = np.lexsort((step, t))  # at a tie, the end frees its slot first
        return int(np.cumsum(step[order]).max())

    @property
    def tpot(self) -> np.ndarray:
        """Time per output token after the first, per request (NaN with one output token)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.output_tokens > 1,
                            (self.e2e - self.ttft) / (self.output_tokens - 1), np.nan)

    @property
    def output_throughput(self) -> float:
        """Output tokens/s from the first arrival to the last completion (over the reported
        duration when arrivals are unknown; NaN when neither is known)."""
        span = float(np.max(self.arrival + self.e2e)) if self.has_arrivals else self.duration
        return float(self.output_tokens.sum()) / span if span > 0 else math.nan

    def requests(self) -> RequestTable:
        """The requests as a simulator RequestTable (arrivals 0 when unknown)."""
        arrival = self.arrival if self.has_arrivals else np.zeros(len(self))
        return RequestTable(arrival, self.input_tokens, self.output_tokens)


# --------------------------------------------------------------------------- helpers


def _fail(path: Path, what: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{path}: {what}", value, allowed)


def _float_array(path: Path, name: str, values: Sequence[Any]) -> np.ndarray:
    """A JSON list of numbers (null: NaN, for the caller to judge) as floats; ConfigError
    naming the first entry that is not a number (a string, a bool, a list)."""
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        if v is not None and not is_number(v):
            raise _fail(path, f"{name}[{i}]", v, "must be a number")
        out[i] = math.nan if v is None else float(v)
    return out


def _int_tokens(path: Path, name: str, values: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(values) | (values < 1) | (values != np.round(values))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _fail(path, f"{name}[{i}]", float(values[i]), "must be a whole number >= 1")
    return values.astype(np.int64)


def _positive(path: Path, name: str, value: Any, allowed: str, *, default: float,
              inf_word: bool = False, finite: bool = False) -> float:
    """A load setting that must be a number > 0: ``default`` when absent (None), the
    number otherwise (``inf_word``: also the string "inf", as vLLM writes an unlimited
    request rate; ``finite``: infinity refused); ConfigError naming the file and field."""
    if value is None:
        return default
    if inf_word and isinstance(value, str) and value.strip().lower() in ("inf", "infinity"):
        return math.inf
    if is_number(value) and value > 0 and not (finite and math.isinf(value)):
        return float(value)
    raise _fail(path, name, value, allowed)


def _cap(path: Path, name: str, value: Any) -> int:
    """A concurrency cap: an integer >= 1, or None (no cap: 0)."""
    if value is None:
        return 0
    if is_number(value) and math.isfinite(value) and value >= 1 and value == int(value):
        return int(value)
    raise _fail(path, name, value, "must be an integer >= 1, or null for no cap")


def _itl_sums(path: Path, itls: Sequence[Any], ok: np.ndarray) -> np.ndarray:
    """Sum of each successful request's inter-token latencies; ConfigError naming the
    first entry that is not a finite time >= 0 (a corrupt one would shift the E2E)."""
    sums = np.zeros(len(itls))
    for i, itl in enumerate(itls):
        if not ok[i] or itl is None:
            continue
        if not isinstance(itl, list):
            raise _fail(path, f"itls[{i}]", itl, "must be a list of inter-token latencies "
                        "(seconds), one list per request")
        for j, x in enumerate(itl):
            if not is_number(x) or not math.isfinite(x) or x < 0:
                raise _fail(path, f"itls[{i}][{j}]", x, "must be a finite time >= 0 "
                            "(seconds)")
        sums[i] = math.fsum(float(x) for x in itl)
    return sums


def _build(path: Path, fmt: str, arrival: np.ndarray, inputs: np.ndarray, outputs: np.ndarray,
           ttft: np.ndarray, e2e: np.ndarray, *, rate: float = math.nan, concurrency: int = 0,
           burstiness: float = 1.0, duration: float = math.nan, failed: int = 0,
           notes: Sequence[str] = ()) -> BenchRun:
    """Check the per-request arrays and sort them by arrival (first arrival = 0)."""
    n = len(inputs)
    if n == 0:
        raise _fail(path, "requests", 0, "the file holds no successful request")
    inputs = _int_tokens(path, "input tokens", inputs)
    outputs = _int_tokens(path, "output tokens", outputs)
    for name, v in (("ttft", ttft), ("e2e", e2e)):
        bad = ~np.isfinite(v) | (v < 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise _fail(path, f"{name}[{i}]", float(v[i]), "must be a finite time >= 0")
    slack = 1e-6 + 1e-9 * np.abs(e2e)
    bad = e2e + slack < ttft
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _fail(path, f"e2e[{i}]", float(e2e[i]), f"must be >= ttft ({float(ttft[i])})")
    if np.isfinite(arrival).all():
        order = np.argsort(arrival, kind="stable")
        arrival = arrival[order] - arrival[order][0]
    elif np.isfinite(arrival).any():
        i = int(np.flatnonzero(~np.isfinite(arrival))[0])
        raise _fail(path, f"arrival[{i}]", None, "some requests have an arrival time, this "
                    "one has none")
    else:
        order = np.arange(n)
    return BenchRun(str(path), fmt, arrival, inputs[order], outputs[order], ttft[order],
                    e2e[order], rate, int(concurrency), float(burstiness), float(duration),
                    int(failed), tuple(notes))


# --------------------------------------------------------------------------- vLLM


VLLM_REQUIRED = ("input_lens", "output_lens", "ttfts")


def _is_vllm(doc: Any) -> bool:
    return isinstance(doc, Mapping) and any(k in doc for k in VLLM_REQUIRED)


def read_vllm_bench(path: Path, doc: Mapping[str, Any]) -> BenchRun:
    """vLLM ``benchmark_serving`` / ``vllm bench serve`` result JSON (see module doc)."""
    for key in VLLM_REQUIRED:
        if key not in doc:
            raise _fail(path, key, None, "missing; a vLLM benchmark result needs per-request "
                        + ", ".join(VLLM_REQUIRED) + " (run it with --save-result "
                        "--save-detailed)")
    e2e_key = next((k for k in ("e2els", "e2el", "latencies") if k in doc), None)
    keys = (*VLLM_REQUIRED, *(k for k in ("itls", "start_times", "errors", e2e_key)
                              if k and k in doc))
    for key in keys:
        if not isinstance(doc[key], list):
            raise _fail(path, key, type(doc[key]).__name__,
                        "must be a list with one entry per request")
    n = len(doc["input_lens"])
    for key in keys:
        if len(doc[key]) != n:
            lengths = ", ".join(f"{k} {len(doc[k])}" for k in keys)
            raise _fail(path, key, f"{len(doc[key])} entries",
                        f"the per-request lists disagree: input_lens has {n} entries, {key} "
                        f"has {len(doc[key])} (lengths: {lengths}); each needs one entry "
                        "per request")
    if e2e_key is None and "itls" not in doc:
        raise _fail(path, "itls", None, "missing; the end-to-end latency needs per-request "
                    "itls (or e2els)")
    errors = doc.get("errors") or [""] * n
    ok = np.array([not e for e in errors], dtype=bool)
    ttft = _float_array(path, "ttfts", doc["ttfts"])
    itl_sums = _itl_sums(path, doc["itls"], ok) if "itls" in doc else None
    if e2e_key is not None:
        e2e = _float_array(path, e2e_key, doc[e2e_key])
    else:
        assert itl_sums is not None
        e2e = ttft + itl_sums
    arrival = (_float_array(path, "start_times", doc["start_times"]) if "start_times" in doc
               else np.full(n, math.nan))
    if "start_times" in doc and (arrival < 0).any():  # perf_counter() readings: never < 0
        i = int(np.flatnonzero(arrival < 0)[0])
        raise _fail(path, f"start_times[{i}]", float(arrival[i]),
                    "must be a send time >= 0 (seconds of the benchmark's clock)")
    inputs = _float_array(path, "input_lens", doc["input_lens"])
    outputs = _float_array(path, "output_lens", doc["output_lens"])
    rate = _positive(path, "request_rate", doc.get("request_rate"),
                     'must be a number > 0 or "inf" (no rate limit)', default=math.nan,
                     inf_word=True)
    conc = _cap(path, "max_concurrency", doc.get("max_concurrency"))
    shape = _positive(path, "burstiness", doc.get("burstiness"),
                      "must be a number > 0 (1: Poisson arrivals)", default=1.0)
    duration = _positive(path, "duration", doc.get("duration"),
                         "must be a number of seconds > 0 (or left out)", default=math.nan,
                         finite=True)
    notes = []
    if "start_times" not in doc:
        notes.append("no per-request start_times: arrivals rebuilt from request_rate / "
                     "max_concurrency")
    return _build(path, "vllm_bench", arrival[ok], inputs[ok], outputs[ok], ttft[ok], e2e[ok],
                  rate=rate, concurrency=conc, burstiness=shape, duration=duration,
                  failed=int((~ok).sum()), notes=notes)


# --------------------------------------------------------------------------- aiperf


def _is_aiperf(records: Sequence[Any]) -> bool:
    first = records[0] if records else None
    return isinstance(first, Mapping) and "metadata" in first and "metrics" in first


def _metric(path: Path, rec: Mapping[str, Any], names: Sequence[str], i: int,
            kind: str) -> float:
    metrics = rec.get("metrics") or {}
    for name in names:
        if name in metrics:
            m = metrics[name]
            value = m.get("value") if isinstance(m, Mapping) else m
            unit = str(m.get("unit", "")).lower() if isinstance(m, Mapping) else ""
            if not is_number(value):
                raise _fail(path, f"record {i}: metrics.{name}.value", value,
                            "must be a number")
            v = float(value)
            if kind == "time":
                if unit not in _UNITS:
                    raise _fail(path, f"record {i}: metrics.{name}.unit", unit,
                                "allowed units are " + ", ".join(_UNITS))
                v *= _UNITS[unit]
            return v
    raise _fail(path, f"record {i}: metrics.{names[0]}", None,
                "missing; aiperf records need metrics " + ", ".join(
                    ("input_sequence_length", "output_sequence_length",
                     "time_to_first_token", "request_latency")) + " (a streaming run)")


def read_aiperf(path: Path, records: Sequence[Mapping[str, Any]]) -> BenchRun:
    """aiperf ``profile_export.jsonl`` records (see module doc)."""
    cols: dict[str, list[float]] = {k: [] for k in ("arr", "in", "out", "ttft", "e2e")}
    failed = 0
    for i, rec in enumerate(records):
        if rec.get("error"):
            failed += 1
            continue
        meta = rec.get("metadata") or {}
        if meta.get("benchmark_phase", "profiling") != "profiling":
            continue
        start = meta.get("request_start_ns")
        if start is not None and not (is_number(start) and math.isfinite(start) and start >= 0):
            raise _fail(path, f"record {i}: metadata.request_start_ns", start,
                        "must be a time in nanoseconds >= 0")
        cols["arr"].append(math.nan if start is None else float(start) * 1e-9)
        cols["in"].append(_metric(path, rec, ("input_sequence_length",), i, "tokens"))
        cols["out"].append(_metric(path, rec, ("output_sequence_length", "output_token_count"),
                                   i, "tokens"))
        cols["ttft"].append(_metric(path, rec, ("time_to_first_token",), i, "time"))
        cols["e2e"].append(_metric(path, rec, ("request_latency",), i, "time"))
    a = {k: np.asarray(v, dtype=np.float64) for k, v in cols.items()}
    conc, rate, shape, notes = aiperf_load(path)
    return _build(path, "aiperf", a["arr"], a["in"], a["out"], a["ttft"], a["e2e"],
                  rate=rate, concurrency=conc, burstiness=shape, failed=failed, notes=notes)


_CLI_FLAG = {"concurrency": re.compile(r"--concurrency[\s=]+[\"']?(\d+)"),
             "request_rate": re.compile(r"--request-rate[\s=]+[\"']?([0-9.eE+-]+)")}


def _summary_beside(path: Path, tool: str) -> tuple[Path | None, list[str]]:
    """The summary ``tool`` (aiperf, genai_perf) writes next to its per-request export
    ``path`` (``<stem>_<tool>.json``, else ``profile_export_<tool>.json``), None when
    absent; and the names looked for."""
    names = list(dict.fromkeys((f"{path.stem}_{tool}.json", f"profile_export_{tool}.json")))
    return next((path.with_name(n) for n in names if path.with_name(n).is_file()), None), names


def aiperf_load(records_path: Path) -> tuple[int, float, float, list[str]]:
    """(concurrency, request rate, Gamma shape, notes) of an aiperf run, from the summary
    aiperf writes next to its records (see the module doc); (0, NaN, 1, a note) without
    one. A summary that cannot be read is reported in the notes, not used."""
    summary, _ = _summary_beside(records_path, "aiperf")
    unknown = (0, math.nan, 1.0)
    if summary is None:
        return (*unknown, ["aiperf: no profile_export_aiperf.json next to the records, so "
                           "the concurrency and request rate are unknown"])
    try:
        doc = json.loads(summary.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return (*unknown, [f"aiperf: {summary.name} cannot be read ({err}); the "
                           "concurrency and request rate are unknown"])
    config = doc.get("input_config") if isinstance(doc, Mapping) else None
    config = config if isinstance(config, Mapping) else {}
    loadgen = config.get("loadgen") if isinstance(config.get("loadgen"), Mapping) else {}
    if loadgen.get("fixed_schedule"):
        return (*unknown, [f"aiperf: {summary.name}: a fixed schedule (trace timestamps)"])
    values = {k: loadgen.get(k) for k in ("concurrency", "request_rate")}
    source = f"{summary.name} input_config.loadgen"
    if all(v is None for v in values.values()):
        command = str(config.get("cli_command") or "")
        for key, flag in _CLI_FLAG.items():
            m = flag.search(command)
            values[key] = m.group(1) if m else None
        source = f"{summary.name} cli_command"
    conc, rate = values["concurrency"], values["request_rate"]
    try:
        conc_n = 0 if conc is None else int(float(conc))
        rate_f = math.nan if rate is None else float(rate)
    except (TypeError, ValueError) as err:
        raise _fail(summary, "input_config.loadgen", values,
                    "concurrency must be a whole number and request_rate a number") from err
    if conc is not None and (conc_n < 1 or conc_n != float(conc)):
        raise _fail(summary, "input_config.loadgen.concurrency", conc,
                    "must be a whole number >= 1")
    if rate is not None and not rate_f > 0:
        raise _fail(summary, "input_config.loadgen.request_rate", rate, "must be > 0")
    pattern = str(loadgen.get("arrival_pattern") or loadgen.get("request_rate_mode") or "")
    shape = 1.0
    if pattern.lower().endswith("constant"):
        shape = math.inf
    elif pattern.lower().endswith("gamma"):
        shape = _positive(summary, "input_config.loadgen.arrival_smoothness",
                          loadgen.get("arrival_smoothness"),
                          "must be a number > 0 (the Gamma shape; 1: Poisson)", default=1.0)
    if conc is None and rate is None:
        return (*unknown, [f"aiperf: {summary.name} records neither concurrency nor "
                           "request rate"])
    found = ", ".join(f"{k} {v}" for k, v in values.items() if v is not None)
    return conc_n, rate_f, shape, [f"aiperf load from {source}: {found}"]


# --------------------------------------------------------------------------- genai-perf

# Fields of a streamed chunk (choices[].delta / .message) whose text is generated tokens.
_GENERATED = ("content", "reasoning_content", "reasoning", "tool_calls")
_GENAI_PERF_WHY = ("genai-perf's profile_export.json needs one experiment whose requests "
                   "carry timestamp, response_timestamps and response_outputs")


def _is_genai_perf(doc: Any) -> bool:
    return isinstance(doc, Mapping) and "experiments" in doc


@dataclass(frozen=True)
class _GenaiRequest:
    """One answered genai-perf request: times in ns on the client's clock, generated
    chunks, and token counts when the file records them (None: it does not)."""

    start: int
    first: int
    last: int
    chunks: int
    output_tokens: int | None
    input_tokens: int | None


def _ns(path: Path, name: str, value: Any) -> int:
    """A perf_analyzer timestamp: whole nanoseconds since the epoch."""
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or value < 0 or value != int(value):
        raise _fail(path, name, value, "must be a time in whole nanoseconds (perf_analyzer "
                    "writes integers)")
    return int(value)


def _count(value: Any) -> int | None:
    """A token count from the file (None when absent or not a whole number)."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or value != int(value):
        return None
    return int(value)


def _sse_data(block: str) -> tuple[str | None, bool]:
    """The data of one server-sent event (its ``data:`` lines; a bare JSON body as is)
    and whether it is an ``event: error``."""
    lines = block.strip().split("\n")
    error = any(ln.replace(" ", "").lower() == "event:error" for ln in lines)
    data = [ln[5:].removeprefix(" ") for ln in lines if ln.startswith("data:")]
    if data:
        return "\n".join(data).strip(), error
    return (block.strip() if block.lstrip().startswith("{") else None), error


def _complete(block: str) -> bool:
    data, _ = _sse_data(block)
    if data is None or data == "[DONE]":
        return data is not None
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def _sse_events(texts: Sequence[str]) -> list[tuple[int, str]]:
    """(response index, event block) of every event in a request's responses.
    perf_analyzer stores what each read returned: one event, several, or part of one;
    a split event counts at the response that completes it."""
    events: list[tuple[int, str]] = []
    buf = ""
    for k, text in enumerate(texts):
        *done, buf = (buf + text).replace("\r\n", "\n").split("\n\n")
        if buf.strip() and _complete(buf):
            done, buf = [*done, buf], ""
        events += [(k, b) for b in done if b.strip()]
    if buf.strip():
        events.append((len(texts) - 1, buf))
    return events


def _chunk(obj: Any) -> tuple[bool, bool, int | None, int | None]:
    """(carries generated text, is an error, usage.completion_tokens, usage.prompt_tokens)
    of one OpenAI (or Triton generate) response object."""
    if not isinstance(obj, Mapping):
        return False, False, None, None
    error = bool(obj.get("error")) or obj.get("object") == "error"
    usage = obj.get("usage") if isinstance(obj.get("usage"), Mapping) else {}
    text = bool(obj.get("text_output"))
    for choice in obj.get("choices") or []:
        if not isinstance(choice, Mapping):
            continue
        parts = [choice.get(k) for k in ("delta", "message") if isinstance(choice.get(k), Mapping)]
        text = text or bool(choice.get("text")) or any(p.get(f) for p in parts
                                                        for f in _GENERATED)
    return text, error, _count(usage.get("completion_tokens")), _count(usage.get("prompt_tokens"))


def _streamed(inputs: Mapping[str, Any]) -> bool | None:
    """Whether the request asked for a streamed answer (None: the file does not say)."""
    body: Any = inputs
    if isinstance(inputs.get("payload"), str):  # OpenAI: the request body as JSON text
        try:
            body = json.loads(inputs["payload"])
        except ValueError:
            return None
    for key in ("stream", "streaming"):
        if isinstance(body, Mapping) and key in body:
            flag = body[key]
            return bool(flag[0] if isinstance(flag, list) and flag else flag)
    return None


def _genai_request(path: Path, i: int, req: Any) -> _GenaiRequest | str:
    """One request of the export, or why it is left out ("an error", "no generated
    text")."""
    where = f"experiments[0].requests[{i}]"
    if not isinstance(req, Mapping):
        raise _fail(path, where, type(req).__name__, "must be a JSON object")
    start = _ns(path, f"{where}.timestamp", req.get("timestamp"))
    stamps, outputs = req.get("response_timestamps"), req.get("response_outputs")
    if not isinstance(stamps, list):
        raise _fail(path, f"{where}.response_timestamps", stamps,
                    "missing; " + _GENAI_PERF_WHY)
    if not isinstance(outputs, list) or len(outputs) != len(stamps):
        raise _fail(path, f"{where}.response_outputs", type(outputs).__name__,
                    f"must be a list of {len(stamps)} responses, one per response_timestamps "
                    "entry")
    times = [_ns(path, f"{where}.response_timestamps[{k}]", t) for k, t in enumerate(stamps)]
    inputs = req.get("request_inputs") if isinstance(req.get("request_inputs"), Mapping) else {}
    unstreamed = _fail(path, f"{where}.request_inputs.stream", False,
                       "genai-perf ran without streaming, so the first token's time was not "
                       "measured (one response holds the whole answer); rerun it with "
                       "--streaming")
    if _streamed(inputs) is False:
        raise unstreamed
    n_in = _count(inputs.get("input_lengths"))
    if n_in is None and isinstance(inputs.get("input_ids"), list):
        n_in = len(inputs["input_ids"])
    for k, out in enumerate(outputs):
        if not isinstance(out, Mapping):
            raise _fail(path, f"{where}.response_outputs[{k}]", type(out).__name__,
                        "must be a JSON object")
    hits: list[int] = []  # response index of every chunk with generated tokens
    n_out: int | None = None
    if any("response" in out for out in outputs):  # OpenAI / HTTP: server-sent events
        for k, block in _sse_events([str(out.get("response") or "") for out in outputs]):
            data, error = _sse_data(block)
            if error:
                return "an error"
            if data is None or data == "[DONE]":
                continue
            try:
                obj = json.loads(data)
            except ValueError as err:
                raise _fail(path, f"{where}.response_outputs[{k}].response", data[:60],
                            f"is not a JSON server-sent event: {err}") from err
            text, bad, completion, prompt = _chunk(obj)
            if bad:
                return "an error"
            if (isinstance(obj, Mapping) and obj.get("object") == "chat.completion") or (
                    block.lstrip().startswith("{")):
                raise unstreamed  # a whole answer (a bare JSON body), not a streamed chunk
            hits += [k] * text
            n_out = completion if completion is not None else n_out
            n_in = prompt if prompt is not None else n_in
    else:  # Triton: text pieces (KServe) or token ids (C API, TensorRT-LLM engine)
        for k, out in enumerate(outputs):
            ids = out.get("output_ids")
            if "output_ids" in out:
                n = len(ids) if isinstance(ids, list) else int(_count(ids) is not None)
                n_out = (n_out or 0) + n
                hits += [k] * (n > 0)
            elif out.get("text_output"):
                hits.append(k)
    if not hits:
        return "no generated text"
    return _GenaiRequest(start, times[hits[0]], times[hits[-1]], len(hits), n_out, n_in)


def _genai_load(path: Path, exp: Mapping[str, Any]) -> tuple[int, float, str]:
    """(concurrency, request rate, note) of the experiment perf_analyzer ran."""
    spec = exp.get("experiment") if isinstance(exp.get("experiment"), Mapping) else {}
    mode, value = spec.get("mode"), spec.get("value")
    if mode == "concurrency":
        n = _count(value)
        if n is None or n < 1:
            raise _fail(path, "experiments[0].experiment.value", value,
                        "must be a whole number >= 1 (the concurrency)")
        return n, math.nan, f"genai-perf load from experiments[0].experiment: concurrency {n}"
    if mode == "request_rate":
        rate = _positive(path, "experiments[0].experiment.value", value,
                         "must be a number > 0 (the request rate, requests/s)",
                         default=-1.0, finite=True)
        if rate < 0:
            raise _fail(path, "experiments[0].experiment.value", None,
                        "missing: mode request_rate needs the rate (a number > 0)")
        return 0, rate, f"genai-perf load from experiments[0].experiment: request_rate {rate:g}"
    return 0, math.nan, (f"genai-perf: experiments[0].experiment is {dict(spec)!r}: neither a "
                         "concurrency nor a request rate, so the load is unknown")


def genai_perf_prompt_length(path: Path) -> tuple[int, str] | str:
    """(tokens, source) when the summary genai-perf writes next to its export says every
    prompt had one length: ``input_sequence_length`` with min == max, else synthetic
    prompts with stddev 0 and no prefix prompts in ``input_config`` (flat, or nested under
    ``input``). Otherwise a sentence saying why not."""
    summary, names = _summary_beside(path, "genai_perf")
    if summary is None:
        return f"no {' or '.join(names)} next to it"
    try:
        doc = json.loads(summary.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return f"{summary.name} cannot be read ({err})"
    doc = doc if isinstance(doc, Mapping) else {}
    isl = doc.get("input_sequence_length") if isinstance(doc.get("input_sequence_length"),
                                                         Mapping) else {}
    lo, hi = _count(isl.get("min")), _count(isl.get("max"))
    if lo is not None and lo == hi and lo >= 1:
        return lo, f"{summary.name} input_sequence_length (min = max = {lo})"
    cfg = doc.get("input_config") if isinstance(doc.get("input_config"), Mapping) else {}
    nested = cfg.get("input") if isinstance(cfg.get("input"), Mapping) else None
    if nested is not None:  # genai-perf's config-file era: input.synthetic_tokens.{mean,stddev}
        syn = nested.get("synthetic_tokens") if isinstance(nested.get("synthetic_tokens"),
                                                           Mapping) else {}
        prefix = nested.get("prefix_prompt") if isinstance(nested.get("prefix_prompt"),
                                                           Mapping) else {}
        mean, sd, n_prefix = syn.get("mean"), syn.get("stddev"), prefix.get("num")
        source, key = nested.get("prompt_source"), "input_config.input.synthetic_tokens"
    else:  # the command-line flags
        mean, sd = cfg.get("synthetic_input_tokens_mean"), cfg.get("synthetic_input_tokens_stddev")
        n_prefix, source = cfg.get("num_prefix_prompts"), cfg.get("prompt_source")
        key = "input_config.synthetic_input_tokens_mean"
    synthetic = str(source or "").lower().endswith("synthetic")
    n = _count(mean)
    if synthetic and n is not None and n >= 1 and _count(sd) == 0 and not _count(n_prefix):
        return n, f"{summary.name} {key} {n} with stddev 0 (synthetic prompts)"
    seen = f"input_sequence_length {lo}..{hi}" if lo is not None else "no input_sequence_length"
    return (f"{summary.name} gives no single prompt length ({seen}; prompt_source {source!r}, "
            f"synthetic mean {mean!r}, stddev {sd!r}, prefix prompts {n_prefix!r})")


def read_genai_perf(path: Path, doc: Mapping[str, Any], *, input_tokens: int = 0) -> BenchRun:
    """genai-perf's ``profile_export.json`` (perf_analyzer's per-request export; see the
    module doc). ``input_tokens`` sets the prompt length of requests the file has no
    count for."""
    experiments = doc.get("experiments")
    if not isinstance(experiments, list) or not experiments:
        raise _fail(path, "experiments", experiments, "holds no experiment, so no per-request "
                    "times or token counts; " + _GENAI_PERF_WHY)
    if len(experiments) > 1:
        runs = ", ".join(repr(e.get("experiment")) if isinstance(e, Mapping) else "?"
                         for e in experiments)
        raise _fail(path, "experiments", len(experiments), f"holds several runs ({runs}); "
                    "compare one at a time: keep one entry of experiments in the file")
    exp = experiments[0]
    if not isinstance(exp, Mapping) or not isinstance(exp.get("requests"), list):
        raise _fail(path, "experiments[0].requests", None, "missing; " + _GENAI_PERF_WHY)
    rows: list[_GenaiRequest] = []
    left_out: dict[str, int] = {}
    for i, req in enumerate(exp["requests"]):
        got = _genai_request(path, i, req)
        if isinstance(got, str):
            left_out[got] = left_out.get(got, 0) + 1
        else:
            rows.append(got)
    if not rows:
        raise _fail(path, "experiments[0].requests", len(exp["requests"]),
                    "no request has a response with generated tokens")
    t0 = min(r.start for r in rows)
    arrival = np.array([(r.start - t0) * 1e-9 for r in rows])
    ttft = np.array([(r.first - r.start) * 1e-9 for r in rows])
    e2e = np.array([(r.last - r.start) * 1e-9 for r in rows])
    counted = sum(r.output_tokens is None for r in rows)
    outputs = np.array([r.chunks if r.output_tokens is None else r.output_tokens
                        for r in rows], dtype=np.float64)
    conc, rate, load_note = _genai_load(path, exp)
    notes = [load_note]
    if counted:
        notes.append(f"genai-perf: output tokens of {counted} of {len(rows)} requests are the "
                     "streamed chunks with generated text, one token each as vLLM and "
                     "TensorRT-LLM stream (an undercount where a chunk holds several); "
                     "usage.completion_tokens in the stream (OpenAI stream_options."
                     "include_usage) gives exact counts")
    inputs = _genai_inputs(path, rows, input_tokens, notes)
    if left_out:
        notes.append("genai-perf: left out " + ", ".join(
            f"{n} request{'s' * (n > 1)} with {why}" for why, n in sorted(left_out.items())))
    return _build(path, "genai_perf", arrival, inputs, outputs, ttft, e2e, rate=rate,
                  concurrency=conc, failed=sum(left_out.values()), notes=notes)


def _genai_inputs(path: Path, rows: Sequence[_GenaiRequest], override: int,
                  notes: list[str]) -> np.ndarray:
    """Prompt tokens: the file's counts (usage.prompt_tokens, input_ids), the rest from
    ``override`` or the summary's single prompt length; ConfigError when neither."""
    missing = sum(r.input_tokens is None for r in rows)
    if not missing:
        if override:
            notes.append(f"input_tokens={override} ignored: the file counts every prompt")
        return np.array([r.input_tokens for r in rows], dtype=np.float64)
    if override:
        fill, source = override, f"input_tokens={override}"
    else:
        found = genai_perf_prompt_length(path)
        if isinstance(found, str):
            raise _fail(path, "input tokens", None,
                        f"missing for {missing} of {len(rows)} requests: genai-perf's export "
                        "holds the prompt text, not its tokens, and their responses carry "
                        f"no usage.prompt_tokens; {found}. Pass input_tokens=N (every prompt's "
                        "length in tokens) or profile with aiperf (profile_export.jsonl)")
        fill, source = found
        source += ", counted by genai-perf's tokenizer without the server's chat template"
    notes.append(f"genai-perf: prompt tokens of {missing} of {len(rows)} requests: {fill} "
                 f"from {source}")
    return np.array([fill if r.input_tokens is None else r.input_tokens for r in rows],
                    dtype=np.float64)


# --------------------------------------------------------------------------- tables


def _find_column(columns: Sequence[str], names: Sequence[str]) -> tuple[str, float] | None:
    """The first column matching a candidate name (ignoring case), and its unit scale."""
    parsed = {}
    for col in columns:
        low = col.strip().lower()
        m = _SUFFIX.match(low)
        parsed.setdefault(low, (col, 1.0))
        if m:
            parsed.setdefault(m.group("base"), (col, _UNITS[m.group("unit")]))
    for name in names:
        if name in parsed:
            return parsed[name]
    return None


def read_table(path: Path, df: pd.DataFrame) -> BenchRun:
    """A per-request table (see module doc)."""
    cols = [str(c) for c in df.columns]

    def need(names: Sequence[str], label: str) -> tuple[str, float]:
        found = _find_column(cols, names)
        if found is None:
            raise _fail(path, f"column for {label}", None,
                        f"missing; per-request files need {label} as one of: "
                        + ", ".join(names) + f" (the file has: {', '.join(cols)})")
        return found

    def values(found: tuple[str, float]) -> np.ndarray:
        col, scale = found
        v = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(v)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise _fail(path, f"{col}[row {i}]", df[col].iloc[i], "must be a number")
        return v * scale

    inputs = values(need(INPUT_NAMES, "prompt (input) tokens"))
    outputs = values(need(OUTPUT_NAMES, "output tokens"))
    arr_col = _find_column(cols, ARRIVAL_NAMES)
    arrival = values(arr_col) if arr_col else np.full(len(df), math.nan)

    def latency(names: tuple[str, ...], stamps: tuple[str, ...], what: str) -> np.ndarray:
        """A latency column, or a timestamp column minus the arrival times."""
        direct, stamp = _find_column(cols, names), _find_column(cols, stamps)
        if direct is not None:
            return values(direct)
        if stamp is not None and arr_col is not None:
            return values(stamp) - arrival
        need(names, what)
        raise AssertionError("unreachable")  # pragma: no cover

    ttft = latency(TTFT_NAMES, FIRST_TOKEN_NAMES,
                   "TTFT (or first-token timestamps with arrival times)")
    e2e = latency(E2E_NAMES, LAST_TOKEN_NAMES,
                  "end-to-end latency (or last-token timestamps with arrival times)")
    return _build(path, "per_request", arrival, inputs, outputs, ttft, e2e)


# --------------------------------------------------------------------------- entry


def _aggregate_only(path: Path, doc: Any) -> None:
    """Reject summary exports with a message saying which file holds per-request data."""
    if isinstance(doc, Mapping) and ("time_to_first_token" in doc or "request_latency" in doc):
        raise _fail(path, "per-request records", None,
                    "missing: this is an aggregate summary (profile_export_aiperf.json or "
                    "genai-perf's profile_export_genai_perf.json); use the per-request export "
                    "next to it: aiperf's profile_export.jsonl or genai-perf's "
                    "profile_export.json")


def _records(path: Path, doc: Any) -> list[Mapping[str, Any]] | None:
    if isinstance(doc, list):
        return doc
    if isinstance(doc, Mapping):
        for key in ("records", "requests"):
            if isinstance(doc.get(key), list):
                return doc[key]
    return None


def _from_records(path: Path, records: list[Any]) -> BenchRun:
    if not records:
        raise _fail(path, "requests", 0, "the file holds no records")
    for i, r in enumerate(records):
        if not isinstance(r, Mapping):
            raise _fail(path, f"record {i}", type(r).__name__, "must be a JSON object")
    if _is_aiperf(records):
        return read_aiperf(path, records)
    return read_table(path, pd.DataFrame.from_records(records))


def _with_override(run: BenchRun, input_tokens: int) -> BenchRun:
    """Say that ``input_tokens`` was not used: the format counts every prompt."""
    if not input_tokens:
        return run
    note = f"input_tokens={input_tokens} ignored: {run.format} files count every prompt"
    return replace(run, notes=(*run.notes, note))


def read_bench(path: str | Path, *, input_tokens: int = 0) -> BenchRun:
    """Read a benchmark result file in any supported format (see the module docstring).

    ``input_tokens`` (> 0) is the prompt length of every request a genai-perf export has
    no count for; other formats count every prompt and ignore it (with a note).
    Raises ConfigError naming the file and what is missing when the file cannot be read
    or matches no format.
    """
    if isinstance(input_tokens, bool) or not isinstance(input_tokens, int | np.integer) \
            or input_tokens < 0:
        raise ConfigError("input_tokens", input_tokens, "a whole number >= 0 (0: the file's "
                          "counts)")
    input_tokens = int(input_tokens)
    p = Path(path)
    if not p.is_file():
        raise ConfigError("bench", str(p), "no such file")
    name = p.name.lower()
    try:
        if name.endswith((".csv", ".csv.gz")):
            df = pd.read_csv(p)
            if {"metric", "avg"} <= {c.strip().lower() for c in df.columns}:
                raise _fail(p, "per-request records", None,
                            "missing: this CSV holds aggregate statistics (one row per "
                            "metric); use per-request records (aiperf's profile_export.jsonl "
                            "or genai-perf's profile_export.json)")
            return _with_override(read_table(p, df), input_tokens)
        text = p.read_text()
    except (OSError, UnicodeDecodeError, pd.errors.ParserError,
            pd.errors.EmptyDataError) as err:
        raise ConfigError("bench", str(p), f"cannot be read: {err}") from err
    if name.endswith(".jsonl"):
        records = []
        for i, line in enumerate(text.splitlines()):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError as err:
                    raise _fail(p, f"line {i + 1}", line[:60], f"is not JSON: {err}") from err
        return _with_override(_from_records(p, records), input_tokens)
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise ConfigError("bench", str(p), "is neither JSON, JSON Lines (.jsonl) nor CSV "
                          f"(.csv): {err}") from err
    if _is_vllm(doc):
        return _with_override(read_vllm_bench(p, doc), input_tokens)
    if _is_genai_perf(doc):
        return read_genai_perf(p, doc, input_tokens=input_tokens)
    _aggregate_only(p, doc)
    records = _records(p, doc)
    if records is None:
        keys = ", ".join(sorted(doc)[:12]) if isinstance(doc, Mapping) else type(doc).__name__
        raise _fail(p, "format", keys, "not recognised: expected a vLLM benchmark result "
                    "(input_lens, output_lens, ttfts, itls), aiperf records (metadata, metrics), "
                    "a genai-perf profile_export.json (experiments) or a list of per-request "
                    "objects")
    return _with_override(_from_records(p, records), input_tokens)
