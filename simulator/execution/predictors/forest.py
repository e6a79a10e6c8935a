"""Random-forest predictor (as in Vidur) on log-time, extrapolating along a fitted base.

A scikit-learn ``RandomForestRegressor`` learns log-time from the family's tree features
(log sizes, work, tile counts), either directly (``base=False``, Vidur's choice) or as
the log-ratio to ``base`` (``base=True``). ``base`` is a non-negative least-squares fit
(on relative error) of the family's roofline-like basis: a fixed cost, bytes and FLOPs
terms. A forest is flat outside the shapes it saw, so beyond the fitted range the base
gives the growth and the measurements the level:

- ``base=True``: the forest's ratio to the base is read at the shape's own features and
  multiplied by ``base(shape)``. A size beyond the measured ones lands in the trees' edge
  leaves along that size, while the derived features that are still inside the measured
  range keep steering the ratio: a decode batch of 1,024 sequences with one KV head
  has as many (sequence, KV head) work items as a measured batch of 128 with eight, so
  the forest carries over that shape's saturated-GPU ratio instead of the ratio of the
  largest measured batch of its own head shape.
- ``base=False``: a shape beyond the fitted box (any shape column outside its
  [min, max]) is predicted at the shape clipped into that box and scaled by
  ``base(shape) / base(clipped)``.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestRegressor

from simulator.errors import ConfigError
from simulator.execution.predictors.base import MIN_US, Predictor, check_fitted, log_target
from simulator.execution.predictors.features import (
    base_basis,
    family_features,
    fit_base,
    tree_features,
)


class ForestPredictor(Predictor):
    """Random forest on log-time (or log(time / base) when ``base`` is True)."""

    cost = 2

    def __init__(self, family: str = "layer_ops", n_estimators: int = 24,
                 max_depth: int | None = None, min_samples_leaf: int = 1,
                 max_features: float = 1.0, base: bool = True,
                 random_state: int = 0) -> None:
        self.family = family
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.base = base
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        """Fit the base by NNLS on relative error, then the forest on log-time (or the
        log-ratio to the base)."""
        ly = log_target(y, f"ForestPredictor[{self.family}].y")
        spec = family_features(self.family)
        self.lo_ = {c: float(X[c].min()) for c in spec.columns}
        self.hi_ = {c: float(X[c].max()) for c in spec.columns}
        self.base_coef_ = fit_base(base_basis(self.family, X), np.exp(ly))
        target = ly - np.log(self._base(X)) if self.base else ly
        if self.n_estimators < 1 or self.min_samples_leaf < 1:
            raise ConfigError("ForestPredictor", (self.n_estimators, self.min_samples_leaf),
                              "needs n_estimators >= 1 and min_samples_leaf >= 1")
        forest = RandomForestRegressor(
            n_estimators=self.n_estimators, max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf, max_features=self.max_features,
            random_state=self.random_state, n_jobs=1,
        )
        forest.fit(tree_features(self.family, X), target)
        self.forest_ = forest
        return self

    def _base(self, X: pd.DataFrame) -> np.ndarray:
        return np.maximum(base_basis(self.family, X) @ self.base_coef_, MIN_US)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Predicted time (us) per row of ``X``; outside the fitted box along the base."""
        check_fitted(self, "forest_")
        if self.base:  # the forest's ratio to the base at the shape's own features
            return np.exp(self.forest_.predict(tree_features(self.family, X))) * self._base(X)
        clipped = X.copy()
        outside = np.zeros(len(X), dtype=bool)
        for c, lo in self.lo_.items():
            v = X[c].to_numpy(dtype=np.float64)
            w = np.clip(v, lo, self.hi_[c])
            outside |= w != v
            clipped[c] = w
        out = np.exp(self.forest_.predict(tree_features(self.family, clipped)))
        if outside.any():
            out[outside] *= self._base(X[outside]) / self._base(clipped[outside])
        return out


__all__ = ["ForestPredictor"]
