"""One trial: the capacity of one candidate deployment on one workload, as a trials row.

Pure Python (no Ray): the Ray Tune trainable in ``search.py`` calls :func:`run_trial`, and
tests call it directly. Execution models (and with them any profiles and fitted
predictors they load) are built once per worker process and reused by every trial that
shares the model, SKU, node, TP, PP and execution settings.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import socket
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from simulator import SimulationConfig
from simulator.engine import build_execution_model
from simulator.execution.base import ExecutionModel
from vidur_search.capacity import CapacitySettings, Slo, find_capacity, result_row
from vidur_search.space import Candidate, simulation_config


class TrialTimeout(RuntimeError):
    """A capacity search ran past ``search.capacity.max_trial_s``."""


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs besides its candidate (pickled once to each worker)."""

    base: dict[str, Any]  # model, catalogue, nodes, workload, execution, seed
    workload_name: str
    slo: Slo
    capacity: CapacitySettings
    requests_per_replica: int  # the stream's size; probes use a prefix (see capacity)
    replica_scaling: str  # "linear" | "simulate"
    prices: dict[str, float]
    max_trial_s: float = 0.0  # 0 = no limit
    # measured profiles: (batch cap, chunk, tokens per batch) every trial's lookup tables
    # cover, the space's largest, so a worker builds one model per layout; 0s = the
    # trial's own range
    table_range: tuple[int, int, int] = (0, 0, 0)

    @property
    def model(self) -> str:
        return str(self.base["model"])


# Least recently used last; a worker keeps at most MAX_CACHED_MODELS models (a measured
# profile model holds ~10 MB of lookup tables; a rebuild from the predictor cache ~0.2 s).
_MODELS: OrderedDict[str, ExecutionModel] = OrderedDict()
MAX_CACHED_MODELS = 16


def execution_model(cfg: SimulationConfig,
                    table_range: tuple[int, int, int] = (0, 0, 0)) -> ExecutionModel:
    """The (per-process cached) execution model of ``cfg``: built once per worker for each
    distinct set of what ``build_execution_model`` reads (model, catalogue, SKU, node, TP,
    PP, EP, precision, execution settings and, for measured profiles, the batch and token
    range their lookup tables cover), so a trial's result never depends on which trial
    the worker ran before. ``table_range`` (batch cap, chunk, tokens per batch) widens a
    measured-profile model's tables to cover the whole search space, so that one model
    per layout serves every trial: profiles and fitted predictors load once per worker."""
    if cfg.execution.kind == "profiled" and any(table_range):
        sched = cfg.scheduler
        wide = dataclasses.replace(
            sched, max_batch_size=max(sched.max_batch_size, table_range[0]),
            chunk_size=max(sched.chunk_size, table_range[1]),
            max_tokens_per_batch=max(sched.max_tokens_per_batch, table_range[2]))
        cfg = dataclasses.replace(cfg, scheduler=wide)
    sched = cfg.scheduler
    tables = ([sched.max_batch_size, sched.max_tokens_per_batch, sched.chunk_size]
              if cfg.execution.kind == "profiled" else [])
    key = json.dumps([cfg.model, cfg.catalogue, cfg.sku, cfg.node_spec.name,
                      cfg.parallel.tensor_parallel, cfg.parallel.pipeline_parallel,
                      cfg.parallel.expert_parallel, dataclasses.asdict(cfg.precision),
                      dataclasses.asdict(cfg.execution), tables],
                     sort_keys=True, default=str)
    if key in _MODELS:
        _MODELS.move_to_end(key)
    else:
        _MODELS[key] = build_execution_model(cfg)
        while len(_MODELS) > MAX_CACHED_MODELS:
            _MODELS.popitem(last=False)
    return _MODELS[key]


def identity_row(ctx: TrialContext, cand: Candidate) -> dict[str, Any]:
    """The identity and cost columns of ``cand``'s trials row."""
    node = (ctx.base.get("nodes") or {}).get(cand.sku, "")
    price = ctx.prices[cand.sku]
    return {
        "model": ctx.model, "sku": cand.sku, "node": node, "tp": cand.tp, "pp": cand.pp,
        "replicas": cand.replicas, "scheduler": cand.scheduler, "batch_cap": cand.batch_cap,
        "chunk_size": cand.chunk_size, "expert_parallel": cand.ep,
        "workload": ctx.workload_name,
        "num_gpus": cand.num_gpus, "price_per_gpu_hour": price,
        "cost_per_hour": cand.num_gpus * price, "key": cand.key,
    }


def failed_row(ctx: TrialContext, cand: Candidate, error: str, wall_s: float = 0.0
               ) -> dict[str, Any]:
    """A trials row for a trial that raised: no capacity, the error kept."""
    row = identity_row(ctx, cand)
    row.update(status="failed", error=error, capacity_qps=0.0, capacity_reason="trial failed",
               capacity_per_dollar=0.0, cost_per_million_tokens=math.inf, simulations=0,
               wall_s=wall_s)
    return _finish(row)


def run_trial(ctx: TrialContext, cand: Candidate) -> dict[str, Any]:
    """Measure ``cand``'s capacity under ``ctx.slo``; never raises (a failure is a row)."""
    t0 = time.perf_counter()
    try:
        return _measure(ctx, cand, t0)
    except Exception as err:  # recorded, and the sweep goes on
        tb = traceback.format_exception_only(type(err), err)[-1].strip()
        return failed_row(ctx, cand, tb, time.perf_counter() - t0)


def _measure(ctx: TrialContext, cand: Candidate, t0: float) -> dict[str, Any]:
    sim_cand = cand.unit() if ctx.replica_scaling == "linear" else cand
    cfg = simulation_config(ctx.base, sim_cand, ctx.requests_per_replica)
    deadline = t0 + ctx.max_trial_s if ctx.max_trial_s > 0 else math.inf

    def check_time(_probe: Any) -> None:
        if time.perf_counter() > deadline:
            raise TrialTimeout(f"capacity search ran past search.capacity.max_trial_s="
                               f"{ctx.max_trial_s:g}s")

    settings = dataclasses.replace(ctx.capacity,
                                   min_requests=ctx.capacity.min_requests * sim_cand.replicas)
    model = execution_model(cfg, ctx.table_range)
    res = find_capacity(cfg, ctx.slo, settings, execution=model, on_probe=check_time)
    scale = cand.replicas // sim_cand.replicas
    row = identity_row(ctx, cand)
    row.update(result_row(res))
    row["capacity_qps"] *= scale
    row["tokens_per_s"] *= scale
    row["wall_s"] = time.perf_counter() - t0
    qps, cost = row["capacity_qps"], row["cost_per_hour"]
    row["status"], row["error"] = "ok", ""
    row["execution"] = model.provenance()["kind"]  # profiled may have fallen back
    row["capacity_per_dollar"] = qps / cost
    tokens_per_hour = row["tokens_per_s"] * 3600.0
    row["cost_per_million_tokens"] = (cost / tokens_per_hour * 1e6 if qps > 0
                                      and tokens_per_hour > 0 else math.inf)
    return _finish(row)


def _finish(row: dict[str, Any]) -> dict[str, Any]:
    row["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    row["node_ip"], row["node_id"] = _node()
    return row


@lru_cache(maxsize=1)
def _node() -> tuple[str, str]:
    """(IP, Ray node id) of this worker; the host name and "" outside Ray."""
    try:
        import ray

        if ray.is_initialized():
            return (str(ray.util.get_node_ip_address()),
                    str(ray.get_runtime_context().get_node_id()))
    except Exception:  # Ray absent or not in a worker: the host name will do
        pass
    return socket.gethostname(), ""
