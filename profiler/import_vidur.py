"""Import Vidur's published profiling CSVs into a profile store.

    python -m profiler.import_vidur SRC_DIR DEST [--alias ORG/NAME=catalogue-name] [--strict]

SRC_DIR is Vidur's ``profiling/`` directory (or a directory holding one) with
``compute/<sku>/<org>/<model>/{mlp,attention}.csv`` and ``network/<node>/*.csv``.

- ``mlp.csv``: one row per profiled (num_tokens, TP) of one decoder layer; each of its ten
  operators becomes one ``layer_ops`` row (so 10 rows per CSV row), in one file per
  (sku, model, TP). Per-GPU n/k come from the CSV's shape columns (see ``_OP_SHAPES``).
- ``attention.csv`` (when present): prefill rows -> ``attention_prefill``, decode rows ->
  ``attention_decode``; the stored time is the attention kernel plus the KV-cache write
  (``attn_kv_cache_save``), the two terms Vidur's own predictor adds.
- ``network/<node>/{all_reduce,send_recv}.csv``: one ``collective`` file per node.

Times: Vidur writes milliseconds; the store holds microseconds (x1000). Vidur times each
shape with several calls and publishes min/max/mean/median/std over them; ``count`` is
the number of timed calls in Vidur's profiler code (ACTIVE_STEPS: 20 for MLP, 5 for
attention, 3 for collectives), which the CSVs do not record themselves. Vidur profiles
in fp16, so the files say ``dtype="fp16"`` (store lookups of bf16 fall back to fp16).
Collective ``size`` is in bytes (Vidur's collectives wrapper writes ``size * 2`` for fp16
elements; the largest size, 67108864, is twice its default 4096 x 8192 elements).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.catalogue import Catalogue, ModelSpec, load_catalogue
from simulator.errors import ConfigError
from simulator.paths import check_output_dir, describe_os_error
from simulator.profiles import ProfileMeta, ProfileStore, model_shape_of
from simulator.profiles.schema import TIME_COLUMNS, read_meta, validate_frame

TOOL = "vidur"
# Vidur SKU directory -> catalogue SKU.
SKU_ALIASES = {"a100": "a100-80gb", "h100": "h100-sxm", "h200": "h200", "b200": "b200",
               "l40s": "l40s", "a10g": "a10g", "a100_40gb": "a100-40gb"}
# Vidur network directory -> catalogue node (others: "_" -> "-" when that is a catalogue name).
NODE_ALIASES = {"a100_dgx": "dgx-a100", "h100_dgx": "hgx-h100", "h200_dgx": "hgx-h200",
                "b200_dgx": "hgx-b200"}
# "<org>/<model>" -> catalogue model, for checkpoints not named by a catalogue hf_id.
# CodeLlama-34b-Instruct has the architecture of the base CodeLlama-34b checkpoint.
MODEL_ALIASES = {"codellama/CodeLlama-34b-Instruct-hf": "codellama-34b"}
# Vidur operator -> layer_ops op.
OP_NAMES = {
    "emb": "embedding", "input_layernorm": "input_norm", "attn_pre_proj": "qkv_proj",
    "attn_rope": "rope", "attn_post_proj": "o_proj",
    "post_attention_layernorm": "post_norm", "mlp_up_proj": "gate_up_proj", "mlp_act": "act",
    "mlp_down_proj": "down_proj", "add": "add",
}
STATS = ("min", "median", "mean", "max", "std")  # Vidur suffixes, in TIME_COLUMNS order
MLP_CALLS, ATTENTION_CALLS, COLLECTIVE_CALLS = 20, 5, 3
MLP_SHAPE_COLUMNS = ("n_head", "n_kv_head", "n_embd", "n_expanded_embd",
                     "use_gated_mlp", "num_tokens", "num_tensor_parallel_workers")
ATTN_SHAPE_COLUMNS = ("n_embd", "n_q_head", "n_kv_head", "num_tensor_parallel_workers",
                      "batch_size", "prefill_chunk_size", "kv_cache_size", "is_prefill")
NET_COLUMNS = ("num_workers", "size", "devices_per_node")


@dataclass(frozen=True)
class Imported:
    """One file written by an importer."""

    path: Path
    rows: int  # rows in the profile file
    source_rows: int  # source rows it came from


@dataclass
class Pending:
    """One converted table, checked and written only once every source has converted."""

    table: pd.DataFrame
    meta: ProfileMeta
    source_rows: int
    source: str  # the source file(s) it came from, for messages


@dataclass
class Skipped:
    """What an importer left out and why: the error when nothing at all is imported."""

    items: list[str] = field(default_factory=list)
    known: dict[str, list[str]] = field(default_factory=dict)  # kind -> catalogue names

    def add(self, what: str, kind: str = "", known: Iterable[str] = ()) -> None:
        self.items.append(what)
        if kind:
            self.known[kind] = sorted(known)

    def error(self, src: str | Path, hint: str = "") -> ConfigError:
        """ConfigError for an import that would write no file."""
        why = ("everything found was skipped: " + "; ".join(self.items) if self.items
               else "it holds no table to convert")
        known = "".join(f"; known {kind}s: {', '.join(names)}"
                        for kind, names in self.known.items())
        return ConfigError("SRC_DIR", str(src), f"nothing to import: {why}{known}{hint}")


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


def read_table(path: Path, tool: str, *, allow_empty: bool = False) -> pd.DataFrame:
    """A source CSV or Parquet table; ConfigError naming the file when it cannot be read
    (empty, corrupt, not a table) or, unless ``allow_empty``, holds no data row."""
    try:
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ConfigError(f"{tool} table", str(path), "is empty (not even a header row)") \
            from None
    except (OSError, ValueError) as err:  # parser, decoding and Arrow errors
        raise ConfigError(f"{tool} table", str(path),
                          f"cannot be read: {str(err).strip()}") from None
    if len(df) == 0 and not allow_empty:
        raise ConfigError(f"{tool} table", str(path), "has a header but no data rows")
    return df


def _need(df: pd.DataFrame, cols: Iterable[str], where: str) -> None:
    for col in cols:
        if col not in df.columns:
            raise ConfigError(f"{where}: column {col}", None, "missing from this Vidur CSV")


def _plain(value: object) -> object:
    """A numpy scalar as the Python value (so that messages read ``nan``, not
    ``np.float64(nan)``)."""
    return value.item() if isinstance(value, np.generic) else value


def _stats_us(df: pd.DataFrame, op: str, where: str, calls: int) -> pd.DataFrame:
    """``time_stats.<op>.*`` (ms) -> STAT_COLUMNS (us); NaN cells are an error, named by
    the CSV row (``df``'s index: the rows of a subset keep their place in the CSV)."""
    out = {}
    for stat, col in zip(STATS, TIME_COLUMNS, strict=True):
        src = f"time_stats.{op}.{stat}"
        _need(df, [src], where)
        values = pd.to_numeric(df[src], errors="coerce").to_numpy(dtype="float64")
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(values) | (values < 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ConfigError(f"{where}: {src}[row {df.index[row]}]", _plain(df[src].iloc[row]),
                              "must be a finite time >= 0 in milliseconds")
        out[col] = values * 1000.0
    frame = pd.DataFrame(out)
    frame["count"] = np.int64(calls)
    return frame


def check_replace(store: ProfileStore, meta: ProfileMeta, *, force: bool) -> None:
    """ConfigError when ``meta``'s file exists and another tool wrote it (unless ``force``)."""
    path = store.path_for(meta)
    if path.is_dir():
        raise ConfigError("DEST", str(path), "is a directory where a profile file belongs")
    for parent in path.parents:
        if parent == store.root or store.root not in parent.parents:
            break
        if parent.exists() and not parent.is_dir():
            raise ConfigError("DEST", str(parent), f"is a file where the folder of {path.name} "
                              "belongs")
    if path.is_file() and not force:
        try:
            old, _ = read_meta(path)
        except ConfigError:
            old = None
        old_tool = old.origin.split(":", 1)[0] if old is not None else "unknown"
        new_tool = meta.origin.split(":", 1)[0]
        if old_tool != new_tool:
            raise ConfigError("DEST", str(path),
                              f"already holds a profile from {old_tool!r}; import {new_tool!r} "
                              "into another directory, or pass --force to replace it")


def write_all(dest: str | Path, pending: Sequence[Pending], *, force: bool) -> list[Imported]:
    """Write every converted table into the store at ``dest``.

    First each table is validated against the store's schema (an error names its source
    file and the file it would become) and checked not to replace another tool's file or
    to need a folder where a file is; then all are written into a hidden scratch directory
    inside ``dest`` (which store listings skip) and only then moved into place, one
    atomic rename per file: a bad input leaves ``dest`` as it was, and only a failure of
    the file system during the renames can leave part of them done."""
    store = ProfileStore(dest)
    targets: dict[Path, str] = {}
    for item in pending:
        target = store.path_for(item.meta)
        rel = target.relative_to(store.root)
        if target in targets:
            raise ConfigError("DEST", str(rel), f"two sources map to this one file: "
                              f"{targets[target]} and {item.source}")
        targets[target] = item.source
        validate_frame(item.table, item.meta, f"{item.source} (imported as {rel})")
        check_replace(store, item.meta, force=force)
    if not pending:
        return []
    store.root.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".import-", dir=store.root))
    try:
        staged = [ProfileStore(stage).save(item.table, item.meta) for item in pending]
        written = []
        for item, path in zip(pending, staged, strict=True):
            target = store.path_for(item.meta)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            written.append(Imported(target, len(item.table), item.source_rows))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return written


def _resolve_sku(name: str, cat: Catalogue) -> str | None:
    sku = SKU_ALIASES.get(name, name)
    return sku if sku in cat.skus else None


def _resolve_node(name: str, cat: Catalogue) -> str | None:
    node = NODE_ALIASES.get(name, name.replace("_", "-"))
    return node if node in cat.nodes else None


def _resolve_model(org_model: str, cat: Catalogue, aliases: dict[str, str]) -> str | None:
    if org_model in aliases:
        return aliases[org_model]
    by_hf = {spec.hf_id.lower(): name for name, spec in cat.models.items() if spec.hf_id}
    return by_hf.get(org_model.lower())


def _int_column(df: pd.DataFrame, col: str, where: str, minimum: int) -> np.ndarray:
    """A shape column of a source CSV as int64; a cell that is missing (NaN), not a whole
    number or below ``minimum`` is a ConfigError naming the CSV, the column and the CSV row
    (0-based data row, ``df``'s index), before any cast can turn it into garbage."""
    values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype="float64")
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(values) | (values != np.round(values)) | (values < minimum)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ConfigError(f"{where}: {col}[row {df.index[row]}]", _plain(df[col].iloc[row]),
                          f"must be a whole number >= {minimum} in this Vidur CSV")
    return values.astype("int64")


def _check_shape_column(df: pd.DataFrame, col: str, expected: int | bool, where: str,
                        model: str) -> None:
    bad = (df[col] != expected).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ConfigError(f"{where}: {col}[row {row}]", df[col].iloc[row],
                          f"catalogue model {model} has {expected}")


def mlp_rows(df: pd.DataFrame, spec: ModelSpec, where: str) -> pd.DataFrame:
    """Vidur mlp.csv rows (one model) -> layer_ops rows, ten per CSV row, with per-GPU n/k."""
    _need(df, MLP_SHAPE_COLUMNS, where)
    for col, expected in (("n_head", spec.num_heads), ("n_kv_head", spec.num_kv_heads),
                          ("n_embd", spec.hidden_size), ("n_expanded_embd", spec.ffn_size),
                          ("use_gated_mlp", spec.gated_mlp)):
        _check_shape_column(df, col, expected, where, spec.name)
    tp = _int_column(df, "num_tensor_parallel_workers", where, 1)
    tokens = _int_column(df, "num_tokens", where, 1)
    hd, hidden, ffn = spec.head_size, spec.hidden_size, spec.ffn_size
    q = spec.num_heads // tp
    kv = np.maximum(1, spec.num_kv_heads // tp)
    up = (2 if spec.gated_mlp else 1) * ffn // tp
    zeros = np.zeros(len(df), dtype="int64")
    # op -> (n, k): GEMMs tokens x k @ k x n; others (the embedding lookup included, as
    # in the profiler) n = output width, k = 0.
    shapes = {
        "embedding": (np.full(len(df), hidden), zeros),
        "input_norm": (np.full(len(df), hidden), zeros),
        "qkv_proj": ((q + 2 * kv) * hd, np.full(len(df), hidden)),
        "rope": ((q + kv) * hd, zeros),
        "o_proj": (np.full(len(df), hidden), q * hd),
        "post_norm": (np.full(len(df), hidden), zeros),
        "gate_up_proj": (up, np.full(len(df), hidden)),
        "act": (ffn // tp, zeros),
        "down_proj": (np.full(len(df), hidden), ffn // tp),
        "add": (np.full(len(df), hidden), zeros),
    }
    parts = []
    for vidur_op, op in OP_NAMES.items():
        n, k = shapes[op]
        part = pd.DataFrame({
            "op": op, "num_tokens": tokens, "n": np.asarray(n, dtype="int64"),
            "k": np.asarray(k, dtype="int64"), "tp": tp, "src_row": np.arange(len(df)),
        })
        parts.append(pd.concat([part, _stats_us(df, vidur_op, where, MLP_CALLS)], axis=1))
    return pd.concat(parts, ignore_index=True)


def _sum_stats(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Statistics of the sum of two timed parts: exact for the mean; min, median and max
    added (bounds and an approximation); std as for independent parts."""
    out = a.copy()
    for col in ("min_us", "median_us", "mean_us", "max_us"):
        out[col] = a[col].to_numpy() + b[col].to_numpy()
    out["std_us"] = np.sqrt(a["std_us"].to_numpy() ** 2 + b["std_us"].to_numpy() ** 2)
    return out


def attention_rows(df: pd.DataFrame, spec: ModelSpec, where: str) -> dict[str, pd.DataFrame]:
    """Vidur attention.csv rows -> {"attention_prefill": ..., "attention_decode": ...}."""
    _need(df, ATTN_SHAPE_COLUMNS, where)
    for col, expected in (("n_q_head", spec.num_heads), ("n_kv_head", spec.num_kv_heads),
                          ("n_embd", spec.hidden_size)):
        _check_shape_column(df, col, expected, where, spec.name)
    df = df.reset_index(drop=True)
    tp = _int_column(df, "num_tensor_parallel_workers", where, 1)
    chunk = _int_column(df, "prefill_chunk_size", where, 0)
    kv = _int_column(df, "kv_cache_size", where, 0)
    prefill = df["is_prefill"].astype(str).str.lower().isin(["true", "1"]).to_numpy()
    base = pd.DataFrame({
        "n_q_heads": spec.num_heads // tp,
        "n_kv_heads": np.maximum(1, spec.num_kv_heads // tp),
        "head_dim": np.full(len(df), spec.head_size, dtype="int64"),
        "batch_size": _int_column(df, "batch_size", where, 1),
        "tp": tp, "src_row": np.arange(len(df)),
    })
    if "block_size" in df.columns:
        base["block_size"] = _int_column(df, "block_size", where, 1)
    has_save = any(c.startswith("time_stats.attn_kv_cache_save.") for c in df.columns)
    out = {}
    for family, mask, op in (("attention_prefill", prefill, "attn_prefill"),
                             ("attention_decode", ~prefill, "attn_decode")):
        if not mask.any():
            continue
        sub = df[mask]  # keeps the CSV row numbers for error messages
        stats = _stats_us(sub, op, where, ATTENTION_CALLS)
        if has_save:
            save = _stats_us(sub, "attn_kv_cache_save", where, ATTENTION_CALLS)
            stats = _sum_stats(stats, save)
        rows = base[mask].reset_index(drop=True)
        if family == "attention_prefill":
            rows["chunk_tokens"] = chunk[mask]
            rows["prior_kv"] = kv[mask]
        else:
            rows["kv_len"] = kv[mask]
        out[family] = pd.concat([rows, stats], axis=1)
    return out


def collective_rows(df: pd.DataFrame, op: str, where: str) -> pd.DataFrame:
    """Vidur network/<node>/<op>.csv -> collective rows."""
    _need(df, NET_COLUMNS, where)
    rows = pd.DataFrame({
        "op": op,
        "num_gpus": _int_column(df, "num_workers", where, 1),
        "gpus_per_node": _int_column(df, "devices_per_node", where, 1),
        "size_bytes": _int_column(df, "size", where, 1),
    })
    return pd.concat([rows, _stats_us(df, op, where, COLLECTIVE_CALLS)], axis=1)


def _profiling_root(src: Path) -> Path:
    for cand in (src / "profiling", src):
        if (cand / "compute").is_dir() or (cand / "network").is_dir():
            return cand
    raise ConfigError("SRC_DIR", str(src),
                      "must be Vidur's profiling/ directory (with compute/ or network/) "
                      "or a directory holding one")


def _unknown(kind: str, name: str, where: str, strict: bool, allowed: Iterable[str],
             skipped: Skipped | None = None) -> None:
    msg = f"{where}: unknown Vidur {kind} {name!r}; no catalogue match"
    if strict:
        raise ConfigError(f"{where}: {kind}", name, "has no catalogue match; known: "
                          + ", ".join(sorted(allowed)))
    _warn(msg + " (skipped)")
    if skipped is not None:
        skipped.add(f"{where} (unknown {kind} {name!r})", kind, allowed)


def import_vidur(src: str | Path, dest: str | Path, *, aliases: dict[str, str] | None = None,
                 strict: bool = False, force: bool = False,
                 catalogue: Catalogue | None = None,
                 require_files: bool = False) -> list[Imported]:
    """Convert every Vidur profile under ``src`` into the store at ``dest``.

    Unknown SKUs, models and nodes are skipped with a warning (``strict``: ConfigError).
    Every source is read and converted, and every table validated, before any file is
    written (``write_all``); ``require_files``: ConfigError saying what was skipped when
    there is nothing to write. Returns the files written.
    """
    cat = catalogue or load_catalogue()
    model_aliases = {**MODEL_ALIASES, **(aliases or {})}
    for target in model_aliases.values():
        cat.model(target)
    root = _profiling_root(Path(src))
    check_output_dir("DEST", dest)
    pending: list[Pending] = []
    skipped = Skipped()

    compute = root / "compute"
    for csv in sorted(compute.glob("*/*/*/*.csv")) if compute.is_dir() else []:
        rel = csv.relative_to(root)
        sku_dir, org, model_dir = csv.parts[-4], csv.parts[-3], csv.parts[-2]
        if csv.name not in ("mlp.csv", "attention.csv"):
            _warn(f"{rel}: not mlp.csv or attention.csv (skipped)")
            skipped.add(f"{rel} (not mlp.csv or attention.csv)")
            continue
        sku = _resolve_sku(sku_dir, cat)
        if sku is None:
            _unknown("sku", sku_dir, str(rel), strict, SKU_ALIASES, skipped)
            continue
        model = _resolve_model(f"{org}/{model_dir}", cat, model_aliases)
        if model is None:
            _unknown("model", f"{org}/{model_dir}", str(rel), strict,
                     [s.hf_id for s in cat.models.values()] + list(model_aliases), skipped)
            continue
        spec = cat.model(model)
        df = read_table(csv, "Vidur")
        if csv.name == "mlp.csv":
            families = {"layer_ops": mlp_rows(df, spec, str(csv))}
        else:
            families = attention_rows(df, spec, str(csv))
        for family, rows in families.items():
            for tp, part in rows.groupby("tp", sort=True):
                meta = ProfileMeta(
                    family=family, source="imported", device=sku, model=model, tp=int(tp),
                    dtype="fp16", model_shape=model_shape_of(spec), origin=f"{TOOL}:{rel}",
                )
                table = part.drop(columns=["tp", "src_row"]).reset_index(drop=True)
                pending.append(Pending(table, meta, int(part["src_row"].nunique()), str(csv)))

    network = root / "network"
    for node_dir in sorted(p for p in network.iterdir() if p.is_dir()) if network.is_dir() else []:
        rel = node_dir.relative_to(root)
        node = _resolve_node(node_dir.name, cat)
        if node is None:
            _unknown("node", node_dir.name, str(rel), strict, NODE_ALIASES, skipped)
            continue
        parts, sources, n_src = [], [], 0
        for op in ("all_reduce", "send_recv"):
            csv = node_dir / f"{op}.csv"
            if csv.is_file():
                df = read_table(csv, "Vidur")
                parts.append(collective_rows(df, op, str(csv)))
                sources.append(csv.name)
                n_src += len(df)
        if not parts:
            _warn(f"{rel}: no all_reduce.csv or send_recv.csv (skipped)")
            skipped.add(f"{rel} (no all_reduce.csv or send_recv.csv)")
            continue
        meta = ProfileMeta(
            family="collective", source="imported", device=cat.node(node).sku, model="",
            tp=1, dtype="fp16", node=node,
            origin=f"{TOOL}:{rel}/{{{','.join(sources)}}}",
        )
        table = pd.concat(parts, ignore_index=True)
        where = str(node_dir / (sources[0] if len(sources) == 1
                                else "{" + ",".join(sources) + "}"))
        pending.append(Pending(table, meta, n_src, where))
    if require_files and not pending:
        raise skipped.error(src, "; --alias ORG/NAME=MODEL maps a model directory"
                            if "model" in skipped.known else "")
    return write_all(dest, pending, force=force)


def print_summary(written: Sequence[Imported], dest: str | Path) -> None:
    """One line per file, then totals (files, rows, compressed bytes)."""
    total_bytes = 0
    for item in written:
        size = item.path.stat().st_size
        total_bytes += size
        rel = item.path.relative_to(Path(dest)) if item.path.is_relative_to(Path(dest)) \
            else item.path
        print(f"{rel}: {item.rows} rows from {item.source_rows} source rows, {size} bytes")
    rows = sum(i.rows for i in written)
    print(f"{len(written)} files, {rows} rows, {total_bytes} bytes "
          f"({total_bytes / 2**20:.2f} MiB) under {dest}")


def run_import(do_import: Callable[[], Sequence[Imported]], dest: str | Path) -> int:
    """An importer's command-line ending: run it, print the summary; a ConfigError is a
    message on stderr and exit status 2; a file that could not be written after the
    checks (disk full, ...) a message and status 1. Returns the exit status."""
    try:
        written = do_import()
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {describe_os_error(err)}", file=sys.stderr)
        return 1
    print_summary(written, dest)
    return 0


def parse_alias(text: str) -> tuple[str, str]:
    """``ORG/NAME=catalogue-name`` -> (ORG/NAME, catalogue-name)."""
    key, sep, value = text.partition("=")
    if not sep or "/" not in key or not value:
        raise argparse.ArgumentTypeError(f"{text!r}: expected ORG/NAME=catalogue-model")
    return key, value


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m profiler.import_vidur",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("src", metavar="SRC_DIR", help="Vidur's profiling/ directory")
    parser.add_argument("dest", metavar="DEST", help="profile store root to write into")
    parser.add_argument("--alias", action="append", type=parse_alias, default=[],
                        metavar="ORG/NAME=MODEL",
                        help="map a Vidur model directory to a catalogue model")
    parser.add_argument("--strict", action="store_true",
                        help="unknown SKU/model/node names are errors, not skipped")
    parser.add_argument("--force", action="store_true",
                        help="replace files in DEST that another importer wrote")
    args = parser.parse_args(argv)
    return run_import(lambda: import_vidur(args.src, args.dest, aliases=dict(args.alias),
                                           strict=args.strict, force=args.force,
                                           require_files=True), args.dest)


if __name__ == "__main__":
    sys.exit(main())
