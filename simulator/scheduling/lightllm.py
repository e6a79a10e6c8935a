"""LightLLM: token-level KV (TokenAttention) with prefill/decode alternation.

KV is allocated one token at a time (no block fragmentation). A request is admitted only
if, given the known output lengths, the peak future KV of all running requests plus it
fits: the router's "will it ever run out" estimate, so nothing is preempted. Prefill and
decode never share a batch: while requests wait, the replica decodes for at most
``max_waiting_iters`` iterations and then runs a prefill batch of whole prompts (under
``max_tokens_per_batch``); with nothing running it prefills at once.
"""

from __future__ import annotations

from simulator.config import SchedulerConfig
from simulator.scheduling.base import ReplicaScheduler, register
from simulator.scheduling.batch import Batch


@register
class LightLLMScheduler(ReplicaScheduler):
    name = "lightllm"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.decodes_since_prefill = 0

    @classmethod
    def effective_block_size(cls, cfg: SchedulerConfig) -> int:
        return 1

    def _peak_fits(self, rid: int) -> bool:
        """Would the KV peak of running + ``rid`` fit, as requests finish one by one?

        Each request ends holding prompt + output - 1 tokens. Sorted by tokens still to
        grow (most first), when the i-th finishes the i+1 requests before it have all
        grown by its remainder: peak = max_i(sum of current KV up to i + remaining_i*(i+1)).
        """
        st = self.state
        rows = []
        for r in (*self.running, rid):
            # KV held now: an in-flight decode (pipeline parallelism) already holds the
            # token it is computing, before ``processed`` counts it
            current = max(st.processed[r], st.target[r], st.blocks[r])
            rows.append((st.prefill[r] + st.decode[r] - 1 - current, current))
        rows.sort(reverse=True)
        held, peak = 0, 0
        for i, (remaining, current) in enumerate(rows):
            held += current
            peak = max(peak, held + remaining * (i + 1))
        return peak <= self.num_blocks

    def _prefill_batch(self, now: float) -> Batch:
        st = self.state
        batch = Batch(self.replica)
        tokens = 0
        while self.waiting and len(self.running) < self.cfg.max_batch_size:
            rid = self.waiting[0]
            chunk = st.target[rid]
            if tokens and tokens + chunk > self.cfg.max_tokens_per_batch:
                break
            if not self._peak_fits(rid):
                break
            self.waiting.popleft()
            self._admit(rid, now)
            batch.prefill_ids.append(rid)
            batch.prefill_chunks.append(chunk)
            batch.prefill_prior.append(0)
            tokens += chunk
        return batch

    def schedule(self, now: float) -> Batch | None:
        st = self.state
        idle = not any(not st.in_flight[r] for r in self.running)
        if self.waiting and (idle or self.decodes_since_prefill >= self.cfg.max_waiting_iters):
            batch = self._prefill_batch(now)
            if batch:
                self.decodes_since_prefill = 0
                return batch
        batch = Batch(self.replica)
        self.preempted_now.clear()
        for rid in list(self.running):
            if st.in_flight[rid] or rid in self.preempted_now:
                continue
            if self._grow_or_preempt(rid, st.processed[rid] + 1, batch):
                batch.decode_ids.append(rid)
                batch.decode_kv.append(st.processed[rid] + 1)
        if batch:
            self.decodes_since_prefill += 1
        return batch or None

    def _on_fast_forward(self, steps: int) -> None:
        self.decodes_since_prefill += steps

    def steady(self) -> bool:
        st = self.state
        if any(st.in_flight[r] or st.processed[r] < st.target[r] for r in self.running):
            return False
        # a request refused for projected peak memory is not refused for long: the peak
        # falls as running requests near their end, so only a full batch is stable
        return not self.waiting or len(self.running) >= self.cfg.max_batch_size
