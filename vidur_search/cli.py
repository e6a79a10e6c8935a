"""What every ``python -m vidur_search...`` command does at its end (exit codes), and the
Hydra callback that checks ``output.dir`` before Hydra creates it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn

from hydra.experimental.callback import Callback
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from simulator import ConfigError
from simulator.paths import check_output_dir, describe_os_error


def run_and_exit(run: Callable[[DictConfig], Any], cfg: DictConfig) -> NoReturn:
    """Run a command: a ConfigError is a message on stderr and exit status 2 (nothing
    ran); a file-system error naming a path (an output that could not be written after
    all) is a one-line message and exit status 1; otherwise the status ``run`` returns
    when it is an int, else 0."""
    try:
        code = run(cfg)
    except ConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:
        if err.filename is None:
            raise
        print(f"error: {describe_os_error(err)}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) and not isinstance(code, bool) else 0)


class CheckOutputDir(Callback):
    """Hydra callback (``hydra.callbacks`` of ``conf/simulate.yaml`` and
    ``conf/app/config.yaml``, whose ``hydra.run.dir`` is ``output.dir``): Hydra creates that
    folder before the command runs, so an unusable one is checked first and is a
    configuration error (exit 2) instead of Hydra's traceback."""

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
