"""Small builders shared by the engine tests."""

from __future__ import annotations

import numpy as np

from simulator import SimulationConfig, simulate
from simulator.workload import RequestTable


def table(arrival, prefill, decode) -> RequestTable:
    return RequestTable(np.asarray(arrival, dtype=np.float64),
                        np.asarray(prefill, dtype=np.int64), np.asarray(decode, dtype=np.int64))


def config(scheduler: str = "sarathi", **sched) -> SimulationConfig:
    parallel = sched.pop("parallel", {})
    router = sched.pop("router", "round_robin")
    engine = sched.pop("engine", {})
    return SimulationConfig.from_dict({
        "model": "llama-2-7b", "sku": "a100-80gb", "parallel": parallel, "router": router,
        "scheduler": {"name": scheduler, **sched}, "engine": engine,
    })


def run(scheduler: str, requests: RequestTable, **sched):
    return simulate(config(scheduler, **sched), requests=requests)
