"""Orca (Yu et al., OSDI 2022): iteration-level scheduling with selective batching.

Every iteration decodes all running requests and adds whole-prompt prefills of newly
admitted ones to the same batch, while fewer than ``max_batch_size`` slots are taken.
A request is admitted only if KV for its full length (prompt + every output token) can be
reserved up front, so running requests never need more memory and nothing is preempted;
the price is memory held for tokens not yet generated.
"""

from __future__ import annotations

from simulator.scheduling.base import ReplicaScheduler, register
from simulator.scheduling.batch import Batch


@register
class OrcaScheduler(ReplicaScheduler):
    name = "orca"
    kv_grows = False

    def admission_tokens(self, rid: int) -> int:
        return self._peak_tokens(rid)

    def schedule(self, now: float) -> Batch | None:
        st = self.state
        processed, in_flight = st.processed, st.in_flight
        batch = Batch(self.replica)
        for rid in self.running:
            if not in_flight[rid]:
                batch.decode_ids.append(rid)
                batch.decode_kv.append(processed[rid] + 1)
        while (self.waiting and len(self.running) < self.cfg.max_batch_size
               and self._can_allocate(self.waiting[0])):
            rid = self.waiting.popleft()
            self._admit(rid, now)
            batch.prefill_ids.append(rid)
            batch.prefill_chunks.append(st.target[rid])
            batch.prefill_prior.append(0)
        return batch or None

    def steady(self) -> bool:
        in_flight = self.state.in_flight
        if any(in_flight[r] for r in self.running):
            return False
        return (not self.waiting or len(self.running) >= self.cfg.max_batch_size
                or not self._can_allocate(self.waiting[0]))
