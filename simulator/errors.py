"""Errors raised by the simulator, each naming the field, the value and what is allowed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """An invalid configuration or input, detected before any simulation starts."""

    def __init__(self, field: str, value: Any, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}={value!r} is invalid: {allowed}")


def one_of(field: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise ConfigError unless ``value`` is one of ``choices``."""
    choices = sorted(choices, key=str)
    if value not in choices:
        raise ConfigError(field, value, "allowed values are " + ", ".join(map(str, choices)))


def positive(field: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise ConfigError unless ``value`` is > 0 (or >= 0 with ``allow_zero``)."""
    ok = value >= 0 if allow_zero else value > 0
    if not isinstance(value, int | float) or isinstance(value, bool) or not ok:
        raise ConfigError(field, value, "must be a number " + (">= 0" if allow_zero else "> 0"))
