"""FasterTransformer: request-level static batching.

When no batch is running, up to ``max_batch_size`` waiting requests form a batch (each
with KV reserved for its full length), are prefilled together, and are then decoded
together until the last of them finishes; finished requests leave the batch, but no new
request joins until it is empty. Simple and memory-safe, at the cost of queueing.
"""

from __future__ import annotations

from simulator.scheduling.base import ReplicaScheduler, register
from simulator.scheduling.batch import Batch


@register
class FasterTransformerScheduler(ReplicaScheduler):
    name = "faster_transformer"
    kv_grows = False

    def admission_tokens(self, rid: int) -> int:
        return self._peak_tokens(rid)

    def schedule(self, now: float) -> Batch | None:
        st = self.state
        batch = Batch(self.replica)
        if self.running:
            for rid in self.running:
                if not st.in_flight[rid]:
                    batch.decode_ids.append(rid)
                    batch.decode_kv.append(st.processed[rid] + 1)
            return batch or None
        while (self.waiting and len(self.running) < self.cfg.max_batch_size
               and self._can_allocate(self.waiting[0])):
            rid = self.waiting.popleft()
            self._admit(rid, now)
            batch.prefill_ids.append(rid)
            batch.prefill_chunks.append(st.target[rid])
            batch.prefill_prior.append(0)
        return batch or None

    def steady(self) -> bool:
        st = self.state
        return all(not st.in_flight[r] and st.processed[r] >= st.target[r] for r in self.running)
