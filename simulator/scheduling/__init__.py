"""Replica schedulers (one module each, registered by name) and global routers."""

from simulator.scheduling import (  # noqa: F401  (registers every scheduler)
    faster_transformer,
    lightllm,
    orca,
    sarathi,
    vllm_v0,
    vllm_v1,
)
from simulator.scheduling.base import REGISTRY, ReplicaScheduler
from simulator.scheduling.batch import Batch
from simulator.scheduling.router import ROUTERS, Router
from simulator.scheduling.state import RequestState

__all__ = ["REGISTRY", "ROUTERS", "Batch", "ReplicaScheduler", "RequestState", "Router"]
