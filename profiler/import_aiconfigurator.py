"""Import NVIDIA aiconfigurator's vLLM operator tables (bf16 and fp8 rows) into a store.

    python -m profiler.import_aiconfigurator SRC_DIR DEST [--systems h100_sxm,...]
        [--dtypes bf16,fp8] [--strict]

SRC_DIR holds ``<system>/{attention,gemm,moe,comm,nccl}/*.parquet`` (the layout of
``shared/reference/aiconfigurator``; see its README). Systems map to catalogue SKUs via
``SYSTEMS``; each system's collectives go to the SKU's default catalogue node (the tables
were measured inside one 8-GPU node).

aiconfigurator's tables are not per model: they sweep operator shapes. They are stored as
*shape-keyed* profiles (``model=""``, ``tp=1``) with the per-GPU shape in every row::

    DEST/<sku>/ops/tp1/attention_prefill.parquet  context attention (bf16 q, bf16 KV, full)
    DEST/<sku>/ops/tp1/attention_decode.parquet   generation attention (same filters)
    DEST/<sku>/ops/tp1/layer_ops.parquet          op "gemm" (bf16 GEMM by shape) and
                                                  op "moe_experts" (bf16 fused MoE)
    DEST/<sku>/network-<node>/tp1/collective.parquet  vLLM custom all-reduce + NCCL
    DEST/<sku>/ops/tp1/<family>-fp8.parquet       the same attention and layer_ops tables
                                                  for FP8 (ProfileMeta.dtype "fp8")

FP8 files: attention rows with an fp8 KV cache (queries and math stay bf16); GEMM and MoE
rows of per-tensor FP8 weights (``fp8``: W8A8, activations quantised on the fly). The
block-scaled ``fp8_block`` rows (DeepSeek-style, timed without CUDA graphs) and the 4-bit
formats are left out, and so is every fp8 table a system lacks (A100 has none).
Collectives are bf16 only.

``ProfileStore.load_shapes(device, family, model=..., tp=...)`` picks a model's attention
rows. GEMM rows keep op ``gemm``: a shape alone does not say which projection of which
model it is (an 8192 x 8192 GEMM is Llama-2-70B's O projection at TP1 and many others).

Mapping: context rows -> chunk_tokens = isl, prior_kv = 0 (prefill from scratch);
generation rows -> kv_len = isl + step (the context each sequence attends); GEMM rows ->
num_tokens = m, n, k; MoE rows -> num_tokens, n = inter_size / moe_tp_size (one expert's
FFN width on this GPU), k = hidden_size, experts = num_experts (global), topk, plus
columns moe_tp, moe_ep and distribution; all-reduce / NCCL rows -> num_gpus,
gpus_per_node = num_gpus, size_bytes = 2 x message_size (bf16/half elements), plus a
``backend`` column (``vllm_graph``, ``vllm_eager`` or ``nccl``). Every family keeps
``kernel_source``. NCCL reduce_scatter and alltoall rows are skipped (not in the schema's
collective ops).

Statistics: aiconfigurator publishes one mean latency (ms) per row. Rows with the same key
(the README notes A100's 408 repeated context rows and the NCCL sweeps repeated 2-3 times)
are merged: min/median/mean/max/std (ddof 0) are over the published means, in
microseconds, and ``count`` is the number of rows merged (1 for most keys). So the sum of
``count`` over a file equals the number of source rows imported.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from profiler.import_vidur import (
    Imported,
    Pending,
    Skipped,
    _plain,
    read_table,
    run_import,
    write_all,
)
from simulator.catalogue import Catalogue, load_catalogue
from simulator.errors import ConfigError
from simulator.paths import check_output_dir
from simulator.profiles import ProfileMeta

TOOL = "aiconfigurator"
SYSTEMS = {"a100_sxm": "a100-80gb", "h100_sxm": "h100-sxm", "h200_sxm": "h200",
           "b200_sxm": "b200"}
FILES = {
    "context": "attention/context_attention_perf.parquet",
    "generation": "attention/generation_attention_perf.parquet",
    "gemm": "gemm/gemm_perf.parquet",
    "moe": "moe/moe_perf.parquet",
    "allreduce": "comm/custom_allreduce_perf.parquet",
    "nccl": "nccl/nccl_perf.parquet",
}
NCCL_OPS = ("all_reduce", "all_gather")  # others (reduce_scatter, alltoall) are skipped
DTYPES = ("bf16", "fp8")
# profile dtype -> the value of aiconfigurator's kv_cache_dtype / gemm_dtype / moe_dtype
SOURCE_DTYPE = {"bf16": "bfloat16", "fp8": "fp8"}


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


def _need(df: pd.DataFrame, cols: Sequence[str], where: str) -> None:
    for col in cols:
        if col not in df.columns:
            raise ConfigError(f"{where}: column {col}", None,
                              "missing from this aiconfigurator table")


def _kept(df: pd.DataFrame, keep: pd.Series | np.ndarray) -> pd.DataFrame:
    """The rows of ``df`` where ``keep``, renumbered from 0, with their row in the source
    table in column ``_src_row`` (for messages)."""
    mask = np.asarray(keep, dtype=bool)
    out = df[mask].reset_index(drop=True)
    out["_src_row"] = np.flatnonzero(mask)
    return out


def _cell(src: pd.DataFrame, i: int, col: str, where: str, table: str) -> str:
    """``where: col[row r]`` (``where``: the source table) or ``where: col[row r of
    table]`` (``where``: the system directory), r the row in the source table."""
    r = int(src["_src_row"].iloc[i]) if "_src_row" in src.columns else i
    return f"{where}: {col}[row {r}" + (f" of {table}]" if table else "]")


def _whole(src: pd.DataFrame, col: str, where: str, minimum: int,
           table: str = "") -> np.ndarray:
    """Column ``col`` of the kept source rows as int64; a cell that is not a whole number
    >= ``minimum`` is a ConfigError naming the source table, the column and the row."""
    s = src[col]
    dtype_note = ""
    if pd.api.types.is_bool_dtype(s.dtype) or not pd.api.types.is_numeric_dtype(s.dtype):
        dtype_note = f" (column dtype {s.dtype})"
        for i, v in enumerate(s):
            if isinstance(v, bool | np.bool_) or not isinstance(v, int | float | np.number):
                raise ConfigError(_cell(src, i, col, where, table), _plain(v),
                                  f"must be a whole number >= {minimum}{dtype_note}")
    values = pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64")
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(values) | (values != np.round(values)) | (values < minimum)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ConfigError(_cell(src, i, col, where, table), _plain(s.iloc[i]),
                          f"must be a whole number >= {minimum}{dtype_note}")
    return values.astype("int64")


def _latency(src: pd.DataFrame, where: str, table: str = "") -> np.ndarray:
    """The kept rows' ``latency`` (ms); a cell that is no finite time >= 0 is a
    ConfigError naming the source table and row."""
    s = src["latency"]
    values = pd.to_numeric(s, errors="coerce").to_numpy(dtype="float64")
    if pd.api.types.is_bool_dtype(s.dtype):
        values[:] = np.nan
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ConfigError(_cell(src, i, "latency", where, table), _plain(s.iloc[i]),
                          "must be a finite time >= 0 (ms)")
    return values


def aggregate(rows: pd.DataFrame, keys: list[str], latency_ms: np.ndarray,
              where: str) -> pd.DataFrame:
    """Merge rows with equal ``keys``: statistics of their latencies (ms -> us), count.

    ``latency_ms`` is aligned with ``rows``; a bad value is reported as ``where``'s
    latency[row i] (i counted within the rows kept, of one dtype; the converters check
    the source rows first, with ``_latency``, naming the row in the source table)."""
    bad = ~np.isfinite(latency_ms) | (latency_ms < 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ConfigError(f"{where}: latency[row {row} of the rows kept]", float(latency_ms[row]),
                          "must be a finite time >= 0 (ms)")
    frame = rows[keys].copy()
    frame["_us"] = latency_ms * 1000.0
    grouped = frame.groupby(keys, sort=True)["_us"]
    out = grouped.agg(min_us="min", median_us="median", mean_us="mean", max_us="max",
                      count="size")
    out["std_us"] = grouped.std(ddof=0)
    out = out.reset_index()
    out["count"] = out["count"].astype("int64")
    return out[[*keys, "min_us", "median_us", "mean_us", "max_us", "std_us", "count"]]


def _attention(df: pd.DataFrame, where: str, dtype: str) -> pd.DataFrame:
    """Full-attention rows with bf16 queries and a ``dtype`` KV cache."""
    _need(df, ("batch_size", "isl", "num_heads", "num_key_value_heads", "head_dim", "step",
               "attn_dtype", "kv_cache_dtype", "kernel_source", "latency"), where)
    keep = (df["attn_dtype"] == "bfloat16") & (df["kv_cache_dtype"] == SOURCE_DTYPE[dtype])
    if "window_size" in df.columns:  # absent on A100: full attention only
        keep &= df["window_size"] == 0
    return _kept(df, keep)


def _heads(src: pd.DataFrame, where: str) -> dict[str, np.ndarray]:
    return {"n_q_heads": _whole(src, "num_heads", where, 1),
            "n_kv_heads": _whole(src, "num_key_value_heads", where, 1),
            "head_dim": _whole(src, "head_dim", where, 1),
            "batch_size": _whole(src, "batch_size", where, 1)}


def attention_prefill_rows(df: pd.DataFrame, where: str,
                           dtype: str = "bf16") -> tuple[pd.DataFrame, int]:
    """Context attention table -> (attention_prefill rows, source rows used) of the rows
    with a ``dtype`` KV cache."""
    src = _attention(df, where, dtype)
    rows = pd.DataFrame({
        **_heads(src, where), "chunk_tokens": _whole(src, "isl", where, 1), "prior_kv": 0,
        "kernel_source": src["kernel_source"],
    })
    keys = list(rows.columns)
    return aggregate(rows, keys, _latency(src, where), where), len(src)


def attention_decode_rows(df: pd.DataFrame, where: str,
                          dtype: str = "bf16") -> tuple[pd.DataFrame, int]:
    """Generation attention table -> (attention_decode rows, source rows used) of the rows
    with a ``dtype`` KV cache."""
    src = _attention(df, where, dtype)
    rows = pd.DataFrame({
        **_heads(src, where),
        "kv_len": _whole(src, "isl", where, 1) + _whole(src, "step", where, 0),
        "kernel_source": src["kernel_source"],
    })
    keys = list(rows.columns)
    return aggregate(rows, keys, _latency(src, where), where), len(src)


def layer_ops_rows(gemm: pd.DataFrame | None, moe: pd.DataFrame | None,
                   where: str, dtype: str = "bf16") -> tuple[pd.DataFrame, int]:
    """GEMM (op "gemm") and fused-MoE (op "moe_experts") rows of weight dtype ``dtype``,
    one table (no rows when neither source has that dtype). ``where``: the system
    directory (messages name the table under it)."""
    parts, n_src = [], 0
    keys = ["op", "num_tokens", "n", "k", "experts", "topk", "moe_tp", "moe_ep",
            "distribution", "kernel_source"]
    if gemm is not None:
        at, tab = f"{where}/{FILES['gemm']}", FILES["gemm"]
        _need(gemm, ("gemm_dtype", "m", "n", "k", "kernel_source", "latency"), at)
        src = _kept(gemm, gemm["gemm_dtype"] == SOURCE_DTYPE[dtype])
        rows = pd.DataFrame({
            "op": "gemm", "num_tokens": _whole(src, "m", where, 1, tab),
            "n": _whole(src, "n", where, 1, tab), "k": _whole(src, "k", where, 0, tab),
            "experts": 0, "topk": 0, "moe_tp": 0, "moe_ep": 0, "distribution": "",
            "kernel_source": src["kernel_source"],
        })
        parts.append(aggregate(rows, keys, _latency(src, where, tab), at))
        n_src += len(src)
    if moe is not None:
        at, tab = f"{where}/{FILES['moe']}", FILES["moe"]
        _need(moe, ("moe_dtype", "num_tokens", "hidden_size", "inter_size", "topk",
                    "num_experts", "moe_tp_size", "moe_ep_size", "distribution",
                    "kernel_source", "latency"), at)
        src = _kept(moe, moe["moe_dtype"] == SOURCE_DTYPE[dtype])
        inter = _whole(src, "inter_size", where, 1, tab)
        moe_tp = _whole(src, "moe_tp_size", where, 1, tab)
        uneven = inter % moe_tp != 0
        if uneven.any():
            row = int(np.flatnonzero(uneven)[0])
            raise ConfigError(_cell(src, row, "inter_size", where, tab), int(inter[row]),
                              f"must divide by moe_tp_size={int(moe_tp[row])}")
        rows = pd.DataFrame({
            "op": "moe_experts", "num_tokens": _whole(src, "num_tokens", where, 1, tab),
            "n": inter // moe_tp, "k": _whole(src, "hidden_size", where, 0, tab),
            "experts": _whole(src, "num_experts", where, 1, tab),
            "topk": _whole(src, "topk", where, 1, tab),
            "moe_tp": moe_tp, "moe_ep": _whole(src, "moe_ep_size", where, 1, tab),
            "distribution": src["distribution"], "kernel_source": src["kernel_source"],
        })
        parts.append(aggregate(rows, keys, _latency(src, where, tab), at))
        n_src += len(src)
    return pd.concat(parts, ignore_index=True), n_src


def collective_rows(allreduce: pd.DataFrame | None, nccl: pd.DataFrame | None,
                    where: str) -> tuple[pd.DataFrame, int, int]:
    """(collective rows, source rows used, NCCL rows skipped for their op). ``where``: the
    system directory (messages name the table under it)."""
    parts, n_src, skipped = [], 0, 0
    keys = ["op", "num_gpus", "gpus_per_node", "size_bytes", "backend", "kernel_source"]
    if allreduce is not None:
        at, tab = f"{where}/{FILES['allreduce']}", FILES["allreduce"]
        _need(allreduce, ("allreduce_dtype", "num_gpus", "message_size", "backend",
                          "kernel_source", "latency"), at)
        src = _kept(allreduce, allreduce["allreduce_dtype"] == "bfloat16")
        gpus = _whole(src, "num_gpus", where, 1, tab)
        rows = pd.DataFrame({
            "op": "all_reduce", "num_gpus": gpus, "gpus_per_node": gpus,
            "size_bytes": _whole(src, "message_size", where, 1, tab) * 2,
            "backend": src["backend"],
            "kernel_source": src["kernel_source"],
        })
        parts.append(aggregate(rows, keys, _latency(src, where, tab), at))
        n_src += len(src)
    if nccl is not None:
        at, tab = f"{where}/{FILES['nccl']}", FILES["nccl"]
        _need(nccl, ("nccl_dtype", "op_name", "num_gpus", "message_size", "kernel_source",
                     "latency"), at)
        half = (nccl["nccl_dtype"] == "half").to_numpy()
        keep = half & nccl["op_name"].isin(NCCL_OPS).to_numpy()
        src = _kept(nccl, keep)
        skipped = int(half.sum()) - len(src)
        gpus = _whole(src, "num_gpus", where, 1, tab)
        rows = pd.DataFrame({
            "op": src["op_name"], "num_gpus": gpus, "gpus_per_node": gpus,
            "size_bytes": _whole(src, "message_size", where, 1, tab) * 2, "backend": "nccl",
            "kernel_source": src["kernel_source"],
        })
        parts.append(aggregate(rows, keys, _latency(src, where, tab), at))
        n_src += len(src)
    return pd.concat(parts, ignore_index=True), n_src, skipped


def _read(system_dir: Path, kind: str) -> tuple[pd.DataFrame | None, str]:
    path = system_dir / FILES[kind]
    if not path.is_file():
        return None, ""
    df = read_table(path, "aiconfigurator", allow_empty=True)
    versions = sorted(set(df["version"].astype(str))) if "version" in df.columns else []
    return df, f"{FILES[kind]} (version {', '.join(versions) or 'unknown'})"


def import_aiconfigurator(src: str | Path, dest: str | Path, *,
                          systems: Sequence[str] | None = None, strict: bool = False,
                          force: bool = False, dtypes: Sequence[str] = DTYPES,
                          catalogue: Catalogue | None = None,
                          require_files: bool = False) -> list[Imported]:
    """Convert the bf16 and fp8 rows of every system under ``src`` into the store at
    ``dest``, one file per family and dtype (``dtypes`` restricts them).

    ``systems`` restricts the import to those system directories. Unknown system
    directories are skipped with a warning (``strict``: ConfigError). Every table is read,
    converted and validated before any file is written; ``require_files``: ConfigError
    saying what was skipped when there is nothing to write. Returns the files.
    """
    if not dtypes:
        raise ConfigError("--dtypes", ",".join(dtypes), "must name at least one dtype; "
                          "allowed values are " + ", ".join(DTYPES))
    for dt in dtypes:
        if dt not in DTYPES:
            raise ConfigError("--dtypes", dt, "allowed values are " + ", ".join(DTYPES))
    cat = catalogue or load_catalogue()
    root = Path(src)
    if not root.is_dir():
        raise ConfigError("SRC_DIR", str(root), "must be a directory of aiconfigurator tables")
    dirs = sorted(p for p in root.iterdir()
                  if p.is_dir() and any((p / f).is_file() for f in FILES.values()))
    if systems:
        missing = sorted(set(systems) - {p.name for p in dirs})
        if missing:
            raise ConfigError("--systems", missing[0],
                              "not under SRC_DIR; found " + ", ".join(p.name for p in dirs))
        dirs = [p for p in dirs if p.name in systems]
    if not dirs:
        raise ConfigError("SRC_DIR", str(root),
                          "holds no <system>/{attention,gemm,moe,comm,nccl}/*.parquet tables")
    check_output_dir("DEST", dest)
    pending: list[Pending] = []
    skipped = Skipped()
    for system_dir in dirs:
        sku = SYSTEMS.get(system_dir.name)
        if sku is None or sku not in cat.skus:
            msg = f"{system_dir}: unknown aiconfigurator system {system_dir.name!r}"
            if strict:
                raise ConfigError("system", system_dir.name,
                                  "has no catalogue SKU; known: " + ", ".join(SYSTEMS))
            _warn(msg + " (skipped)")
            skipped.add(f"{system_dir.name} (unknown system)", "system", SYSTEMS)
            continue
        tables = {kind: _read(system_dir, kind) for kind in FILES}
        where = str(system_dir)

        def meta(family: str, origins: list[str], node: str = "", dtype: str = "bf16", *,
                 _sys: str = system_dir.name, _sku: str = sku) -> ProfileMeta:
            origin = f"{TOOL}:{_sys}/" + " + ".join(o for o in origins if o)
            return ProfileMeta(family=family, source="imported", device=_sku, model="",
                               tp=1, dtype=dtype, node=node, origin=origin)

        def sources(*kinds: str, _dir: Path = system_dir, _tables: dict = tables) -> str:
            names = [FILES[k] for k in kinds if _tables[k][0] is not None]
            return f"{_dir}/" + (names[0] if len(names) == 1 else "{" + ",".join(names) + "}")

        before = len(pending)
        for dt in dtypes:
            for kind, family, convert in (
                    ("context", "attention_prefill", attention_prefill_rows),
                    ("generation", "attention_decode", attention_decode_rows)):
                df, origin = tables[kind]
                if df is not None:
                    rows, n_src = convert(df, f"{where}/{FILES[kind]}", dt)
                    if n_src:
                        pending.append(Pending(rows, meta(family, [origin], dtype=dt), n_src,
                                               sources(kind)))
            (gemm, o_gemm), (moe, o_moe) = tables["gemm"], tables["moe"]
            if gemm is not None or moe is not None:
                rows, n_src = layer_ops_rows(gemm, moe, where, dt)
                if n_src:
                    pending.append(Pending(rows, meta("layer_ops", [o_gemm, o_moe], dtype=dt),
                                           n_src, sources("gemm", "moe")))
        (ar, o_ar), (nccl, o_nccl) = tables["allreduce"], tables["nccl"]
        if ar is not None or nccl is not None:
            node = cat.default_node_for(sku)
            rows, n_src, n_skipped = collective_rows(ar, nccl, where)
            too_big = rows["num_gpus"] > cat.node(node).gpus_per_node
            if too_big.any():
                raise ConfigError(f"{sources('allreduce', 'nccl')}: num_gpus",
                                  int(rows["num_gpus"][too_big].iloc[0]),
                                  f"exceeds the {cat.node(node).gpus_per_node} GPUs of {node}")
            if n_skipped:
                _warn(f"{system_dir.name}: {n_skipped} NCCL rows of ops other than "
                      f"{', '.join(NCCL_OPS)} skipped")
            pending.append(Pending(rows, meta("collective", [o_ar, o_nccl], node), n_src,
                                   sources("allreduce", "nccl")))
        if len(pending) == before:
            skipped.add(f"{system_dir.name} (no rows of dtype {', '.join(dtypes)})")
    if require_files and not pending:
        raise skipped.error(src)
    return write_all(dest, pending, force=force)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m profiler.import_aiconfigurator",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("src", metavar="SRC_DIR", help="directory of <system>/ tables")
    parser.add_argument("dest", metavar="DEST", help="profile store root to write into")
    parser.add_argument("--systems", default="",
                        help="comma-separated system directories to import (default: all)")
    parser.add_argument("--dtypes", default=",".join(DTYPES),
                        help="comma-separated dtypes to import (default: bf16,fp8)")
    parser.add_argument("--strict", action="store_true",
                        help="an unknown system directory is an error, not skipped")
    parser.add_argument("--force", action="store_true",
                        help="replace files in DEST that another importer wrote")
    args = parser.parse_args(argv)
    systems = [s for s in args.systems.split(",") if s]
    dtypes = [d for d in args.dtypes.split(",") if d]
    return run_import(lambda: import_aiconfigurator(args.src, args.dest, systems=systems,
                                                    strict=args.strict, force=args.force,
                                                    dtypes=dtypes, require_files=True),
                      args.dest)


if __name__ == "__main__":
    sys.exit(main())
