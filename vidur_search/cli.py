"""What every ``python -m vidur_search...`` command does at its end: exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn

from omegaconf import DictConfig

from simulator import ConfigError


def run_and_exit(run: Callable[[DictConfig], Any], cfg: DictConfig) -> NoReturn:
    """Run a command: a ConfigError is a message on stderr and exit status 2 (nothing
    ran); otherwise the status ``run`` returns when it is an int, else 0."""
    try:
        code = run(cfg)
    except ConfigError as err:
        print(f"configuration error: {err}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) and not isinstance(code, bool) else 0)
