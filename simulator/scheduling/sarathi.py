"""Sarathi-Serve (Agrawal et al., OSDI 2024): stall-free chunked prefill.

Each iteration has a token budget (``chunk_size``). Ongoing decodes go first (one token
each), then the partial prefills of admitted requests, then new requests, whose prompts
are split into chunks that fill the remaining budget: hybrid batches that never stall
decodes behind a long prompt. A request's whole prompt is allocated in KV at admission;
decode growth allocates block by block and preempts the newest request when blocks run
out (recompute). ``max_batch_size`` caps the running sequences.
"""

from __future__ import annotations

from simulator.config import SchedulerConfig
from simulator.scheduling.base import ReplicaScheduler, register
from simulator.scheduling.batch import Batch


@register
class SarathiScheduler(ReplicaScheduler):
    name = "sarathi"

    @classmethod
    def max_batch_tokens(cls, cfg: SchedulerConfig) -> int:
        return cfg.chunk_size

    def schedule(self, now: float) -> Batch | None:
        st = self.state
        processed, target, in_flight, blocks = st.processed, st.target, st.in_flight, st.blocks
        cap, budget, bs = self.cfg.max_batch_size, self.cfg.chunk_size, self.block_size
        batch = Batch(self.replica)
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
        size = len(dec_ids)
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
        for rid in self.running:
            if st.in_flight[rid] or st.processed[rid] < st.target[rid]:
                return False
        if not self.waiting:
            return True
        budget_left = self.cfg.chunk_size - n
        return n >= self.cfg.max_batch_size or budget_left <= 0 or not self._can_allocate(
            self.waiting[0]
        )
