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

``engine.fast_forward`` switches on shortcuts that change the work, never the results
(with it off, the loop runs every event through the heap: the reference the tests compare
against):

- with one pipeline stage, steady all-decode phases are advanced in one step
  (``ReplicaScheduler.fast_forward``);
- schedulers with decode cohorts (``ReplicaScheduler.enable_cohort``; Sarathi) hand over
  their steady decodes as a count and a context sum instead of a list, for execution
  models with ``stage_times_sum`` (the roofline, calibrated and profiled models);
- a batch end (one stage) or a stage-0 SCHEDULE (pipelines) that would be the next event
  popped anyway is handled without going through the heap (still counted as an event).

With expert parallelism (``parallel.expert_parallel > 1``) the replicas are the data-
parallel ranks of one EP group and step in lockstep, as vLLM's DP engines do: every step
starts on all ranks at once, each rank schedules its own batch (a rank with nothing to do
runs a dummy step of one token so that the others' MoE collectives can proceed), the
MoE layers see the tokens of all ranks, and the step ends when the slowest rank's batch
does. ``_run_lockstep`` runs that loop, every event through the heap, without the
shortcuts above.
"""

from __future__ import annotations

import gc
import heapq
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from itertools import count

import numpy as np

from simulator.config import SimulationConfig
from simulator.errors import ConfigError
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
        # imports scikit-learn
        from simulator.execution.profiled import MissingProfilesError, ProfiledModel

        sched = cfg.scheduler
        fallback_cls = CalibratedModel if ex.profiled.fallback == "calibrated" else RooflineModel
        ep = cfg.parallel.expert_parallel
        fallback = _with_expert_parallel(fallback_cls(
            cfg.model_spec, cfg.sku_spec, cfg.node_spec,
            cfg.parallel.tensor_parallel, cfg.parallel.pipeline_parallel, ex.roofline,
            precision=cfg.precision,
        ), ep)
        try:
            return ProfiledModel(
                cfg.model_spec, cfg.sku_spec, cfg.node_spec,
                cfg.parallel.tensor_parallel, cfg.parallel.pipeline_parallel, ex.profiled,
                max_batch=sched.max_batch_size,
                max_tokens=max(cfg.model_spec.max_context, sched.max_tokens_per_batch,
                               sched.chunk_size + sched.max_batch_size),
                fallback=fallback,
                expert_parallel=ep,
                precision=cfg.precision,
            )
        except MissingProfilesError as err:
            if ex.profiled.require_profiles:
                raise
            # the summary's execution block carries this note (a warning per run would
            # repeat in every worker of a search, which says it once up front)
            fallback.note = (f"execution.kind=profiled found no profiles for {err.value}; "
                             f"ran on the {ex.profiled.fallback} model. {err.allowed}")
            return fallback
    cls = CalibratedModel if ex.kind == "calibrated" else RooflineModel
    return _with_expert_parallel(cls(
        cfg.model_spec, cfg.sku_spec, cfg.node_spec,
        cfg.parallel.tensor_parallel, cfg.parallel.pipeline_parallel, ex.roofline,
        precision=cfg.precision,
    ), cfg.parallel.expert_parallel)


def _with_expert_parallel(model: RooflineModel, ep: int) -> RooflineModel:
    """``model`` priced as a rank of an EP group of ``ep`` GPUs; a calibrated model's
    dispatch/combine collectives take its all-reduce fit for ``ep`` GPUs (the same link,
    ring and NCCL latency)."""
    if ep > 1:
        if isinstance(model, CalibratedModel):
            fit = model.node_calibration.allreduce_fit(ep)
            model.set_expert_parallel(ep, fit.efficiency, fit.latency_us * 1e-6)
        else:
            model.set_expert_parallel(ep)
    return model


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
        # a model shared by several runs (the search caches them) keeps counting: this
        # run's out-of-range lookups are the growth from here
        self._oor_start = Counter(getattr(self.execution, "out_of_range", {}))
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
        self.ep = cfg.parallel.expert_parallel
        if getattr(self.execution, "expert_parallel", 1) != self.ep:
            raise ConfigError("parallel.expert_parallel", self.ep,
                              f"the execution model ({type(self.execution).__name__}) prices "
                              f"expert_parallel={getattr(self.execution, 'expert_parallel', 1)}"
                              "; build it with build_execution_model(cfg)")

    def run(self, progress: ProgressFn | None = None) -> SimulationRecords:
        """Simulate until every request has completed or been rejected."""
        if self.ep > 1:
            return self._run_lockstep(progress)
        st, replicas, pp = self.state, self.replicas, self.pp
        execution = self.execution
        arrivals = st.arrival
        n = st.n
        fast = self.cfg.engine.fast_forward
        ff = fast and pp == 1
        ff_cap = self.cfg.engine.max_fast_forward_steps
        # decode cohorts: batches carry (count, context sum) of their steady decodes
        stage_sum = getattr(execution, "stage_times_sum", None)
        if fast and stage_sum is not None and hasattr(execution, "decode_steps_sum"):
            for sched in replicas:
                sched.enable_cohort()
        heap: list[tuple[float, int, int, object]] = []
        seq = count()
        push, pop = heapq.heappush, heapq.heappop
        num_r = len(replicas)
        pending = [INF] * num_r
        stage_free = [[0.0] * pp for _ in range(num_r)]
        in_flight = [0] * num_r
        log = _BatchLog(pp)
        events = 0
        finished = 0
        feed = _Arrivals(self.cfg, arrivals, n, heap, seq)
        closed, think, upcoming = feed.closed, feed.think, feed.upcoming
        issue_next = feed.issue_next

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

        inline: list[Batch] = []  # a batch whose end is the next event (one stage)
        add_row = log.rows.append  # one stage: the stage interval is the batch's

        def launch1(batch: Batch, start: float, times: tuple[float, ...] | None = None) -> None:
            """``launch`` with one stage; the batch's end is handled without the heap when
            it is the next event anyway (no earlier event, and no other batch end at the
            same time: those go first)."""
            r = batch.replica
            if times is not None:
                dt = times[0]
            elif batch.cohort_decodes:
                dkv = batch.decode_kv
                dt = stage_sum(batch.prefill_chunks, batch.prefill_prior,
                               batch.cohort_decodes + len(dkv),
                               batch.cohort_kv_sum + sum(dkv))[0]
            else:
                dt = execution.stage_times(batch.prefill_chunks, batch.prefill_prior,
                                           batch.decode_kv)[0]
            free = stage_free[r]
            s = start if start > free[0] else free[0]
            t = s + dt
            free[0] = t
            batch.start, batch.end = s, t
            in_flight[r] += 1
            sched = replicas[r]
            sched.last_duration = t - s
            add_row((r, s, t, len(batch.prefill_ids), sum(batch.prefill_chunks),
                     len(batch.decode_ids) + batch.cohort_decodes,
                     sched.num_blocks - sched.free_blocks))
            if heap:
                top = heap[0]
                if top[0] < t or (top[0] == t and top[1] == BATCH_END):
                    push(heap, (t, BATCH_END, next(seq), batch))
                    return
            inline.append(batch)

        def launch(batch: Batch, start: float, times: tuple[float, ...] | None = None) -> None:
            r = batch.replica
            if times is None and batch.cohort_decodes:
                dkv = batch.decode_kv
                times = stage_sum(batch.prefill_chunks, batch.prefill_prior,
                                  batch.cohort_decodes + len(dkv), batch.cohort_kv_sum + sum(dkv))
            elif times is None:
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

        def try_launch1(r: int, now: float) -> None:
            """``try_launch`` with one stage and the fast path."""
            if in_flight[r]:
                return
            free0 = stage_free[r][0]
            if free0 > now:
                request_schedule(r, free0)
                return
            sched = replicas[r]
            if closed:
                horizon = upcoming[0] if upcoming else INF
                # another replica's completion, at one of its batch ends, may send a
                # request sooner (its own come after the last iteration of a run)
                if num_r > 1 and heap and heap[0][0] + think < horizon:
                    horizon = heap[0][0] + think
            else:
                horizon = arrivals[feed.next] if feed.next < n else INF
            # (fast_forward declines anyway when the next arrival is this close)
            if horizon - now >= 4 * sched.last_duration:
                res = sched.fast_forward(now, horizon, execution, ff_cap)
                if res is not None:
                    starts, ends, used, last, runtime = res
                    log.add_steady(r, starts, ends, used, last.num_decodes)
                    launch1(last, float(ends[-1]), (runtime,))
                    return
            batch = sched.schedule(now)
            if batch is not None:
                launch1(batch, now)

        def try_launch(r: int, now: float) -> None:
            nonlocal events
            sched = replicas[r]
            free = stage_free[r]
            while in_flight[r] < pp:
                start = free[0] if free[0] > now else now
                if start > now:
                    if not fast or (heap and heap[0][0] <= start):
                        request_schedule(r, start)
                        return
                    # the SCHEDULE at ``start`` would be the next event: run it now
                    events += 1
                    now = start
                batch = sched.schedule(start)
                if batch is None:
                    return
                launch(batch, start)

        if ff:
            try_launch = try_launch1

        admit = self._admitter(feed)
        # the loop makes no reference cycles: the cyclic collector would only rescan the
        # growing logs, a few % of the run
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            wall0 = time.perf_counter()
            while heap or inline:
                if inline:  # a batch end that is the next event (launch1)
                    payload = inline.pop()
                    t, kind = payload.end, BATCH_END
                else:
                    t, kind, _, payload = pop(heap)
                events += 1
                if kind == BATCH_END:
                    while True:
                        r = payload.replica
                        sched = replicas[r]
                        before = sched.outstanding
                        sched.on_batch_end(payload, t)
                        if before != sched.outstanding:
                            finished += before - sched.outstanding
                            if closed:
                                issue_next(before - sched.outstanding, t)
                        in_flight[r] -= 1
                        if heap and heap[0][0] <= t:
                            request_schedule(r, t)
                        else:
                            try_launch(r, t)
                        if not inline:
                            break
                        payload = inline.pop()  # the next batch end, without the heap
                        t = payload.end
                        events += 1
                elif kind == ARRIVAL:
                    r = admit(payload, t)
                    if r < 0:
                        finished += 1
                    else:
                        schedule_now(r, t)
                else:
                    if pending[payload] == t:
                        pending[payload] = INF
                    try_launch(payload, t)
                if progress is not None and events % 4096 == 0:
                    progress(finished, n)
        finally:
            if gc_was_enabled:
                gc.enable()
        wall = time.perf_counter() - wall0
        if progress is not None:
            progress(finished, n)
        return self._records(log, wall, events)

    def _run_lockstep(self, progress: ProgressFn | None = None) -> SimulationRecords:
        """``run`` for the data-parallel ranks of one EP group (one pipeline stage).

        A group step starts when the previous one has ended (or, idle, at an arrival): at
        that instant every rank's scheduler builds its batch; the MoE layers see the tokens
        of all ranks, a rank with no batch contributing one dummy token (vLLM's
        ``execute_dummy_batch``), and all batches end together after the slowest rank's
        runtime. A dummy step is never the slowest (its layers cost no more than a real
        batch's, with the same MoE layers) and is not logged. When no rank has a batch
        the group idles until the next arrival."""
        st, replicas = self.state, self.replicas
        execution = self.execution
        arrivals = st.arrival
        n = st.n
        heap: list[tuple[float, int, int, object]] = []
        seq = count()
        push, pop = heapq.heappush, heapq.heappop
        num_r = len(replicas)
        log = _BatchLog(1)
        add_row = log.rows.append
        events = finished = 0
        busy = False  # a group step is in flight
        pending = INF  # time of the queued SCHEDULE, if any
        feed = _Arrivals(self.cfg, arrivals, n, heap, seq)
        closed, issue_next = feed.closed, feed.issue_next

        def request_step(t: float) -> None:
            """A SCHEDULE at ``t`` (after the arrivals and batch ends of ``t``)."""
            nonlocal pending
            if not busy and pending > t:
                pending = t
                push(heap, (t, SCHEDULE, next(seq), None))

        def launch_step(t: float) -> bool:
            """Every rank schedules at ``t``; one group step if any has a batch."""
            batches = [b for b in (sched.schedule(t) for sched in replicas) if b is not None]
            if not batches:
                return False
            group = sum(b.num_tokens for b in batches) + (num_r - len(batches))
            dt = 0.0
            for b in batches:
                times = execution.stage_times(b.prefill_chunks, b.prefill_prior, b.decode_kv,
                                              group_tokens=group)
                if times[0] > dt:
                    dt = times[0]
            end = t + dt
            for b in batches:
                b.start, b.end = t, end
                sched = replicas[b.replica]
                sched.last_duration = dt
                add_row((b.replica, t, end, len(b.prefill_ids), sum(b.prefill_chunks),
                         b.num_decodes, sched.num_blocks - sched.free_blocks))
            push(heap, (end, BATCH_END, next(seq), batches))
            return True

        admit = self._admitter(feed)
        wall0 = time.perf_counter()
        while heap:
            t, kind, _, payload = pop(heap)
            events += 1
            if kind == BATCH_END:
                for b in payload:
                    sched = replicas[b.replica]
                    before = sched.outstanding
                    sched.on_batch_end(b, t)
                    done = before - sched.outstanding
                    if done:
                        finished += done
                        if closed:
                            issue_next(done, t)
                busy = False
                request_step(t)
            elif kind == ARRIVAL:
                if admit(payload, t) < 0:
                    finished += 1
                else:
                    request_step(t)
            else:
                pending = INF
                if not busy:
                    busy = launch_step(t)
            if progress is not None and events % 4096 == 0:
                progress(finished, n)
        wall = time.perf_counter() - wall0
        if progress is not None:
            progress(finished, n)
        return self._records(log, wall, events)

    def _admitter(self, feed: _Arrivals) -> Callable[[int, float], int]:
        """The ARRIVAL handler both event loops share: the next arrival onto the heap, then
        the request routed to a replica (its index) or rejected (-1, recorded; closed
        loop: its user sends the next one)."""
        st, replicas, router = self.state, self.replicas, self.router
        reject_check = replicas[0].reject_reason
        arrived, issue_next = feed.arrived, feed.issue_next

        def admit(rid: int, t: float) -> int:
            arrived(rid)
            reason = reject_check(rid)
            if reason:
                st.reject_reason[rid] = reason
                issue_next(1, t)
                return -1
            r = router.route(rid, replicas)
            st.replica[rid] = r
            replicas[r].add_request(rid)
            return r

        return admit

    def _records(self, log: _BatchLog, wall: float, events: int) -> SimulationRecords:
        st, cfg = self.state, self.cfg
        tok_ids, tok_times = st.token_log()
        b = log.arrays()
        completed = np.asarray(st.completed_at, dtype=np.float64)
        last = [0.0, *b["end"][-1:]]
        if not np.isnan(completed).all():
            last.append(np.nanmax(completed))
        sim_end = max(last)
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
            execution=self.provenance(),
        )

    def provenance(self) -> dict:
        """The execution model's ``provenance()`` with this run's out-of-range lookups and
        the kind the config asked for."""
        prov = dict(self.execution.provenance())
        grown = Counter(getattr(self.execution, "out_of_range", {}))
        grown.subtract(self._oor_start)
        prov["out_of_range"] = {k: v for k, v in sorted(grown.items()) if v > 0}
        return {"requested": self.cfg.execution.kind, **prov}


def _active_params(cfg: SimulationConfig) -> int:
    m = cfg.model_spec
    mats = 3 if m.gated_mlp else 2
    inactive = (m.num_experts - m.experts_top_k) * mats * m.hidden_size * m.ffn_size
    return m.total_params() - m.num_layers * inactive


class _Arrivals:
    """Request arrivals on an event loop's heap. Open loop: the first request's arrival,
    and each arrival pushes the next (``next`` is the next to arrive). Closed loop: the
    first ``concurrency`` requests at 0, then a user's next request ``think_time_s`` after
    one of theirs finishes; ``upcoming`` holds the arrival times pushed but not yet popped,
    in time order (the fast-forward horizon). Capped (``closed`` is set too: completions
    send requests): the open loop's scheduled times, each request pushed when the one
    before it arrives and a slot is free, else at the completion that frees one."""

    def __init__(self, cfg: SimulationConfig, arrivals: np.ndarray, n: int,
                 heap: list, seq: count) -> None:
        a = cfg.workload.arrival
        self.arrivals, self.n, self.heap, self.seq = arrivals, n, heap, seq
        self.capped = a.kind == "capped"
        self.closed = a.kind == "closed" or self.capped
        self.think = 0.0 if self.capped else a.think_time_s
        self.upcoming: deque[float] = deque()
        self.next = 0
        self.next_issue = 0  # closed: the request the next finishing user sends
        if self.capped:
            self.cap, self.catch_up = a.concurrency, a.catch_up
            self.active = 0  # sent (pushed) and not finished or rejected
            self.shift = 0.0  # no catch-up: how far waiting has pushed the schedule back
            self._send(0.0)
        elif self.closed:
            self.next_issue = min(a.concurrency, n)
            for rid in range(self.next_issue):
                arrivals[rid] = 0.0
                self.upcoming.append(0.0)
                heapq.heappush(heap, (0.0, ARRIVAL, next(seq), rid))
        elif n:
            heapq.heappush(heap, (arrivals[0], ARRIVAL, next(seq), 0))

    def arrived(self, rid: int) -> None:
        """Request ``rid``'s ARRIVAL was popped."""
        if self.closed:
            self.upcoming.popleft()
            if self.capped:
                self._send(self.arrivals[rid])
            return
        self.next = rid + 1
        if self.next < self.n:
            heapq.heappush(self.heap, (self.arrivals[self.next], ARRIVAL, next(self.seq),
                                       self.next))

    def issue_next(self, count_done: int, t: float) -> None:
        """Closed loop: each finished request's user sends its next one (open: nothing)."""
        if not self.closed:
            return
        if self.capped:
            self.active -= count_done
            if not self.upcoming:  # else the next request is already on its way
                self._send(t)
            return
        at = t + self.think
        for _ in range(count_done):
            if self.next_issue >= self.n:
                return
            self.arrivals[self.next_issue] = at
            self.upcoming.append(at)
            heapq.heappush(self.heap, (at, ARRIVAL, next(self.seq), self.next_issue))
            self.next_issue += 1

    def _send(self, t: float) -> None:
        """Capped: push the next request, at its scheduled time or at ``t`` (now) when
        overdue, if a slot is free; else the completion that frees one sends it."""
        i = self.next_issue
        if i >= self.n or self.active >= self.cap:
            return
        ready = self.arrivals[i] + self.shift
        at = ready if ready > t else t
        if not self.catch_up:
            self.shift += at - ready
        self.arrivals[i] = at
        self.active += 1
        self.next_issue = i + 1
        self.upcoming.append(at)
        heapq.heappush(self.heap, (at, ARRIVAL, next(self.seq), i))


class _BatchLog:
    """Per-batch rows: Python lists for single iterations, array chunks for steady runs."""

    def __init__(self, pp: int) -> None:
        self.pp = pp
        self.rows: list[tuple[int, float, float, int, int, int, int]] = []
        self.stage_rows: list[list[float]] = []
        self.chunks: list[tuple[int, np.ndarray, np.ndarray, int, np.ndarray]] = []

    def add(self, batch: Batch, kv_blocks: int) -> None:
        self.rows.append((batch.replica, batch.start, batch.end, len(batch.prefill_ids),
                          sum(batch.prefill_chunks), batch.num_decodes, kv_blocks))
        self.stage_rows.append(batch.stage_start + batch.stage_end)


    def add_steady(self, replica: int, starts: np.ndarray, ends: np.ndarray,
                   kv_blocks: np.ndarray, num_decodes: int) -> None:
        self.chunks.append((replica, starts, ends, num_decodes, kv_blocks))

    def arrays(self) -> dict[str, np.ndarray]:
        pp = self.pp
        rows = np.asarray(self.rows, dtype=np.float64).reshape(-1, 7)
        if pp == 1:
            stages = rows[:, 1:3]
        else:
            stages = np.asarray(self.stage_rows, dtype=np.float64).reshape(-1, 2 * pp)
        cols = {
            "replica": [rows[:, 0]], "start": [rows[:, 1]], "end": [rows[:, 2]],
            "num_prefills": [rows[:, 3]], "prefill_tokens": [rows[:, 4]],
            "num_decodes": [rows[:, 5]], "kv_blocks": [rows[:, 6]],
            "stage_start": [stages[:, :pp]], "stage_end": [stages[:, pp:]],
        }
        if self.chunks:
            replica, starts, ends, num_decodes, kv = zip(*self.chunks, strict=True)
            lengths = [len(x) for x in starts]
            starts, ends = np.concatenate(starts), np.concatenate(ends)
            zeros = np.zeros(len(starts))
            cols["replica"].append(np.repeat(replica, lengths))
            cols["start"].append(starts)
            cols["end"].append(ends)
            cols["num_prefills"].append(zeros)
            cols["prefill_tokens"].append(zeros)
            cols["num_decodes"].append(np.repeat(num_decodes, lengths))
            cols["kv_blocks"].append(np.concatenate(kv))
            cols["stage_start"].append(starts[:, None])
            cols["stage_end"].append(ends[:, None])
        out = {k: np.concatenate(v) for k, v in cols.items()}
        order = np.lexsort((out["replica"], out["start"]))
        ints = ("replica", "num_prefills", "prefill_tokens", "num_decodes", "kv_blocks")
        return {k: (v[order].astype(np.int64) if k in ints else v[order]) for k, v in out.items()}
