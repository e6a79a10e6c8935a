"""Fitted predictors on disk, keyed by what they were fitted on.

An entry holds the :class:`FitResult` of every operator of one profile table. Its key is
the profile's identity (family, device, model, TP, dtype, node), a SHA-256 of the rows
it was fitted on (shape columns and target), the grid-search hyper-parameters and the
versions that change the fitted or pickled objects (``FIT_VERSION``, this format,
scikit-learn, numpy). So a changed profile, hyper-parameter or fitting code gives another
file name and is refitted, while the same inputs load the earlier fit. Entries are joblib
files written atomically (temporary file, then rename); one that cannot be read, or whose
stored key differs, is refitted with a warning, never an error. A directory that cannot be
written gives one :class:`~simulator.errors.ConfigWarning` naming
``execution.profiled.cache_dir``; the run carries on without caching.

Directory: ``cache_dir`` if given, else ``$VIDUR_SEARCH_CACHE``, else
``~/.cache/vidur_search``; entries live under ``<dir>/predictors/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn

from simulator.errors import ConfigWarning
from simulator.execution.predictors.features import family_features
from simulator.execution.predictors.selection import (
    TARGET,
    FitResult,
    PredictorParams,
    fit_profile,
    op_family,
    training_rows,
)

CACHE_FORMAT = 1  # bump when FitResult or a predictor class changes incompatibly
# bump when the features, bases, candidates or fitting code change what a fit returns for
# the same rows and hyper-parameters (2: work-item features for attention, forests with a
# base read at unclipped features, piecewise interpolation/smoothing, small-table folds;
# 3: moe_experts rows fitted with their own features; 4: piecewise curves continue their
# first segment below the fitted range)
FIT_VERSION = 4
ENV_VAR = "VIDUR_SEARCH_CACHE"


def default_cache_dir() -> Path:
    """``$VIDUR_SEARCH_CACHE``, else ``vidur_search`` in the user cache (``$XDG_CACHE_HOME``,
    default ``~/.cache``)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vidur_search"


def content_hash(df: pd.DataFrame, family: str) -> str:
    """SHA-256 of the rows a fit of ``df`` reads (per operator: shape columns, target)."""
    h = hashlib.sha256()
    for op, rows in training_rows(df, family).items():
        cols = [*family_features(op_family(family, op)).columns, TARGET]
        part = rows[cols].reset_index(drop=True)
        h.update(op.encode())
        h.update(np.ascontiguousarray(part.to_numpy(dtype=np.float64)).tobytes())
    return h.hexdigest()


class PredictorCache:
    """A directory of fitted predictors; counts its fits, hits and refits after errors."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.explicit = bool(directory)  # execution.profiled.cache_dir, not the default
        root = Path(directory) if directory else default_cache_dir()
        self.directory = root / "predictors"
        self.fits = 0  # entries fitted (a miss or an unreadable entry)
        self.hits = 0  # entries loaded from disk
        self.errors = 0  # unreadable or mismatched entries that were refitted
        self.write_error = ""  # why the directory cannot be written ("" = it can, so far)

    def __repr__(self) -> str:
        return f"PredictorCache({str(self.directory)!r})"

    @staticmethod
    def key(identity: Mapping[str, Any], df: pd.DataFrame, family: str,
            params: PredictorParams) -> dict[str, Any]:
        """The full cache key of fitting ``df`` (a profile of ``family``) with ``params``."""
        return {
            **{k: identity[k] for k in sorted(identity)},
            "family": family,
            "content": content_hash(df, family),
            "params": params.as_key(),
            "format": CACHE_FORMAT,
            "fit_version": FIT_VERSION,
            "sklearn": sklearn.__version__,
            "numpy": np.__version__,
        }

    def path_for(self, key: Mapping[str, Any]) -> Path:
        """File of the entry with ``key``: readable prefix plus a hash of the whole key."""
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        group = key.get("model") or (f"network-{key['node']}" if key.get("node") else "ops")
        parts = [str(key.get("device", "")), str(group), f"tp{key.get('tp', '')}",
                 str(key.get("family", ""))]
        prefix = "_".join(p for p in parts if p)
        safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in prefix)
        return self.directory / f"{safe}-{digest}.joblib"

    def fitted(self, identity: Mapping[str, Any], df: pd.DataFrame, family: str,
               params: PredictorParams) -> dict[str, FitResult]:
        """The operator predictors of ``df``: from the cache, or fitted and stored."""
        key = self.key(identity, df, family, params)
        path = self.path_for(key)
        if path.is_file():
            try:
                entry = joblib.load(path)
                if not isinstance(entry, dict) or entry.get("key") != key:
                    raise ValueError("its stored key differs from the requested one")
                results = entry["results"]
                if not isinstance(results, dict) or not all(
                        isinstance(r, FitResult) for r in results.values()):
                    raise ValueError("it does not hold fitted predictors")
            except Exception as err:  # any unreadable entry is refitted, never fatal
                self.errors += 1
                warnings.warn(f"predictor cache entry {path} is unreadable ({err}); "
                              "refitting it", RuntimeWarning, stacklevel=2)
            else:
                self.hits += 1
                return results
        results = fit_profile(df, family, params)
        self.fits += 1
        if self.write_error:  # said once already; fits are simply not cached
            return results
        try:
            self._write(path, {"key": key, "results": results})
        except OSError as err:  # a read-only or full disk costs a refit next time only
            self.write_error = str(err.strerror or err)
            where = (f"execution.profiled.cache_dir={str(self.directory.parent)!r}"
                     if self.explicit else
                     f"the predictor cache {self.directory.parent} (${ENV_VAR} or the user "
                     "cache; set execution.profiled.cache_dir to move it)")
            warnings.warn(f"{where} cannot be written ({self.write_error}); carrying on "
                          "without caching fitted predictors", ConfigWarning, stacklevel=2)
        return results

    def _write(self, path: Path, entry: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                joblib.dump(entry, fh, compress=3)
            os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is shareable
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


__all__ = ["CACHE_FORMAT", "ENV_VAR", "FIT_VERSION", "PredictorCache", "content_hash",
           "default_cache_dir"]
