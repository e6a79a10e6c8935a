"""vLLM v1 (vLLM >= 0.8, today's default): one token budget per step.

``vllm_v1`` (vLLM's ``Scheduler``, synchronous as in 0.8): each step has ``chunk_size``
tokens (max_num_batched_tokens). Running requests are served first, in admission order: a
decode takes one token, a partially prefilled prompt takes what is left of it up to the
remaining budget. Then waiting requests are admitted in FCFS order, each with a prefill
chunk that fits the budget, while fewer than ``max_batch_size`` (max_num_seqs) are
running. KV blocks are allocated only for the tokens being computed; when none are free,
the lowest-priority (newest) running request is preempted and recomputed later, and no new
request is admitted in that step (vLLM's ``schedule()``, vllm/v1/core/sched/scheduler.py).

``vllm_v1_async`` is the same scheduler as vLLM 0.19 runs it by default
(``async_scheduling`` and ``scheduler_reserve_full_isl`` on, as the resolved config of a
0.19 engine shows):

- Full-prompt admission gate: a waiting request is admitted only when the free blocks hold
  its whole prompt (prompt + tokens already emitted, for a preempted one), not just its
  first chunk (``allocate_slots(..., full_sequence_must_fit=True)``), so long prompts are
  not admitted into a nearly full cache only to be preempted.
- Async scheduling: the engine core schedules step N+1 as soon as step N is launched and
  runs it when N ends (a batch queue two deep). Step N+1 is therefore decided on what the
  scheduler knew when N started: a request that arrived while N ran waits for N+2, and the
  slots and blocks of requests that finish in N are reused from N+2 on. Both apply only to
  admission, and only when N+1 follows N back to back with work in it (an idle engine
  schedules an arrival at once; an empty step is no step). Requests already running are
  planned as in ``vllm_v1``. The CPU work of a step then overlaps the GPU step; the
  ``vllm_0_19`` preset says so with a zero per-step CPU overhead.
"""

from __future__ import annotations

import math

from simulator.config import SchedulerConfig
from simulator.scheduling.base import ReplicaScheduler, register
from simulator.scheduling.batch import Batch
from simulator.scheduling.state import RequestState


@register
class VllmV1Scheduler(ReplicaScheduler):
    name = "vllm_v1"

    @classmethod
    def max_batch_tokens(cls, cfg: SchedulerConfig) -> int:
        return cfg.chunk_size

    @classmethod
    def uses_chunk_size(cls, cfg: SchedulerConfig) -> bool:
        return True

    def schedule(self, now: float) -> Batch | None:
        batch, budget = self._schedule_running()
        if self.preempted_now:
            return batch or None
        self._admit_waiting(batch, budget, now)
        return batch or None

    def _schedule_running(self) -> tuple[Batch, int]:
        """The running requests' share of the step: decodes and prefill chunks in admission
        order, preempting the newest when blocks run out; returns the batch and the budget
        left."""
        st = self.state
        processed, target, in_flight = st.processed, st.target, st.in_flight
        budget = self.cfg.chunk_size
        batch = Batch(self.replica)
        self.preempted_now.clear()
        for rid in list(self.running):
            if budget == 0:
                break
            if in_flight[rid] or rid in self.preempted_now:
                continue
            if processed[rid] >= target[rid]:  # decode
                if self._grow_or_preempt(rid, processed[rid] + 1, batch):
                    batch.decode_ids.append(rid)
                    batch.decode_kv.append(processed[rid] + 1)
                    budget -= 1
            else:
                chunk = min(target[rid] - processed[rid], budget)
                if self._grow_or_preempt(rid, processed[rid] + chunk, batch):
                    self._add_prefill(batch, rid, chunk)
                    budget -= chunk
        return batch, budget

    def _admit_waiting(self, batch: Batch, budget: int, now: float) -> None:
        """Admit waiting requests in FCFS order while the budget, max_num_seqs and the free
        blocks (for the first chunk) allow."""
        st = self.state
        processed, target = st.processed, st.target
        cap = self.cfg.max_batch_size
        while self.waiting and budget > 0 and len(self.running) < cap:
            rid = self.waiting[0]
            chunk = min(target[rid] - processed[rid], budget)
            if not self._grow(rid, processed[rid] + chunk):
                break
            self.waiting.popleft()
            self._admit(rid, now, allocate=False)
            self._add_prefill(batch, rid, chunk)
            budget -= chunk

    def _add_prefill(self, batch: Batch, rid: int, chunk: int) -> None:
        batch.prefill_ids.append(rid)
        batch.prefill_chunks.append(chunk)
        batch.prefill_prior.append(self.state.processed[rid])

    def _head_blocked(self, head: int, chunk: int) -> bool:
        """Whether the free blocks cannot admit ``head`` with a first chunk of ``chunk``."""
        st = self.state
        return self.blocks_for(st.processed[head] + chunk) - st.blocks[head] > self.free_blocks

    def steady(self) -> bool:
        st = self.state
        n = len(self.running)
        if n > self.cfg.chunk_size:
            return False
        for rid in self.running:
            if st.in_flight[rid] or st.processed[rid] < st.target[rid]:
                return False
        if not self.waiting:
            return True
        head = self.waiting[0]
        chunk = min(st.target[head] - st.processed[head], self.cfg.chunk_size - n)
        return n >= self.cfg.max_batch_size or chunk <= 0 or self._head_blocked(head, chunk)


@register
class VllmV1AsyncScheduler(VllmV1Scheduler):
    """``vllm_v1`` with async scheduling and the full-prompt admission gate (vLLM 0.19's
    defaults; see the module docstring)."""

    name = "vllm_v1_async"

    def __init__(self, replica: int, cfg: SchedulerConfig, state: RequestState,
                 num_blocks: int, max_context: int) -> None:
        super().__init__(replica, cfg, state, num_blocks, max_context)
        self._prev_start = -math.inf  # start of the batch that ended last
        self._prev_end = -math.inf  # and its end
        self._late_seqs = 0  # requests that finished at _prev_end: their slots and
        self._late_blocks = 0  # blocks are free only from the step after next

    def on_batch_end(self, batch: Batch, now: float) -> None:
        n, free = len(self.running), self.free_blocks
        super().on_batch_end(batch, now)
        if batch.flagged:  # pipeline stages: micro-batches already overlap; no lag
            self._prev_end = -math.inf
            return
        self._late_seqs = n - len(self.running)
        self._late_blocks = self.free_blocks - free
        self._prev_start, self._prev_end = batch.start, now

    def _admit_waiting(self, batch: Batch, budget: int, now: float) -> None:
        st = self.state
        processed, target = st.processed, st.target
        lagged = now == self._prev_end and bool(batch)
        late_blocks = self._late_blocks if lagged else 0
        cap = self.cfg.max_batch_size - (self._late_seqs if lagged else 0)
        known_by = self._prev_start if lagged else math.inf
        while self.waiting and budget > 0 and len(self.running) < cap:
            rid = self.waiting[0]
            if st.arrival[rid] > known_by and not st.preemptions[rid]:
                break  # arrived after this step was planned (FCFS: so did the rest)
            if self.blocks_for(target[rid]) - st.blocks[rid] > self.free_blocks - late_blocks:
                break  # the whole prompt does not fit
            chunk = min(target[rid] - processed[rid], budget)
            self._grow(rid, processed[rid] + chunk)  # fits: the whole prompt does
            self.waiting.popleft()
            self._admit(rid, now, allocate=False)
            self._add_prefill(batch, rid, chunk)
            budget -= chunk

    def _head_blocked(self, head: int, chunk: int) -> bool:
        st = self.state
        return self.blocks_for(st.target[head]) - st.blocks[head] > self.free_blocks
