"""``python -m vidur_search.simulate``: one simulation from the Hydra config tree.

Overrides use the same ``conf/`` groups as the search, e.g.::

    python -m vidur_search.simulate model=llama-2-70b sku=a100-80gb \\
        parallel.tensor_parallel=4 scheduler=vllm_v1 workload.arrival.rate=2 seed=1

Prints a summary table and where the outputs went (``output.dir``): requests/batches/
replicas Parquet tables, ``summary.json`` and, with ``output.chrome_trace=true``, a
Perfetto trace.

Every setting is checked before the simulation starts (``output.dir`` before Hydra
creates it, by ``cli.CheckOutputDir``): a bad one is a one-line configuration error, exit 2.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from simulator import ConfigError, SimulationConfig, simulate
from simulator.errors import ConfigWarning, boolean
from simulator.metrics import format_summary
from simulator.paths import check_output_dir
from vidur_search.cli import absolute_trace_file, run_and_exit

console = Console(stderr=True)

OUTPUT_FLAGS = ("chrome_trace", "token_table", "progress")


def config_from_hydra(cfg: DictConfig) -> SimulationConfig:
    """The SimulationConfig for a composed Hydra config (``output`` and ``hydra`` aside).

    A value left at Hydra's ``???`` is a ConfigError naming it (``workload.trace_file``:
    required for trace workloads, ignored otherwise); a relative trace path is taken from
    the directory the command was started in."""
    missing = [k for k in OmegaConf.missing_keys(cfg)
               if not k.startswith(("hydra.", "output.")) and k != "workload.trace_file"]
    if missing:
        raise ConfigError(missing[0], "???", f"is required: set {missing[0]}=VALUE")
    plain: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    plain.pop("output", None)
    plain.pop("hydra", None)
    workload = plain.get("workload", {})
    if isinstance(workload, dict):
        absolute_trace_file(cfg.workload, workload)
    return SimulationConfig.from_dict(plain)


def check_output(output: Any) -> Path:
    """Validate the ``output`` settings (on/off flags true or false, ``dir`` usable);
    returns the output directory."""
    if not isinstance(output, DictConfig):
        raise ConfigError("output", output, "must be a mapping with keys dir, "
                          + ", ".join(OUTPUT_FLAGS))
    for name in OUTPUT_FLAGS:
        boolean(f"output.{name}", output.get(name))
    raw = output.get("dir")
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError("output.dir", raw, "must be a directory path")
    path = Path(to_absolute_path(raw))
    check_output_dir("output.dir", path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _format_warning(message: Warning | str, category: type[Warning], filename: str,
                    lineno: int, line: str | None = None) -> str:
    """ConfigWarning as one ``warning:`` line; anything else as Python formats it."""
    if issubclass(category, ConfigWarning):
        return f"warning: {message}\n"
    return _python_format_warning(message, category, filename, lineno, line)


_python_format_warning = warnings.formatwarning


def run(cfg: DictConfig) -> dict[str, Any]:
    """Validate, simulate, write outputs; returns the summary."""
    sim_cfg = config_from_hydra(cfg)
    sim_cfg.check_workload_fits()
    out_dir = check_output(cfg.get("output"))
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
    warnings.formatwarning = _format_warning
    run_and_exit(run, cfg)


if __name__ == "__main__":
    main()
