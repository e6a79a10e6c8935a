"""Lookup tables: predictors compiled into dense numpy arrays for the simulation loop.

Predicting with a forest costs milliseconds per call, so a model evaluates its
predictors once, on a grid over the operating range, and the loop only indexes arrays:

- :class:`TokenTable`: a value for every integer 0..hi (tokens in a batch, sequences).
  The predictor is evaluated at :func:`integer_points` (every integer up to
  ``dense_until``, then ``per_octave`` points per doubling) and linearly interpolated to
  the integers between them.
- :class:`OctaveTable`: a value per integer row (batch size, 0..rows) and per point of an
  :class:`OctaveAxis` (KV length, chunk size): ``per_octave`` evenly spaced points in each
  doubling from 1 to ``2**hi_exp``, linearly interpolated. Its index comes from the float's
  exponent and mantissa (``frexp``), exactly, so :meth:`OctaveTable.lookup` (Python
  floats) and :meth:`OctaveTable.lookup_row` (numpy arrays) give identical bits.
"""

from __future__ import annotations

import math

import numpy as np

from simulator.errors import ConfigError


def _power_of_two(name: str, k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1 or k & (k - 1):
        raise ConfigError(name, k, "must be a power of two >= 1")


def integer_points(hi: int, dense_until: int, per_octave: int) -> np.ndarray:
    """Sorted integers in [1, hi]: all up to ``dense_until``, then ``per_octave`` per
    doubling (rounded), and ``hi`` itself."""
    if hi < 1:
        raise ConfigError("table.hi", hi, "must be >= 1")
    dense = np.arange(1, min(hi, dense_until) + 1, dtype=np.int64)
    pts = [dense, np.array([hi], dtype=np.int64)]
    if hi > dense_until:
        lo = max(math.floor(math.log2(max(dense_until, 1))), 0)
        top = math.ceil(math.log2(hi))
        j = np.arange(lo * per_octave, top * per_octave + 1)
        octave = np.ldexp(1.0 + (j % per_octave) / per_octave, j // per_octave)
        octave = np.round(octave).astype(np.int64)
        pts.append(octave[(octave > dense_until) & (octave < hi)])
    return np.unique(np.concatenate(pts))


class OctaveAxis:
    """Points ``2**o * (1 + i / per_octave)`` from 1 to ``2**hi_exp`` (``per_octave`` a
    power of two), located exactly from a float's exponent and mantissa."""

    def __init__(self, hi_exp: int, per_octave: int) -> None:
        _power_of_two("table.per_octave", per_octave)
        if not isinstance(hi_exp, int) or hi_exp < 0 or hi_exp > 60:
            raise ConfigError("table.hi_exp", hi_exp, "must be an integer in [0, 60]")
        self.hi_exp = hi_exp
        self.per_octave = per_octave
        j = np.arange(hi_exp * per_octave + 1)
        self.points = np.ldexp(1.0 + (j % per_octave) / per_octave, j // per_octave)
        self.upper = float(2**hi_exp)

    @classmethod
    def covering(cls, hi: float, per_octave: int) -> OctaveAxis:
        """The smallest axis whose last point is >= ``hi`` (and >= 1)."""
        return cls(max(0, math.ceil(math.log2(max(hi, 1.0)))), per_octave)

    def locate(self, x: float) -> tuple[int, float]:
        """(index of the point at or below ``x``, weight of the next point), 1 <= x <= upper."""
        m, e = math.frexp(x)  # x = m * 2**e, 0.5 <= m < 1
        pos = (2.0 * m - 1.0) * self.per_octave  # exact: per_octave is a power of two
        i = int(pos)
        return (e - 1) * self.per_octave + i, pos - i

    def locate_many(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`locate` for an array (same arithmetic, same bits)."""
        m, e = np.frexp(x)
        pos = (2.0 * m - 1.0) * self.per_octave
        i = np.floor(pos)
        return (e.astype(np.int64) - 1) * self.per_octave + i.astype(np.int64), pos - i


class TokenTable:
    """Values at every integer 0..hi, from values at grid points (linear in between)."""

    def __init__(self, points: np.ndarray, values: np.ndarray, hi: int) -> None:
        points = np.asarray(points, dtype=np.float64)
        values = np.asarray(values, dtype=np.float64)
        if points.shape != values.shape or not np.all(np.isfinite(values)):
            raise ConfigError("table.values", values.shape,
                              f"need one finite value per grid point ({points.shape})")
        self.points = points
        self.hi = int(hi)
        self.values = np.interp(np.arange(self.hi + 1, dtype=np.float64), points, values)
        self.cells: list[float] = self.values.tolist()  # fast scalar indexing

    def __getitem__(self, i: int) -> float:
        return self.cells[i]


class OctaveTable:
    """Values per integer row 0..rows and per point of an :class:`OctaveAxis`."""

    def __init__(self, row_points: np.ndarray, axis: OctaveAxis, grid: np.ndarray,
                 rows: int) -> None:
        grid = np.asarray(grid, dtype=np.float64)
        if grid.shape != (len(row_points), len(axis.points)) or not np.all(np.isfinite(grid)):
            raise ConfigError("table.values", grid.shape,
                              f"need finite values of shape ({len(row_points)}, "
                              f"{len(axis.points)})")
        self.axis = axis
        self.rows = int(rows)
        r = np.arange(self.rows + 1, dtype=np.float64)
        rp = np.asarray(row_points, dtype=np.float64)
        self.values = np.column_stack([np.interp(r, rp, grid[:, j])
                                       for j in range(grid.shape[1])])
        slopes = np.zeros_like(self.values)
        slopes[:, :-1] = self.values[:, 1:] - self.values[:, :-1]
        self.slopes = slopes
        self._v: list[list[float]] = self.values.tolist()
        self._s: list[list[float]] = slopes.tolist()

    def lookup(self, row: int, x: float) -> float:
        """Value at integer ``row`` and ``1 <= x <= axis.upper`` (Python floats)."""
        j, w = self.axis.locate(x)
        return self._v[row][j] + w * self._s[row][j]

    def lookup_row(self, row: int, x: np.ndarray) -> np.ndarray:
        """:meth:`lookup` for many ``x`` in one row; bit-identical to it."""
        j, w = self.axis.locate_many(x)
        return self.values[row, j] + w * self.slopes[row, j]


class SparseRowTable(OctaveTable):
    """An :class:`OctaveTable` that keeps only its grid's rows and interpolates between
    them at lookup (two axis lookups instead of one): for many tables of one shape (a
    mixed call's per-(chunk, prior context) tables), memory per table stays at the grid's
    size instead of every integer row."""

    def __init__(self, row_points: np.ndarray, axis: OctaveAxis, grid: np.ndarray,
                 rows: int) -> None:
        rp = np.asarray(row_points, dtype=np.int64)
        if len(rp) < 1 or rp[0] > 0 or rp[-1] < rows or np.any(np.diff(rp) <= 0):
            # rows below the first point repeat it; beyond the last, the last
            rp = np.unique(np.concatenate([[0], rp, [rows]]))
            grid = np.asarray(grid, dtype=np.float64)
            src = np.asarray(row_points, dtype=np.float64)
            grid = np.column_stack([np.interp(rp, src, grid[:, j])
                                    for j in range(grid.shape[1])])
        super().__init__(np.arange(len(rp)), axis, grid, len(rp) - 1)
        self.rows = int(rows)
        r = np.arange(self.rows + 1)
        i = np.clip(np.searchsorted(rp, r, side="right") - 1, 0, len(rp) - 2)
        w = (r - rp[i]) / (rp[i + 1] - rp[i])
        self._map: list[tuple[int, float]] = list(zip(i.tolist(), w.tolist(), strict=True))

    def lookup(self, row: int, x: float) -> float:
        """Value at integer ``row`` and ``1 <= x <= axis.upper``."""
        j, w = self.axis.locate(x)
        i, wr = self._map[row]
        v, s = self._v, self._s
        a = v[i][j] + w * s[i][j]
        return a + wr * (v[i + 1][j] + w * s[i + 1][j] - a) if wr else a

    def lookup_row(self, row: int, x: np.ndarray) -> np.ndarray:
        """:meth:`lookup` for many ``x`` in one row."""
        j, w = self.axis.locate_many(x)
        i, wr = self._map[row]
        a = self.values[i, j] + w * self.slopes[i, j]
        if not wr:
            return a
        return a + wr * (self.values[i + 1, j] + w * self.slopes[i + 1, j] - a)


__all__ = ["OctaveAxis", "OctaveTable", "SparseRowTable", "TokenTable", "integer_points"]
