"""vidur_search's simulation engine: a pure library (no Ray, no Hydra).

A handful of verbs::

    from simulator import SimulationConfig, simulate
    result = simulate(SimulationConfig(model="llama-3-8b", sku="h100-sxm"))
    result.summary["ttft"]["p90"]; result.write("out/")
"""

from simulator.config import SimulationConfig
from simulator.errors import ConfigError
from simulator.result import SimulationResult, simulate

__all__ = ["ConfigError", "SimulationConfig", "SimulationResult", "simulate"]
