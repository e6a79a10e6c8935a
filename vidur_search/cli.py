"""What every ``python -m vidur_search...`` command does at its end (exit codes), and the
Hydra callback that checks ``output.dir`` before Hydra creates it."""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from simulator import ConfigError
from simulator.paths import check_output_dir, describe_os_error

# What Hydra writes into its output subfolder (``hydra.output_subdir``, ``.hydra``).
_HYDRA_FILES = frozenset({"config.yaml", "hydra.yaml", "overrides.yaml"})
# Entries of each output folder before Hydra made anything in it (None: it did not
# exist), recorded by ``CheckOutputDir``, keyed by absolute path.
_BEFORE: dict[Path, frozenset[str] | None] = {}


def run_and_exit(run: Callable[[DictConfig], Any], cfg: DictConfig) -> NoReturn:
    """Run a command: a ConfigError is a message on stderr and exit status 2 (nothing
    ran; the output folder Hydra made for the run is removed when it holds nothing else,
    ``remove_hydra_output``); a file-system error naming a path (an output that could not
    be written after all) is a one-line message and exit status 1; otherwise the status
    ``run`` returns when it is an int, else 0."""
    try:
        code = run(cfg)
    except ConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        remove_hydra_output()
        sys.exit(2)
    except OSError as err:
        if err.filename is None:
            raise
        print(f"error: {describe_os_error(err)}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) and not isinstance(code, bool) else 0)


def _hydra_output() -> tuple[Path, str] | None:
    """(this run's output folder, Hydra's subfolder name) from Hydra's runtime config;
    None outside a Hydra run or before Hydra chose the folder."""
    try:
        hc = HydraConfig.get()
        out, sub = hc.runtime.output_dir, hc.output_subdir
    except Exception:  # Hydra not initialised, or no output folder yet
        return None
    return (Path(str(out)), str(sub or "")) if out else None


def _is_hydra_entry(path: Path, subdir: str) -> bool:
    """Whether ``path`` is something Hydra makes in a run's folder: its subfolder holding
    only Hydra's own files, or an empty ``*.log`` file (the job's log)."""
    if path.is_symlink():
        return False
    if path.is_dir():
        return bool(subdir) and path.name == subdir and all(
            p.is_file() and not p.is_symlink() and p.name in _HYDRA_FILES
            for p in path.iterdir())
    return path.is_file() and path.suffix == ".log" and path.stat().st_size == 0


def remove_hydra_output() -> None:
    """Remove what Hydra made for this run (its ``.hydra/`` subfolder and empty ``*.log``
    files), and the run's output folder itself when it holds nothing else and did not
    exist before the run; anything else, or a folder that held files before, stays.
    Only for a folder ``CheckOutputDir`` saw before Hydra made it (not ``validate``, whose
    run folder is the working directory, nor a multirun's job folders); does nothing
    outside a Hydra run; never raises."""
    found = _hydra_output()
    if found is None:
        return
    out, subdir = found
    try:
        if not out.is_dir() or out.is_symlink():
            return
        key = out.resolve()
        if key not in _BEFORE:
            return  # not seen before the run: nothing says what in it is Hydra's
        made = _BEFORE[key] is None  # the folder did not exist before this run
        before = _BEFORE[key] or frozenset()
        entries = list(out.iterdir())
        ours = [p for p in entries if p.name not in before and _is_hydra_entry(p, subdir)]
        if made and len(ours) != len(entries):
            return  # something else is in it: leave the folder as it is
        _close_log_handlers(out)
        for p in ours:
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
        if made:
            out.rmdir()
    except OSError:
        pass  # best effort: the configuration error is what matters


def _close_log_handlers(folder: Path) -> None:
    """Close and detach the logging file handlers writing into ``folder``."""
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        if not isinstance(logger, logging.Logger):
            continue
        for handler in list(logger.handlers):
            if (isinstance(handler, logging.FileHandler)
                    and Path(handler.baseFilename).parent == folder):
                handler.close()
                logger.removeHandler(handler)


class CheckOutputDir(Callback):
    """Hydra callback (``hydra.callbacks`` of ``conf/simulate.yaml`` and
    ``conf/app/config.yaml``, whose ``hydra.run.dir`` is ``output.dir``): Hydra creates that
    folder before the command runs, so an unusable one is checked first and is a
    configuration error (exit 2) instead of Hydra's traceback. It also records what the
    folder held before, so that ``remove_hydra_output`` removes only what this run made."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        raw = OmegaConf.select(config, "hydra.run.dir")

        def check(_cfg: DictConfig) -> None:
            if raw is None or not str(raw).strip():
                raise ConfigError("output.dir", raw, "must be a directory path")
            check_output_dir("output.dir", to_absolute_path(str(raw)))

        try:
            check(config)
        except ConfigError:
            run_and_exit(check, config)
        path = Path(to_absolute_path(str(raw))).resolve()
        with contextlib.suppress(OSError):  # unreadable: remove_hydra_output judges by content
            _BEFORE[path] = frozenset(p.name for p in path.iterdir()) if path.is_dir() else None


def absolute_trace_file(node: DictConfig, workload: dict[str, Any]) -> None:
    """In ``workload`` (the plain copy of the workload config ``node``): a ``trace_file``
    left at Hydra's ``???`` becomes None (the simulator reports it as required where a
    trace is replayed, and ignores it otherwise), a relative one absolute (Hydra may run
    from another directory than the one the user typed the path in)."""
    if "trace_file" not in workload:
        return
    if OmegaConf.is_missing(node, "trace_file"):
        workload["trace_file"] = None
    elif isinstance(workload["trace_file"], str) and workload["trace_file"]:
        workload["trace_file"] = to_absolute_path(workload["trace_file"])
