"""The search space: candidate deployments, with the ones that cannot run dropped up front.

A candidate is (SKU, TP, PP, replicas, scheduler, batch cap, chunk size). Before any trial
runs, every combination is turned into a :class:`SimulationConfig`; those the engine
rejects (the model does not fit in memory, TP does not divide the heads, TP spans nodes,
more GPUs than the budget, ...) are dropped and counted by reason, so the sampler only ever
sees configurations that can run.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml

from simulator import ConfigError, SimulationConfig
from simulator.catalogue import get_model

# Errors in these settings are the experiment's, not a candidate's: they stop the search.
_NOT_DEPLOYMENT = ("workload", "execution", "catalogue", "seed")
# Schedulers whose iteration token budget is the searched chunk size.
CHUNKED = ("sarathi", "vllm_v1", "vllm_v1_async", "vllm_0_8", "vllm_0_19")


@cache
def scheduler_preset(name: str) -> dict[str, Any]:
    """Knobs of ``conf/scheduler/<name>.yaml`` (the same presets the simulate command uses)."""
    files = resources.files("vidur_search.conf.scheduler")
    path = files / f"{name}.yaml"
    if not path.is_file():
        allowed = sorted(p.name.removesuffix(".yaml") for p in files.iterdir()
                         if p.name.endswith(".yaml"))
        raise ConfigError("search.space.schedulers", name,
                          "allowed values are " + ", ".join(allowed))
    return dict(yaml.safe_load(path.read_text()))


@dataclass(frozen=True, order=True)
class Candidate:
    """One deployment configuration the search may try."""

    sku: str
    tp: int
    pp: int
    replicas: int
    scheduler: str
    batch_cap: int
    chunk_size: int  # 0 for schedulers without a chunked token budget
    ep: int = 1  # expert parallelism: 1, or replicas x tp (one EP group, MoE only)

    @property
    def key(self) -> str:
        """Stable identity, used to skip configurations already measured."""
        return (f"{self.sku}|tp{self.tp}|pp{self.pp}|r{self.replicas}|{self.scheduler}"
                f"|b{self.batch_cap}|c{self.chunk_size}" + (f"|ep{self.ep}" if self.ep > 1 else ""))

    @property
    def num_gpus(self) -> int:
        return self.tp * self.pp * self.replicas

    def unit(self) -> Candidate:
        """The part of this deployment that is simulated on its own: one replica, or the
        whole EP group (its replicas step in lockstep)."""
        return self if self.ep > 1 else dataclasses.replace(self, replicas=1)

    def as_dict(self) -> dict[str, Any]:
        return {"sku": self.sku, "tp": self.tp, "pp": self.pp, "replicas": self.replicas,
                "scheduler": self.scheduler, "batch_cap": self.batch_cap,
                "chunk_size": self.chunk_size, "ep": self.ep}


@dataclass
class Space:
    """The runnable candidates, and what was dropped and why."""

    candidates: list[Candidate]
    dropped: Counter[str] = field(default_factory=Counter)

    def nearest(self, params: Mapping[str, Any]) -> Candidate:
        """The runnable candidate closest to a sampler's ``params`` (sku, parallel,
        scheduler, batch_cap, chunk_size, expert_parallel): exact when it is runnable;
        else same SKU, scheduler and expert parallelism first, then the nearest layout,
        batch cap and chunk in log2 steps. This keeps every trial on a configuration that
        can run."""
        want_sku, want_sched = params["sku"], params["scheduler"]
        want_ep = bool(params.get("expert_parallel", False))
        tp, pp, reps = parse_layout(str(params["parallel"]))
        cap, chunk = int(params["batch_cap"]), int(params.get("chunk_size") or 0)

        def distance(c: Candidate) -> tuple[float, ...]:
            return (
                float(c.sku != want_sku), float(c.scheduler != want_sched),
                float((c.ep > 1) != want_ep),
                abs(math.log2(c.tp / tp)) + abs(math.log2(c.pp / pp))
                + (abs(math.log2(c.replicas / reps)) if reps else 0.0),
                abs(math.log2(c.batch_cap / cap)),
                abs(math.log2(c.chunk_size / chunk)) if c.chunk_size and chunk else 0.0,
            )

        return min(self.candidates, key=distance)

    def table_range(self) -> tuple[int, int, int]:
        """(batch cap, chunk size, tokens per batch): the largest any candidate's
        scheduler uses, the range a shared lookup table must cover."""
        tokens = max((int(scheduler_preset(c.scheduler).get("max_tokens_per_batch", 0))
                      for c in self.candidates), default=0)
        chunk = max((c.chunk_size for c in self.candidates), default=0)
        return (max((c.batch_cap for c in self.candidates), default=0), chunk,
                max(tokens, chunk))

    def by_key(self) -> dict[str, Candidate]:
        return {c.key: c for c in self.candidates}

    def summary(self) -> str:
        n = len(self.candidates)
        total = n + sum(self.dropped.values())
        lines = [f"search space: {n} runnable of {total} configurations"]
        for reason, count in self.dropped.most_common():
            lines.append(f"  dropped {count}: {reason}")
        return "\n".join(lines)


def parse_layout(value: str) -> tuple[int, int, int]:
    """(tp, pp, replicas or 0) of a layout string such as ``tp4-pp1`` or ``tp2-pp1-r4``."""
    parts = dict((p[:2] if p[:2] in ("tp", "pp") else p[:1], int(p.lstrip("tpr")))
                 for p in value.split("-"))
    return parts["tp"], parts["pp"], parts.get("r", 0)


def simulation_config(
    base: Mapping[str, Any], c: Candidate, requests_per_replica: int
) -> SimulationConfig:
    """The SimulationConfig of candidate ``c`` on the experiment's ``base`` settings
    (model, ``nodes`` per SKU, workload, execution, seed)."""
    sched = dict(scheduler_preset(c.scheduler))
    sched["max_batch_size"] = c.batch_cap
    if c.chunk_size:
        sched["chunk_size"] = c.chunk_size
        sched["max_tokens_per_batch"] = max(sched.get("max_tokens_per_batch", 0), c.chunk_size)
    workload = dict(base["workload"])
    workload["num_requests"] = requests_per_replica * c.replicas
    lengths = dict(workload.get("lengths") or {})
    if not lengths.get("max_total_tokens"):  # a real server truncates to the context
        lengths["max_total_tokens"] = get_model(base["model"]).max_context
    workload["lengths"] = lengths
    d = {
        "model": base["model"],
        "sku": c.sku,
        "node": (base.get("nodes") or {}).get(c.sku, ""),
        "parallel": {"tensor_parallel": c.tp, "pipeline_parallel": c.pp,
                     "replicas": c.replicas, "expert_parallel": c.ep},
        "scheduler": sched,
        "workload": workload,
        "execution": base.get("execution", {}),
        "catalogue": base.get("catalogue", ""),
        "precision": base.get("precision") or {},
        "seed": base.get("seed", 0),
    }
    return SimulationConfig.from_dict(d)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_space(space: Mapping[str, Any]) -> None:
    """Reject a bad entry of the ``search.space`` lists before any candidate is built,
    naming it (``search.space.tensor_parallel[0]``): TP, PP, replicas and batch caps are
    integers >= 1, chunk sizes integers >= 1 or 0 (the scheduler preset's own chunk size,
    as an empty list), ``max_gpus`` an integer >= 1 and schedulers names of
    ``conf/scheduler/`` presets. Empty lists are left to the caller (some have defaults)."""
    for name in ("tensor_parallel", "pipeline_parallel", "replicas", "batch_caps"):
        for i, value in enumerate(space.get(name) or []):
            if not (_whole(value) and value >= 1):
                hint = (" (the search orders caps by value: give an engine preset's own "
                        "cap as a number, e.g. 256 for vLLM's max_num_seqs)"
                        if name == "batch_caps" else "")
                raise ConfigError(f"search.space.{name}[{i}]", value, "an integer >= 1" + hint)
    for i, value in enumerate(space.get("chunk_sizes") or []):
        if not (_whole(value) and value >= 0):
            raise ConfigError(f"search.space.chunk_sizes[{i}]", value,
                              "an integer >= 1, or 0 for the scheduler preset's own chunk size")
    for i, value in enumerate(space.get("expert_parallel") or []):
        if not isinstance(value, bool):
            raise ConfigError(f"search.space.expert_parallel[{i}]", value, "true or false")
    max_gpus = space.get("max_gpus")
    if not (_whole(max_gpus) and max_gpus >= 1):
        raise ConfigError("search.space.max_gpus", max_gpus, "an integer >= 1")
    for name in space.get("schedulers") or []:
        scheduler_preset(name)  # unknown names fail here, naming the allowed ones


def build_space(base: Mapping[str, Any], space: Mapping[str, Any],
                requests_per_replica: int) -> Space:
    """Enumerate ``space`` (lists of skus, tensor_parallel, pipeline_parallel, replicas,
    schedulers, batch_caps, chunk_sizes, expert_parallel; ``max_gpus``; ``fill_budget``)
    and keep the candidates that can run. With ``fill_budget`` the replica count is
    whatever fills ``max_gpus`` (``max_gpus // (tp * pp)``) instead of the ``replicas``
    list. ``expert_parallel: [false, true]`` adds, for MoE models, each deployment as one
    EP group over all its GPUs (``ep = replicas x tp``)."""
    for name in ("skus", "tensor_parallel", "pipeline_parallel", "schedulers", "batch_caps"):
        if not space.get(name):
            raise ConfigError(f"search.space.{name}", space.get(name), "a non-empty list")
    check_space(space)
    max_gpus = int(space["max_gpus"])
    out: list[Candidate] = []
    dropped: Counter[str] = Counter()
    feasible: dict[tuple, str] = {}
    for sku, tp, pp in itertools.product(space["skus"], space["tensor_parallel"],
                                         space["pipeline_parallel"]):
        if space.get("fill_budget"):
            reps = [max_gpus // (tp * pp)] if max_gpus >= tp * pp else [0]
        else:
            reps = list(space.get("replicas") or [1])
        for r in reps:
            for sched in space["schedulers"]:
                chunks = list(space.get("chunk_sizes") or [0]) if sched in CHUNKED else [0]
                for cap, chunk, use_ep in itertools.product(
                        space["batch_caps"], chunks, space.get("expert_parallel") or [False]):
                    if r < 1 or tp * pp * r > max_gpus:
                        dropped[f"more than search.space.max_gpus={max_gpus} GPUs"] += 1
                        continue
                    ep = tp * r if use_ep else 1
                    if use_ep and ep == 1:
                        dropped["expert parallelism needs more than one GPU"] += 1
                        continue
                    c = Candidate(sku, tp, pp, r, sched, cap, chunk, ep)
                    # memory and divisibility depend on these only; check each once
                    fkey = (sku, tp, pp, sched, cap, chunk, ep)
                    if fkey not in feasible:
                        try:
                            simulation_config(base, c, 1)
                            feasible[fkey] = ""
                        except ConfigError as err:
                            if err.field.startswith(_NOT_DEPLOYMENT):
                                raise  # a bad workload or execution setting, not a drop
                            # the reason up to its first ':' (no per-shape numbers), so that
                            # the summary groups configurations dropped for the same cause
                            feasible[fkey] = f"{err.field}: {err.allowed.split(':')[0]}"
                    if feasible[fkey]:
                        dropped[feasible[fkey]] += 1
                    else:
                        out.append(c)
    return Space(sorted(set(out)), dropped)
