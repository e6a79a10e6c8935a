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
- **per-request table** (CSV, JSONL, or a JSON list of objects): one row per request
  with columns, matched ignoring case, for prompt tokens, output tokens, TTFT and
  end-to-end latency (or the absolute times of the first and last token) and, optional,
  the arrival time. A unit suffix on a column name (``_ms``, ``_us``, ``_ns``, ``_s``)
  sets its unit; no suffix means seconds. LLMServingSim's ``requests.jsonl`` (queue,
  first- and last-token timestamps) is one of these.

Aggregate-only files (genai-perf's and aiperf's summary exports) hold no per-request
records; they are recognised and rejected with a message saying what to export instead.
A file that matches no format, or lacks a field, raises ``ConfigError`` naming the file
and the missing field.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator.errors import ConfigError
from simulator.workload import RequestTable

__all__ = ["BenchRun", "aiperf_load", "read_bench"]

FORMATS = ("vllm_bench", "aiperf", "per_request")

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
    try:
        out = np.asarray([math.nan if v is None else float(v) for v in values],
                         dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise _fail(path, name, None, f"must hold numbers ({err})") from err
    return out


def _int_tokens(path: Path, name: str, values: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(values) | (values < 1) | (values != np.round(values))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _fail(path, f"{name}[{i}]", float(values[i]), "must be a whole number >= 1")
    return values.astype(np.int64)


def _rate(value: Any) -> float:
    """vLLM writes ``request_rate`` as a number or the string "inf"."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


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
    n = len(doc["input_lens"])
    e2e_key = next((k for k in ("e2els", "e2el", "latencies") if k in doc), None)
    for key in (*VLLM_REQUIRED, *(k for k in ("itls", "start_times", "errors", e2e_key)
                                 if k and k in doc)):
        if not isinstance(doc[key], list) or len(doc[key]) != n:
            raise _fail(path, key, type(doc[key]).__name__,
                        f"must be a list of {n} entries, one per request (as input_lens)")
    if e2e_key is None and "itls" not in doc:
        raise _fail(path, "itls", None, "missing; the end-to-end latency needs per-request "
                    "itls (or e2els)")
    errors = doc.get("errors") or [""] * n
    ok = np.array([not e for e in errors], dtype=bool)
    ttft = _float_array(path, "ttfts", doc["ttfts"])
    if e2e_key is not None:
        e2e = _float_array(path, e2e_key, doc[e2e_key])
    else:
        e2e = ttft + np.array([sum(float(x) for x in (itl or [])) for itl in doc["itls"]])
    arrival = (_float_array(path, "start_times", doc["start_times"]) if "start_times" in doc
               else np.full(n, math.nan))
    inputs = _float_array(path, "input_lens", doc["input_lens"])
    outputs = _float_array(path, "output_lens", doc["output_lens"])
    conc = doc.get("max_concurrency")
    notes = []
    if "start_times" not in doc:
        notes.append("no per-request start_times: arrivals rebuilt from request_rate / "
                     "max_concurrency")
    return _build(path, "vllm_bench", arrival[ok], inputs[ok], outputs[ok], ttft[ok], e2e[ok],
                  rate=_rate(doc.get("request_rate")),
                  concurrency=int(conc) if isinstance(conc, int | float) and conc else 0,
                  burstiness=_rate(doc.get("burstiness", 1.0)),
                  duration=_rate(doc.get("duration")), failed=int((~ok).sum()), notes=notes)


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
            try:
                v = float(value)
            except (TypeError, ValueError) as err:
                raise _fail(path, f"record {i}: metrics.{name}.value", value,
                            "must be a number") from err
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


def aiperf_load(records_path: Path) -> tuple[int, float, float, list[str]]:
    """(concurrency, request rate, Gamma shape, notes) of an aiperf run, from the summary
    aiperf writes next to its records (see the module doc); (0, NaN, 1, a note) without
    one. A summary that cannot be read is reported in the notes, not used."""
    names = dict.fromkeys((f"{records_path.stem}_aiperf.json", "profile_export_aiperf.json"))
    summary = next((records_path.with_name(n) for n in names
                    if records_path.with_name(n).is_file()), None)
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
        smooth = _rate(loadgen.get("arrival_smoothness"))
        shape = smooth if math.isfinite(smooth) and smooth > 0 else 1.0
    if conc is None and rate is None:
        return (*unknown, [f"aiperf: {summary.name} records neither concurrency nor "
                           "request rate"])
    found = ", ".join(f"{k} {v}" for k, v in values.items() if v is not None)
    return conc_n, rate_f, shape, [f"aiperf load from {source}: {found}"]


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
    if isinstance(doc, Mapping) and "experiments" in doc:
        raise _fail(path, "per-request token counts", None,
                    "missing: genai-perf's profile_export.json holds request and response "
                    "text without token counts; export per-request records with aiperf "
                    "(profile_export.jsonl) or as a per-request CSV")
    if isinstance(doc, Mapping) and ("time_to_first_token" in doc or "request_latency" in doc):
        raise _fail(path, "per-request records", None,
                    "missing: this is an aggregate summary (e.g. profile_export_aiperf.json); "
                    "use aiperf's profile_export.jsonl")


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


def read_bench(path: str | Path) -> BenchRun:
    """Read a benchmark result file in any supported format (see the module docstring).

    Raises ConfigError naming the file and what is missing when the file cannot be read
    or matches no format.
    """
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
                            "metric); use per-request records (aiperf profile_export.jsonl)")
            return read_table(p, df)
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
        return _from_records(p, records)
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise ConfigError("bench", str(p), "is neither JSON, JSON Lines (.jsonl) nor CSV "
                          f"(.csv): {err}") from err
    if _is_vllm(doc):
        return read_vllm_bench(p, doc)
    _aggregate_only(p, doc)
    records = _records(p, doc)
    if records is None:
        keys = ", ".join(sorted(doc)[:12]) if isinstance(doc, Mapping) else type(doc).__name__
        raise _fail(p, "format", keys, "not recognised: expected a vLLM benchmark result "
                    "(input_lens, output_lens, ttfts, itls), aiperf records (metadata, metrics) "
                    "or a list of per-request objects")
    return _from_records(p, records)
