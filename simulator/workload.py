"""Workload: the table of requests a simulation serves.

Requests come from an arrival process (Poisson, Gamma, static, or trace timestamps) and a
length distribution (fixed, uniform, Zipf, or trace token counts), or from a whole trace
replayed (``WorkloadConfig.replay``). Everything is vectorised numpy; every random draw
comes from the ``np.random.Generator`` passed to ``generate_requests``.

Configs validate themselves at construction (kinds, ranges, and for traces that the file
exists and has the needed columns, reading only its header), so a bad config fails before
any work, with a ``ConfigError`` naming the field, the value and what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from simulator.errors import ConfigError, boolean, one_of, positive

__all__ = [
    "ArrivalConfig",
    "LengthConfig",
    "RequestTable",
    "WorkloadConfig",
    "generate_requests",
    "read_trace",
    "resolve_trace_columns",
]

ARRIVAL_KINDS = ("poisson", "gamma", "static", "trace", "closed", "capped")
LENGTH_KINDS = ("fixed", "uniform", "zipf", "trace")
TRACE_FORMATS = ("auto", "vidur", "columns")

MAX_REQUESTS = 100_000_000  # requests of one workload (about 10 GB of request tables)

# Hydra's placeholder for a value that must be given (e.g. ``trace_file: ???``)
MISSING = "???"

ARRIVED_AT = "arrived_at"
NUM_PREFILL = "num_prefill_tokens"
NUM_DECODE = "num_decode_tokens"

# Column names auto-detected in plain traces, in order of preference (matched ignoring case).
COLUMN_CANDIDATES: dict[str, tuple[str, ...]] = {
    ARRIVED_AT: ("arrived_at", "arrival_time", "arrival", "timestamp"),
    NUM_PREFILL: (
        "num_prefill_tokens",
        "prompt_tokens",
        "input_tokens",
        "input_length",
        "prompt_len",
    ),
    NUM_DECODE: (
        "num_decode_tokens",
        "output_tokens",
        "completion_tokens",
        "output_length",
        "output_len",
    ),
}
_ROLE_OPTION = {
    ARRIVED_AT: "workload.arrival_column",
    NUM_PREFILL: "workload.prefill_column",
    NUM_DECODE: "workload.decode_column",
}
_ROLE_LABEL = {
    ARRIVED_AT: "arrival time",
    NUM_PREFILL: "prompt tokens",
    NUM_DECODE: "output tokens",
}
_PARQUET_SUFFIXES = (".parquet", ".pq")
_CSV_SUFFIXES = (".csv", ".csv.gz")


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class RequestTable:
    """Requests in arrival order, as parallel numpy arrays (request id = position).

    ``arrival`` is float64 seconds, non-decreasing, first >= 0; ``num_prefill`` (prompt
    tokens) and ``num_decode`` (output tokens, the first produced by the prefill) are
    int64 >= 1. Arrays are coerced to these dtypes and checked at construction.
    """

    arrival: np.ndarray
    num_prefill: np.ndarray
    num_decode: np.ndarray

    def __post_init__(self) -> None:
        arrival = np.ascontiguousarray(self.arrival, dtype=np.float64)
        prefill = np.ascontiguousarray(self.num_prefill, dtype=np.int64)
        decode = np.ascontiguousarray(self.num_decode, dtype=np.int64)
        object.__setattr__(self, "arrival", arrival)
        object.__setattr__(self, "num_prefill", prefill)
        object.__setattr__(self, "num_decode", decode)
        n = arrival.shape
        if arrival.ndim != 1 or prefill.shape != n or decode.shape != n:
            shapes = (arrival.shape, prefill.shape, decode.shape)
            raise ConfigError("RequestTable", shapes, "must be three 1-D arrays of equal length")
        _check_arrivals(arrival, "RequestTable.arrival")
        for name, values in (("num_prefill", prefill), ("num_decode", decode)):
            bad = np.flatnonzero(values < 1)
            if bad.size:
                i = int(bad[0])
                raise ConfigError(f"RequestTable.{name}[{i}]", int(values[i]), "must be >= 1")

    def __len__(self) -> int:
        return int(self.arrival.shape[0])

    def to_frame(self) -> pd.DataFrame:
        """The table as a DataFrame with Vidur's column names (one row per request)."""
        return pd.DataFrame(
            {ARRIVED_AT: self.arrival, NUM_PREFILL: self.num_prefill, NUM_DECODE: self.num_decode}
        )


def _first_bad_arrival(arrival: np.ndarray) -> int | None:
    """Index of the first arrival that is NaN/inf, negative or below its predecessor."""
    if arrival.size == 0:
        return None
    bad = ~np.isfinite(arrival) | (arrival < 0)
    bad[1:] |= arrival[1:] < arrival[:-1]
    rows = np.flatnonzero(bad)
    return int(rows[0]) if rows.size else None


def _arrival_problem(arrival: np.ndarray, i: int) -> str:
    previous = f" (previous row: {float(arrival[i - 1])!r})" if i > 0 else ""
    return "arrival times must be finite, >= 0 and non-decreasing" + previous


def _check_arrivals(arrival: np.ndarray, where: str) -> None:
    """Raise ConfigError unless arrivals are finite, >= 0 and non-decreasing."""
    i = _first_bad_arrival(arrival)
    if i is not None:
        raise ConfigError(f"{where}[{i}]", float(arrival[i]), _arrival_problem(arrival, i))


# --------------------------------------------------------------------------- configs


def _int_at_least(name: str, value: Any, minimum: int) -> None:
    """Raise ConfigError unless ``value`` is an integer (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(name, value, f"must be an integer >= {minimum}")


def _build(cls: type, d: Mapping[str, Any], prefix: str) -> Any:
    """Construct dataclass ``cls`` from a mapping, rejecting keys it does not have."""
    if not isinstance(d, Mapping):
        raise ConfigError(prefix, d, f"must be a mapping with keys {_names(cls)}")
    allowed = {f.name for f in fields(cls)}
    for key in d:
        if key not in allowed:
            raise ConfigError(
                f"{prefix}.{key}", d[key], f"unknown key; allowed keys are {_names(cls)}"
            )
    return cls(**{str(k): v for k, v in d.items()})


def _names(cls: type) -> str:
    return ", ".join(f.name for f in fields(cls))


@dataclass
class ArrivalConfig:
    """When requests arrive.

    - ``poisson``: exponential inter-arrival times with mean ``1/rate``;
    - ``gamma``: Gamma inter-arrival times with mean ``1/rate`` and coefficient of variation
      ``cv`` (shape ``1/cv**2``; ``cv=1`` is Poisson, larger is burstier);
    - ``static``: every request arrives at t=0 (offline / batch workload);
    - ``trace``: the trace file's timestamps, shifted so the first is 0, times ``time_scale``;
    - ``closed``: a closed loop of ``concurrency`` users (how vLLM's benchmark_serving with
      ``--max-concurrency``, aiperf and genai-perf measure): the first ``concurrency``
      requests arrive at t=0, and each completion (or rejection) makes its user send the
      next request ``think_time_s`` later. Arrival times are set by the engine.
    - ``capped``: requests scheduled as ``poisson`` (``cv`` 1) or ``gamma`` at ``rate``, at
      most ``concurrency`` in flight (vLLM's benchmark_serving with both ``--request-rate``
      and ``--max-concurrency``): a request whose time comes while every slot is busy is
      sent at the next completion (first come, first served), so overdue requests catch
      up. ``catch_up=False``: the wait delays the rest of the schedule instead (aiperf's
      sleep-then-gate). The engine sets the actual send times from the scheduled ones.

    For poisson, gamma and capped the first request arrives after the first inter-arrival
    gap (not at 0), as in Vidur.
    """

    kind: str = "poisson"
    rate: float = 1.0  # requests/s (poisson, gamma, capped)
    cv: float = 1.0  # gamma, capped: coefficient of variation of inter-arrival times
    time_scale: float = 1.0  # trace: timestamps multiplied by this (0.5 = twice as fast)
    concurrency: int = 1  # closed: users, each with one request in flight; capped: the cap
    think_time_s: float = 0.0  # closed: a user's pause between a response and its next request
    catch_up: bool = True  # capped: overdue requests go as slots free (False: schedule pauses)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check kind and ranges (raises ConfigError)."""
        one_of("workload.arrival.kind", self.kind, ARRIVAL_KINDS)
        positive("workload.arrival.rate", self.rate)
        positive("workload.arrival.cv", self.cv)
        positive("workload.arrival.time_scale", self.time_scale)
        _int_at_least("workload.arrival.concurrency", self.concurrency, 1)
        positive("workload.arrival.think_time_s", self.think_time_s, allow_zero=True)
        boolean("workload.arrival.catch_up", self.catch_up)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ArrivalConfig:
        """Build from a plain mapping (e.g. OmegaConf); unknown keys raise ConfigError."""
        return _build(cls, d, "workload.arrival")


@dataclass
class LengthConfig:
    """How many prompt (prefill) and output (decode) tokens each request has.

    - ``fixed``: ``prefill_tokens`` and ``decode_tokens`` for every request;
    - ``uniform``: integers uniform on ``[min, max]`` (inclusive), prefill and decode drawn
      independently;
    - ``zipf``: integers on ``[lo, hi]`` with ``P(x) ∝ 1/(x - lo + 1)**zipf_theta``, not
      scrambled: ``lo`` is the most likely value and mass decreases with x (short requests
      dominate, with a long tail up to ``hi``); prefill and decode drawn independently;
    - ``trace``: token counts from the trace file.

    ``max_total_tokens > 0`` caps each request (e.g. at the model's context length): the
    prompt is kept (cut to ``max_total_tokens - 1`` only if it alone is too long), then the
    output is clipped so that prompt + output <= the cap, keeping at least 1 output token.
    """

    kind: str = "fixed"
    prefill_tokens: int = 512  # fixed
    decode_tokens: int = 128  # fixed
    min_prefill: int = 16  # uniform, zipf (inclusive)
    max_prefill: int = 2048
    min_decode: int = 16
    max_decode: int = 512
    zipf_theta: float = 0.6  # zipf exponent
    max_total_tokens: int = 0  # 0 = no cap

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check kind and ranges (raises ConfigError); all fields, whatever the kind."""
        p = "workload.lengths"
        one_of(f"{p}.kind", self.kind, LENGTH_KINDS)
        ints = ("prefill_tokens", "decode_tokens", "min_prefill", "max_prefill")
        for name in (*ints, "min_decode", "max_decode"):
            _int_at_least(f"{p}.{name}", getattr(self, name), 1)
        for what in ("prefill", "decode"):
            lo, hi = getattr(self, f"min_{what}"), getattr(self, f"max_{what}")
            if lo > hi:
                raise ConfigError(f"{p}.min_{what}", lo, f"must be <= {p}.max_{what} ({hi})")
        positive(f"{p}.zipf_theta", self.zipf_theta)
        _int_at_least(f"{p}.max_total_tokens", self.max_total_tokens, 0)
        if self.max_total_tokens == 1:
            raise ConfigError(
                f"{p}.max_total_tokens", 1, "must be 0 (no cap) or >= 2 (1 prompt + 1 output token)"
            )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LengthConfig:
        """Build from a plain mapping (e.g. OmegaConf); unknown keys raise ConfigError."""
        return _build(cls, d, "workload.lengths")


@dataclass
class WorkloadConfig:
    """A workload: arrival process, length distribution, request count, optional trace.

    ``num_requests`` must be > 0, except that 0 means "all rows" when a trace is used. With
    trace arrivals it takes the first N rows (more than the trace has is an error). With
    trace lengths but generated arrivals, it takes the first N rows, or, when N exceeds
    the rows, N rows drawn uniformly with replacement (seeded).

    ``trace_format``: ``vidur`` requires Vidur's column names (``arrived_at``,
    ``num_prefill_tokens``, ``num_decode_tokens``) and no ``*_column`` options; ``auto``
    and ``columns`` (same behaviour) take the ``*_column`` options when set and otherwise
    detect common names (see ``COLUMN_CANDIDATES``, Vidur's names first). The file is CSV
    (``.csv``, ``.csv.gz``) or Parquet (``.parquet``, ``.pq``). ``trace_file`` is ignored
    (not checked) when neither kind is ``trace``. A relative path is resolved against the
    current directory.
    """

    arrival: ArrivalConfig = field(default_factory=ArrivalConfig)
    lengths: LengthConfig = field(default_factory=LengthConfig)
    num_requests: int = 1000
    trace_file: str | None = None
    trace_format: str = "auto"
    prefill_column: str = ""
    decode_column: str = ""
    arrival_column: str = ""
    # the first N requests (in arrival order) warm the system up and are left out of
    # the summary's latency and throughput figures (still simulated and recorded)
    warmup_requests: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.arrival, Mapping):
            self.arrival = ArrivalConfig.from_dict(self.arrival)
        if isinstance(self.lengths, Mapping):
            self.lengths = LengthConfig.from_dict(self.lengths)
        if isinstance(self.trace_file, Path):
            self.trace_file = str(self.trace_file)
        self.validate()

    @property
    def uses_trace(self) -> bool:
        """Whether arrivals or lengths come from ``trace_file``."""
        return self.arrival.kind == "trace" or self.lengths.kind == "trace"

    def validate(self) -> None:
        """Check everything, including the trace header (raises ConfigError)."""
        if not isinstance(self.arrival, ArrivalConfig):
            raise ConfigError("workload.arrival", self.arrival,
                              "must be an ArrivalConfig or a mapping")
        if not isinstance(self.lengths, LengthConfig):
            raise ConfigError("workload.lengths", self.lengths,
                              "must be a LengthConfig or a mapping")
        self.arrival.validate()
        self.lengths.validate()
        _int_at_least("workload.num_requests", self.num_requests, 0 if self.uses_trace else 1)
        if self.num_requests > MAX_REQUESTS:  # the request table is held in memory
            raise ConfigError("workload.num_requests", self.num_requests,
                              f"must be at most {MAX_REQUESTS:,} (the simulator keeps every "
                              "request's row in memory, about 100 bytes each)")
        one_of("workload.trace_format", self.trace_format, TRACE_FORMATS)
        _int_at_least("workload.warmup_requests", self.warmup_requests, 0)
        if self.num_requests and self.warmup_requests >= self.num_requests:
            raise ConfigError("workload.warmup_requests", self.warmup_requests,
                              f"must be fewer than workload.num_requests={self.num_requests}")
        for name in ("prefill_column", "decode_column", "arrival_column"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"workload.{name}", getattr(self, name),
                                  "must be a column name or ''")
        if self.trace_file is not None and not isinstance(self.trace_file, str):
            raise ConfigError("workload.trace_file", self.trace_file,
                              "must be the path of a CSV or Parquet trace")
        if not self.uses_trace:
            return
        if not self.trace_file or self.trace_file == MISSING:
            kinds = [f"{what}.kind is 'trace'" for what, kind in
                     (("arrival", self.arrival.kind), ("lengths", self.lengths.kind))
                     if kind == "trace"]
            raise ConfigError(
                "workload.trace_file",
                self.trace_file,
                f"is required when workload.{' and workload.'.join(kinds)} (e.g. workload="
                "trace or trace_lengths): set workload.trace_file=PATH to a CSV or Parquet "
                "trace",
            )
        resolve_trace_columns(
            self.trace_file,
            fmt=self.trace_format,
            arrival_column=self.arrival_column,
            prefill_column=self.prefill_column,
            decode_column=self.decode_column,
            need_arrival=self.arrival.kind == "trace",
            need_lengths=self.lengths.kind == "trace",
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WorkloadConfig:
        """Build from a plain mapping (e.g. an OmegaConf ``workload`` node).

        ``arrival`` and ``lengths`` may be nested mappings; unknown keys at any level raise
        ConfigError naming the key and the allowed keys.
        """
        if not isinstance(d, Mapping):
            raise ConfigError("workload", d, f"must be a mapping with keys {_names(cls)}")
        d = dict(d)
        if isinstance(d.get("arrival"), Mapping):
            d["arrival"] = ArrivalConfig.from_dict(d["arrival"])
        if isinstance(d.get("lengths"), Mapping):
            d["lengths"] = LengthConfig.from_dict(d["lengths"])
        return _build(cls, d, "workload")

    @classmethod
    def replay(
        cls, trace_file: str | Path, num_requests: int = 0, time_scale: float = 1.0
    ) -> WorkloadConfig:
        """Replay a trace: its timestamps (first shifted to 0, times ``time_scale``) and its
        token counts; the first ``num_requests`` rows, 0 = all."""
        return cls(
            arrival=ArrivalConfig(kind="trace", time_scale=time_scale),
            lengths=LengthConfig(kind="trace"),
            num_requests=num_requests,
            trace_file=str(trace_file),
        )


# --------------------------------------------------------------------------- traces


def _is_parquet(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith(_PARQUET_SUFFIXES):
        return True
    if name.endswith(_CSV_SUFFIXES):
        return False
    raise ConfigError(
        "workload.trace_file",
        str(path),
        "file name must end in " + ", ".join(_CSV_SUFFIXES + _PARQUET_SUFFIXES),
    )


def _trace_header(path: Path) -> list[str]:
    """Column names of a trace, reading only its header / schema."""
    if not path.is_file():
        raise ConfigError("workload.trace_file", str(path), "file does not exist")
    parquet = _is_parquet(path)
    try:
        cols = pq.read_schema(path).names if parquet else pd.read_csv(path, nrows=0).columns
    except Exception as exc:  # unreadable header: report it as a config error on the file
        raise ConfigError(
            "workload.trace_file", str(path), f"cannot read its header: {exc}"
        ) from exc
    return [str(c) for c in cols]


def resolve_trace_columns(
    path: str | Path,
    *,
    fmt: str = "auto",
    arrival_column: str = "",
    prefill_column: str = "",
    decode_column: str = "",
    need_arrival: bool,
    need_lengths: bool = True,
) -> dict[str, str]:
    """Map the needed normalised column names to the file's columns, reading only the header.

    Raises ConfigError when the file is missing or lacks a needed column (naming the
    missing columns and the ones the file has).
    """
    path = Path(path).expanduser()
    one_of("workload.trace_format", fmt, TRACE_FORMATS)
    explicit = {ARRIVED_AT: arrival_column, NUM_PREFILL: prefill_column, NUM_DECODE: decode_column}
    if fmt == "vidur":
        for role, name in explicit.items():
            if name:
                raise ConfigError(
                    _ROLE_OPTION[role], name, "must be '' with trace_format 'vidur' (fixed names)"
                )
    columns = _trace_header(path)
    lower = {c.lower(): c for c in reversed(columns)}  # first occurrence wins
    roles = ([ARRIVED_AT] if need_arrival else []) + (
        [NUM_PREFILL, NUM_DECODE] if need_lengths else []
    )
    found: dict[str, str] = {}
    missing: list[str] = []
    for role in roles:
        if explicit[role]:
            if explicit[role] in columns:
                found[role] = explicit[role]
            else:
                missing.append(
                    f"{_ROLE_LABEL[role]} ({explicit[role]!r}, from {_ROLE_OPTION[role]})"
                )
            continue
        candidates = (role,) if fmt == "vidur" else COLUMN_CANDIDATES[role]
        exact = [c for c in candidates if c in columns]
        loose = [lower[c.lower()] for c in candidates if c.lower() in lower]
        if exact or loose:
            found[role] = (exact or loose)[0]
        else:
            missing.append(f"{_ROLE_LABEL[role]} (one of {', '.join(candidates)})")
    if missing:
        raise ConfigError(
            "workload.trace_file",
            str(path),
            f"missing column(s): {'; '.join(missing)}; the file has columns: {', '.join(columns)}",
        )
    return found


def read_trace(
    path: str | Path,
    *,
    fmt: str = "auto",
    arrival_column: str = "",
    prefill_column: str = "",
    decode_column: str = "",
    need_arrival: bool,
    need_lengths: bool = True,
    max_rows: int = 0,
) -> pd.DataFrame:
    """Read a trace into normalised columns ``arrived_at`` (float64, raw timestamps, only
    when ``need_arrival``), ``num_prefill_tokens`` and ``num_decode_tokens`` (int64, only
    when ``need_lengths``).

    Reads only the needed columns and, with ``max_rows > 0``, only the first rows (CSV).
    Raises ConfigError, naming the file, the column and the first bad row (0-based, header
    excluded), for a token count that is not an integer >= 1 and for an arrival that is
    NaN, negative or smaller than the previous one. See ``WorkloadConfig`` for formats.
    """
    path = Path(path).expanduser()
    found = resolve_trace_columns(
        path,
        fmt=fmt,
        arrival_column=arrival_column,
        prefill_column=prefill_column,
        decode_column=decode_column,
        need_arrival=need_arrival,
        need_lengths=need_lengths,
    )
    usecols = list(dict.fromkeys(found.values()))
    nrows = max_rows if max_rows > 0 else None
    if _is_parquet(path):
        raw = pd.read_parquet(path, columns=usecols)
        if nrows is not None:
            raw = raw.iloc[:nrows]
    else:
        raw = pd.read_csv(path, usecols=usecols, nrows=nrows)
    if len(raw) == 0:
        raise ConfigError("workload.trace_file", str(path), "the trace has no rows")
    out: dict[str, np.ndarray] = {}
    csv = not _is_parquet(path)
    for role, col in found.items():
        values = pd.to_numeric(raw[col], errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
        if role == ARRIVED_AT:
            i = _first_bad_arrival(values)
            if i is not None:
                allowed = _arrival_problem(values, i)
                raise _row_error(path, col, i, raw[col].iloc[i], allowed, csv)
            out[role] = values
        else:
            bad = np.flatnonzero(~np.isfinite(values) | (values < 1) | (values != np.floor(values)))
            if bad.size:
                i = int(bad[0])
                allowed = "token counts must be integers >= 1"
                raise _row_error(path, col, i, raw[col].iloc[i], allowed, csv)
            out[role] = values.astype(np.int64)
    return pd.DataFrame(out)


def _row_error(path: Path, col: str, row: int, value: Any, allowed: str, csv: bool) -> ConfigError:
    line = f" (line {row + 2} of the file)" if csv else ""
    if isinstance(value, np.generic):
        value = value.item()
    return ConfigError(f"trace {path}, column {col!r}, row {row}{line}", value, allowed)


# --------------------------------------------------------------------------- generation


def _zipf(rng: np.random.Generator, lo: int, hi: int, theta: float, n: int) -> np.ndarray:
    """Integers on [lo, hi] with P(x) ∝ 1/(x - lo + 1)**theta (lo most likely)."""
    weights = np.arange(1, hi - lo + 2, dtype=np.float64) ** -theta
    return lo + rng.choice(hi - lo + 1, size=n, p=weights / weights.sum())


def _arrivals(cfg: ArrivalConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    """Arrival (capped: scheduled) times; capped with cv 1 draws exactly as poisson."""
    if cfg.kind == "poisson" or (cfg.kind == "capped" and cfg.cv == 1.0):
        return np.cumsum(rng.exponential(1.0 / cfg.rate, size=n))
    if cfg.kind in ("gamma", "capped"):
        shape = 1.0 / cfg.cv**2
        return np.cumsum(rng.gamma(shape, 1.0 / (cfg.rate * shape), size=n))
    return np.zeros(n)  # static; closed (the engine sets them); trace: by the caller


def _lengths(cfg: LengthConfig, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if cfg.kind == "fixed":
        return np.full(n, cfg.prefill_tokens, np.int64), np.full(n, cfg.decode_tokens, np.int64)
    if cfg.kind == "uniform":
        prefill = rng.integers(cfg.min_prefill, cfg.max_prefill, size=n, endpoint=True)
        decode = rng.integers(cfg.min_decode, cfg.max_decode, size=n, endpoint=True)
        return prefill, decode
    prefill = _zipf(rng, cfg.min_prefill, cfg.max_prefill, cfg.zipf_theta, n)
    decode = _zipf(rng, cfg.min_decode, cfg.max_decode, cfg.zipf_theta, n)
    return prefill, decode


def _cap(prefill: np.ndarray, decode: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the prompt (cut to cap - 1 if needed), clip the output to fit, at least 1."""
    prefill = np.minimum(prefill, cap - 1)
    decode = np.clip(decode, 1, cap - prefill)
    return prefill, decode


def generate_requests(cfg: WorkloadConfig, rng: np.random.Generator) -> RequestTable:
    """Generate the request table for ``cfg``; same config and seed give the same table.

    Arrivals and lengths use two independent child generators (``rng.spawn(2)``), so the
    arrival times do not depend on the length distribution and vice versa. Spawning
    advances ``rng``'s seed sequence: calling twice with the same ``rng`` object gives
    two different tables; use a fresh ``np.random.default_rng(seed)`` to reproduce one.
    Trace arrivals are shifted so the first is 0, then multiplied by ``time_scale``.
    Trace lengths with generated arrivals: the first ``num_requests`` rows, or rows drawn
    uniformly with replacement when ``num_requests`` exceeds the trace.
    """
    cfg.validate()
    arrival_rng, length_rng = rng.spawn(2)
    n = cfg.num_requests
    trace = None
    if cfg.uses_trace:
        assert cfg.trace_file is not None  # checked by validate()
        trace = read_trace(
            cfg.trace_file,
            fmt=cfg.trace_format,
            arrival_column=cfg.arrival_column,
            prefill_column=cfg.prefill_column,
            decode_column=cfg.decode_column,
            need_arrival=cfg.arrival.kind == "trace",
            need_lengths=cfg.lengths.kind == "trace",
            max_rows=n,
        )
        rows = len(trace)
        if n == 0:
            n = rows
        elif n > rows and cfg.arrival.kind == "trace":
            raise ConfigError(
                "workload.num_requests",
                n,
                f"must be at most {rows} (the rows of {cfg.trace_file}) with trace "
                "arrivals; 0 = all",
            )

    if cfg.arrival.kind == "trace":
        assert trace is not None
        t = trace[ARRIVED_AT].to_numpy(np.float64)[:n]
        arrival = (t - t[0]) * cfg.arrival.time_scale
    else:
        arrival = _arrivals(cfg.arrival, n, arrival_rng)

    if cfg.lengths.kind == "trace":
        assert trace is not None
        prefill = trace[NUM_PREFILL].to_numpy(np.int64)
        decode = trace[NUM_DECODE].to_numpy(np.int64)
        idx = length_rng.choice(len(trace), size=n) if n > len(trace) else slice(0, n)
        prefill, decode = prefill[idx], decode[idx]
    else:
        prefill, decode = _lengths(cfg.lengths, n, length_rng)

    if cfg.lengths.max_total_tokens > 0:
        prefill, decode = _cap(prefill, decode, cfg.lengths.max_total_tokens)
    return RequestTable(arrival=arrival, num_prefill=prefill, num_decode=decode)
