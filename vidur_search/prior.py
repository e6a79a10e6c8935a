"""A fluid-model estimate of each candidate's capacity, used to choose the first trials.

A capacity trial runs ~8 simulations; this estimate costs a few execution-model calls. It
treats one replica's iterations as a steady flow: at a request rate ``lam`` with mean
prompt ``P`` and output ``D`` tokens, every iteration carries ``n`` running decodes and
(chunked schedulers) the rest of the token budget as prefill, or (whole-prompt schedulers)
shares the replica's time between prompts and decode steps. ``n`` follows Little's law and
is capped by the batch cap and the KV capacity. The SLOs enter through the iteration time:
with chunked prefill a token waits one full iteration of every pipeline stage (TBT), and a
prompt at the SLO's quantile needs ``ceil(P_q / prefill tokens)`` of them (TTFT); a
whole-prompt scheduler stalls decodes for a prompt's prefill. A candidate that misses an
SLO in the fluid model is estimated at 0.

The estimate ignores queueing variance, preemption and routing; it ranks candidates, it
does not replace a trial. The search measures the best-ranked ones first, one per (SKU,
TP, PP, scheduler) (``search.prior_points``), and lets the sampler take it from there.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from simulator import SimulationConfig
from simulator.execution.base import ExecutionModel
from simulator.workload import generate_requests
from vidur_search.capacity import Slo
from vidur_search.space import CHUNKED, Candidate, simulation_config
from vidur_search.trial import TrialContext, execution_model

_ITERATIONS = 40  # damped fixed-point steps; the rate settles within ~20
log = logging.getLogger(__name__)


def is_chunked(cfg: SimulationConfig) -> bool:
    """Whether ``cfg``'s scheduler splits prompts into chunks under a token budget."""
    return cfg.scheduler.name in CHUNKED or cfg.scheduler.chunked_prefill == "on"


def estimate_capacity(cfg: SimulationConfig, execution: ExecutionModel,
                      prompts: np.ndarray, decodes: np.ndarray, slo: Slo) -> float:
    """Requests per second one replica of ``cfg`` sustains under ``slo`` (fluid model;
    0 when the SLOs cannot be met at any load). ``prompts`` and ``decodes`` are the
    workload's token counts per request."""
    if len(prompts) == 0:
        raise ValueError("estimate_capacity needs at least one request")
    pp = cfg.parallel.pipeline_parallel
    p_mean, d_mean = float(np.mean(prompts)), float(np.mean(decodes))
    p_slo = float(np.quantile(prompts, int(slo.ttft_quantile.removeprefix("p")) / 100))
    p_tbt = float(np.quantile(prompts, int(slo.tbt_quantile.removeprefix("p")) / 100))
    context = int(p_mean + d_mean / 2)  # a decode's mean KV length
    kv_share = cfg.kv_capacity().num_tokens / (p_mean + d_mean / 2)
    n_max = max(1.0, min(float(cfg.scheduler.max_batch_size), kv_share))

    def stage(prefill: float, decodes_in_batch: float) -> float:
        """Slowest stage's time of an iteration with one ``prefill``-token chunk and
        ``decodes_in_batch`` decodes at the mean context."""
        chunks: Sequence[int] = [int(prefill)] if prefill >= 1 else []
        prior: Sequence[int] = [int(p_mean / 2)] if chunks else []
        return max(execution.stage_times(chunks, prior, [context] * round(decodes_in_batch)))

    if is_chunked(cfg):
        budget = float(cfg.scheduler.chunk_size)
        n_max = min(n_max, pp * (budget - 1))  # a decode takes a token of the budget
        lam = running = 0.0
        prefill = budget
        for _ in range(_ITERATIONS):
            per_batch = running / pp
            t = stage(prefill, per_batch)
            room = max(1.0, budget - per_batch)  # prompt tokens an iteration can take
            # the rate is bounded by the prompt tokens the chunks admit and by the decode
            # slots (batch cap / KV); each request decodes D cycles of pp iterations
            lam = min(room / (t * p_mean), n_max / (d_mean * pp * t))
            # damped: the undamped map can alternate between two states when decodes
            # crowd the chunk out
            running = 0.5 * running + 0.5 * min(n_max, lam * d_mean * pp * t)
            prefill = 0.5 * prefill + 0.5 * min(room, lam * p_mean * t)
        room = max(1.0, budget - running / pp)
        cycle = pp * stage(room, running / pp)  # a full chunk: the slow iterations (TBT)
        ttft = math.ceil(p_slo / room) * cycle
        return lam if cycle <= slo.tbt_s and ttft <= slo.ttft_s else 0.0

    # whole prompts: at capacity the running set is full (the queue feeds it) and the
    # replica's time goes to one prefill per request plus its share of D decode steps (a
    # step of a micro-batch of n_max / pp requests, one token each per pp-stage cycle)
    per_batch = max(1.0, n_max / pp)
    lam = 1.0 / (stage(p_mean, 0) + d_mean * pp * stage(0, per_batch) / n_max)
    prompt = min(p_tbt, float(cfg.scheduler.max_tokens_per_batch))
    stall = pp * stage(prompt, per_batch)  # a decode waits for a prompt's prefill
    ttft = pp * stage(min(p_slo, float(cfg.scheduler.max_tokens_per_batch)), 0)
    return lam if stall <= slo.tbt_s and ttft <= slo.ttft_s else 0.0


def rank_candidates(ctx: TrialContext, candidates: Sequence[Candidate]
                    ) -> list[tuple[Candidate, float]]:
    """Every candidate with its estimated capacity per dollar (QPS per $/h), best first;
    ties (the fluid model sees no difference, e.g. a batch cap that never binds) keep the
    larger batch cap first. Execution models are the trials' own (``execution_model``
    with ``ctx.table_range``: one per layout)."""
    scored = []
    lengths: tuple[np.ndarray, np.ndarray] | None = None
    for cand in candidates:
        cfg = simulation_config(ctx.base, cand.unit(), ctx.requests_per_replica)
        if lengths is None:  # the workload's lengths do not depend on the candidate
            reqs = generate_requests(cfg.workload, np.random.default_rng(cfg.seed))
            lengths = (reqs.num_prefill, reqs.num_decode)
        try:
            qps = estimate_capacity(cfg, execution_model(cfg, ctx.table_range), *lengths,
                                    ctx.slo)
        except Exception as err:  # a trial would record this as a failure; rank it last
            log.warning("fluid model failed on %s: %s", cand.key, err)
            qps = 0.0
        cost = ctx.prices[cand.sku] * cand.num_gpus
        scored.append((cand, qps * cand.replicas / cost))
    return sorted(scored, key=lambda cv: (-cv[1], -cv[0].batch_cap, cv[0].key))


def prior_points(ranked: Sequence[tuple[Candidate, float]], k: int) -> list[Candidate]:
    """The ``k`` best-estimated candidates, at most one per (SKU, TP, PP, scheduler): the
    model's finer choices (batch cap, chunk) are the ones it is least sure of, and TPE
    explores them around whatever the first trials show; none estimated at 0."""
    out: list[Candidate] = []
    seen: set[tuple[str, int, int, str]] = set()
    for cand, value in ranked:
        if len(out) >= k or value <= 0:
            break
        group = (cand.sku, cand.tp, cand.pp, cand.scheduler)
        if group not in seen:
            seen.add(group)
            out.append(cand)
    return out
