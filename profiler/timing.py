"""Timing of one operator call: warm-up, then repeats, reduced to the schema's statistics.

On CUDA every repeat is bracketed by a pair of CUDA events on the current stream and the
host synchronises once after the last repeat. Timed naively, a short operator measures the
Python host's launch overhead instead of the GPU: the GPU idles between the start event
and a kernel the host is still launching. The aim is GPU time with launch gaps excluded
(the simulator models launch and CPU overhead separately). Three CUDA modes:

- ``graph`` (default): the operator is captured into a CUDA graph of ``inner`` back-to-back
  calls (``inner`` = enough calls for about ``graph_target_us`` of GPU time, at most
  ``max_inner``); each repeat replays the graph and the sample is its time / ``inner``.
  Where capture fails, ``queue`` is used.
- ``queue``: before the repeats, the GPU is kept busy with plain matrix multiplications
  for longer than the host needs to enqueue every repeat (three times the measured host
  time), so the repeats then run back to back.
- ``eager``: events around plain calls (host launch overhead included for short ops).

Operators that synchronise with the host (``capturable=False``) are timed eagerly. On the
CPU each repeat is timed with ``time.perf_counter_ns``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from simulator.errors import ConfigError

STAT_NAMES = ("min_us", "median_us", "mean_us", "max_us", "std_us", "count")
EAGER, GRAPH = "eager", "cuda_graph"


def stats(samples_us: Any) -> dict[str, float | int]:
    """Schema statistics of a sample of times in microseconds (population std)."""
    a = np.asarray(samples_us, dtype=np.float64)
    if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"need >= 1 finite, non-negative time, got {a.tolist()}")
    return {"min_us": float(a.min()), "median_us": float(np.median(a)),
            "mean_us": float(a.mean()), "max_us": float(a.max()), "std_us": float(a.std()),
            "count": int(a.size)}


CUDA_MODES = ("graph", "queue", "eager")


@dataclass
class Timer:
    """Times a zero-argument callable ``warmup + repeats`` times on ``device``.

    ``mode`` is how the last measurement was taken: ``graph``, ``queue`` or ``eager``
    (always ``eager`` on the CPU).
    """

    device: torch.device
    warmup: int = 3
    repeats: int = 10
    cuda_mode: str = "graph"
    graph_target_us: float = 1000.0  # graph mode: calls per replay to reach this GPU time
    max_inner: int = 10
    mode: str = field(default="eager", init=False)
    _busy: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.warmup, int) or isinstance(self.warmup, bool) or self.warmup < 0:
            raise ConfigError("warmup", self.warmup, "must be an integer >= 0")
        bad = not isinstance(self.repeats, int) or isinstance(self.repeats, bool)
        if bad or self.repeats < 1:
            raise ConfigError("repeats", self.repeats, "must be an integer >= 1")
        if self.cuda_mode not in CUDA_MODES:
            raise ConfigError("timing", self.cuda_mode, "allowed values are "
                              + ", ".join(CUDA_MODES))

    @property
    def calls(self) -> int:
        """Calls of the operator per measurement."""
        return self.warmup + self.repeats

    def samples(self, fn: Callable[[], Any], capturable: bool = True) -> list[float]:
        """Microseconds of each of ``repeats`` calls of ``fn`` after ``warmup`` calls."""
        self.mode = "eager"
        if self.device.type == "cuda":
            return self._cuda(fn, capturable)
        for _ in range(self.warmup):
            fn()
        out = []
        clock = time.perf_counter_ns
        for _ in range(self.repeats):
            t0 = clock()
            fn()
            out.append((clock() - t0) / 1e3)
        return out

    def _cuda(self, fn: Callable[[], Any], capturable: bool) -> list[float]:
        with torch.cuda.device(self.device):
            for _ in range(self.warmup):
                fn()
            torch.cuda.synchronize()
            starts = [torch.cuda.Event(enable_timing=True) for _ in range(self.repeats)]
            ends = [torch.cuda.Event(enable_timing=True) for _ in range(self.repeats)]
            call, inner = fn, 1
            if capturable and self.cuda_mode != "eager":
                # Probe: three calls timed by the host (enqueue, event records included)
                # and by the GPU (span per call, launch gaps included).
                p0, p1 = (torch.cuda.Event(enable_timing=True) for _ in range(2))
                t0 = time.perf_counter()
                p0.record()
                for _ in range(3):
                    fn()
                p1.record()
                host_s = (time.perf_counter() - t0) / 3
                torch.cuda.synchronize()
                span_us = p0.elapsed_time(p1) * 1e3 / 3
                if self.cuda_mode == "graph":
                    ratio = self.graph_target_us / max(span_us, 1.0)
                    inner = max(1, min(self.max_inner, math.ceil(ratio)))
                    graph = self._capture(fn, inner)
                    if graph is not None:
                        call, self.mode = graph.replay, "graph"
                    else:
                        inner = 1
                if self.mode != "graph":
                    self.mode = "queue"
                    if span_us * 1e-6 < 2 * host_s:  # launch-bound: keep the GPU busy
                        self._keep_busy((host_s + 2e-5) * self.repeats * 3 + 5e-4)
            for s, e in zip(starts, ends, strict=True):
                s.record()
                call()
                e.record()
            torch.cuda.synchronize()
            return [s.elapsed_time(e) * 1e3 / inner for s, e in zip(starts, ends, strict=True)]

    def _keep_busy(self, seconds: float) -> None:
        """Enqueue about ``seconds`` of GPU matrix multiplications (capped at 2 s)."""
        if self._busy is None:
            a = torch.randn(2048, 2048, device=self.device, dtype=torch.bfloat16)
            out = torch.empty_like(a)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(
                enable_timing=True)
            torch.mm(a, a, out=out)
            start.record()
            for _ in range(20):
                torch.mm(a, a, out=out)
            end.record()
            torch.cuda.synchronize()
            self._busy = (a, out, max(start.elapsed_time(end) / 20 * 1e-3, 1e-6))
        a, out, each = self._busy
        for _ in range(min(math.ceil(seconds / each), math.ceil(2.0 / each))):
            torch.mm(a, a, out=out)

    @staticmethod
    def _capture(fn: Callable[[], Any], inner: int) -> Any | None:
        """A CUDA graph of ``inner`` calls of ``fn``, or None when it cannot be captured.

        ``capture_begin``/``capture_end`` rather than the ``torch.cuda.graph`` context,
        which runs ``gc.collect()`` and ``empty_cache()`` at every capture (tens of ms a
        point); a dropped graph's memory returns to the caching allocator, which releases
        it when an allocation would otherwise fail.
        """
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.stream(side):
                fn()  # warm-up on the capture stream, as capture requires
                graph.capture_begin()
                try:
                    for _ in range(inner):
                        fn()
                finally:
                    graph.capture_end()
            torch.cuda.current_stream().wait_stream(side)
            graph.replay()  # one replay before timing (the first uploads the graph)
            torch.cuda.synchronize()
        except RuntimeError:
            torch.cuda.synchronize()
            return None
        return graph

    def measure(self, fn: Callable[[], Any], capturable: bool = True) -> dict[str, float | int]:
        """``stats`` of ``samples(fn)``."""
        return stats(self.samples(fn, capturable))
