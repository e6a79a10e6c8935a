"""Parameters of the predictors and of the profiled execution model (no heavy imports).

Kept apart from the fitting code so that ``simulator.config`` can hold them without
importing scikit-learn: a simulation that does not use profiles does not pay for it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from simulator.errors import ConfigError, boolean, in_range

if TYPE_CHECKING:
    from simulator.execution.predictors.base import Predictor

FALLBACKS = ("roofline", "calibrated")
INTERPS = ("log", "linear")
_LIST_FIELDS = ("max_depth", "min_samples_leaf", "base", "interp", "smooth")


def _as_tuple(value: Any) -> tuple[Any, ...]:
    """A list field's value as a tuple: a single value (a string, a number) given where a
    list is expected is a list of one (``interp: log`` is ``interp: [log]``)."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        return (value,)
    return tuple(value)


@dataclass(frozen=True)
class PredictorParams:
    """Hyper-parameters of the grid search (part of every cache key)."""

    n_estimators: int = 24
    max_depth: tuple[int, ...] = (0,)  # 0 = grown until min_samples_leaf
    min_samples_leaf: tuple[int, ...] = (1,)
    base: tuple[bool, ...] = (False, True)  # forest on log-time, and on log(time / base)
    cv_folds: int = 3
    # tables of at most small_rows rows use small_folds folds: with a third of a sparse
    # table held out, the CV would judge interpolation on knots twice as far apart as
    # in the final fit, and its score would be noise of a few rows
    small_rows: int = 100
    small_folds: int = 10
    max_cv_rows: int = 3000
    tie_tolerance: float = 0.05  # prefer a cheaper model within 5% of the best CV score
    piecewise: bool = True  # include the piecewise-linear candidates
    # piecewise-linear grid: interpolation ("log": log-log, "linear": time in size) and
    # running-median window over the knots (1 = none)
    interp: tuple[str, ...] = ("log", "linear")
    smooth: tuple[int, ...] = (1, 3)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_estimators", "cv_folds", "small_folds", "small_rows", "max_cv_rows"):
            v = getattr(self, name)
            lo = 2 if name.endswith("folds") else 0 if name == "small_rows" else 1
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ConfigError(f"execution.profiled.{name}", v,
                                  f"must be an integer >= {lo}")
        for name, lo in (("max_depth", 0), ("min_samples_leaf", 1)):
            v = _as_tuple(getattr(self, name))
            if not v or any(not isinstance(x, int) or isinstance(x, bool) or x < lo for x in v):
                raise ConfigError(f"execution.profiled.{name}", getattr(self, name),
                                  f"must be a non-empty list of integers >= {lo}")
            object.__setattr__(self, name, v)
        interp = _as_tuple(self.interp)
        if not interp or any(not isinstance(v, str) or v not in INTERPS for v in interp):
            raise ConfigError("execution.profiled.interp", self.interp,
                              "must be a non-empty list of 'log' and/or 'linear' (allowed "
                              "values: log, linear)")
        object.__setattr__(self, "interp", interp)
        smooth = _as_tuple(self.smooth)
        if not smooth or any(not isinstance(v, int) or isinstance(v, bool) or v < 1
                             for v in smooth):
            raise ConfigError("execution.profiled.smooth", self.smooth,
                              "must be a non-empty list of integers >= 1")
        object.__setattr__(self, "smooth", smooth)
        base = _as_tuple(self.base)
        if not base or any(not isinstance(b, bool) for b in base):
            raise ConfigError("execution.profiled.base", self.base,
                              "must be a non-empty list of booleans")
        object.__setattr__(self, "base", base)
        boolean("execution.profiled.piecewise", self.piecewise)
        in_range("execution.profiled.tie_tolerance", self.tie_tolerance, 0, 1, hi_open=True)

    def folds(self, rows: int) -> int:
        """CV folds for a table of ``rows`` rows (``small_folds`` up to ``small_rows``)."""
        return self.small_folds if rows <= self.small_rows else self.cv_folds

    def as_key(self) -> dict[str, Any]:
        """The parameters as plain JSON-able values (for cache keys)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    def candidates(self, family: str) -> list[Predictor]:
        """The grid: piecewise-linear first (cheapest), then the forests."""
        from simulator.execution.predictors.forest import ForestPredictor
        from simulator.execution.predictors.piecewise import PiecewiseLinearPredictor

        out: list[Predictor] = []
        if self.piecewise:
            out += [PiecewiseLinearPredictor(family, interp=i, smooth=w)
                    for i in self.interp for w in self.smooth]
        for base in self.base:
            for depth in self.max_depth:
                for leaf in self.min_samples_leaf:
                    out.append(ForestPredictor(family, n_estimators=self.n_estimators,
                                               max_depth=depth or None, min_samples_leaf=leaf,
                                               base=base, random_state=self.seed))
        return out


@dataclass(frozen=True)
class ProfiledParams:
    """Where the profiles are, where fitted predictors are cached, and the fit/table knobs.

    ``store``: one profile-store root or several (searched in order per family; e.g. the
    Vidur import and the aiconfigurator import). ``cache_dir``: "" = ``$VIDUR_SEARCH_CACHE``
    or ``~/.cache/vidur_search``. The forest, piecewise and CV fields are the grid
    search's (:class:`PredictorParams`, same names and defaults). ``dense_tokens``: token
    tables evaluate every integer up to it, then ``tokens_per_octave`` points per
    doubling; ``axis_per_octave``: points per doubling of the KV-length and chunk axes;
    ``batch_dense``: batch rows evaluated at every integer up to it.
    """

    store: str | tuple[str, ...] = ()
    cache_dir: str = ""
    fallback: str = "roofline"  # the model for operators without profiles
    # no layer_ops for (model, SKU, TP): False runs the fallback model for everything (and
    # the summary says so), True stops with an error naming what to profile
    require_profiles: bool = False
    # the grid search's fields (PredictorParams): same names, same defaults
    n_estimators: int = PredictorParams.n_estimators
    max_depth: tuple[int, ...] = PredictorParams.max_depth
    min_samples_leaf: tuple[int, ...] = PredictorParams.min_samples_leaf
    base: tuple[bool, ...] = PredictorParams.base
    cv_folds: int = PredictorParams.cv_folds
    small_rows: int = PredictorParams.small_rows
    small_folds: int = PredictorParams.small_folds
    max_cv_rows: int = PredictorParams.max_cv_rows
    tie_tolerance: float = PredictorParams.tie_tolerance
    piecewise: bool = PredictorParams.piecewise
    interp: tuple[str, ...] = PredictorParams.interp
    smooth: tuple[int, ...] = PredictorParams.smooth
    seed: int = PredictorParams.seed
    dense_tokens: int = 4096
    tokens_per_octave: int = 64
    axis_per_octave: int = 16
    batch_dense: int = 64

    def __post_init__(self) -> None:
        roots = (self.store,) if isinstance(self.store, str | os.PathLike) else self.store
        if (isinstance(roots, Mapping) or not isinstance(roots, Iterable)
                or not all(isinstance(r, str | os.PathLike) for r in roots)):
            raise ConfigError("execution.profiled.store", self.store,
                              "must be a profile-store directory or a list of them ([] = "
                              "the profiles shipped in the package)")
        roots = tuple(str(r) for r in roots if str(r))
        object.__setattr__(self, "store", roots)
        if not isinstance(self.cache_dir, str | os.PathLike):
            raise ConfigError("execution.profiled.cache_dir", self.cache_dir,
                              "must be a directory path ('' = $VIDUR_SEARCH_CACHE or the "
                              "user cache)")
        boolean("execution.profiled.require_profiles", self.require_profiles)
        if self.fallback not in FALLBACKS:
            raise ConfigError("execution.profiled.fallback", self.fallback,
                              "allowed values are " + ", ".join(FALLBACKS))
        for name in ("dense_tokens", "tokens_per_octave", "axis_per_octave", "batch_dense"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"execution.profiled.{name}", v, "must be an integer >= 1")
        k = self.axis_per_octave
        if k & (k - 1):
            raise ConfigError("execution.profiled.axis_per_octave", k, "must be a power of two")
        grid = self.predictor_params()  # validates the grid-search fields (as given)
        for name in _LIST_FIELDS:  # YAML lists, or a single value, as tuples
            object.__setattr__(self, name, getattr(grid, name))

    def predictor_params(self) -> PredictorParams:
        """The grid-search hyper-parameters (part of every cache key)."""
        return PredictorParams(**{f.name: getattr(self, f.name)
                                  for f in dataclasses.fields(PredictorParams)})


__all__ = ["FALLBACKS", "PredictorParams", "ProfiledParams"]
