"""vLLM v0 (up to 0.6): prefill-first iteration batching, or chunked prefill when switched on.

Whenever waiting prompts can be admitted, the step is a prefill-only batch of whole
prompts (FCFS) under ``max_tokens_per_batch`` (max_num_batched_tokens) and
``max_batch_size`` (max_num_seqs), each admitted only if its prompt's blocks leave at
least ``watermark`` of the cache free. Otherwise the step decodes every running request;
a request that needs a new block when none is free preempts the newest running request
(recompute: its KV is dropped and its prompt plus output so far is prefilled again later,
first in line). A prompt longer than max_tokens_per_batch is rejected, as vLLM does.

With ``chunked_prefill: on`` (vLLM 0.6's default for models with more than 32K tokens of
context, ``SchedulerConfig.resolved``) it is vLLM v0's chunked-prefill scheduler instead:
decodes first, then the running prefills, then new prompts in chunks, all under one token
budget (``chunk_size``, max_num_batched_tokens) and ``max_batch_size``; the policy of
Sarathi-Serve (``sarathi``), with new prompts admitted only above the watermark.
"""

from __future__ import annotations

from simulator.config import SchedulerConfig
from simulator.scheduling.base import register
from simulator.scheduling.batch import Batch
from simulator.scheduling.sarathi import SarathiScheduler


@register
class VllmV0Scheduler(SarathiScheduler):
    name = "vllm_v0"

    @classmethod
    def max_batch_tokens(cls, cfg: SchedulerConfig) -> int:
        return cfg.chunk_size if cfg.chunked_prefill == "on" else cfg.max_tokens_per_batch

    @classmethod
    def uses_chunk_size(cls, cfg: SchedulerConfig) -> bool:
        return cfg.chunked_prefill == "on"

    def _can_allocate(self, rid: int) -> bool:
        """Admission of a new prompt (chunked mode): its blocks must leave the watermark."""
        need = self.blocks_for(self.admission_tokens(rid)) - self.state.blocks[rid]
        return self.free_blocks - need >= self.cfg.watermark * self.num_blocks

    def reject_reason(self, rid: int) -> str:
        prompt = self.state.prefill[rid]
        if self.cfg.chunked_prefill != "on" and prompt > self.cfg.max_tokens_per_batch:
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
        if self.cfg.chunked_prefill == "on":
            return super().schedule(now)
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
        if self.cfg.chunked_prefill == "on":
            return super().steady()
        st = self.state
        for rid in self.running:
            if st.in_flight[rid] or st.processed[rid] < st.target[rid]:
                return False
        return not self.waiting or not self._admissible(self.waiting[0], 0, len(self.running))
