"""Errors raised by the simulator, each naming the field, the value and what is allowed."""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np


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


def is_number(value: Any) -> bool:
    """Whether ``value`` is a real number (an int or a float, numpy's included), not a bool
    and not a string."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def positive(field: str, value: Any, *, allow_zero: bool = False) -> None:
    """Raise ConfigError unless ``value`` is a number > 0 (or >= 0 with ``allow_zero``)."""
    if not is_number(value) or not (value >= 0 if allow_zero else value > 0):
        raise ConfigError(field, value, "must be a number " + (">= 0" if allow_zero else "> 0"))


def in_range(field: str, value: Any, lo: float, hi: float, *, lo_open: bool = False,
             hi_open: bool = False) -> None:
    """Raise ConfigError unless ``value`` is a number in the interval from ``lo`` to ``hi``
    (each end closed unless ``lo_open`` / ``hi_open``), e.g. "must be a number in [0, 1)"."""
    above = is_number(value) and (value > lo if lo_open else value >= lo)
    if not (above and (value < hi if hi_open else value <= hi)):
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ConfigError(field, value, f"must be a number in {interval}")


def boolean(field: str, value: Any) -> None:
    """Raise ConfigError unless ``value`` is a bool (true or false; not 0/1 or a word)."""
    if not isinstance(value, bool):
        raise ConfigError(field, value, "must be true or false")


class ConfigWarning(RuntimeWarning):
    """A configuration value that cannot be honoured but need not stop the run (e.g. an
    unwritable cache directory: the run carries on without the cache). Its message names
    the field; the CLIs print it as one ``warning:`` line."""
