"""Global routers: which replica an arriving request joins."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from simulator.scheduling.base import ReplicaScheduler

ROUTERS: dict[str, type[Router]] = {}


class Router(ABC):
    """Picks a replica for each request, at its arrival."""

    name: ClassVar[str]

    def __init__(self, num_replicas: int, rng: np.random.Generator) -> None:
        self.num_replicas = num_replicas
        self.rng = rng

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        ROUTERS[cls.name] = cls

    @abstractmethod
    def route(self, rid: int, replicas: Sequence[ReplicaScheduler]) -> int:
        """Index of the replica that takes request ``rid``."""


class RoundRobinRouter(Router):
    """Replicas in turn, regardless of load."""

    name = "round_robin"

    def __init__(self, num_replicas: int, rng: np.random.Generator) -> None:
        super().__init__(num_replicas, rng)
        self._next = 0

    def route(self, rid: int, replicas: Sequence[ReplicaScheduler]) -> int:
        r = self._next
        self._next = (r + 1) % self.num_replicas
        return r


class RandomRouter(Router):
    """A uniformly random replica, drawn from the seeded generator (in batches)."""

    name = "random"

    def __init__(self, num_replicas: int, rng: np.random.Generator) -> None:
        super().__init__(num_replicas, rng)
        self._draws: list[int] = []

    def route(self, rid: int, replicas: Sequence[ReplicaScheduler]) -> int:
        if not self._draws:
            self._draws = self.rng.integers(0, self.num_replicas, 4096).tolist()[::-1]
        return self._draws.pop()


class LeastOutstandingRouter(Router):
    """The replica with the fewest requests routed and not yet completed (lowest index
    on ties)."""

    name = "least_outstanding"

    def route(self, rid: int, replicas: Sequence[ReplicaScheduler]) -> int:
        best, best_n = 0, replicas[0].outstanding
        for i in range(1, len(replicas)):
            n = replicas[i].outstanding
            if n < best_n:
                best, best_n = i, n
        return best
