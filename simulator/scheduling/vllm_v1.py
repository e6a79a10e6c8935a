"""vLLM v1 (vLLM >= 0.8, today's default): one token budget per step.

Each step has ``chunk_size`` tokens (max_num_batched_tokens). Running requests are served
first, in admission order: a decode takes one token, a partially prefilled prompt takes
what is left of it up to the remaining budget. Then waiting requests are admitted in FCFS
order, each with a prefill chunk that fits the budget, while fewer than
``max_batch_size`` (max_num_seqs) are running. KV blocks are allocated only for the
tokens being computed; when none are free, the lowest-priority (newest) running request
is preempted and recomputed later, and no new request is admitted in that step.
"""

from __future__ import annotations

from simulator.config import SchedulerConfig
from simulator.scheduling.base import ReplicaScheduler, register
from simulator.scheduling.batch import Batch


@register
class VllmV1Scheduler(ReplicaScheduler):
    name = "vllm_v1"

    @classmethod
    def max_batch_tokens(cls, cfg: SchedulerConfig) -> int:
        return cfg.chunk_size

    def schedule(self, now: float) -> Batch | None:
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
        if self.preempted_now:
            return batch or None
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
        return batch or None

    def _add_prefill(self, batch: Batch, rid: int, chunk: int) -> None:
        batch.prefill_ids.append(rid)
        batch.prefill_chunks.append(chunk)
        batch.prefill_prior.append(self.state.processed[rid])

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
        return (n >= self.cfg.max_batch_size or chunk <= 0
                or self.blocks_for(st.processed[head] + chunk) - st.blocks[head] > self.free_blocks)
