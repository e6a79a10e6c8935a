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

from profiler.import_vidur import Imported, run_import, save_checked
from simulator.catalogue import Catalogue, load_catalogue
from simulator.errors import ConfigError
from simulator.profiles import ProfileMeta, ProfileStore

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


def aggregate(rows: pd.DataFrame, keys: list[str], latency_ms: np.ndarray,
              where: str) -> pd.DataFrame:
    """Merge rows with equal ``keys``: statistics of their latencies (ms -> us), count.

    ``latency_ms`` is aligned with ``rows``; a bad value is reported as ``where``'s
    latency[row i] (i counted within the rows kept, of one dtype)."""
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
    return df[keep].reset_index(drop=True)


def attention_prefill_rows(df: pd.DataFrame, where: str,
                           dtype: str = "bf16") -> tuple[pd.DataFrame, int]:
    """Context attention table -> (attention_prefill rows, source rows used) of the rows
    with a ``dtype`` KV cache."""
    src = _attention(df, where, dtype)
    rows = pd.DataFrame({
        "n_q_heads": src["num_heads"], "n_kv_heads": src["num_key_value_heads"],
        "head_dim": src["head_dim"], "batch_size": src["batch_size"],
        "chunk_tokens": src["isl"], "prior_kv": 0, "kernel_source": src["kernel_source"],
    })
    keys = list(rows.columns)
    return aggregate(rows, keys, src["latency"].to_numpy("float64"), where), len(src)


def attention_decode_rows(df: pd.DataFrame, where: str,
                          dtype: str = "bf16") -> tuple[pd.DataFrame, int]:
    """Generation attention table -> (attention_decode rows, source rows used) of the rows
    with a ``dtype`` KV cache."""
    src = _attention(df, where, dtype)
    rows = pd.DataFrame({
        "n_q_heads": src["num_heads"], "n_kv_heads": src["num_key_value_heads"],
        "head_dim": src["head_dim"], "batch_size": src["batch_size"],
        "kv_len": src["isl"] + src["step"], "kernel_source": src["kernel_source"],
    })
    keys = list(rows.columns)
    return aggregate(rows, keys, src["latency"].to_numpy("float64"), where), len(src)


def layer_ops_rows(gemm: pd.DataFrame | None, moe: pd.DataFrame | None,
                   where: str, dtype: str = "bf16") -> tuple[pd.DataFrame, int]:
    """GEMM (op "gemm") and fused-MoE (op "moe_experts") rows of weight dtype ``dtype``,
    one table (no rows when neither source has that dtype)."""
    parts, n_src = [], 0
    keys = ["op", "num_tokens", "n", "k", "experts", "topk", "moe_tp", "moe_ep",
            "distribution", "kernel_source"]
    if gemm is not None:
        _need(gemm, ("gemm_dtype", "m", "n", "k", "kernel_source", "latency"), where)
        src = gemm[gemm["gemm_dtype"] == SOURCE_DTYPE[dtype]].reset_index(drop=True)
        rows = pd.DataFrame({
            "op": "gemm", "num_tokens": src["m"], "n": src["n"], "k": src["k"],
            "experts": 0, "topk": 0, "moe_tp": 0, "moe_ep": 0, "distribution": "",
            "kernel_source": src["kernel_source"],
        })
        parts.append(aggregate(rows, keys, src["latency"].to_numpy("float64"), where))
        n_src += len(src)
    if moe is not None:
        _need(moe, ("moe_dtype", "num_tokens", "hidden_size", "inter_size", "topk",
                    "num_experts", "moe_tp_size", "moe_ep_size", "distribution",
                    "kernel_source", "latency"), where)
        src = moe[moe["moe_dtype"] == SOURCE_DTYPE[dtype]].reset_index(drop=True)
        uneven = (src["inter_size"] % src["moe_tp_size"] != 0).to_numpy()
        if uneven.any():
            row = int(np.flatnonzero(uneven)[0])
            raise ConfigError(f"{where}: inter_size[row {row}]", int(src["inter_size"][row]),
                              f"must divide by moe_tp_size={int(src['moe_tp_size'][row])}")
        rows = pd.DataFrame({
            "op": "moe_experts", "num_tokens": src["num_tokens"],
            "n": src["inter_size"] // src["moe_tp_size"], "k": src["hidden_size"],
            "experts": src["num_experts"], "topk": src["topk"], "moe_tp": src["moe_tp_size"],
            "moe_ep": src["moe_ep_size"], "distribution": src["distribution"],
            "kernel_source": src["kernel_source"],
        })
        parts.append(aggregate(rows, keys, src["latency"].to_numpy("float64"), where))
        n_src += len(src)
    return pd.concat(parts, ignore_index=True), n_src


def collective_rows(allreduce: pd.DataFrame | None, nccl: pd.DataFrame | None,
                    where: str) -> tuple[pd.DataFrame, int, int]:
    """(collective rows, source rows used, NCCL rows skipped for their op)."""
    parts, n_src, skipped = [], 0, 0
    keys = ["op", "num_gpus", "gpus_per_node", "size_bytes", "backend", "kernel_source"]
    if allreduce is not None:
        _need(allreduce, ("allreduce_dtype", "num_gpus", "message_size", "backend",
                          "kernel_source", "latency"), where)
        src = allreduce[allreduce["allreduce_dtype"] == "bfloat16"].reset_index(drop=True)
        rows = pd.DataFrame({
            "op": "all_reduce", "num_gpus": src["num_gpus"], "gpus_per_node": src["num_gpus"],
            "size_bytes": src["message_size"] * 2, "backend": src["backend"],
            "kernel_source": src["kernel_source"],
        })
        parts.append(aggregate(rows, keys, src["latency"].to_numpy("float64"), where))
        n_src += len(src)
    if nccl is not None:
        _need(nccl, ("nccl_dtype", "op_name", "num_gpus", "message_size", "kernel_source",
                     "latency"), where)
        half = nccl[nccl["nccl_dtype"] == "half"]
        src = half[half["op_name"].isin(NCCL_OPS)].reset_index(drop=True)
        skipped = len(half) - len(src)
        rows = pd.DataFrame({
            "op": src["op_name"], "num_gpus": src["num_gpus"], "gpus_per_node": src["num_gpus"],
            "size_bytes": src["message_size"] * 2, "backend": "nccl",
            "kernel_source": src["kernel_source"],
        })
        parts.append(aggregate(rows, keys, src["latency"].to_numpy("float64"), where))
        n_src += len(src)
    return pd.concat(parts, ignore_index=True), n_src, skipped


def _read(system_dir: Path, kind: str) -> tuple[pd.DataFrame | None, str]:
    path = system_dir / FILES[kind]
    if not path.is_file():
        return None, ""
    df = pd.read_parquet(path)
    versions = sorted(set(df["version"].astype(str))) if "version" in df.columns else []
    return df, f"{FILES[kind]} (version {', '.join(versions) or 'unknown'})"


def import_aiconfigurator(src: str | Path, dest: str | Path, *,
                          systems: Sequence[str] | None = None, strict: bool = False,
                          force: bool = False, dtypes: Sequence[str] = DTYPES,
                          catalogue: Catalogue | None = None) -> list[Imported]:
    """Convert the bf16 and fp8 rows of every system under ``src`` into the store at
    ``dest``, one file per family and dtype (``dtypes`` restricts them).

    ``systems`` restricts the import to those system directories. Unknown system
    directories are skipped with a warning (``strict``: ConfigError). Returns the files.
    """
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
    store = ProfileStore(dest)
    written: list[Imported] = []
    for system_dir in dirs:
        sku = SYSTEMS.get(system_dir.name)
        if sku is None or sku not in cat.skus:
            msg = f"{system_dir}: unknown aiconfigurator system {system_dir.name!r}"
            if strict:
                raise ConfigError("system", system_dir.name,
                                  "has no catalogue SKU; known: " + ", ".join(SYSTEMS))
            _warn(msg + " (skipped)")
            continue
        tables = {kind: _read(system_dir, kind) for kind in FILES}
        where = str(system_dir)

        def meta(family: str, origins: list[str], node: str = "", dtype: str = "bf16", *,
                 _sys: str = system_dir.name, _sku: str = sku) -> ProfileMeta:
            origin = f"{TOOL}:{_sys}/" + " + ".join(o for o in origins if o)
            return ProfileMeta(family=family, source="imported", device=_sku, model="",
                               tp=1, dtype=dtype, node=node, origin=origin)

        results: list[tuple[pd.DataFrame, int, ProfileMeta]] = []
        for dt in dtypes:
            for kind, family, convert in (
                    ("context", "attention_prefill", attention_prefill_rows),
                    ("generation", "attention_decode", attention_decode_rows)):
                df, origin = tables[kind]
                if df is not None:
                    rows, n_src = convert(df, f"{where}/{FILES[kind]}", dt)
                    if n_src:
                        results.append((rows, n_src, meta(family, [origin], dtype=dt)))
            (gemm, o_gemm), (moe, o_moe) = tables["gemm"], tables["moe"]
            if gemm is not None or moe is not None:
                rows, n_src = layer_ops_rows(gemm, moe, where, dt)
                if n_src:
                    results.append((rows, n_src, meta("layer_ops", [o_gemm, o_moe], dtype=dt)))
        (ar, o_ar), (nccl, o_nccl) = tables["allreduce"], tables["nccl"]
        if ar is not None or nccl is not None:
            node = cat.default_node_for(sku)
            rows, n_src, skipped = collective_rows(ar, nccl, where)
            too_big = rows["num_gpus"] > cat.node(node).gpus_per_node
            if too_big.any():
                raise ConfigError(f"{where}: num_gpus", int(rows["num_gpus"][too_big].iloc[0]),
                                  f"exceeds the {cat.node(node).gpus_per_node} GPUs of {node}")
            if skipped:
                _warn(f"{system_dir.name}: {skipped} NCCL rows of ops other than "
                      f"{', '.join(NCCL_OPS)} skipped")
            results.append((rows, n_src, meta("collective", [o_ar, o_nccl], node)))
        for rows, n_src, m in results:
            path = save_checked(store, rows, m, force=force)
            written.append(Imported(path, len(rows), n_src))
    return written


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
                                                    dtypes=dtypes), args.dest)


if __name__ == "__main__":
    sys.exit(main())
