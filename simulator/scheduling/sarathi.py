"""Sarathi-Serve (Agrawal et al., OSDI 2024): stall-free chunked prefill.

Each iteration has a token budget (``chunk_size``). Ongoing decodes go first (one token
each), then the partial prefills of admitted requests, then new requests, whose prompts
are split into chunks that fill the remaining budget: hybrid batches that never stall
decodes behind a long prompt. A request's whole prompt is allocated in KV at admission;
decode growth allocates block by block and preempts the newest request when blocks run
out (recompute). ``max_batch_size`` caps the running sequences.

Fast path (``enable_cohort``, switched on by the engine): the requests past their prefill
are held in decode cohorts, so that no iteration touches each of them. A batch decodes a
cohort as a whole; each member keeps (cohort batch index, tokens cached, tokens emitted)
from when it joined, and its progress is the number of the cohort's batches since. The
cohort's context sum, its members by block phase (how many need a new KV block in a given
batch) and their completion batches (a heap) make an iteration O(1) in the decodes, and a
member's tokens are logged as one segment of its cohort's batch end times. With one
pipeline stage there is one cohort; with PP each in-flight batch carries its own, and the
decodes not in flight form the available cohort (two that become available together
merge). When an iteration cannot decode the whole available cohort (out of blocks:
preemption; more decodes than the cap or the budget), every cohort is dissolved into
per-request state, in-flight ones included, and the per-request code above runs; the
results are the same, bit for bit.
"""

from __future__ import annotations

import heapq

import numpy as np

from simulator.config import SchedulerConfig
from simulator.execution.base import ExecutionModel
from simulator.scheduling.base import ReplicaScheduler, register
from simulator.scheduling.batch import Batch
from simulator.scheduling.state import RequestState

# iterations to stay per-request after the cohorts had to be dissolved
_COHORT_BACKOFF = 8
# shortest steady run the cohort fast-forwards (iterations; unless the engine's
# max_fast_forward_steps is smaller)
_FF_MIN_STEPS = 8


class _Cohort:
    """Decodes that advance together: every batch that carries the cohort decodes each
    member once. ``ends`` holds the end times of those batches (registered with the
    request state, which reads the members' token times from it)."""

    __slots__ = ("batch", "done", "ends", "index", "lsum", "members", "phase")

    def __init__(self, block_size: int, state: RequestState) -> None:
        self.members: dict[int, tuple[int, int, int]] = {}  # rid -> (j0, cached, emitted)
        self.phase = [0] * block_size  # members by (cached - j0) % block_size
        self.lsum = 0  # the members' context sum in the next batch
        self.done: list[tuple[int, int]] = []  # heap: (batch index it completes at, rid)
        self.ends: list[float] = []
        self.index = len(state.cohort_ends)
        state.cohort_ends.append(self.ends)
        self.batch: Batch | None = None  # the batch carrying it, while in flight


@register
class SarathiScheduler(ReplicaScheduler):
    name = "sarathi"

    def __init__(self, replica: int, cfg: SchedulerConfig, state: RequestState,
                 num_blocks: int, max_context: int) -> None:
        super().__init__(replica, cfg, state, num_blocks, max_context)
        self.cohort_mode = False  # the fast path is enabled (``enable_cohort``)
        self._on = False  # cohorts hold every running decode
        self._avail: _Cohort | None = None  # the decodes not in flight
        self._flying: list[_Cohort] = []  # cohorts of the batches in flight
        self._prefilling: list[int] = []  # running requests still prefilling, in order
        self._backoff = 0

    @classmethod
    def max_batch_tokens(cls, cfg: SchedulerConfig) -> int:
        return cfg.chunk_size

    @classmethod
    def uses_chunk_size(cls, cfg: SchedulerConfig) -> bool:
        return True

    def enable_cohort(self) -> bool:
        """Cohorts on (before the first request). Not for a subclass that changes how
        iterations are built or end (vLLM v0): it keeps the per-request path."""
        cls = type(self)
        if self.waiting or self.running or any(
                getattr(cls, m) is not getattr(SarathiScheduler, m)
                for m in ("schedule", "steady", "on_batch_end", "fast_forward", "preempt")):
            return False
        self.cohort_mode = True
        return True

    def schedule(self, now: float) -> Batch | None:
        if self.cohort_mode:
            return self._schedule_cohort(now)
        st = self.state
        processed, target, in_flight = st.processed, st.target, st.in_flight
        cap = self.cfg.max_batch_size
        batch = Batch(self.replica)
        budget = self._add_decodes(batch, self.cfg.chunk_size, cap)
        size = len(batch.decode_ids)
        for rid in self.running:
            if budget == 0 or size >= cap:
                break
            if in_flight[rid] or processed[rid] >= target[rid]:
                continue
            budget -= self._add_chunk(batch, rid, budget)
            size += 1
        while self.waiting and budget > 0 and len(self.running) < cap and size < cap:
            rid = self.waiting[0]
            if not self._can_allocate(rid):
                break
            self.waiting.popleft()
            self._admit(rid, now)
            budget -= self._add_chunk(batch, rid, budget)
            size += 1
        return batch if size else None

    def _add_decodes(self, batch: Batch, budget: int, cap: int) -> int:
        """Add every running request's next decode, in admission order, while the token
        budget and the batch cap allow, growing its KV (or preempting for it); returns
        the budget left."""
        st = self.state
        processed, target, in_flight, blocks = st.processed, st.target, st.in_flight, st.blocks
        bs = self.block_size
        dec_ids, dec_kv = batch.decode_ids, batch.decode_kv
        preempted = self.preempted_now
        preempted.clear()
        for rid in list(self.running):
            if budget == 0 or len(dec_ids) >= cap:
                break
            if in_flight[rid] or processed[rid] < target[rid] or rid in preempted:
                continue
            ctx = processed[rid] + 1
            if ctx > blocks[rid] * bs and not self._grow_or_preempt(rid, ctx, batch):
                continue
            dec_ids.append(rid)
            dec_kv.append(ctx)
            budget -= 1
        return budget

    def _add_chunk(self, batch: Batch, rid: int, budget: int) -> int:
        st = self.state
        chunk = min(st.target[rid] - st.processed[rid], budget)
        batch.prefill_ids.append(rid)
        batch.prefill_chunks.append(chunk)
        batch.prefill_prior.append(st.processed[rid])
        return chunk

    def steady(self) -> bool:
        st = self.state
        n = len(self.running)
        if n > self.cfg.max_batch_size or n > self.cfg.chunk_size:
            return False
        if self._on:
            if self._prefilling or self._flying:
                return False
        else:
            for rid in self.running:
                if st.in_flight[rid] or st.processed[rid] < st.target[rid]:
                    return False
        if not self.waiting:
            return True
        budget_left = self.cfg.chunk_size - n
        return n >= self.cfg.max_batch_size or budget_left <= 0 or not self._can_allocate(
            self.waiting[0]
        )

    # ----------------------------------------------------------------- cohort fast path
    def _join(self, c: _Cohort, rid: int, p: int, g: int, check: bool = True) -> bool:
        """Add decode ``rid`` (``p`` tokens cached, ``g`` emitted) to cohort ``c``, from its
        next batch on. False (nothing added) when ``check`` finds its KV blocks not exactly
        what ``p`` tokens need, which the block phase assumes."""
        bs = self.block_size
        if check and self.state.blocks[rid] != -(-p // bs):
            return False
        j0 = len(c.ends)
        c.members[rid] = (j0, p, g)
        c.phase[(p - j0) % bs] += 1
        c.lsum += p + 1
        heapq.heappush(c.done, (j0 + self.state.decode[rid] - g, rid))
        return True

    def _available(self) -> _Cohort:
        c = self._avail
        if c is None:
            c = self._avail = _Cohort(self.block_size, self.state)
        return c

    def _merge(self, a: _Cohort, b: _Cohort) -> _Cohort:
        """One cohort of the members of both: the smaller one's rejoin the larger."""
        if len(a.members) < len(b.members):
            a, b = b, a
        j, segments = len(b.ends), self.state.tok_segments
        for rid, (j0, p0, g0) in b.members.items():
            k = j - j0
            if k:
                segments.append((rid, b.index, j0, k))
            self._join(a, rid, p0 + k, g0 + k, check=False)
        return a

    def _form(self) -> None:
        """Make every running decode not in flight a member of a new available cohort."""
        st = self.state
        processed, target, generated, in_flight = (st.processed, st.target, st.generated,
                                                   st.in_flight)
        self._on = True
        c = self._avail = _Cohort(self.block_size, st)
        for rid in self.running:
            if (processed[rid] >= target[rid] and not in_flight[rid]
                    and not self._join(c, rid, processed[rid], generated[rid])):
                self._dissolve()
                return

    def _fly(self, c: _Cohort, batch: Batch) -> None:
        """The available cohort ``c`` rides ``batch`` (its decodes as a count and a context
        sum) and is in flight until the batch ends."""
        batch.cohort = c
        batch.cohort_decodes = len(c.members)
        batch.cohort_kv_sum = c.lsum
        c.batch = batch
        self._avail = None
        self._flying.append(c)

    def _dissolve(self) -> None:
        """Write every member's progress back to the per-request state; cohorts off.

        The members of an in-flight batch become its listed decodes (marked in flight),
        with the block it was launched with, as the per-request code would have left them.
        """
        st = self.state
        processed, generated, blocks = st.processed, st.generated, st.blocks
        bs, segments = self.block_size, st.tok_segments
        avail = [] if self._avail is None else [self._avail]
        for c in avail + self._flying:
            j = len(c.ends)
            extra = 0 if c.batch is None else 1  # the block its batch in flight grew
            for rid, (j0, p0, g0) in c.members.items():
                k = j - j0
                p = processed[rid] = p0 + k  # (a merged member's p0 is newer than its state)
                generated[rid] = g0 + k
                if k:
                    segments.append((rid, c.index, j0, k))
                blocks[rid] = -(-(p + extra) // bs)
            if c.batch is not None:
                self._land(c.batch)
        self._avail = None
        self._flying = []
        self._on = False

    def _land(self, batch: Batch) -> None:
        """A dissolved cohort's batch in flight lists its members as ordinary decodes."""
        st = self.state
        c = batch.cohort
        c.batch = None
        ids = list(c.members)
        batch.decode_ids = ids
        batch.decode_kv = [st.processed[rid] + 1 for rid in ids]
        for rid in ids:
            st.in_flight[rid] = True
        batch.flagged = True
        batch.cohort = None
        batch.cohort_decodes = 0
        batch.cohort_kv_sum = 0

    def preempt(self, rid: int) -> None:
        super().preempt(rid)
        if self.cohort_mode and rid in self._prefilling:
            self._prefilling.remove(rid)

    def _schedule_cohort(self, now: float) -> Batch | None:
        """``schedule`` with the available decodes as one cohort when it can run whole."""
        st = self.state
        cap, budget = self.cfg.max_batch_size, self.cfg.chunk_size
        batch = Batch(self.replica)
        if not self._on:
            if self._backoff:
                self._backoff -= 1
            else:
                self._form()
        size = 0
        if self._on:
            c = self._avail
            if c is not None and c.members:
                d = len(c.members)
                need = c.phase[-len(c.ends) % self.block_size]
                if d <= cap and d <= budget and need <= self.free_blocks:
                    self.free_blocks -= need
                    self._fly(c, batch)
                    budget -= d
                    size = d
                else:
                    self._dissolve()
                    self._backoff = _COHORT_BACKOFF
        in_flight = st.in_flight
        if not self._on:
            budget = self._add_decodes(batch, budget, cap)
            size = len(batch.decode_ids)
        for rid in self._prefilling:
            if budget == 0 or size >= cap:
                break
            if in_flight[rid]:
                continue
            budget -= self._add_chunk(batch, rid, budget)
            size += 1
        waiting = self.waiting
        while waiting and budget > 0 and len(self.running) < cap and size < cap:
            rid = waiting[0]
            if not self._can_allocate(rid):
                break
            waiting.popleft()
            self._admit(rid, now)
            self._prefilling.append(rid)
            budget -= self._add_chunk(batch, rid, budget)
            size += 1
        return batch if size else None

    def on_batch_end(self, batch: Batch, now: float) -> None:
        if self.cohort_mode:
            self._on_batch_end_cohort(batch, now)
        else:
            super().on_batch_end(batch, now)

    def _on_batch_end_cohort(self, batch: Batch, now: float) -> None:
        """``on_batch_end`` with cohorts: the batch's cohort advances by one batch and
        becomes available; decodes that start (prefill done) or end a per-request batch
        join the available cohort."""
        st = self.state
        c = batch.cohort
        if c is not None:
            self._flying.remove(c)
            c.batch = None
            ends = c.ends
            ends.append(now)
            j = len(ends)
            c.lsum += batch.cohort_decodes
            if c.done[0][0] == j:
                self._retire(c, j, now)
            a = self._avail
            self._avail = c if a is None else self._merge(a, c)
        processed, generated, decode, target = st.processed, st.generated, st.decode, st.target
        in_flight = st.in_flight
        finished = []
        emitted = []
        for rid, chunk in zip(batch.prefill_ids, batch.prefill_chunks, strict=True):
            in_flight[rid] = False
            p = processed[rid] = processed[rid] + chunk
            if p >= target[rid]:
                self._prefilling.remove(rid)
                g = generated[rid] = generated[rid] + 1
                emitted.append(rid)
                if g == 1:
                    st.first_token_at[rid] = now
                if g >= decode[rid]:
                    finished.append(rid)
                elif self._on and not self._join(self._available(), rid, p, g):
                    self._dissolve()
        dec = batch.decode_ids
        if batch.flagged:
            for rid in dec:
                in_flight[rid] = False
        for rid in dec:
            p = processed[rid] = processed[rid] + 1
            g = generated[rid] = generated[rid] + 1
            if g >= decode[rid]:
                finished.append(rid)
            elif self._on and not self._join(self._available(), rid, p, g):
                self._dissolve()
        if emitted:
            emitted.extend(dec)
            dec = emitted
        if dec:
            st.tok_batches.append(dec)
            st.tok_batch_times.append(now)
        if finished:
            running = self.running
            for rid in finished:
                self._release(rid)
                st.completed_at[rid] = now
                running.remove(rid)
            self.outstanding -= len(finished)

    def _retire(self, c: _Cohort, j: int, now: float) -> None:
        """Members of ``c`` whose last token came with its batch ``j - 1``: complete them."""
        st = self.state
        done, members, phase, running = c.done, c.members, c.phase, self.running
        bs, segments = self.block_size, st.tok_segments
        while done and done[0][0] == j:
            rid = heapq.heappop(done)[1]
            j0, p0, g0 = members.pop(rid)
            k = j - j0
            p = p0 + k
            st.processed[rid] = p
            st.generated[rid] = g0 + k
            st.blocks[rid] = 0
            self.free_blocks += -(-p // bs)
            phase[(p0 - j0) % bs] -= 1
            c.lsum -= p + 1
            st.completed_at[rid] = now
            segments.append((rid, c.index, j0, k))
            running.remove(rid)
            self.outstanding -= 1

    def fast_forward(
        self, now: float, horizon: float, execution: ExecutionModel, max_steps: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Batch, float] | None:
        if not self._on:
            return super().fast_forward(now, horizon, execution, max_steps)
        c = self._avail
        if (c is None or not c.members or self._prefilling
                or horizon - now < 4 * self.last_duration or not self.steady()):
            return None
        d = len(c.members)
        j = len(c.ends)
        k = min(c.done[0][0] - j, max_steps)
        # a cohort iteration costs a few microseconds: numpy pays off on long runs only
        shortest = min(_FF_MIN_STEPS, max(max_steps, 2))
        if k < shortest or horizon - now < shortest * self.last_duration:
            return None
        bs = self.block_size
        phase = np.asarray(c.phase, dtype=np.int64)
        new_blocks = np.cumsum(phase[-(j + np.arange(k, dtype=np.int64)) % bs])
        k = min(k, int(np.searchsorted(new_blocks, self.free_blocks, side="right")))
        if k < 2:
            return None
        times = execution.decode_steps_sum(d, c.lsum, k)[:, 0]
        ends = np.cumsum(np.concatenate(([now], times)))[1:]
        starts = np.concatenate(([now], ends[:-1]))
        k = min(k, int(np.searchsorted(starts, horizon, side="left")))
        if k < 2:
            return None
        adv = k - 1  # advanced now; iteration k is returned as a batch
        c.ends.extend(ends[:adv].tolist())
        c.lsum += d * adv
        used_before = self.num_blocks - self.free_blocks
        self.free_blocks -= int(new_blocks[k - 1])
        last = Batch(self.replica)
        self._fly(c, last)
        return starts[:adv], ends[:adv], used_before + new_blocks[:adv], last, float(times[k - 1])
