"""The interface every operator-time predictor implements (scikit-learn style).

A predictor maps a table of shape columns (one row per operator call, the columns of
:mod:`~simulator.execution.predictors.features` for its family) to a time in
microseconds. It is fitted on log-time, so its errors are relative, and holds no state
other than what ``fit`` sets on it (attributes ending in ``_``). Being a scikit-learn
``BaseEstimator``, ``get_params``/``clone`` work, which the grid search relies on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from simulator.errors import ConfigError

MIN_US = 1e-3  # floor on a time before taking its log (profiles hold whole microseconds)


class Predictor(BaseEstimator, ABC):
    """Predicts one operator's time (us) from its shape columns."""

    #: Relative cost of fitting and predicting; the grid search prefers the cheaper of two
    #: candidates that are about as accurate.
    cost: int = 1

    @abstractmethod
    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        """Fit on shapes ``X`` and measured times ``y`` (us, > 0)."""

    @abstractmethod
    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Predicted times (us) for the shapes in ``X``."""

    def describe(self) -> str:
        """Short name with the hyper-parameters, for reports."""
        params = ", ".join(f"{k}={v}" for k, v in sorted(self.get_params().items())
                           if k != "family")
        return f"{type(self).__name__}({params})"


def log_target(y: np.ndarray, where: str) -> np.ndarray:
    """``log(max(y, MIN_US))`` after checking that ``y`` is finite and non-negative."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1 or len(y) == 0:
        raise ConfigError(where, y.shape, "needs a non-empty 1-D array of times")
    if not np.all(np.isfinite(y)) or np.any(y < 0):
        raise ConfigError(where, "y", "times must be finite and >= 0")
    return np.log(np.maximum(y, MIN_US))


def check_fitted(pred: Predictor, attr: str) -> None:
    """ConfigError when ``pred`` is used before ``fit``."""
    if not hasattr(pred, attr):
        raise ConfigError(type(pred).__name__, "unfitted", "call fit() before predict()")


__all__ = ["MIN_US", "Predictor", "check_fitted", "log_target"]
