"""``python -m vidur_search.simulate``: one simulation from the Hydra config tree.

Overrides use the same ``conf/`` groups as the search, e.g.::

    python -m vidur_search.simulate model=llama-2-70b sku=a100-80gb \\
        parallel.tensor_parallel=4 scheduler=vllm_v1 workload.arrival.rate=2 seed=1

Prints a summary table and where the outputs went (``output.dir``): requests/batches/
replicas Parquet tables, ``summary.json`` and, with ``output.chrome_trace=true``, a
Perfetto trace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from simulator import SimulationConfig, simulate
from simulator.metrics import format_summary
from vidur_search.cli import run_and_exit

console = Console(stderr=True)


def config_from_hydra(cfg: DictConfig) -> SimulationConfig:
    """The SimulationConfig for a composed Hydra config (``output`` and ``hydra`` aside)."""
    plain: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    plain.pop("output", None)
    plain.pop("hydra", None)
    workload = plain.get("workload", {})
    if workload.get("trace_file"):
        workload["trace_file"] = to_absolute_path(workload["trace_file"])
    return SimulationConfig.from_dict(plain)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Validate, simulate, write outputs; returns the summary."""
    sim_cfg = config_from_hydra(cfg)
    out_dir = Path(to_absolute_path(cfg.output.dir))
    n = sim_cfg.workload.num_requests
    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, transient=True,
        disable=not cfg.output.progress,
    ) as bar:
        task = bar.add_task("simulating requests", total=n or None)
        result = simulate(sim_cfg,
                          progress=lambda done, total: bar.update(task, completed=done,
                                                                  total=total))
    paths = result.write(out_dir, chrome_trace=cfg.output.chrome_trace,
                         token_table=cfg.output.token_table)
    print(format_summary(result.summary))
    print(f"outputs: {out_dir}")
    for name, path in paths.items():
        print(f"  {name}: {path}")
    return result.summary


@hydra.main(config_path="pkg://vidur_search.conf", config_name="simulate", version_base=None)
def main(cfg: DictConfig) -> None:
    run_and_exit(run, cfg)


if __name__ == "__main__":
    main()
