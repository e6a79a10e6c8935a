"""Per-request progress, held as parallel Python lists (fast scalar access in the hot loop)."""

from __future__ import annotations

import math
from itertools import chain

import numpy as np

from simulator.workload import RequestTable


class RequestState:
    """Mutable progress of every request, indexed by request id.

    A request's prompt is prefilled (possibly in chunks) up to ``target`` tokens; the
    iteration that completes it emits a token. Each decode iteration then processes the
    last emitted token and emits the next. ``processed`` counts tokens whose KV is cached;
    a preempted request restarts with ``target`` = prompt + tokens emitted so far
    (recompute), so its next prefill emits its next token.
    """

    def __init__(self, table: RequestTable) -> None:
        n = len(table)
        self.n = n
        self.arrival: list[float] = table.arrival.tolist()
        self.prefill: list[int] = table.num_prefill.tolist()
        self.decode: list[int] = table.num_decode.tolist()
        self.target: list[int] = list(self.prefill)
        self.processed: list[int] = [0] * n
        self.generated: list[int] = [0] * n
        self.blocks: list[int] = [0] * n
        self.in_flight: list[bool] = [False] * n
        self.replica: list[int] = [-1] * n
        self.scheduled_at: list[float] = [math.nan] * n
        self.first_token_at: list[float] = [math.nan] * n
        self.completed_at: list[float] = [math.nan] * n
        self.preemptions: list[int] = [0] * n
        self.reject_reason: list[str] = [""] * n
        # token log: per batch, the requests that emitted a token and the time; arrays
        # for fast-forwarded runs (no per-token Python objects)
        self.tok_batches: list[list[int]] = []
        self.tok_batch_times: list[float] = []
        self.tok_id_chunks: list[np.ndarray] = []
        self.tok_time_chunks: list[np.ndarray] = []
        # decode cohorts (``SarathiScheduler``'s fast path): each cohort's batch end
        # times, and per run of a request's batches in one cohort a segment (request,
        # cohort, index of its first batch end there, number of batches)
        self.cohort_ends: list[list[float]] = []
        self.tok_segments: list[tuple[int, int, int, int]] = []

    def token_log(self) -> tuple[np.ndarray, np.ndarray]:
        """All emitted tokens as (request id, time), sorted by request then time."""
        counts = np.fromiter(map(len, self.tok_batches), dtype=np.int64,
                             count=len(self.tok_batches))
        flat = np.array(list(chain.from_iterable(self.tok_batches)), dtype=np.int64)
        ids = np.concatenate([flat, *self.tok_id_chunks])
        times = np.concatenate([np.repeat(np.asarray(self.tok_batch_times), counts),
                                *self.tok_time_chunks])
        if self.tok_segments:
            return self._with_segments(ids, times)
        # each request's tokens are logged in time order, so a stable sort by request
        # suffices; check it, and fall back to sorting on both keys if not
        order = np.argsort(ids, kind="stable")
        ids, times = ids[order], times[order]
        same = ids[1:] == ids[:-1]
        if np.any(np.diff(times)[same] < 0):
            order = np.lexsort((times, ids))
            ids, times = ids[order], times[order]
        return ids, times

    def _with_segments(self, ids: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Merge single tokens (``ids``, ``times``) with the cohort segments, sorted.

        Every single token and every segment is a piece with a first time and a length;
        one request's pieces never overlap in time (a request is in one batch at a time,
        and in a cohort's batches only while a member), so sorting the pieces by (request,
        first time) and expanding them sorts the tokens."""
        lengths = np.fromiter(map(len, self.cohort_ends), dtype=np.int64,
                              count=len(self.cohort_ends))
        offset = np.cumsum(lengths) - lengths
        all_ends = np.fromiter(chain.from_iterable(self.cohort_ends), dtype=np.float64,
                               count=int(lengths.sum()))
        seg = np.asarray(self.tok_segments, dtype=np.int64)
        seg_first = offset[seg[:, 1]] + seg[:, 2]
        n_single = len(ids)
        src = np.concatenate([all_ends, times])  # where each piece's times are read
        p_id = np.concatenate([ids, seg[:, 0]])
        p_src = np.concatenate([len(all_ends) + np.arange(n_single, dtype=np.int64), seg_first])
        p_len = np.concatenate([np.ones(n_single, dtype=np.int64), seg[:, 3]])
        order = np.lexsort((src[p_src], p_id))
        p_len, p_src = p_len[order], p_src[order]
        total = int(p_len.sum())
        pos = np.repeat(p_src - (np.cumsum(p_len) - p_len), p_len) + np.arange(total)
        return np.repeat(p_id[order], p_len), src[pos]
