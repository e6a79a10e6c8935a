"""vLLM v0 (up to 0.6, chunked prefill off): prefill-first iteration batching.

Whenever waiting prompts can be admitted, the step is a prefill-only batch of whole
prompts (FCFS) under ``max_tokens_per_batch`` (max_num_batched_tokens) and
``max_batch_size`` (max_num_seqs), each admitted only if its prompt's blocks leave at
least ``watermark`` of the cache free. Otherwise the step decodes every running request;
a request that needs a new block when none is free preempts the newest running request
(recompute: its KV is dropped and its prompt plus output so far is prefilled again later,
first in line). A prompt longer than max_tokens_per_batch is rejected, as vLLM does.
"""

from __future__ import annotations

from simulator.scheduling.base import ReplicaScheduler, register
from simulator.scheduling.batch import Batch


@register
class VllmV0Scheduler(ReplicaScheduler):
    name = "vllm_v0"

    def reject_reason(self, rid: int) -> str:
        prompt = self.state.prefill[rid]
        if prompt > self.cfg.max_tokens_per_batch:
            return (f"prompt of {prompt} tokens exceeds max_tokens_per_batch "
                    f"{self.cfg.max_tokens_per_batch} (vLLM v0 without chunked prefill)")
        usable = self.num_blocks - self.cfg.watermark * self.num_blocks
        if self.blocks_for(prompt) > usable:
            return (f"prompt needs {self.blocks_for(prompt)} KV blocks, more than the "
                    f"{usable:.0f} left above the watermark")
        return super().reject_reason(rid)

    def _admissible(self, rid: int, tokens_in_batch: int, seqs: int) -> bool:
        st = self.state
        tokens = st.target[rid] - st.processed[rid]
        if seqs >= self.cfg.max_batch_size:
            return False
        # a recompute longer than the cap still runs, alone
        if tokens_in_batch and tokens_in_batch + tokens > self.cfg.max_tokens_per_batch:
            return False
        need = self.blocks_for(st.target[rid]) - st.blocks[rid]
        return self.free_blocks - need >= self.cfg.watermark * self.num_blocks

    def schedule(self, now: float) -> Batch | None:
        st = self.state
        batch = Batch(self.replica)
        self.preempted_now.clear()
        tokens = 0
        while self.waiting and self._admissible(self.waiting[0], tokens, len(self.running)):
            rid = self.waiting.popleft()
            self._admit(rid, now)
            chunk = st.target[rid] - st.processed[rid]
            batch.prefill_ids.append(rid)
            batch.prefill_chunks.append(chunk)
            batch.prefill_prior.append(st.processed[rid])
            tokens += chunk
        if batch:
            return batch
        processed, in_flight = st.processed, st.in_flight
        for rid in list(self.running):
            if in_flight[rid] or rid in self.preempted_now:
                continue
            if self._grow_or_preempt(rid, processed[rid] + 1, batch):
                batch.decode_ids.append(rid)
                batch.decode_kv.append(processed[rid] + 1)
        return batch or None

    def steady(self) -> bool:
        st = self.state
        for rid in self.running:
            if st.in_flight[rid] or st.processed[rid] < st.target[rid]:
                return False
        return not self.waiting or not self._admissible(self.waiting[0], 0, len(self.running))
