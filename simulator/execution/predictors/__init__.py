"""Operator-time predictors fitted on measured profiles, their disk cache and lookup tables.

- :class:`Predictor`: the scikit-learn-style interface (``fit``/``predict`` in us, fitted
  on log-time); :class:`ForestPredictor` (random forest, as in Vidur) and
  :class:`PiecewiseLinearPredictor` (the cheap one) implement it.
- :func:`select` / :func:`fit_profile`: grid search with K-fold CV per operator
  (:class:`PredictorParams`).
- :class:`PredictorCache`: fitted predictors on disk, keyed by profile content and
  hyper-parameters.
- :mod:`~simulator.execution.predictors.tables`: predictors compiled into dense numpy
  tables so that the simulation loop only indexes arrays.

Names are imported on first use, so that ``simulator.config`` can read the parameter
dataclasses (:mod:`~simulator.execution.predictors.params`) without importing
scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Predictor": "base",
    "FAMILY_FEATURES": "features",
    "FamilyFeatures": "features",
    "ForestPredictor": "forest",
    "PiecewiseLinearPredictor": "piecewise",
    "PredictorParams": "params",
    "ProfiledParams": "params",
    "FitResult": "selection",
    "cv_score": "selection",
    "fit_profile": "selection",
    "op_family": "selection",
    "select": "selection",
    "training_rows": "selection",
    "PredictorCache": "cache",
    "OctaveAxis": "tables",
    "OctaveTable": "tables",
    "SparseRowTable": "tables",
    "TokenTable": "tables",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return __all__
