"""The profile file format: one family of operator timings per zstd Parquet file.

A profile file holds the timing statistics (microseconds) of one operator family, on one
device, for one model sharded at one tensor-parallel degree (or, for collectives, one node
type). Its provenance travels inside the file as JSON under the Parquet schema metadata key
``b"vidur_search.profile"`` (a :class:`ProfileMeta`). Both :func:`write_profile` and
:func:`read_profile` validate the table against the family's columns and the metadata
against the catalogue, and raise :class:`~simulator.errors.ConfigError` naming the file,
the column and the first bad row, so that a bad profile fails where it is made or loaded,
not deep inside a predictor.

Files whose ``model`` is ``""`` and whose family is not ``collective`` are *shape-keyed*:
tables measured for operator shapes rather than for one model (e.g. aiconfigurator's), with
the per-GPU head counts or GEMM sizes in each row. Their ``tp`` is 1 and no model check
applies. Columns beyond the family's are allowed and kept (e.g. ``kernel_source``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from simulator.errors import ConfigError
from simulator.memory import kv_heads_of as kv_heads_per_gpu  # one rule, shape form

FAMILIES = ("attention_prefill", "attention_decode", "attention_mixed", "layer_ops", "collective",
            "cpu_overhead")
MODEL_FAMILIES = ("attention_prefill", "attention_decode", "attention_mixed", "layer_ops",
                  "cpu_overhead")
ATTENTION_FAMILIES = ("attention_prefill", "attention_decode", "attention_mixed")
SOURCES = ("measured", "imported", "roofline")
STAT_COLUMNS = ("min_us", "median_us", "mean_us", "max_us", "std_us", "count")
TIME_COLUMNS = STAT_COLUMNS[:-1]
# "gemm": a GEMM known only by its shape (tables that are not per model, e.g. aiconfigurator).
LAYER_OPS = (
    "embedding", "input_norm", "qkv_proj", "rope", "o_proj", "post_norm", "gate_up_proj",
    "act", "down_proj", "add", "moe_experts", "lm_head", "gemm",
)
COLLECTIVE_OPS = ("all_reduce", "send_recv", "all_gather")
CPU_OPS = ("schedule", "prepare_inputs", "sampling", "process_outputs")
DTYPES = ("bf16", "fp16", "fp32", "fp8", "int8")
MODEL_SHAPE_KEYS = ("hidden", "n_heads", "n_kv_heads", "head_dim", "ffn", "layers", "vocab")
SCHEMA_VERSION = 1
METADATA_KEY = b"vidur_search.profile"

# family -> {column: (kind, minimum)}; kind "int" (int64) or "str". Times are STAT_COLUMNS.
_INT, _STR = "int", "str"
FAMILY_COLUMNS: dict[str, dict[str, tuple[str, int]]] = {
    "attention_prefill": {
        "n_q_heads": (_INT, 1), "n_kv_heads": (_INT, 1), "head_dim": (_INT, 1),
        "batch_size": (_INT, 1), "chunk_tokens": (_INT, 1), "prior_kv": (_INT, 0),
    },
    "attention_decode": {
        "n_q_heads": (_INT, 1), "n_kv_heads": (_INT, 1), "head_dim": (_INT, 1),
        "batch_size": (_INT, 1), "kv_len": (_INT, 1),
    },
    # one attention call over a prefill chunk and batch_size decodes of kv_len tokens each
    # (a mixed batch run as one kernel, as vLLM v1 does)
    "attention_mixed": {
        "n_q_heads": (_INT, 1), "n_kv_heads": (_INT, 1), "head_dim": (_INT, 1),
        "chunk_tokens": (_INT, 1), "prior_kv": (_INT, 0), "batch_size": (_INT, 1),
        "kv_len": (_INT, 1),
    },
    "layer_ops": {
        "op": (_STR, 0), "num_tokens": (_INT, 1), "n": (_INT, 1), "k": (_INT, 0),
    },
    "collective": {
        "op": (_STR, 0), "num_gpus": (_INT, 1), "gpus_per_node": (_INT, 1),
        "size_bytes": (_INT, 1),
    },
    "cpu_overhead": {"op": (_STR, 0), "batch_size": (_INT, 1)},
}
# layer_ops columns that only moe_experts rows need; filled with 0 when absent.
MOE_COLUMNS = ("experts", "topk")
OPS = {"layer_ops": LAYER_OPS, "collective": COLLECTIVE_OPS, "cpu_overhead": CPU_OPS}


@dataclass(frozen=True)
class ProfileMeta:
    """Provenance and identity of one profile file (stored as JSON inside it)."""

    family: str  # one of FAMILIES
    source: str  # one of SOURCES
    device: str  # catalogue SKU name ("h100-sxm") or "cpu"
    model: str  # catalogue model name; "" for collectives and shape-keyed tables
    tp: int  # tensor-parallel degree the shapes are sharded for (1 for collectives)
    dtype: str = "bf16"
    node: str = ""  # catalogue node name for collectives ("" otherwise)
    model_shape: dict = field(default_factory=dict)  # MODEL_SHAPE_KEYS, unsharded model
    driver: str = ""
    cuda: str = ""
    torch: str = ""
    date: str = ""  # ISO date
    origin: str = ""  # tool/path it came from
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        """The metadata as a JSON object (the bytes stored in the Parquet file)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "profile") -> ProfileMeta:
        """Parse :meth:`to_json` output; ConfigError naming ``where`` for bad JSON/keys."""
        try:
            raw = json.loads(text)
        except (ValueError, UnicodeDecodeError) as err:
            raise ConfigError(f"{where}: metadata", str(text)[:80], f"is not JSON: {err}") from err
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: metadata", raw, "must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        for key in raw:
            if key not in names:
                raise ConfigError(f"{where}: metadata.{key}", raw[key],
                                  "unknown key; allowed: " + ", ".join(sorted(names)))
        for key in ("family", "source", "device", "model", "tp"):
            if key not in raw:
                raise ConfigError(f"{where}: metadata.{key}", None, "missing required key")
        return cls(**raw)


def model_shape_of(model: Any) -> dict[str, int]:
    """The ``model_shape`` dict of a catalogue ModelSpec (unsharded sizes)."""
    return {
        "hidden": model.hidden_size, "n_heads": model.num_heads,
        "n_kv_heads": model.num_kv_heads, "head_dim": model.head_size, "ffn": model.ffn_size,
        "layers": model.num_layers, "vocab": model.vocab_size,
    }


def per_gpu_heads(model_shape: dict[str, int], tp: int) -> dict[str, int]:
    """The attention tables' head columns (``n_q_heads``, ``n_kv_heads``, ``head_dim``) for
    one GPU of a model of ``model_shape`` at ``tp``."""
    return {"n_q_heads": model_shape["n_heads"] // tp,
            "n_kv_heads": kv_heads_per_gpu(model_shape["n_kv_heads"], tp),
            "head_dim": model_shape["head_dim"]}


def rows_with_heads(df: pd.DataFrame, heads: dict[str, int]) -> np.ndarray:
    """Boolean mask of the rows of an attention table with exactly these head columns."""
    mine = np.ones(len(df), dtype=bool)
    for col, v in heads.items():
        mine &= df[col].to_numpy() == v
    return mine


def _catalogue_model(name: str) -> Any | None:
    """The built-in catalogue's ModelSpec for ``name``, or None when it is not built in."""
    from simulator.catalogue import get_model, model_names

    return get_model(name) if name in model_names() else None


def _check_name(where: str, key: str, value: Any, *, empty_ok: bool) -> None:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: metadata.{key}", value, "must be a string")
    if not value and empty_ok:
        return
    ok = bool(value) and value not in (".", "..") and all(
        c.isalnum() or c in "._-" for c in value
    )
    if not ok:
        raise ConfigError(f"{where}: metadata.{key}", value,
                          "must be a non-empty name of letters, digits, '.', '_' or '-'")


def validate_meta(meta: ProfileMeta, where: str) -> dict[str, int]:
    """Check ``meta`` (``where`` names the file); return the model shape rows must match."""
    if not isinstance(meta, ProfileMeta):
        raise ConfigError(f"{where}: meta", type(meta).__name__, "must be a ProfileMeta")
    for key, allowed in (("family", FAMILIES), ("source", SOURCES), ("dtype", DTYPES)):
        value = getattr(meta, key)
        if value not in allowed:
            raise ConfigError(f"{where}: metadata.{key}", value,
                              "allowed values are " + ", ".join(allowed))
    if meta.schema_version != SCHEMA_VERSION:
        raise ConfigError(f"{where}: metadata.schema_version", meta.schema_version,
                          f"this version reads schema_version {SCHEMA_VERSION} only")
    if not isinstance(meta.tp, int) or isinstance(meta.tp, bool) or meta.tp < 1:
        raise ConfigError(f"{where}: metadata.tp", meta.tp, "must be an integer >= 1")
    _check_name(where, "device", meta.device, empty_ok=False)
    _check_name(where, "model", meta.model, empty_ok=True)
    _check_name(where, "node", meta.node, empty_ok=True)
    for key in ("driver", "cuda", "torch", "date", "origin"):
        if not isinstance(getattr(meta, key), str):
            raise ConfigError(f"{where}: metadata.{key}", getattr(meta, key), "must be a string")
    if not isinstance(meta.model_shape, dict):
        raise ConfigError(f"{where}: metadata.model_shape", meta.model_shape,
                          "must be a mapping of " + ", ".join(MODEL_SHAPE_KEYS))
    if meta.family == "collective":
        if meta.model or not meta.node:
            raise ConfigError(f"{where}: metadata.node", meta.node,
                              "a collective profile names a catalogue node and model ''")
        if meta.tp != 1:
            raise ConfigError(f"{where}: metadata.tp", meta.tp, "must be 1 for collectives")
        return {}
    if meta.node:
        raise ConfigError(f"{where}: metadata.node", meta.node,
                          f"must be '' for family {meta.family} (only collectives name a node)")
    if not meta.model:  # shape-keyed table: shapes are per row
        if meta.tp != 1:
            raise ConfigError(f"{where}: metadata.tp", meta.tp,
                              "must be 1 for a shape-keyed profile (model '')")
        return {}
    spec = _catalogue_model(meta.model)
    shape = meta.model_shape
    for key in MODEL_SHAPE_KEYS:
        value = shape.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{where}: metadata.model_shape.{key}", value,
                              "must be a positive integer (keys: " + ", ".join(MODEL_SHAPE_KEYS)
                              + ")")
    extra = sorted(set(shape) - set(MODEL_SHAPE_KEYS))
    if extra:
        raise ConfigError(f"{where}: metadata.model_shape.{extra[0]}", shape[extra[0]],
                          "unknown key; allowed: " + ", ".join(MODEL_SHAPE_KEYS))
    if spec is not None:
        expected = model_shape_of(spec)
        for key in MODEL_SHAPE_KEYS:
            if shape[key] != expected[key]:
                raise ConfigError(f"{where}: metadata.model_shape.{key}", shape[key],
                                  f"catalogue model {meta.model} has {key}={expected[key]}")
    if shape["n_heads"] % meta.tp:
        raise ConfigError(f"{where}: metadata.tp", meta.tp,
                          f"must divide the model's n_heads={shape['n_heads']}")
    return dict(shape)


def _fail(where: str, col: str, row: int, value: Any, allowed: str) -> ConfigError:
    if isinstance(value, np.generic):
        value = value.item()
    return ConfigError(f"{where}: {col}[row {row}]", value, allowed)


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _is_real(value: Any) -> bool:
    """A real number (Python or numpy int/float), not a bool, string or None."""
    return (isinstance(value, int | float | np.integer | np.floating)
            and not isinstance(value, bool | np.bool_))


def _int_column(where: str, df: pd.DataFrame, col: str, minimum: int) -> pd.Series:
    s = df[col]
    if pd.api.types.is_bool_dtype(s.dtype) or not pd.api.types.is_numeric_dtype(s.dtype):
        bad = [i for i, v in enumerate(s)
               if isinstance(v, bool) or not isinstance(v, int | float | np.number)]
        row = bad[0] if bad else 0
        raise _fail(where, col, row, s.iloc[row], f"must be an integer (column dtype {s.dtype})")
    values = s.to_numpy(dtype="float64", na_value=np.nan)
    whole = np.isfinite(values) & (values == np.round(values))
    if not whole.all():
        row = _first(~whole)
        raise _fail(where, col, row, s.iloc[row], "must be a whole number")
    if (values < minimum).any():
        row = _first(values < minimum)
        raise _fail(where, col, row, s.iloc[row], f"must be an integer >= {minimum}")
    return s.astype("int64")


def _str_column(
    where: str, df: pd.DataFrame, col: str, allowed: tuple[str, ...] | None
) -> pd.Series:
    s = df[col]
    if isinstance(s.dtype, pd.StringDtype):  # every value is a string or missing
        missing = s.isna().to_numpy()
        if missing.any():
            raise _fail(where, col, _first(missing), None, "must be a string")
    else:
        for i, v in enumerate(s):
            if not isinstance(v, str):
                raise _fail(where, col, i, v, "must be a string")
    if allowed is not None:
        ok = s.isin(allowed).to_numpy()
        if not ok.all():
            row = _first(~ok)
            raise _fail(where, col, row, s.iloc[row], "allowed values are " + ", ".join(allowed))
    return s.astype("str")


# vLLM's VocabParallelEmbedding / ParallelLMHead pad the vocabulary to a multiple of 64
# before splitting it over TP; a table timed inside vLLM may hold that padded shard.
VOCAB_PADDING = 64


def lm_head_widths(vocab: int, tp: int) -> list[int]:
    """Per-GPU ``lm_head`` widths (``n``) accepted for a vocabulary ``vocab`` at ``tp``.

    The profiler and the LLMServingSim importer write ``vocab // tp`` (the profiler refuses
    a TP that does not divide the vocabulary; every shipped and reference file has such a
    TP, so the three values coincide there). When TP or 64 does not divide the vocabulary,
    the LM-head GEMM a GPU really runs is the rounded-up shard (``ceil(vocab / tp)``) or, in
    vLLM, the shard of the vocabulary padded to a multiple of 64: a producer recording the
    kernel's shape (a table timed inside vLLM) legitimately writes those, so they pass too.
    """
    padded = -(-vocab // VOCAB_PADDING) * VOCAB_PADDING
    return sorted({vocab // tp, -(-vocab // tp), -(-padded // tp)})


def layer_op_shapes(shape: dict, tp: int, spec: Any | None = None
                    ) -> dict[str, tuple[list[int], list[int]]]:
    """``layer_ops`` op -> (allowed n, allowed k) per GPU for a model at ``tp``.

    The expectations are those the producers write: the GPU profiler
    (``profiler.layer.LayerShape.op_dims``) and the Vidur, LLMServingSim importers. GEMMs
    are ``tokens x k @ k x n``; element-wise ops, norms and the embedding lookup have
    ``n`` = width and ``k`` = 0. ``spec`` (the catalogue ModelSpec, None for a model not
    built in) decides whether the MLP is gated; without it both widths are accepted.
    ``moe_experts`` (one expert's FFN slice) is listed for every model; the caller rejects
    it for a dense catalogue model.
    """
    q = shape["n_heads"] // tp
    kv = kv_heads_per_gpu(shape["n_kv_heads"], tp)
    hd, hidden, ffn = shape["head_dim"], shape["hidden"], shape["ffn"]
    f = ffn // tp
    gate_up = sorted({f, 2 * f}) if spec is None else [2 * f if spec.gated_mlp else f]
    return {
        "embedding": ([hidden], [0]),
        "input_norm": ([hidden], [0]),
        "post_norm": ([hidden], [0]),
        "add": ([hidden], [0]),
        "qkv_proj": ([(q + 2 * kv) * hd], [hidden]),
        "rope": ([(q + kv) * hd], [0]),
        "o_proj": ([hidden], [q * hd]),
        "gate_up_proj": (gate_up, [hidden]),
        "act": ([f], [0]),
        "down_proj": ([hidden], [f]),
        "moe_experts": ([f], [hidden]),
        "lm_head": (lm_head_widths(shape["vocab"], tp), [hidden]),
    }


def _check_model_rows(where: str, df: pd.DataFrame, meta: ProfileMeta, shape: dict) -> None:
    """Per-GPU shapes in the rows must be those of ``shape`` sharded over ``meta.tp``."""
    tp = meta.tp
    q = shape["n_heads"] // tp
    kv = kv_heads_per_gpu(shape["n_kv_heads"], tp)
    hd = shape["head_dim"]
    label = f"model {meta.model} at tp={tp}"

    def expect(mask: np.ndarray, col: str, allowed: str) -> None:
        if mask.any():
            row = _first(mask)
            raise _fail(where, col, row, df[col].iloc[row], f"{label} needs {allowed}")

    if meta.family in ATTENTION_FAMILIES:
        expect((df["n_q_heads"] != q).to_numpy(), "n_q_heads", f"n_q_heads={q}")
        expect((df["n_kv_heads"] != kv).to_numpy(), "n_kv_heads", f"n_kv_heads={kv}")
        expect((df["head_dim"] != hd).to_numpy(), "head_dim", f"head_dim={hd}")
        return
    if meta.family != "layer_ops":
        return
    spec = _catalogue_model(meta.model)
    op = df["op"].to_numpy()
    moe = op == "moe_experts"
    if spec is not None and not spec.is_moe:
        expect(moe, "op", "no moe_experts rows (it is a dense model, without experts)")
    cols = {"n": df["n"].to_numpy(), "k": df["k"].to_numpy()}
    for name, (ns, ks) in layer_op_shapes(shape, tp, spec).items():
        for col, ok in (("n", ns), ("k", ks)):
            mask = (op == name) & ~np.isin(cols[col], ok)
            expect(mask, col, f"{col} in {ok} for op {name}")
    if spec is not None and spec.is_moe:  # experts are global (not sharded by TP)
        for col, value in (("experts", spec.num_experts), ("topk", spec.experts_top_k)):
            expect(moe & (df[col].to_numpy() != value), col, f"{col}={value} for op moe_experts")


def validate_frame(df: pd.DataFrame, meta: ProfileMeta, where: str) -> pd.DataFrame:
    """Check ``df`` against ``meta``'s family (and model); return it with canonical dtypes.

    Raises ConfigError naming ``where``, the column and the first bad row (0-based position).
    """
    shape = validate_meta(meta, where)
    if not isinstance(df, pd.DataFrame):
        raise ConfigError(f"{where}: table", type(df).__name__, "must be a pandas DataFrame")
    if len(df) == 0:
        raise ConfigError(f"{where}: table", 0, "has no rows; a profile needs at least one")
    df = df.reset_index(drop=True)
    spec = FAMILY_COLUMNS[meta.family]
    needed = [*spec, *STAT_COLUMNS]
    for col in needed:
        if col not in df.columns:
            raise ConfigError(f"{where}: column {col}", None,
                              f"missing; family {meta.family} needs columns " + ", ".join(needed))
    out = df.copy()
    for col, (kind, minimum) in spec.items():
        if kind == _INT:
            out[col] = _int_column(where, df, col, minimum)
        else:
            out[col] = _str_column(where, df, col, OPS.get(meta.family))
    for col in TIME_COLUMNS:
        s = df[col]
        if pd.api.types.is_bool_dtype(s.dtype) or not pd.api.types.is_numeric_dtype(s.dtype):
            # e.g. an object column from pandas: blame the first cell that is no real number
            # (all real numbers: they are converted, as a numeric column would be)
            bad = [i for i, v in enumerate(s) if not _is_real(v)]
            if bad:
                raise _fail(where, col, bad[0], s.iloc[bad[0]],
                            f"must be a number (column dtype {s.dtype})")
            s = pd.Series([float(v) for v in s], index=s.index, dtype="float64")
        values = s.to_numpy(dtype="float64", na_value=np.nan)
        bad = ~np.isfinite(values) | (values < 0)
        if bad.any():
            row = _first(bad)
            raise _fail(where, col, row, values[row], "must be a finite time >= 0 (microseconds)")
        out[col] = values
    out["count"] = _int_column(where, df, "count", 1)
    lo, med, hi = out["min_us"].to_numpy(), out["median_us"].to_numpy(), out["max_us"].to_numpy()
    if (lo > med).any():
        row = _first(lo > med)
        raise _fail(where, "min_us", row, lo[row], f"must be <= median_us={med[row]!r}")
    if (med > hi).any():
        row = _first(med > hi)
        raise _fail(where, "median_us", row, med[row], f"must be <= max_us={hi[row]!r}")
    if meta.family == "layer_ops":
        moe = (out["op"] == "moe_experts").to_numpy()
        for col in MOE_COLUMNS:
            if col in df.columns:
                out[col] = _int_column(where, df, col, 0)
                if (moe & (out[col].to_numpy() < 1)).any():
                    row = _first(moe & (out[col].to_numpy() < 1))
                    raise _fail(where, col, row, out[col].iloc[row], "must be >= 1 for moe_experts")
            elif moe.any():
                raise ConfigError(f"{where}: column {col}", None,
                                  "missing; moe_experts rows need columns experts and topk")
            else:
                out[col] = np.zeros(len(out), dtype="int64")
    if shape:
        _check_model_rows(where, out, meta, shape)
    return out


def write_profile(df: pd.DataFrame, path: str | Path, meta: ProfileMeta) -> Path:
    """Validate ``df`` and write it to ``path`` as zstd Parquet with ``meta`` inside.

    The write is atomic (temporary file, then rename), so a reader never sees half a file.
    """
    path = Path(path)
    table_df = validate_frame(df, meta, str(path))
    table = pa.Table.from_pandas(table_df, preserve_index=False)
    metadata = dict(table.schema.metadata or {})
    metadata.pop(b"pandas", None)
    metadata[METADATA_KEY] = meta.to_json().encode()
    table = table.replace_schema_metadata(metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_meta(path: str | Path) -> tuple[ProfileMeta, int]:
    """The metadata and row count of a profile file, without reading its rows."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("profile", str(path), "no such file")
    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise ConfigError("profile", str(path), f"is not a Parquet file: {err}") from err
    raw = (pf.schema_arrow.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ConfigError(f"{path}: metadata", None,
                          f"not a vidur_search profile: no {METADATA_KEY!r} key")
    return ProfileMeta.from_json(raw, str(path)), pf.metadata.num_rows


def read_profile(path: str | Path) -> tuple[pd.DataFrame, ProfileMeta]:
    """Read and validate a profile file; ConfigError names the file, column and row."""
    meta, _ = read_meta(path)
    try:
        df = pq.read_table(path).to_pandas()
    except (OSError, pa.ArrowException) as err:  # a damaged body behind a good footer
        raise ConfigError("profile", str(path), f"cannot be read as Parquet: {err}") from err
    return validate_frame(df, meta, str(path)), meta

