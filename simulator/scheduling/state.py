"""Per-request progress, held as parallel Python lists (fast scalar access in the hot loop)."""

from __future__ import annotations

import math

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
        # token log: scalars from single iterations, arrays from fast-forwarded runs
        self.tok_ids: list[int] = []
        self.tok_times: list[float] = []
        self.tok_id_chunks: list[np.ndarray] = []
        self.tok_time_chunks: list[np.ndarray] = []

    def token_log(self) -> tuple[np.ndarray, np.ndarray]:
        """All emitted tokens as (request id, time), sorted by request then time."""
        ids = np.concatenate([np.asarray(self.tok_ids, dtype=np.int64), *self.tok_id_chunks])
        times = np.concatenate([np.asarray(self.tok_times, dtype=np.float64),
                                *self.tok_time_chunks])
        order = np.lexsort((times, ids))
        return ids[order], times[order]
