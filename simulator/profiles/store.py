"""A directory of profile files laid out by device, model (or node) and TP degree.

Layout (``path_for``)::

    <root>/<device>/<model>/tp<tp>/<family>[-<dtype>].parquet         one model at one TP
    <root>/<device>/network-<node>/tp1/collective[-<dtype>].parquet   collectives of a node
    <root>/<device>/ops/tp1/<family>[-<dtype>].parquet                shape-keyed tables

The suffix ``-<dtype>`` is left out for bf16. Lookups of a 16-bit dtype fall back to the
other 16-bit dtype (bf16 <-> fp16) when the exact one is absent: both run at the same
tensor-core rate and move the same bytes on every catalogue GPU, and the returned
ProfileMeta still says which one was measured.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from simulator.errors import ConfigError
from simulator.profiles.schema import (
    ATTENTION_FAMILIES,
    FAMILIES,
    MODEL_FAMILIES,
    ProfileMeta,
    kv_heads_per_gpu,
    model_shape_of,
    read_meta,
    read_profile,
    write_profile,
)

SHAPE_DIR = "ops"  # directory of shape-keyed tables (model "")
DEFAULT_REQUIRED = ("attention_prefill", "attention_decode", "layer_ops")
_SIXTEEN_BIT = {"bf16": ("bf16", "fp16"), "fp16": ("fp16", "bf16")}
ENTRY_COLUMNS = ("device", "model", "node", "tp", "family", "dtype", "source", "rows", "path")


def _file_name(family: str, dtype: str) -> str:
    return f"{family}.parquet" if dtype == "bf16" else f"{family}-{dtype}.parquet"


class ProfileStore:
    """Profiles under one root directory: save, find, load and report coverage."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ProfileStore({str(self.root)!r})"

    # -- paths -------------------------------------------------------------------------
    def _path(self, device: str, model: str, node: str, tp: int, family: str, dtype: str) -> Path:
        if model:
            group = model
        elif node:
            group = f"network-{node}"
        else:
            group = SHAPE_DIR
        return self.root / device / group / f"tp{tp}" / _file_name(family, dtype)

    def path_for(self, meta: ProfileMeta) -> Path:
        """Where the profile described by ``meta`` lives in this store."""
        return self._path(meta.device, meta.model, meta.node, meta.tp, meta.family, meta.dtype)

    def _find(self, device: str, model: str, node: str, tp: int, family: str,
              dtype: str) -> Path | None:
        for dt in _SIXTEEN_BIT.get(dtype, (dtype,)):
            path = self._path(device, model, node, tp, family, dt)
            if path.is_file():
                return path
        return None

    # -- save / load -------------------------------------------------------------------
    def save(self, df: pd.DataFrame, meta: ProfileMeta) -> Path:
        """Validate and write ``df`` at ``path_for(meta)`` (replacing any file there)."""
        return write_profile(df, self.path_for(meta), meta)

    def _default_node(self, device: str) -> str:
        from simulator.catalogue import default_node_for, sku_names

        if device not in sku_names():
            raise ConfigError("node", "", f"name the node: {device} is not a catalogue SKU")
        return default_node_for(device)

    def load(self, device: str, model: str, tp: int, family: str, dtype: str = "bf16",
             *, node: str = "") -> tuple[pd.DataFrame, ProfileMeta]:
        """Read one profile (validated). Collectives: model "", tp 1 and ``node`` (default:
        the catalogue's first node for ``device``). ConfigError when it is absent."""
        if family not in FAMILIES:
            raise ConfigError("family", family, "allowed values are " + ", ".join(FAMILIES))
        if family == "collective":
            node = node or self._default_node(device)
            model, tp = "", 1
        path = self._find(device, model, node, tp, family, dtype)
        if path is None:
            want = self._path(device, model, node, tp, family, dtype)
            raise ConfigError("profile", str(want),
                              f"no {family} profile for {model or node or 'shapes'} on {device} "
                              f"at tp={tp} ({dtype}) under {self.root}")
        df, meta = read_profile(path)
        claimed = (meta.device, meta.model, meta.node, meta.tp, meta.family)
        if claimed != (device, model, node, tp, family):
            raise ConfigError(f"{path}: metadata", claimed,
                              f"the file's metadata disagrees with its place in the store "
                              f"(expected {(device, model, node, tp, family)})")
        return df, meta

    # -- model coverage ----------------------------------------------------------------
    def coverage(self, model: str, device: str, tp: int, dtype: str = "bf16") -> dict[str, Path]:
        """Family -> file of the model families present for (model, device, tp)."""
        found = {}
        for family in MODEL_FAMILIES:
            path = self._find(device, model, "", tp, family, dtype)
            if path is not None:
                found[family] = path
        return found

    def require(self, model: str, device: str, tp: int,
                families: tuple[str, ...] = DEFAULT_REQUIRED,
                dtype: str = "bf16") -> dict[str, Path]:
        """Like :meth:`coverage`, but ConfigError naming what is missing and how to get it."""
        for family in families:
            if family not in MODEL_FAMILIES:
                raise ConfigError("families", family,
                                  "allowed values are " + ", ".join(MODEL_FAMILIES))
        have = self.coverage(model, device, tp, dtype)
        missing = [f for f in families if f not in have]
        if not missing:
            return {f: have[f] for f in families}
        shapes = self.shape_tables(device, dtype)
        hint = ""
        if any(f in shapes for f in missing):
            hint = (f" Shape-keyed tables for {device} exist under "
                    f"{self.root / device / SHAPE_DIR} (ProfileStore.load_shapes).")
        raise ConfigError(
            "profiles", f"{model} on {device} at tp={tp}",
            f"missing {', '.join(missing)} under {self.root}: measure them on a {device} GPU "
            f"with `python -m profiler model={model} tp={tp} out={self.root}`, or fall back to "
            f"`execution.kind=calibrated`.{hint}",
        )

    # -- shape-keyed tables ------------------------------------------------------------
    def shape_tables(self, device: str, dtype: str = "bf16") -> dict[str, Path]:
        """Family -> file of the shape-keyed (model "") tables present for ``device``."""
        found = {}
        for family in MODEL_FAMILIES:
            path = self._find(device, "", "", 1, family, dtype)
            if path is not None:
                found[family] = path
        return found

    def load_shapes(self, device: str, family: str, *, model: str = "", tp: int = 1,
                    dtype: str = "bf16") -> tuple[pd.DataFrame, ProfileMeta]:
        """A shape-keyed table; for attention families with ``model`` given, only the rows
        of that built-in model's per-GPU heads and head size at ``tp``."""
        df, meta = self.load(device, "", 1, family, dtype)
        if model and family in ATTENTION_FAMILIES:
            from simulator.catalogue import get_model

            shape = model_shape_of(get_model(model))
            keep = (
                (df["n_q_heads"] == shape["n_heads"] // tp)
                & (df["n_kv_heads"] == kv_heads_per_gpu(shape["n_kv_heads"], tp))
                & (df["head_dim"] == shape["head_dim"])
            )
            df = df[keep].reset_index(drop=True)
        return df, meta

    # -- listing -----------------------------------------------------------------------
    def entries(self) -> pd.DataFrame:
        """One row per profile file: device, model, node, tp, family, dtype, source, rows, path.

        Reads metadata only (fast); a Parquet file without profile metadata is an error.
        """
        rows = []
        if self.root.is_dir():
            for path in sorted(self.root.rglob("*.parquet")):
                meta, n = read_meta(path)
                rows.append({
                    "device": meta.device, "model": meta.model, "node": meta.node,
                    "tp": meta.tp, "family": meta.family, "dtype": meta.dtype,
                    "source": meta.source, "rows": n, "path": str(path),
                })
        return pd.DataFrame(rows, columns=list(ENTRY_COLUMNS)).astype(
            {"tp": "int64", "rows": "int64"})
