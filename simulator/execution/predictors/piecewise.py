"""Piecewise-linear predictor: time interpolated between the measured sizes, per curve.

For operators whose time depends on one size once the rest of the shape is fixed (a
model's GEMMs and element-wise ops in tokens, a collective in bytes for a GPU count),
interpolating between the measured sizes is often as accurate as a forest and far
cheaper. Per curve (one per distinct value of the family's group columns): knots at the
measured sizes (repeated sizes averaged in log space; knots closer than ``min_gap`` in
log-size merged; with ``smooth`` > 1, each knot's log-time replaced by the median over
that many neighbouring knots, which removes isolated outliers of noisy profiles, e.g. a
collective's bimodal small messages) and interpolation between them. ``interp="log"``
interpolates log-time linearly in log-size (a power law between knots);
``interp="linear"`` interpolates time linearly in size, the latency + size / bandwidth
law that a collective follows between two protocol switches, which matters where knots
are a factor of 2 or more apart. Below the range the first segment continues, bounded by
physics: the time never rises as the size falls, and never falls faster than in
proportion to it. In log-log (``"log"``) its slope is clamped to [0, 1]; in time vs size
(``"linear"``) its line is clamped between ``t0 * x / x0`` and ``t0`` (``(x0, t0)`` the
first knot). A MoE layer's time, e.g., follows the number of experts its tokens touch:
2 tokens take 1.5x the time of 1 (median of aiconfigurator's curves), so holding the
first knot's time overshoots a 1-token call by about half. The first segment alone,
not a fit over more knots, gives the slope: curves flatten as the size grows, and on the
public profiles a slope over the first two segments predicted below the range worse.
Above the range the time grows linearly in size from the last knot, at the slope of a
least-squares line through the upper ``tail`` share of the knots (GEMMs in tokens,
collectives in bytes and attention in KV length are all asymptotically linear). A group
not seen in fitting uses the nearest curve (in log group values), scaled by the ratio of
the family's fitted linear base
(:func:`~simulator.execution.predictors.features.fit_base`) between the two groups.
"""

from __future__ import annotations

import math
from typing import Self

import numpy as np
import pandas as pd
from scipy.ndimage import median_filter

from simulator.errors import ConfigError
from simulator.execution.predictors.base import MIN_US, Predictor, check_fitted, log_target
from simulator.execution.predictors.features import base_basis, family_features, fit_base

INTERP = ("log", "linear")


class PiecewiseLinearPredictor(Predictor):
    """Interpolation (log-log or linear) along the family's axis, one curve per group."""

    cost = 0

    def __init__(self, family: str = "layer_ops", min_gap: float = 0.0,
                 tail: float = 0.1, interp: str = "log", smooth: int = 1) -> None:
        self.family = family
        self.min_gap = min_gap
        self.tail = tail
        self.interp = interp
        self.smooth = smooth

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> Self:
        """One curve per group of ``X``'s group columns, and the base for extrapolation."""
        spec = family_features(self.family)
        if not 0 < self.tail <= 1 or self.min_gap < 0:
            raise ConfigError("PiecewiseLinearPredictor", (self.min_gap, self.tail),
                              "needs min_gap >= 0 and tail in (0, 1]")
        if self.interp not in INTERP:
            raise ConfigError("PiecewiseLinearPredictor.interp", self.interp,
                              "allowed values are " + ", ".join(INTERP))
        if not isinstance(self.smooth, int) or self.smooth < 1:
            raise ConfigError("PiecewiseLinearPredictor.smooth", self.smooth,
                              "must be an integer >= 1 (knots in the running median)")
        ly = log_target(y, f"PiecewiseLinearPredictor[{self.family}].y")
        self.base_coef_ = fit_base(base_basis(self.family, X), np.exp(ly))
        lx = np.log(X[spec.axis].to_numpy(dtype=np.float64))
        curves: dict[tuple, tuple[np.ndarray, np.ndarray, float]] = {}
        for g, rows in sorted(_group_rows(X, spec.groups), key=lambda t: t[0]):
            kx, inv = np.unique(lx[rows], return_inverse=True)  # mean log-time per size
            ky = np.bincount(inv, weights=ly[rows]) / np.bincount(inv)
            kx, ky = self._thin(kx, ky)
            if self.smooth > 1 and len(ky) > 2:  # the end knots stay as measured
                ky = median_filter(ky, size=self.smooth, mode="nearest")
            curves[g] = (kx, ky, self._tail_slope(kx, ky))
        self.curves_ = curves
        self.group_points_ = np.array([_log_point(g) for g in curves]) if spec.groups else None
        return self

    def _tail_slope(self, kx: np.ndarray, ky: np.ndarray) -> float:
        """Time per unit of size (us) over the upper ``tail`` share of the knots (>= 0)."""
        if len(kx) < 2:
            return 0.0
        m = max(2, math.ceil(self.tail * len(kx)))
        x, t = np.exp(kx[-m:]), np.exp(ky[-m:])
        dx = x - x.mean()
        return max(float(dx @ (t - t.mean()) / (dx @ dx)), 0.0)  # least-squares slope

    def _base(self, X: pd.DataFrame) -> np.ndarray:
        return np.maximum(base_basis(self.family, X) @ self.base_coef_, MIN_US)

    def _thin(self, kx: np.ndarray, ky: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Merge knots closer than ``min_gap`` (log-size) into their mean."""
        if self.min_gap <= 0 or len(kx) < 3:
            return kx, ky
        xs, ys, bx, by = [], [], [kx[0]], [ky[0]]
        for x, v in zip(kx[1:], ky[1:], strict=True):
            if x - bx[0] < self.min_gap:
                bx.append(x)
                by.append(v)
            else:
                xs.append(float(np.mean(bx)))
                ys.append(float(np.mean(by)))
                bx, by = [x], [v]
        xs.append(float(np.mean(bx)))
        ys.append(float(np.mean(by)))
        return np.array(xs), np.array(ys)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Interpolated (or extrapolated) time per row of ``X``, in us."""
        check_fitted(self, "curves_")
        spec = family_features(self.family)
        with np.errstate(divide="ignore"):  # size 0: log-size -inf, below every curve
            lx = np.log(X[spec.axis].to_numpy(dtype=np.float64))
        out = np.empty(len(X))
        keys = list(self.curves_)
        moved_rows, moved_groups = [], []  # rows predicted on another group's curve
        for g, rows in _group_rows(X, spec.groups):
            near = self._nearest(g, keys)
            kx, ky, slope = self.curves_[near]
            x = lx[rows]
            if self.interp == "log":
                v = np.exp(np.interp(x, kx, ky))
            else:
                v = np.interp(np.exp(x), np.exp(kx), np.exp(ky))
            below = x < kx[0]
            if below.any() and len(kx) > 1:  # the first segment, continued and clamped
                v[below] = _below_range(self.interp, x[below], kx, ky)
            above = x > kx[-1]
            if above.any():  # linear in size at the tail's slope, from the last knot
                v[above] = math.exp(ky[-1]) + slope * (np.exp(x[above]) - math.exp(kx[-1]))
            out[rows] = v
            if near != g:
                moved_rows.append(rows)
                moved_groups.append(np.tile(np.asarray(near, dtype=np.float64), (len(rows), 1)))
        if moved_rows:  # another group's curve, moved along the base to this group
            rows = np.concatenate(moved_rows)
            sub = X.iloc[rows]
            moved = sub.copy()
            vals = np.concatenate(moved_groups)
            for i, col in enumerate(spec.groups):
                moved[col] = vals[:, i]
            out[rows] *= self._base(sub) / self._base(moved)
        return out

    def _nearest(self, g: tuple, keys: list[tuple]) -> tuple:
        if g in self.curves_:
            return g
        d = np.abs(self.group_points_ - _log_point(g)).sum(axis=1)
        return keys[int(np.argmin(d))]


def _group_rows(X: pd.DataFrame, groups: tuple[str, ...]) -> list[tuple[tuple, np.ndarray]]:
    """(group key, row positions) for each distinct group of ``X``."""
    if not groups:
        return [((), np.arange(len(X)))]
    frame = pd.DataFrame({c: X[c].to_numpy(dtype=np.int64) for c in groups})
    out = []
    for g, rows in frame.groupby(list(groups), sort=False).indices.items():
        key = tuple(int(v) for v in (g if isinstance(g, tuple) else (g,)))
        out.append((key, rows))
    return out


def _below_range(interp: str, x: np.ndarray, kx: np.ndarray, ky: np.ndarray) -> np.ndarray:
    """Time (us) at log-sizes ``x`` below the first knot of the curve (``kx``, ``ky``: at
    least two knots, log-size and log-time): the first segment continued, at a log-log
    slope in [0, 1] ("log"), or along its line in time vs size, its slope in
    [0, t0 / x0] so that the time stays between ``t0 * x / x0`` and ``t0`` ("linear")."""
    if interp == "log":
        s = min(max(float((ky[1] - ky[0]) / (kx[1] - kx[0])), 0.0), 1.0)
        if s == 0.0:  # flat (also at size 0, where log-size is -inf)
            return np.full(len(x), math.exp(ky[0]))
        return np.exp(ky[0] + s * (x - kx[0]))
    x0, t0 = math.exp(kx[0]), math.exp(ky[0])
    b = (math.exp(ky[1]) - t0) / (math.exp(kx[1]) - x0)  # time per unit of size
    b = min(max(b, 0.0), t0 / x0)
    return t0 - b * (x0 - np.exp(x))


def _log_point(g: tuple) -> np.ndarray:
    return np.log1p(np.asarray(g, dtype=np.float64))


__all__ = ["PiecewiseLinearPredictor"]
