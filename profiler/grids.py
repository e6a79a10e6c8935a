"""The shapes the profiler measures (grids), their defaults, and a run-time estimate.

Every grid is log-spaced: ``log_grid(lo, hi, k)`` holds ``lo``, ``hi`` and about ``k``
integers per doubling between them, so small shapes (where launch overhead dominates) and
large ones (where FLOPs and bytes dominate) are both covered with a few hundred points.

- layer_ops: every operator at ``num_tokens`` in ``tokens`` (1 .. ``tokens_max``); the LM
  head runs on one row per sequence, so it uses ``batches`` (1 .. ``batch_max``).
- attention_prefill: ``chunk_tokens`` in ``tokens`` x ``prior_kv`` in ``0 + kvs``, with
  ``chunk + prior <= kv_max`` (the context), for each batch size in ``prefill_batch``.
- attention_decode: ``batch_size`` in ``batches`` x ``kv_len`` in ``kvs``, keeping points
  whose KV (``batch * kv_len`` tokens) is at most ``kv_tokens_max``: by default what the
  engine could cache on this device at this TP, so no point is larger than a real batch.
- collective: message sizes in ``collective_sizes`` (bytes, 1 KiB .. 512 MiB).

A value of 0 (``warmup``: -1) takes the default, which depends on the run: full-size
models get dense grids; the tiny CPU model gets small, quick ones (see ``DEFAULTS``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from simulator.errors import ConfigError

TOKENS_CAP = 32768  # default tokens_max is the model context, at most this
# Defaults per kind of run: "gpu" (full-size model) and "tiny" (the CPU stand-in model).
DEFAULTS: dict[str, dict[str, Any]] = {
    "gpu": {"points_per_octave": 4, "batch_max": 512, "kv_min": 16, "warmup": 5,
            "repeats": 20, "collective_min": 1 << 10, "collective_max": 1 << 29},
    "tiny": {"points_per_octave": 1, "batch_max": 16, "kv_min": 16, "warmup": 1,
             "repeats": 3, "collective_min": 1 << 10, "collective_max": 1 << 16},
}


def log_grid(lo: int, hi: int, per_octave: int) -> list[int]:
    """Sorted distinct integers from ``lo`` to ``hi`` (both included), about
    ``per_octave`` per doubling, geometrically spaced."""
    if lo < 1 or hi < lo:
        raise ValueError(f"need 1 <= lo <= hi, got lo={lo}, hi={hi}")
    steps = math.ceil(math.log2(hi / lo) * per_octave) if hi > lo else 0
    values = {lo, hi}
    for i in range(1, steps):
        values.add(min(hi, round(lo * 2 ** (i / per_octave))))
    return sorted(values)


def _int(field: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(field, value, f"must be an integer >= {minimum}")
    return value


@dataclass(frozen=True)
class GridConfig:
    """Grid knobs; 0 means "the default for this run" (see the module docstring)."""

    tokens_max: int = 0  # 0 = the model context, at most TOKENS_CAP
    batch_max: int = 0  # 0 = 512 (tiny: 16)
    kv_min: int = 0  # 0 = 16: smallest non-zero KV length
    kv_max: int = 0  # 0 = the model context
    kv_tokens_max: int = 0  # 0 = the engine's KV capacity on this device at this TP
    points_per_octave: int = 0  # 0 = 4 (tiny: 1)
    prefill_batch: tuple[int, ...] = (1,)
    collective_min: int = 0  # bytes; 0 = 1 KiB
    collective_max: int = 0  # bytes; 0 = 512 MiB (tiny: 64 KiB)
    warmup: int = -1  # -1 = 5 (tiny: 1); 0 = no warm-up
    repeats: int = 0  # 0 = 20 (tiny: 3)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "prefill_batch":
                if not isinstance(value, tuple) or not value:
                    raise ConfigError("prefill_batch", value,
                                      "must be a non-empty list of integers >= 1")
                for v in value:
                    _int("prefill_batch", v, 1)
            else:
                _int(f.name, value, -1 if f.name == "warmup" else 0)
        if self.points_per_octave > 64:
            raise ConfigError("points_per_octave", self.points_per_octave, "must be <= 64")
        if self.kv_min and self.kv_max and self.kv_min > self.kv_max:
            raise ConfigError("kv_min", self.kv_min, f"must be <= kv_max={self.kv_max}")
        lo, hi = self.collective_min, self.collective_max
        if lo and hi and lo > hi:
            raise ConfigError("collective_min", lo, f"must be <= collective_max={hi}")

    def resolve(self, *, context: int, tiny: bool, kv_tokens_cap: int) -> Grid:
        """Concrete grids for a model of ``context`` tokens; ``kv_tokens_cap`` is the
        default ``kv_tokens_max`` (the device's KV capacity in tokens for one layer)."""
        d = DEFAULTS["tiny" if tiny else "gpu"]

        def pick(name: str, default: int) -> int:
            value = getattr(self, name)
            return value if value else default

        ppo = pick("points_per_octave", d["points_per_octave"])
        tokens_max = pick("tokens_max", min(context, TOKENS_CAP))
        kv_max = pick("kv_max", context)
        kv_min = min(pick("kv_min", d["kv_min"]), kv_max)
        cmin = pick("collective_min", d["collective_min"])
        cmax = max(cmin, pick("collective_max", d["collective_max"]))
        return Grid(
            tokens=log_grid(1, tokens_max, ppo),
            batches=log_grid(1, pick("batch_max", d["batch_max"]), ppo),
            kvs=log_grid(kv_min, kv_max, ppo),
            kv_max=kv_max,
            kv_tokens_max=pick("kv_tokens_max", kv_tokens_cap),
            prefill_batch=list(self.prefill_batch),
            collective_sizes=log_grid(cmin, cmax, ppo),
            warmup=self.warmup if self.warmup >= 0 else d["warmup"],
            repeats=self.repeats or d["repeats"],
        )


@dataclass(frozen=True)
class Grid:
    """Concrete, validated grids of one run."""

    tokens: list[int]
    batches: list[int]
    kvs: list[int]
    kv_max: int
    kv_tokens_max: int
    prefill_batch: list[int]
    collective_sizes: list[int]
    warmup: int
    repeats: int

    def prefill_points(self) -> list[tuple[int, int, int]]:
        """(batch_size, chunk_tokens, prior_kv) with chunk + prior <= kv_max."""
        return [(b, c, p) for b in self.prefill_batch for c in self.tokens
                for p in (0, *self.kvs) if c + p <= self.kv_max]

    def decode_points(self) -> tuple[list[tuple[int, int]], int]:
        """(batch_size, kv_len) within ``kv_tokens_max``, and how many were left out."""
        all_points = [(b, kv) for b in self.batches for kv in self.kvs]
        kept = [(b, kv) for b, kv in all_points if b * kv <= self.kv_tokens_max]
        return kept, len(all_points) - len(kept)

    def op_points(self, ops: Iterable[str]) -> list[tuple[str, int]]:
        """(op, num_tokens) for every layer operator (LM head over ``batches``)."""
        return [(op, t) for op in ops
                for t in (self.batches if op == "lm_head" else self.tokens)]


# --------------------------------------------------------------------------- estimate


@dataclass(frozen=True)
class Rates:
    """What one call costs on a device, for the run-time estimate."""

    flops_per_s: float
    bytes_per_s: float
    call_s: float  # fixed cost of one timed call (launch, dispatch)
    point_s: float  # fixed cost of one grid point (inputs, synchronisation, bookkeeping)
    setup_s: float = 0.0  # fixed cost of one batch of points (weights, first-call setup)

    def call(self, flops: float, data: float) -> float:
        """Seconds of one call moving ``data`` bytes and doing ``flops``."""
        return max(self.call_s, flops / self.flops_per_s, data / self.bytes_per_s)


def estimate_seconds(costs: Sequence[tuple[float, float]], calls_per_point: int,
                     rates: Rates) -> float:
    """Estimated seconds to measure points of (FLOPs, bytes) per call."""
    per_call = sum(rates.call(f, b) for f, b in costs)
    return per_call * calls_per_point + rates.point_s * len(costs) + rates.setup_s


def format_seconds(s: float) -> str:
    """``1h 02m``, ``3m 05s`` or ``12.3s``."""
    if s >= 3600:
        return f"{int(s // 3600)}h {int(s % 3600 // 60):02d}m"
    if s >= 60:
        return f"{int(s // 60)}m {int(s % 60):02d}s"
    return f"{s:.1f}s"
