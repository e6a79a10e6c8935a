"""The event loop: a heap of timestamped events; schedulers hold state, events change it.

Events at the same time are handled in a fixed priority, then in the order they were
created (a sequence number), so results never depend on heap accidents:

1. ``BATCH_END``: a batch leaves the last pipeline stage; its tokens are emitted and
   finished requests retire, freeing KV before anything else looks at the replica.
2. ``ARRIVAL``: a request arrives, is checked (rejected with a reason if it can never
   run) and routed to a replica.
3. ``SCHEDULE``: a replica builds and launches batches while it has a free pipeline slot
   (fewer than PP micro-batches in flight, stage 0 idle), so it sees every arrival and
   completion of that instant.

With one pipeline stage, steady all-decode phases are advanced in one step (see
``ReplicaScheduler.fast_forward``); this changes the number of events, never the results.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from collections.abc import Callable
from itertools import count

import numpy as np

from simulator.config import SimulationConfig
from simulator.execution.base import ExecutionModel
from simulator.execution.calibrated import CalibratedModel
from simulator.execution.roofline import RooflineModel
from simulator.records import SimulationRecords
from simulator.scheduling import REGISTRY, ROUTERS, Batch, ReplicaScheduler, RequestState
from simulator.workload import RequestTable, generate_requests

BATCH_END, ARRIVAL, SCHEDULE = 0, 1, 2
INF = math.inf

ProgressFn = Callable[[int, int], None]


def build_execution_model(cfg: SimulationConfig) -> ExecutionModel:
    """The batch-runtime model the config asks for: ``roofline`` (analytical, the
    ``execution.roofline`` knobs) or ``calibrated`` (the roofline with efficiency curves
    and collectives fitted to measurements, ``simulator/execution/calibration.yaml``; its
    overheads still come from ``execution.roofline``) or ``profiled`` (measured profiles
    through fitted predictors, ``execution.profiled``; the operators without profiles come
    from its ``fallback``, one of the other two)."""
    ex = cfg.execution
    if ex.kind == "profiled":
        from simulator.execution.profiled import ProfiledModel  # imports scikit-learn

        sched = cfg.scheduler
        fallback_cls = CalibratedModel if ex.profiled.fallback == "calibrated" else RooflineModel
        fallback = fallback_cls(
            cfg.model_spec, cfg.sku_spec, cfg.node_spec,
            cfg.parallel.tensor_parallel, cfg.parallel.pipeline_parallel, ex.roofline,
            precision=cfg.precision,
        )
        return ProfiledModel(
            cfg.model_spec, cfg.sku_spec, cfg.node_spec,
            cfg.parallel.tensor_parallel, cfg.parallel.pipeline_parallel, ex.profiled,
            max_batch=sched.max_batch_size,
            max_tokens=max(cfg.model_spec.max_context, sched.max_tokens_per_batch,
                           sched.chunk_size + sched.max_batch_size),
            fallback=fallback,
        )
    cls = CalibratedModel if ex.kind == "calibrated" else RooflineModel
    return cls(
        cfg.model_spec, cfg.sku_spec, cfg.node_spec,
        cfg.parallel.tensor_parallel, cfg.parallel.pipeline_parallel, ex.roofline,
        precision=cfg.precision,
    )


class Simulation:
    """One run of one configuration over one request table."""

    def __init__(
        self,
        cfg: SimulationConfig,
        requests: RequestTable | None = None,
        execution: ExecutionModel | None = None,
    ) -> None:
        self.cfg = cfg
        rng = np.random.default_rng(cfg.seed)
        workload_rng, router_rng = rng.spawn(2)
        self.requests = requests if requests is not None else generate_requests(
            cfg.workload, workload_rng)
        self.execution = execution or build_execution_model(cfg)
        self.capacity = cfg.kv_capacity()
        self.state = RequestState(self.requests)
        sched_cls = REGISTRY[cfg.scheduler.name]
        self.replicas: list[ReplicaScheduler] = [
            sched_cls(r, cfg.scheduler, self.state, self.capacity.num_blocks,
                      cfg.model_spec.max_context)
            for r in range(cfg.parallel.replicas)
        ]
        self.router = ROUTERS[cfg.router](cfg.parallel.replicas, router_rng)
        self.pp = cfg.parallel.pipeline_parallel

    def run(self, progress: ProgressFn | None = None) -> SimulationRecords:
        """Simulate until every request has completed or been rejected."""
        st, replicas, router, pp = self.state, self.replicas, self.router, self.pp
        execution = self.execution
        arrivals = st.arrival
        n = st.n
        ff = self.cfg.engine.fast_forward and pp == 1
        ff_cap = self.cfg.engine.max_fast_forward_steps
        heap: list[tuple[float, int, int, object]] = []
        seq = count()
        push, pop = heapq.heappush, heapq.heappop
        num_r = len(replicas)
        pending = [INF] * num_r
        stage_free = [[0.0] * pp for _ in range(num_r)]
        in_flight = [0] * num_r
        log = _BatchLog(pp)
        next_arrival = 0
        events = 0
        finished = 0
        arrival_cfg = self.cfg.workload.arrival
        closed = arrival_cfg.kind == "closed"
        # closed loop: arrival times pushed but not yet popped, in time order (the
        # fast-forward horizon); the id of the next request a user will send
        upcoming: deque[float] = deque()
        think = arrival_cfg.think_time_s
        next_issue = 0
        if closed:
            next_issue = min(arrival_cfg.concurrency, n)
            for rid in range(next_issue):
                arrivals[rid] = 0.0
                upcoming.append(0.0)
                push(heap, (0.0, ARRIVAL, next(seq), rid))
        elif n:
            push(heap, (arrivals[0], ARRIVAL, next(seq), 0))

        def issue_next(count_done: int, t: float) -> None:
            """Closed loop: each finished request's user sends its next one."""
            nonlocal next_issue
            for _ in range(count_done):
                if next_issue >= n:
                    return
                arrivals[next_issue] = t + think
                upcoming.append(t + think)
                push(heap, (t + think, ARRIVAL, next(seq), next_issue))
                next_issue += 1

        def request_schedule(r: int, t: float) -> None:
            if pending[r] <= t:
                return
            pending[r] = t
            push(heap, (t, SCHEDULE, next(seq), r))

        def schedule_now(r: int, t: float) -> None:
            """SCHEDULE at ``t``: inline when no other event shares ``t`` (it would be
            popped next anyway), else through the heap to keep the priority order."""
            if heap and heap[0][0] <= t:
                request_schedule(r, t)
            else:
                try_launch(r, t)

        def launch(batch: Batch, start: float, times: tuple[float, ...] | None = None) -> None:
            r = batch.replica
            if times is None:
                times = execution.stage_times(batch.prefill_chunks, batch.prefill_prior,
                                              batch.decode_kv)
            if pp > 1:  # with one stage nothing is scheduled while a batch runs
                flags = st.in_flight
                for rid in batch.prefill_ids:
                    flags[rid] = True
                for rid in batch.decode_ids:
                    flags[rid] = True
                batch.flagged = True
            free = stage_free[r]
            starts, ends = [], []
            t = start
            for k in range(pp):
                s = t if t > free[k] else free[k]
                t = s + times[k]
                free[k] = t
                starts.append(s)
                ends.append(t)
            batch.start, batch.end = starts[0], t
            batch.stage_start, batch.stage_end = starts, ends
            in_flight[r] += 1
            sched = replicas[r]
            sched.last_duration = t - starts[0]
            log.add(batch, sched.num_blocks - sched.free_blocks)
            push(heap, (t, BATCH_END, next(seq), batch))

        def try_launch(r: int, now: float) -> None:
            sched = replicas[r]
            free = stage_free[r]
            while in_flight[r] < pp:
                start = free[0] if free[0] > now else now
                if start > now:
                    request_schedule(r, start)
                    return
                if ff:
                    if closed:
                        horizon = upcoming[0] if upcoming else INF
                    else:
                        horizon = arrivals[next_arrival] if next_arrival < n else INF
                    res = sched.fast_forward(now, horizon, execution, ff_cap)
                    if res is not None:
                        starts, ends, used, last, runtime = res
                        log.add_steady(r, starts, ends, used, len(last.decode_ids))
                        launch(last, float(ends[-1]), (runtime,))
                        continue
                batch = sched.schedule(start)
                if batch is None:
                    return
                launch(batch, start)

        reject_check = replicas[0].reject_reason if replicas else None
        wall0 = time.perf_counter()
        while heap:
            t, kind, _, payload = pop(heap)
            events += 1
            if kind == BATCH_END:
                r = payload.replica
                before = replicas[r].outstanding
                replicas[r].on_batch_end(payload, t)
                finished += before - replicas[r].outstanding
                if closed and before > replicas[r].outstanding:
                    issue_next(before - replicas[r].outstanding, t)
                in_flight[r] -= 1
                schedule_now(r, t)
            elif kind == ARRIVAL:
                rid = payload
                if closed:
                    upcoming.popleft()
                else:
                    next_arrival = rid + 1
                    if next_arrival < n:
                        push(heap, (arrivals[next_arrival], ARRIVAL, next(seq), next_arrival))
                reason = reject_check(rid)
                if reason:
                    st.reject_reason[rid] = reason
                    finished += 1
                    if closed:
                        issue_next(1, t)
                else:
                    r = router.route(rid, replicas)
                    st.replica[rid] = r
                    replicas[r].add_request(rid)
                    schedule_now(r, t)
            else:
                if pending[payload] == t:
                    pending[payload] = INF
                try_launch(payload, t)
            if progress is not None and events % 4096 == 0:
                progress(finished, n)
        wall = time.perf_counter() - wall0
        if progress is not None:
            progress(finished, n)
        return self._records(log, wall, events)

    def _records(self, log: _BatchLog, wall: float, events: int) -> SimulationRecords:
        st, cfg = self.state, self.cfg
        tok_ids, tok_times = st.token_log()
        b = log.arrays()
        ends = [x for x in (st.completed_at[i] for i in range(st.n)) if x == x]
        sim_end = max([0.0, *ends, *(b["end"][-1:] if len(b["end"]) else [])])
        return SimulationRecords(
            arrival=np.asarray(st.arrival, dtype=np.float64),
            num_prefill=np.asarray(st.prefill, dtype=np.int64),
            num_decode=np.asarray(st.decode, dtype=np.int64),
            replica=np.asarray(st.replica, dtype=np.int64),
            scheduled_at=np.asarray(st.scheduled_at, dtype=np.float64),
            first_token_at=np.asarray(st.first_token_at, dtype=np.float64),
            completed_at=np.asarray(st.completed_at, dtype=np.float64),
            preemptions=np.asarray(st.preemptions, dtype=np.int64),
            reject_reason=np.asarray(st.reject_reason, dtype=object),
            token_request=tok_ids,
            token_time=tok_times,
            batch_replica=b["replica"],
            batch_start=b["start"],
            batch_end=b["end"],
            batch_num_prefills=b["num_prefills"],
            batch_prefill_tokens=b["prefill_tokens"],
            batch_num_decodes=b["num_decodes"],
            batch_kv_blocks_used=b["kv_blocks"],
            batch_stage_start=b["stage_start"],
            batch_stage_end=b["stage_end"],
            replica_kv_blocks=np.full(len(self.replicas), self.capacity.num_blocks,
                                      dtype=np.int64),
            num_stages=self.pp,
            gpus_per_replica=cfg.parallel.gpus_per_replica,
            peak_flops_per_gpu=cfg.sku_spec.bf16_tflops * 1e12,
            active_params=_active_params(cfg),
            block_size=self.replicas[0].block_size if self.replicas else cfg.scheduler.block_size,
            sim_end=float(sim_end),
            wall_s=wall,
            events=events,
            config=cfg.to_dict(),
            warmup_requests=cfg.workload.warmup_requests,
        )


def _active_params(cfg: SimulationConfig) -> int:
    m = cfg.model_spec
    mats = 3 if m.gated_mlp else 2
    inactive = (m.num_experts - m.experts_top_k) * mats * m.hidden_size * m.ffn_size
    return m.total_params() - m.num_layers * inactive


class _BatchLog:
    """Per-batch rows: Python lists for single iterations, array chunks for steady runs."""

    def __init__(self, pp: int) -> None:
        self.pp = pp
        self.rows: list[tuple[int, float, float, int, int, int, int]] = []
        self.stage_rows: list[list[float]] = []
        self.chunks: list[tuple[int, np.ndarray, np.ndarray, int, np.ndarray]] = []

    def add(self, batch: Batch, kv_blocks: int) -> None:
        self.rows.append((batch.replica, batch.start, batch.end, len(batch.prefill_ids),
                          sum(batch.prefill_chunks), len(batch.decode_ids), kv_blocks))
        self.stage_rows.append(batch.stage_start + batch.stage_end)

    def add_steady(self, replica: int, starts: np.ndarray, ends: np.ndarray,
                   kv_blocks: np.ndarray, num_decodes: int) -> None:
        self.chunks.append((replica, starts, ends, num_decodes, kv_blocks))

    def arrays(self) -> dict[str, np.ndarray]:
        pp = self.pp
        rows = np.asarray(self.rows, dtype=np.float64).reshape(-1, 7)
        stages = np.asarray(self.stage_rows, dtype=np.float64).reshape(-1, 2 * pp)
        cols = {
            "replica": [rows[:, 0]], "start": [rows[:, 1]], "end": [rows[:, 2]],
            "num_prefills": [rows[:, 3]], "prefill_tokens": [rows[:, 4]],
            "num_decodes": [rows[:, 5]], "kv_blocks": [rows[:, 6]],
            "stage_start": [stages[:, :pp]], "stage_end": [stages[:, pp:]],
        }
        for replica, starts, ends, num_decodes, kv in self.chunks:
            k = len(starts)
            cols["replica"].append(np.full(k, replica))
            cols["start"].append(starts)
            cols["end"].append(ends)
            cols["num_prefills"].append(np.zeros(k))
            cols["prefill_tokens"].append(np.zeros(k))
            cols["num_decodes"].append(np.full(k, num_decodes))
            cols["kv_blocks"].append(kv)
            cols["stage_start"].append(starts[:, None])
            cols["stage_end"].append(ends[:, None])
        out = {k: np.concatenate(v) for k, v in cols.items()}
        order = np.lexsort((out["replica"], out["start"]))
        ints = ("replica", "num_prefills", "prefill_tokens", "num_decodes", "kv_blocks")
        return {k: (v[order].astype(np.int64) if k in ints else v[order]) for k, v in out.items()}
