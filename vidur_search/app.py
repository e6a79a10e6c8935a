"""``python -m vidur_search``: search deployment configurations, report capacity plans.

    python -m vidur_search +experiment=llama70b               # Ray in this process
    python -m vidur_search +experiment=llama70b ray=cluster   # an existing Ray cluster
    python -m vidur_search +experiment=smoke output.dir=out/x # rerun: resumes out/x
    python -m vidur_search +experiment=llama70b output=nightly

Writes under ``output.dir``: ``trials.parquet`` (every trial, as it finishes),
``pareto.parquet``, ``report.html``, the Optuna study (``optuna.db``) and, for nightly
runs, ``diff.json`` / ``diff.md`` against the previous night. Exit codes: 0 done,
2 configuration error (nothing ran), 3 nightly regression.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from simulator.paths import check_output_dir
from vidur_search import settings
from vidur_search.cli import absolute_trace_file, run_and_exit

console = Console(stderr=True)
settings.register()


def plain_config(cfg: DictConfig) -> dict[str, Any]:
    """The composed config as plain data, with file paths made absolute (Hydra may run
    from another directory than the one the user typed the paths in). A workload's
    ``trace_file`` left at Hydra's ``???`` becomes None, which ``settings.check`` reports
    as required when the workload replays a trace (and ignores otherwise)."""
    app: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    app.pop("hydra", None)
    # an experiment drops a workload of the defaults by setting it to null
    app["workloads"] = {k: v for k, v in app["workloads"].items() if v is not None}
    for name, workload in app["workloads"].items():
        if isinstance(workload, dict):
            absolute_trace_file(cfg.workloads[name], workload)
    app["output"]["dir"] = to_absolute_path(app["output"]["dir"])
    return app


def run(cfg: DictConfig) -> int:
    """Check the config, run the sweep, write the results; returns the exit code."""
    from vidur_search import nightly, report
    from vidur_search.search import Sweep

    app = plain_config(cfg)
    settings.check(app)
    out_dir = Path(app["output"]["dir"])
    check_output_dir("output.dir", out_dir)
    nightly_mode = app["output"]["mode"] == "nightly"
    prev_dir = nightly.latest_run(out_dir.parent, exclude=out_dir) if nightly_mode else None
    prev = nightly.read_previous(prev_dir, out_dir) if prev_dir else None
    storage_root = out_dir.parent if nightly_mode else out_dir
    storage = app["search"]["storage"] or f"sqlite:///{storage_root / 'optuna.db'}"
    if app["search"]["storage"].startswith("sqlite:///"):  # Optuna creates its folder
        check_output_dir("search.storage", Path(storage.removeprefix("sqlite:///")).parent)
    prefix = f"{app['name']}-{out_dir.name}" if nightly_mode else app["name"]

    t0 = time.perf_counter()
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                  disable=not app["output"]["progress"]) as bar:
        sweep = Sweep(app, out_dir, storage_url=storage, study_prefix=prefix, warm=prev,
                      progress=bar)
        bar.console.print(sweep.space.summary())
        if (str(app["ray"].get("address") or "").startswith("ray://")
                and storage.startswith("sqlite:") and app["search"]["sampler"] != "grid"):
            bar.console.print(
                f"warning: under Ray Client the Optuna study is written by the cluster's head "
                f"node; {storage} must be on a disk the head shares with this machine, "
                "or set search.storage=postgresql://... (a resumed sweep reads it from here)")
        trials = sweep.run()
    wall = time.perf_counter() - t0

    tiers = app["output"]["slo_tiers"] or None
    target = app["output"]["target_qps"] or None
    paths = report.write_report(out_dir, trials, config_yaml=OmegaConf.to_yaml(cfg),
                                tiers=tiers, target_qps=target, title=app["name"])
    report.console_summary(trials, console=Console(width=None if sys.stdout.isatty() else 160))
    print(f"{len(trials)} trials in {wall:.1f} s; outputs: {out_dir}")
    for name, path in paths.items():
        print(f"  {name}: {path}")
    code = 0
    if nightly_mode:
        if prev is None:
            print("nightly: no previous run to compare with")
        else:
            diff = nightly.diff_runs(prev, trials,
                                     tolerance=app["output"]["regression_tolerance"])
            for name, path in nightly.write_diff(out_dir, diff).items():
                print(f"  {name}: {path}")
            code = nightly.exit_code(diff)
            print(f"nightly: compared with {prev_dir}: "
                  + ("REGRESSION" if code else "no regression"))
    return code


@hydra.main(config_path="pkg://vidur_search.conf.app", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    run_and_exit(run, cfg)


if __name__ == "__main__":
    main()
