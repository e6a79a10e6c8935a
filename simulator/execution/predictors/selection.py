"""Choosing and fitting a predictor per operator: a small grid search with K-fold CV.

As in Vidur, each operator of a profile gets its own model, picked by cross-validation
from a small grid. The grid here holds the cheap piecewise-linear predictors and a few
random forests (``base`` x ``max_depth`` x ``min_samples_leaf``); the score is the mean absolute
log error on the held-out folds (about the mean relative error), with more folds for small
tables (:meth:`PredictorParams.folds`). The cheapest candidate within ``tie_tolerance`` of
the best score wins, then it is refitted on all rows. CV runs on at most ``max_cv_rows``
rows (a seeded subsample) to keep large tables cheap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import KFold

from simulator.execution.predictors.base import MIN_US, Predictor
from simulator.execution.predictors.features import family_features
from simulator.execution.predictors.params import PredictorParams

# Families whose files hold several operators in an ``op`` column, fitted one by one.
OP_FAMILIES = ("layer_ops", "collective", "cpu_overhead")
TARGET = "median_us"


@dataclass
class FitResult:
    """One operator's fitted predictor and how it was chosen."""

    predictor: Predictor
    scores: dict[str, float]  # candidate -> CV mean |log error|
    rows: int  # rows fitted
    seconds: float  # wall time of the search and final fit
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # column -> (lo, hi)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The predictor's times (us)."""
        return self.predictor.predict(X)


def cv_score(pred: Predictor, X: pd.DataFrame, y: np.ndarray, folds: int, seed: int) -> float:
    """Mean absolute log error of ``pred`` over ``folds`` held-out folds."""
    n = len(X)
    folds = min(folds, n)
    if folds < 2:
        return float("inf")
    errs = []
    for tr, te in KFold(folds, shuffle=True, random_state=seed).split(np.arange(n)):
        model = clone(pred).fit(X.iloc[tr], y[tr])
        p = model.predict(X.iloc[te])
        errs.append(np.abs(np.log(np.maximum(p, MIN_US) / np.maximum(y[te], MIN_US))))
    return float(np.mean(np.concatenate(errs)))


def select(X: pd.DataFrame, y: np.ndarray, family: str, params: PredictorParams) -> FitResult:
    """Grid-search the candidates of ``params`` on (X, y) and refit the winner on all rows."""
    t0 = time.perf_counter()
    X = X.reset_index(drop=True)
    y = np.asarray(y, dtype=np.float64)
    cands = params.candidates(family)
    if len(X) > params.max_cv_rows:
        keep = np.sort(np.random.default_rng(params.seed).choice(
            len(X), params.max_cv_rows, replace=False))
        Xcv, ycv = X.iloc[keep].reset_index(drop=True), y[keep]
    else:
        Xcv, ycv = X, y
    folds = params.folds(len(Xcv))
    scores = {c.describe(): cv_score(c, Xcv, ycv, folds, params.seed) for c in cands}
    best = min(scores.values())
    limit = best * (1 + params.tie_tolerance)
    chosen = min((c for c in cands if scores[c.describe()] <= limit),
                 key=lambda c: (c.cost, scores[c.describe()]))
    fitted = clone(chosen).fit(X, y)
    spec = family_features(family)
    ranges = {c: (float(X[c].min()), float(X[c].max())) for c in spec.columns}
    return FitResult(fitted, scores, len(X), time.perf_counter() - t0, ranges)


def training_rows(df: pd.DataFrame, family: str) -> dict[str, pd.DataFrame]:
    """Rows to fit, per operator (``""`` for the attention families).

    Collectives measured with several backends (aiconfigurator's ``backend`` column) keep
    one per operator: ``vllm_graph`` (what a served decode uses) if present, else ``nccl``,
    else the first.
    """
    if family not in OP_FAMILIES:
        return {"": df}
    out = {}
    for op, part in df.groupby("op", sort=True):
        if family == "collective" and "backend" in part.columns:
            have = list(dict.fromkeys(part["backend"].astype(str)))
            pick = next((b for b in ("vllm_graph", "nccl") if b in have), have[0])
            part = part[part["backend"].astype(str) == pick]
        out[str(op)] = part.reset_index(drop=True)
    return out


def op_family(family: str, op: str) -> str:
    """The feature family an operator of a ``family`` file is fitted with: ``moe_experts``
    rows of ``layer_ops`` have their own (experts and top-k as features), the rest the
    file's."""
    return "moe_experts" if family == "layer_ops" and op == "moe_experts" else family


def fit_profile(df: pd.DataFrame, family: str, params: PredictorParams) -> dict[str, FitResult]:
    """Fit one predictor per operator of a profile table (see :func:`training_rows`)."""
    out = {}
    for op, rows in training_rows(df, family).items():
        fam = op_family(family, op)
        cols = list(family_features(fam).columns)
        out[op] = select(rows[cols], rows[TARGET].to_numpy(), fam, params)
    return out


__all__ = ["OP_FAMILIES", "FitResult", "PredictorParams", "cv_score", "fit_profile",
           "op_family", "select", "training_rows"]
