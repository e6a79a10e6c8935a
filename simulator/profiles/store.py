"""A directory of profile files laid out by device, model (or node) and TP degree.

Layout (``path_for``)::

    <root>/<device>/<model>/tp<tp>/<family>[-<dtype>].parquet         one model at one TP
    <root>/<device>/network-<node>/tp1/collective[-<dtype>].parquet   collectives of a node
    <root>/<device>/ops/tp1/<family>[-<dtype>].parquet                shape-keyed tables

The suffix ``-<dtype>`` is left out for bf16. Lookups of a 16-bit dtype fall back to the
other 16-bit dtype (bf16 <-> fp16) when the exact one is absent: both run at the same
tensor-core rate and move the same bytes on every catalogue GPU, and the returned
ProfileMeta still says which one was measured.

:func:`cover` (and :meth:`ProfileStore.cover`) answers "which profiles cover (model, SKU,
TP)" the way ``execution.kind=profiled`` searches them: per family the model's own file, a
shape-keyed attention table holding the model's per-GPU heads, or the node's collective
table; and for what is left, what to profile and what the fallback prices instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from simulator.errors import ConfigError
from simulator.profiles.schema import (
    ATTENTION_FAMILIES,
    CPU_OPS,
    FAMILIES,
    MODEL_FAMILIES,
    ProfileMeta,
    model_shape_of,
    per_gpu_heads,
    read_meta,
    read_profile,
    rows_with_heads,
    write_profile,
)

SHAPE_DIR = "ops"  # directory of shape-keyed tables (model "")
DEFAULT_REQUIRED = ("attention_prefill", "attention_decode", "layer_ops")
_SIXTEEN_BIT = {"bf16": ("bf16", "fp16"), "fp16": ("fp16", "bf16")}
ENTRY_COLUMNS = ("device", "model", "node", "tp", "family", "dtype", "source", "rows", "path")
# the layer_ops operators the profiled execution model prices (dense and MoE layers)
_OPS_DENSE = ("embedding", "input_norm", "qkv_proj", "rope", "o_proj", "post_norm",
              "gate_up_proj", "act", "down_proj", "add", "lm_head")
_OPS_MOE = ("embedding", "input_norm", "qkv_proj", "rope", "o_proj", "post_norm",
            "moe_experts", "add", "lm_head")
_MLP_OPS = ("gate_up_proj", "act", "down_proj")  # profiled only when all three are
COVER_FAMILIES = (*MODEL_FAMILIES, "collective")  # what :func:`cover` answers for
COVER_KINDS = ("model", "shapes", "collective")  # how a family is covered ("" = not)
HEAD_COLUMNS = ("n_q_heads", "n_kv_heads", "head_dim")
# What the profiled execution model does without the family (execution.profiled.fallback
# is the roofline or the calibrated roofline).
FALLBACK_NOTES = {
    "layer_ops": "execution.kind=profiled needs it: without it the fallback model "
                 "(execution.profiled.fallback) prices every operator, attention included "
                 "(with execution.profiled.require_profiles=true the run stops instead)",
    "attention_prefill": "the fallback's attention prices prefill chunks",
    "attention_decode": "the fallback's attention prices decodes",
    "attention_mixed": "the decode-only attention prices the decodes of a mixed batch",
    "cpu_overhead": "the fallback's CPU and sampling overheads",
    "collective": "the fallback's collective fits price the TP all-reduce and PP send",
}


def _file_name(family: str, dtype: str) -> str:
    return f"{family}.parquet" if dtype == "bf16" else f"{family}-{dtype}.parquet"


@dataclass(frozen=True)
class Coverage:
    """How one profile family is covered for a (model, SKU, TP), or why it is not."""

    family: str
    kind: str  # one of COVER_KINDS, "" when uncovered
    path: Path | None  # the file that covers it (None when uncovered)
    rows: int  # rows that apply (a shape-keyed table: the rows of the model's heads)
    detail: str  # how the file is used; uncovered: why ("" when there is simply no file)
    fallback: str = ""  # uncovered: what prices the family instead
    todo: str = ""  # uncovered: what to profile or import to cover it

    @property
    def covered(self) -> bool:
        """Whether a profile file covers the family."""
        return self.path is not None

    def describe(self) -> str:
        """One sentence or two: how it is used, or why not and what to do about it."""
        if self.covered:
            return self.detail
        why = f"{self.detail}; " if self.detail else ""
        return f"{why}{self.fallback}. To cover it: {self.todo}."


def _read_placed(path: Path, device: str, model: str, node: str, tp: int,
                 family: str) -> tuple[pd.DataFrame, ProfileMeta]:
    """Read and validate the profile at ``path`` (:func:`read_profile`) and check that its
    metadata matches its place in the store; ConfigError naming the file otherwise."""
    df, meta = read_profile(path)
    claimed = (meta.device, meta.model, meta.node, meta.tp, meta.family)
    if claimed != (device, model, node, tp, family):
        raise ConfigError(f"{path}: metadata", claimed,
                          f"the file's metadata disagrees with its place in the store "
                          f"(expected {(device, model, node, tp, family)})")
    return df, meta


def _article(name: str) -> str:
    """"a" or "an" before a SKU name read letter by letter ("an h100-sxm", "a b200")."""
    return "an" if name[:1].lower() in "aefhilmnorsx" else "a"


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
        return _read_placed(path, device, model, node, tp, family)

    # -- model coverage ----------------------------------------------------------------
    def coverage(self, model: str, device: str, tp: int, dtype: str = "bf16") -> dict[str, Path]:
        """Family -> file of the model's own files present for (model, device, tp).

        Only the per-model files (:meth:`load` takes them with ``model``): see :meth:`cover`
        for shape-keyed tables and collectives too."""
        found = {}
        for family in MODEL_FAMILIES:
            path = self._find(device, model, "", tp, family, dtype)
            if path is not None:
                found[family] = path
        return found

    def cover(self, model: str, device: str, tp: int, dtype: str = "bf16", *,
              node: str = "") -> dict[str, Coverage]:
        """Every family of :data:`COVER_FAMILIES` -> how this store covers it (see
        :func:`cover`); ``node`` defaults to the catalogue's first node for ``device``."""
        return cover([self], model, device, tp, dtype, node=node)

    def require(self, model: str, device: str, tp: int,
                families: tuple[str, ...] = DEFAULT_REQUIRED,
                dtype: str = "bf16", *, node: str = "") -> dict[str, Path]:
        """Family -> the file covering it (the model's own, a shape-keyed attention table
        holding the model's heads, or the node's collectives; see :meth:`cover`), or a
        ConfigError naming what is missing, how to measure it and what falls back."""
        for family in families:
            if family not in COVER_FAMILIES:
                raise ConfigError("families", family,
                                  "allowed values are " + ", ".join(COVER_FAMILIES))
        # only the families asked for are read (and checked), as the engine would
        have = cover([self], model, device, tp, dtype, node=node, families=families)
        missing = [f for f in families if not have[f].covered]
        if not missing:
            return {f: have[f].path for f in families if have[f].path is not None}
        measured = [f for f in missing if f in DEFAULT_REQUIRED]
        how = ""
        if measured:
            how = (f": measure {', '.join(measured)} on {_article(device)} {device} GPU with "
                   f"`python -m profiler model={model} tp={tp} out={self.root}`, or fall back "
                   f"to `execution.kind=calibrated`")
        notes = []
        for f in missing:  # why (shape-keyed tables without its heads), or another source
            parts = [have[f].detail] if have[f].detail else []
            if f not in DEFAULT_REQUIRED:
                parts.append(have[f].todo)
            if parts:
                notes.append(f" {f}: {'; '.join(parts)}.")
        raise ConfigError("profiles", f"{model} on {device} at tp={tp}",
                          f"missing {', '.join(missing)} under {self.root}{how}."
                          + "".join(notes))

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

            keep = rows_with_heads(df, per_gpu_heads(model_shape_of(get_model(model)), tp))
            df = df[keep].reset_index(drop=True)
        return df, meta

    # -- listing -----------------------------------------------------------------------
    def entries(self) -> pd.DataFrame:
        """One row per profile file: device, model, node, tp, family, dtype, source, rows, path.

        Reads metadata only (fast); a Parquet file without profile metadata is an error.
        Files under hidden folders (an interrupted import's ``.import-*``) are not listed.
        """
        rows = []
        if self.root.is_dir():
            for path in sorted(self.root.rglob("*.parquet")):
                if any(part.startswith(".") for part in path.relative_to(self.root).parts):
                    continue  # an importer's scratch folder (.import-*), or other hidden
                meta, n = read_meta(path)
                rows.append({
                    "device": meta.device, "model": meta.model, "node": meta.node,
                    "tp": meta.tp, "family": meta.family, "dtype": meta.dtype,
                    "source": meta.source, "rows": n, "path": str(path),
                })
        return pd.DataFrame(rows, columns=list(ENTRY_COLUMNS)).astype(
            {"tp": "int64", "rows": "int64"})


# -- coverage across stores -----------------------------------------------------------------
def _model_heads(model: str, tp: int, stores: Sequence[ProfileStore], device: str,
                 dtype: str) -> dict[str, int] | None:
    """Per-GPU ``n_q_heads``, ``n_kv_heads``, ``head_dim`` of ``model`` at ``tp``: from the
    built-in catalogue, else from a ``model_shape`` in one of its own files; None if neither."""
    from simulator.catalogue import get_model, model_names

    if model in model_names():
        shape = model_shape_of(get_model(model))
    else:
        shape = {}
        for store in stores:
            for path in store.coverage(model, device, tp, dtype).values():
                shape = read_meta(path)[0].model_shape
                break
            if shape:
                break
        if not shape:
            return None
    return per_gpu_heads(shape, tp)


def _todo(family: str, model: str, device: str, tp: int, node: str, root: Path | None) -> str:
    """What produces ``family`` for (model, device, tp): a profiler run or an import."""
    out = f" out={root}" if root is not None else ""
    if family in DEFAULT_REQUIRED:
        return f"measure with `python -m profiler model={model} tp={tp}{out}` on {device}"
    if family == "collective":
        return (f"measure with `python -m profiler model={model} tp={tp} families=collective"
                f"{out}` on node type {node}, or import Vidur's or aiconfigurator's network "
                "tables")
    return ("import LLMServingSim's tables (`python -m profiler.import_llmservingsim`); "
            "the profiler does not measure it")


def _ops_detail(df: pd.DataFrame, expected: Sequence[str]) -> str:
    """The ops a table holds, and those of ``expected`` it lacks (priced by the fallback)."""
    ops = sorted(set(df["op"].astype(str)))
    absent = [op for op in expected if op not in ops]
    text = "ops " + ", ".join(ops)
    mlp = [op for op in _MLP_OPS if op in expected]
    if any(op in absent for op in mlp):  # the profiled model prices a dense MLP whole
        absent = [op for op in absent if op not in mlp] + mlp
    if "add" in absent and "input_norm" in ops:  # vLLM's fused add + RMSNorm kernel
        absent.remove("add")
        text += " (add fused into the norms)"
    if absent:
        text += "; the fallback prices " + ", ".join(absent)
    return text


def cover(stores: Sequence[ProfileStore], model: str, device: str, tp: int,
          dtype: str = "bf16", *, node: str = "",
          families: Sequence[str] = COVER_FAMILIES) -> dict[str, Coverage]:
    """Which file of ``stores`` (searched in order, as ``execution.profiled.store``) covers
    each of ``families`` (default: all of :data:`COVER_FAMILIES`) for ``model`` on
    ``device`` at ``tp``.

    As the profiled execution model searches them: ``layer_ops``, ``attention_mixed`` and
    ``cpu_overhead`` come only from the model's own files; prefill and decode attention from
    the model's own file in any store, else from a shape-keyed table (e.g. aiconfigurator's)
    that has rows with the model's per-GPU heads and head size (only those are its
    coverage); collectives from the ``node``'s table (default: the catalogue's first node
    for ``device``). An uncovered family's ``fallback`` says what prices it instead and
    ``todo`` what to profile or import. Every file found is read and checked as
    :meth:`ProfileStore.load` reads it, so a file the engine would refuse (damaged, a
    missing column, a bad row, misplaced metadata) is a ConfigError naming it, not coverage.
    """
    from simulator.catalogue import default_node_for, get_model, model_names, sku_names

    if not node and device in sku_names():
        node = default_node_for(device)
    spec = get_model(model) if model in model_names() else None
    first_root = stores[0].root if stores else None
    out: dict[str, Coverage] = {}
    heads = _model_heads(model, tp, stores, device, dtype)
    heads_text = ", ".join(f"{k}={v}" for k, v in (heads or {}).items())
    for family in COVER_FAMILIES:
        if family not in families:
            continue
        todo = _todo(family, model, device, tp, node, first_root)
        why = ""
        if family == "collective":
            found = _collective_cover(stores, device, node, tp, dtype)
            if found is None:
                why = (f"no collective table for node {node}" if node
                       else f"no node given and {device} is not a catalogue SKU")
        else:
            found = _model_cover(stores, family, model, device, tp, dtype,
                                 moe=spec is not None and spec.is_moe)
        if found is None and family in ("attention_prefill", "attention_decode"):
            tables = []
            for store in stores:
                path = store._find(device, "", "", 1, family, dtype)
                if path is None:
                    continue
                tables.append(path)
                df, _ = _read_placed(path, device, "", "", 1, family)  # as the engine reads it
                if heads is None:
                    continue
                mine = rows_with_heads(df, heads)
                if mine.any():
                    found = Coverage(
                        family, "shapes", path, int(mine.sum()),
                        f"shape-keyed table: fitted on all {len(df)} rows, evaluated at "
                        f"{heads_text} ({int(mine.sum())} rows of that shape)")
                    break
            if found is None and tables:
                what = (f"hold no rows with {model}'s heads at tp={tp} ({heads_text})"
                        if heads is not None else
                        f"cannot be matched: {model} is not a built-in model and has no "
                        "file giving its shape")
                why = f"shape-keyed tables ({', '.join(map(str, tables))}) {what}"
        out[family] = found or Coverage(family, "", None, 0, why, FALLBACK_NOTES[family], todo)
    return out


def _model_cover(stores: Sequence[ProfileStore], family: str, model: str, device: str,
                 tp: int, dtype: str, *, moe: bool) -> Coverage | None:
    """The first store's own file of ``model`` for ``family``, with what it holds; None
    when no store has one."""
    for store in stores:
        path = store._find(device, model, "", tp, family, dtype)
        if path is None:
            continue
        df, _ = _read_placed(path, device, model, "", tp, family)  # as the engine reads it
        if family == "layer_ops":
            detail = f"the model's own file: {_ops_detail(df, _OPS_MOE if moe else _OPS_DENSE)}"
        elif family == "cpu_overhead":
            detail = f"the model's own file: {_ops_detail(df, CPU_OPS)}"
        else:
            detail = "the model's own file"
        return Coverage(family, "model", path, len(df), detail)
    return None


def _collective_cover(stores: Sequence[ProfileStore], device: str, node: str, tp: int,
                      dtype: str) -> Coverage | None:
    """The first store's collective table of ``node``, with the ops and GPU counts it
    measured; None when no store has one."""
    for store in stores:
        path = store._find(device, "", node, 1, "collective", dtype) if node else None
        if path is None:
            continue
        df, _ = _read_placed(path, device, "", node, 1, "collective")  # as the engine reads it
        parts = []
        for op, g in df.groupby("op"):
            lo, hi = int(g["num_gpus"].min()), int(g["num_gpus"].max())
            parts.append(f"{op} {lo}..{hi} GPUs" if lo != hi else f"{op} {lo} GPUs")
        ar = df[df["op"] == "all_reduce"]
        # as ProfiledModel: used when tp lies inside the measured GPU counts
        inside = not ar.empty and all(
            ar[c].min() <= tp <= ar[c].max() for c in ("num_gpus", "gpus_per_node"))
        if tp > 1 and not inside:
            parts.append(f"no all-reduce measured around {tp} GPUs: the fallback prices "
                         "the TP all-reduce")
        return Coverage("collective", "collective", path, len(df),
                        f"node {node}: " + "; ".join(parts))
    return None


def format_coverage(cov: dict[str, Coverage], *, title: str = "") -> str:
    """``cov`` (from :func:`cover`) as a table: family, how covered, rows, file; then one
    line per family saying how it is used or, when uncovered, what to do about it."""
    head = ("family", "covered by", "rows", "file")
    body = [(c.family, c.kind or "MISSING", str(c.rows) if c.covered else "-",
             str(c.path) if c.path is not None else "-") for c in cov.values()]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(3)]

    def line(r: tuple[str, ...]) -> str:
        return "  ".join([r[0].ljust(widths[0]), r[1].ljust(widths[1]),
                          r[2].rjust(widths[2]), r[3]]).rstrip()

    lines = [title] if title else []
    lines += [line(head), line((*("-" * w for w in widths), "----"))]
    lines += [line(r) for r in body]
    lines.append("")
    lines += [f"{c.family}: {c.describe()}" for c in cov.values()]
    n = sum(c.covered for c in cov.values())
    lines.append(f"{n} of {len(cov)} families covered")
    return "\n".join(lines)
