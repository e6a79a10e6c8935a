"""The replica-scheduler interface and what every scheduler shares: queues, paged-KV
block accounting, preemption by recompute, progress at batch end, and the fast path."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from typing import ClassVar

import numpy as np

from simulator.config import SchedulerConfig
from simulator.execution.base import ExecutionModel
from simulator.scheduling.batch import Batch
from simulator.scheduling.state import RequestState

REGISTRY: dict[str, type[ReplicaScheduler]] = {}


def register(cls: type[ReplicaScheduler]) -> type[ReplicaScheduler]:
    """Class decorator: make a scheduler selectable by its ``name``."""
    REGISTRY[cls.name] = cls
    return cls


class ReplicaScheduler(ABC):
    """Decides, iteration by iteration, which requests a replica runs.

    Subclasses implement ``schedule`` (build the next batch from requests not in flight,
    allocating KV blocks for it) and, to enable the fast path, ``steady``. ``kv_grows``
    says whether blocks are allocated as the KV grows (paged, may preempt) or reserved
    for the whole sequence at admission.
    """

    name: ClassVar[str]
    kv_grows: ClassVar[bool] = True

    def __init__(
        self,
        replica: int,
        cfg: SchedulerConfig,
        state: RequestState,
        num_blocks: int,
        max_context: int,
    ) -> None:
        self.replica = replica
        self.cfg = cfg
        self.state = state
        self.block_size = self.effective_block_size(cfg)
        self.num_blocks = num_blocks
        self.free_blocks = num_blocks
        self.max_context = max_context
        self.waiting: deque[int] = deque()
        self.running: list[int] = []  # admitted (KV held), oldest first
        self.outstanding = 0  # routed here and not completed
        self.preempted_now: set[int] = set()  # preempted while building the current batch
        self.last_duration = 0.0  # runtime of the replica's last batch (a hint for the fast path)

    # ----------------------------------------------------------------- admission
    @classmethod
    def effective_block_size(cls, cfg: SchedulerConfig) -> int:
        return cfg.block_size

    @classmethod
    def max_batch_tokens(cls, cfg: SchedulerConfig) -> int:
        """Most tokens one batch can hold: sizes the activation headroom."""
        return cfg.max_tokens_per_batch

    @classmethod
    def uses_chunk_size(cls, cfg: SchedulerConfig) -> bool:
        """Whether this scheduler, under ``cfg``, reads ``chunk_size`` (its per-iteration
        token budget); those that never chunk prompts ignore it."""
        return False

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    def admission_tokens(self, rid: int) -> int:
        """Tokens whose KV must be allocated when the request is admitted."""
        return self.state.target[rid]

    def reject_reason(self, rid: int) -> str:
        """Why this request can never run on this replica ("" if it can)."""
        st = self.state
        total = st.prefill[rid] + st.decode[rid]
        if total > self.max_context:
            return (f"prompt + output = {total} tokens exceeds the model's max_context "
                    f"{self.max_context}")
        need = self.blocks_for(self._peak_tokens(rid))
        if need > self.num_blocks:
            return (f"needs {need} KV blocks of {self.block_size} tokens, the replica has "
                    f"{self.num_blocks}")
        return ""

    def _peak_tokens(self, rid: int) -> int:
        return self.state.prefill[rid] + self.state.decode[rid] - 1

    def add_request(self, rid: int) -> None:
        self.waiting.append(rid)
        self.outstanding += 1

    def _admit(self, rid: int, now: float, *, allocate: bool = True) -> None:
        """Move a waiting request into running, allocating its admission blocks."""
        st = self.state
        if allocate:
            need = self.blocks_for(self.admission_tokens(rid)) - st.blocks[rid]
            self.free_blocks -= need
            st.blocks[rid] += need
        self.running.append(rid)
        if st.scheduled_at[rid] != st.scheduled_at[rid]:  # NaN: first time scheduled
            st.scheduled_at[rid] = now

    def _can_allocate(self, rid: int) -> bool:
        need = self.blocks_for(self.admission_tokens(rid)) - self.state.blocks[rid]
        return need <= self.free_blocks

    def _grow(self, rid: int, tokens: int) -> bool:
        """Ensure ``rid`` holds blocks for ``tokens`` cached tokens; False if none are free."""
        st = self.state
        need = -(-tokens // self.block_size) - st.blocks[rid]
        if need <= 0:
            return True
        if need > self.free_blocks:
            return False
        self.free_blocks -= need
        st.blocks[rid] += need
        return True

    def _release(self, rid: int) -> None:
        st = self.state
        self.free_blocks += st.blocks[rid]
        st.blocks[rid] = 0

    def preempt(self, rid: int) -> None:
        """Free ``rid``'s KV and queue it first in line to be recomputed from scratch."""
        st = self.state
        self._release(rid)
        st.processed[rid] = 0
        # recompute prompt + every emitted token; that prefill emits the next token
        st.target[rid] = st.prefill[rid] + st.generated[rid]
        st.preemptions[rid] += 1
        self.running.remove(rid)
        self.waiting.appendleft(rid)
        self.preempted_now.add(rid)

    def _grow_or_preempt(self, rid: int, tokens: int, batch: Batch) -> bool:
        """Allocate for ``rid``; when blocks run out, preempt the newest running request
        not already in this batch (vLLM's recompute policy). False if ``rid`` cannot run
        this iteration: it preempted itself or, when the only other candidates are in
        flight in the pipeline, it sits this iteration out holding its KV (self-preempting
        then could make two requests undo each other's work forever)."""
        while not self._grow(rid, tokens):
            victim = self._newest_preemptible(batch)
            if victim is None or victim == rid:
                in_flight = self.state.in_flight
                if any(in_flight[r] for r in self.running):
                    return False
                self.preempt(rid)
                return False
            self.preempt(victim)
        return True

    def _newest_preemptible(self, batch: Batch) -> int | None:
        in_batch = set(batch.decode_ids) | set(batch.prefill_ids)
        in_flight = self.state.in_flight
        for rid in reversed(self.running):
            if rid not in in_batch and not in_flight[rid]:
                return rid
        return None

    def enable_cohort(self) -> bool:
        """Switch on the decode-cohort fast path (see ``simulator.scheduling.sarathi``) if
        this scheduler has one, and say whether it did. The engine asks before the first
        request, with ``engine.fast_forward`` on and an execution model that has
        ``stage_times_sum`` and ``decode_steps_sum``: the batches may then carry their
        steady decodes as ``cohort_decodes`` and ``cohort_kv_sum`` instead of a list."""
        return False

    # ----------------------------------------------------------------- iteration
    @abstractmethod
    def schedule(self, now: float) -> Batch | None:
        """The next batch (blocks allocated, requests marked in flight by the engine)."""

    def steady(self) -> bool:
        """True when the next iterations are all-running decodes and nothing but a
        completion, an arrival or running out of blocks can change that."""
        return False

    def on_batch_end(self, batch: Batch, now: float) -> None:
        """Advance the batch's requests, emit their tokens, retire the completed."""
        st = self.state
        processed, generated, decode = st.processed, st.generated, st.decode
        in_flight = st.in_flight
        done = []
        emitted = []
        for rid, chunk in zip(batch.prefill_ids, batch.prefill_chunks, strict=True):
            in_flight[rid] = False
            processed[rid] += chunk
            if processed[rid] >= st.target[rid]:
                g = generated[rid] = generated[rid] + 1
                emitted.append(rid)
                if g == 1:
                    st.first_token_at[rid] = now
                if g >= decode[rid]:
                    done.append(rid)
        dec = batch.decode_ids
        if batch.flagged:
            for rid in dec:
                in_flight[rid] = False
        for rid in dec:
            processed[rid] += 1
            g = generated[rid] = generated[rid] + 1
            if g >= decode[rid]:
                done.append(rid)
        if emitted:
            emitted.extend(dec)
            dec = emitted
        if dec:
            st.tok_batches.append(dec)
            st.tok_batch_times.append(now)
        if done:
            for rid in done:
                self._release(rid)
                st.completed_at[rid] = now
            finished = set(done)
            self.running = [r for r in self.running if r not in finished]
            self.outstanding -= len(done)

    # ----------------------------------------------------------------- fast path
    def _on_fast_forward(self, steps: int) -> None:
        """Hook: ``steps`` decode-only iterations were planned without ``schedule``."""
        return None

    def fast_forward(
        self, now: float, horizon: float, execution: ExecutionModel, max_steps: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Batch, float] | None:
        """Run all-decode iterations in one go while nothing outside can change them.

        Takes every iteration of the steady phase that starts before ``horizon`` (the
        next arrival): all but the last are advanced now (token times and batch rows as
        arrays); the last is returned as an ordinary batch with its runtime, for the
        engine to launch, so that completions and the next decision happen at their own
        event. Returns (starts, ends, blocks used) of the advanced iterations, the last
        batch and its runtime; or None when fewer than two iterations qualify. Only for
        one pipeline stage.
        """
        ids = self.running
        st = self.state
        n = len(ids)
        # not worth trying when the next arrival comes within ~4 iterations (effort only:
        # a run of a few iterations costs more in numpy than it saves)
        if n == 0 or horizon - now < 4 * self.last_duration or not self.steady():
            return None
        ctx = np.fromiter((st.processed[r] for r in ids), dtype=np.int64, count=n)
        rem = np.fromiter((st.decode[r] - st.generated[r] for r in ids), dtype=np.int64, count=n)
        k = min(int(rem.min()), max_steps)
        if k < 2:
            return None
        steps = np.arange(1, k + 1, dtype=np.int64)
        if self.kv_grows:
            bs = self.block_size
            held = np.fromiter((st.blocks[r] for r in ids), dtype=np.int64, count=n)
            need = (ctx[:, None] + steps[None, :] + (bs - 1)) // bs - held[:, None]
            new_blocks = np.maximum(need, 0).sum(axis=0)
            k = min(k, int(np.searchsorted(new_blocks, self.free_blocks, side="right")))
            if k < 2:
                return None
        else:
            new_blocks = np.zeros(k, dtype=np.int64)
        times = execution.decode_steps(ctx + 1, k)[:, 0]
        ends = np.cumsum(np.concatenate(([now], times)))[1:]
        starts = np.concatenate(([now], ends[:-1]))
        k = min(k, int(np.searchsorted(starts, horizon, side="left")))
        if k < 2:
            return None
        adv = k - 1  # advanced now; iteration k is returned as a batch
        for r in ids:
            st.processed[r] += adv
            st.generated[r] += adv
        if self.kv_grows:
            bs = self.block_size
            for r, c in zip(ids, ctx.tolist(), strict=True):
                st.blocks[r] = max(st.blocks[r], -(-(c + k) // bs))
        used_before = self.num_blocks - self.free_blocks
        self.free_blocks -= int(new_blocks[k - 1])
        self._on_fast_forward(k)
        ids_arr = np.asarray(ids, dtype=np.int64)
        st.tok_id_chunks.append(np.tile(ids_arr, adv))
        st.tok_time_chunks.append(np.repeat(ends[:adv], n))
        last = Batch(self.replica)
        last.decode_ids = list(ids)
        last.decode_kv = (ctx + k).tolist()
        return starts[:adv], ends[:adv], used_before + new_blocks[:adv], last, float(times[k - 1])
