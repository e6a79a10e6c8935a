"""Import LLMServingSim's per-operator latency tables into a profile store.

    python -m profiler.import_llmservingsim SRC_DIR DEST [--sku GPU=catalogue-sku]
        [--alias ORG/NAME=catalogue-model] [--strict] [--force]

SRC_DIR is LLMServingSim's ``profiler/perf`` directory, or a directory holding a
``profiles/`` (or ``perf/``) directory, laid out as
``<gpu>/<org>/<model>/<dtype>/tp<N>/{dense,per_sequence,attention,moe}.csv`` with a
``meta.yaml`` per ``<dtype>`` directory. Every time is microseconds for one call of one
operator on one GPU (decoder-layer operators: one layer), the mean of
``measurement_iterations`` timed forwards (3); only the mean is published, so the stored
min/median/mean/max are that mean, ``std_us`` is 0 and ``count`` the iterations.

What maps (per-rank shapes from the catalogue model at tp N):

- ``dense.csv`` -> ``layer_ops``: ``embedding``; ``layernorm`` -> ``input_norm`` and
  ``post_norm`` (one kernel, twice per layer); ``qkv_proj``; ``rotary_emb`` (plus
  ``qk_norm`` where the model has it, Qwen3) -> ``rope``; ``o_proj``; ``gate_up_proj``;
  ``act_fn`` -> ``act``; ``down_proj``.
- ``per_sequence.csv``: ``lm_head`` -> ``layer_ops`` op ``lm_head`` (``num_tokens`` =
  sequences); ``sampler`` -> ``cpu_overhead`` op ``sampling``.
- ``attention.csv``: prefill-only rows -> ``attention_prefill`` (one sequence,
  ``chunk_tokens`` = ``prefill_chunk``, ``prior_kv`` = ``kv_prefill``); decode-only rows
  -> ``attention_decode`` (``batch_size`` = ``n_decode``, ``kv_len`` = ``kv_decode + 1``:
  the cached tokens plus the one being decoded); mixed rows (a prefill chunk and decodes
  in one call, as vLLM runs a mixed batch) -> ``attention_mixed`` (the same columns).
- ``moe.csv`` (tp1 only) -> ``layer_ops`` op ``moe_experts`` at the rows whose
  ``activated_experts`` is ``min(experts, tokens x top_k)`` (every routed token on its own
  expert until all are used, as the simulator's roofline assumes); the column is kept.

Not mapped (no family holds them): ``final_layernorm`` (the simulator prices the final
norm with the ``input_norm`` table, the same kernel), ``skew.csv`` / ``skew_fit.csv``, and
the ``moe.csv`` rows at other expert counts.
There are no residual ``add`` rows (vLLM fuses the add into the layernorm kernel).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from profiler.import_vidur import (
    Imported,
    Pending,
    Skipped,
    _plain,
    _resolve_model,
    _warn,
    parse_alias,
    read_table,
    run_import,
    write_all,
)
from simulator.catalogue import Catalogue, ModelSpec, load_catalogue
from simulator.errors import ConfigError
from simulator.paths import check_output_dir
from simulator.profiles import ProfileMeta, kv_heads_per_gpu, model_shape_of

TOOL = "llmservingsim"
# LLMServingSim GPU directory -> catalogue SKU, when the catalogue does not have a name
# equal to the directory's once case and '-'/'_' are ignored (RTX4090 ~ rtx-4090).
SKU_ALIASES = {"H100": "h100-sxm", "A100": "a100-80gb", "A6000": "rtx-a6000"}
# Checkpoints named differently from the catalogue's hf_id.
MODEL_ALIASES = {"Qwen/Qwen3-30B-A3B-Instruct-2507": "qwen3-30b-a3b"}
DTYPES = {"bf16": "bf16", "fp16": "fp16", "fp8": "fp8"}
DEFAULT_CALLS = 3  # meta.yaml measurement_iterations when absent
# dense.csv layer -> layer_ops op (layernorm: two ops, rotary_emb and qk_norm: one).
DENSE_OPS = {
    "embedding": ("embedding",), "layernorm": ("input_norm", "post_norm"),
    "qkv_proj": ("qkv_proj",), "rotary_emb": ("rope",), "o_proj": ("o_proj",),
    "gate_up_proj": ("gate_up_proj",), "act_fn": ("act",), "down_proj": ("down_proj",),
}
MERGED_INTO_ROPE = "qk_norm"
NOT_MAPPED = ("final_layernorm",)
TABLES = ("dense.csv", "per_sequence.csv", "attention.csv", "moe.csv")


def _need(df: pd.DataFrame, cols: Sequence[str], where: str) -> None:
    for col in cols:
        if col not in df.columns:
            raise ConfigError(f"{where}: column {col}", None,
                              "missing; LLMServingSim tables need " + ", ".join(cols))


def _times(df: pd.DataFrame, where: str, calls: int) -> pd.DataFrame:
    """``time_us`` (one mean per row) -> the store's statistic columns."""
    t = pd.to_numeric(df["time_us"], errors="coerce").to_numpy(dtype="float64")
    bad = ~np.isfinite(t) | (t < 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ConfigError(f"{where}: time_us[row {_row(df, row)}]",
                          _plain(df["time_us"].iloc[row]),
                          "must be a finite time >= 0 in microseconds")
    return pd.DataFrame({"min_us": t, "median_us": t, "mean_us": t, "max_us": t,
                         "std_us": np.zeros(len(t)), "count": np.int64(calls)})


def _row(df: pd.DataFrame, i: int) -> int:
    """The CSV data row (0-based) of ``df``'s i-th row (a subset keeps them in ``_row``)."""
    return int(df["_row"].iloc[i]) if "_row" in df.columns else i


def _ints(df: pd.DataFrame, col: str, where: str) -> np.ndarray:
    v = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype="float64")
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(v) | (v != np.round(v)) | (v < 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ConfigError(f"{where}: {col}[row {_row(df, row)}]", _plain(df[col].iloc[row]),
                          "must be a whole number >= 0")
    return v.astype("int64")


def _shapes(spec: ModelSpec, tp: int) -> dict[str, tuple[int, int]]:
    """layer_ops op -> per-rank (n, k) (k = 0 for element-wise ops)."""
    hd, h = spec.head_size, spec.hidden_size
    q = spec.num_heads // tp
    kv = kv_heads_per_gpu(spec.num_kv_heads, tp)
    f = spec.ffn_size // tp
    return {
        "embedding": (h, 0), "input_norm": (h, 0), "post_norm": (h, 0),
        "qkv_proj": ((q + 2 * kv) * hd, h), "rope": ((q + kv) * hd, 0),
        "o_proj": (h, q * hd), "gate_up_proj": ((2 if spec.gated_mlp else 1) * f, h),
        "act": (f, 0), "down_proj": (h, f), "lm_head": (spec.vocab_size // tp, h),
        "moe_experts": (spec.ffn_size, h),
    }


def dense_rows(df: pd.DataFrame, spec: ModelSpec, tp: int, where: str,
               calls: int) -> pd.DataFrame:
    """dense.csv -> layer_ops rows (see the module docstring for the mapping)."""
    _need(df, ("layer", "tokens", "time_us"), where)
    layers = set(df["layer"].astype(str))
    unknown = sorted(layers - set(DENSE_OPS) - {MERGED_INTO_ROPE, *NOT_MAPPED})
    if unknown:
        raise ConfigError(f"{where}: layer", unknown[0], "unknown operator; known: "
                          + ", ".join([*DENSE_OPS, MERGED_INTO_ROPE, *NOT_MAPPED]))
    shapes = _shapes(spec, tp)
    parts = []
    for layer, ops in DENSE_OPS.items():
        sub = df[df["layer"] == layer].reset_index(drop=True)
        if sub.empty:
            continue
        stats = _times(sub, where, calls)
        tokens = _ints(sub, "tokens", where)
        if layer == "rotary_emb" and MERGED_INTO_ROPE in layers:
            qk_rows = df[df["layer"] == MERGED_INTO_ROPE]
            qk = pd.Series(_times(qk_rows, where, calls)["mean_us"].to_numpy(),
                           index=_ints(qk_rows, "tokens", where))
            missing = sorted(set(tokens) - set(qk.index))
            if missing:
                raise ConfigError(f"{where}: qk_norm", f"tokens={missing[0]}",
                                  "needs a row at every token count of rotary_emb")
            extra = qk.loc[tokens].to_numpy(dtype="float64")
            for col in ("min_us", "median_us", "mean_us", "max_us"):
                stats[col] = stats[col].to_numpy() + extra
        for op in ops:
            n, k = shapes[op]
            part = pd.DataFrame({"op": op, "num_tokens": tokens, "n": n, "k": k,
                                 "kernel_source": layer + ("+qk_norm" if layer == "rotary_emb"
                                                           and MERGED_INTO_ROPE in layers
                                                           else "")})
            parts.append(pd.concat([part, stats], axis=1))
    if not parts:
        raise ConfigError(f"{where}: layer", ", ".join(sorted(layers)),
                          "holds none of the mapped operators " + ", ".join(DENSE_OPS))
    return pd.concat(parts, ignore_index=True)


def per_sequence_rows(df: pd.DataFrame, spec: ModelSpec, tp: int, where: str,
                      calls: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """per_sequence.csv -> (layer_ops lm_head rows, cpu_overhead sampling rows)."""
    _need(df, ("layer", "sequences", "time_us"), where)
    unknown = sorted(set(df["layer"].astype(str)) - {"lm_head", "sampler"})
    if unknown:
        raise ConfigError(f"{where}: layer", unknown[0], "unknown; known: lm_head, sampler")
    n, k = _shapes(spec, tp)["lm_head"]
    lm = df[df["layer"] == "lm_head"].reset_index(drop=True)
    lm_rows = pd.concat([pd.DataFrame({"op": "lm_head", "num_tokens": _ints(lm, "sequences",
                                                                          where),
                                       "n": n, "k": k, "kernel_source": "lm_head"}),
                         _times(lm, where, calls)], axis=1)
    sm = df[df["layer"] == "sampler"].reset_index(drop=True)
    sm_rows = pd.concat([pd.DataFrame({"op": "sampling",
                                       "batch_size": _ints(sm, "sequences", where)}),
                         _times(sm, where, calls)], axis=1)
    return lm_rows, sm_rows


def moe_rows(df: pd.DataFrame, spec: ModelSpec, where: str, calls: int) -> pd.DataFrame:
    """moe.csv -> layer_ops moe_experts rows at min(experts, tokens x top_k) experts."""
    _need(df, ("tokens", "activated_experts", "time_us"), where)
    if not spec.is_moe:
        raise ConfigError(f"{where}: model", spec.name, "is not a mixture-of-experts model")
    tokens = _ints(df, "tokens", where)
    used = _ints(df, "activated_experts", where)
    keep = used == np.minimum(spec.num_experts, tokens * spec.experts_top_k)
    sub = df[keep].reset_index(drop=True)
    n, k = _shapes(spec, 1)["moe_experts"]
    rows = pd.DataFrame({"op": "moe_experts", "num_tokens": tokens[keep], "n": n, "k": k,
                         "experts": spec.num_experts, "topk": spec.experts_top_k,
                         "activated_experts": used[keep], "kernel_source": "moe"})
    return pd.concat([rows, _times(sub, where, calls)], axis=1)


def attention_rows(df: pd.DataFrame, spec: ModelSpec, tp: int, where: str,
                   calls: int) -> dict[str, pd.DataFrame]:
    """attention.csv -> prefill-only, decode-only and mixed rows, one family each."""
    _need(df, ("prefill_chunk", "kv_prefill", "n_decode", "kv_decode", "time_us"), where)
    chunk, prior = _ints(df, "prefill_chunk", where), _ints(df, "kv_prefill", where)
    nd, kvd = _ints(df, "n_decode", where), _ints(df, "kv_decode", where)
    heads = {"n_q_heads": spec.num_heads // tp,
             "n_kv_heads": kv_heads_per_gpu(spec.num_kv_heads, tp),
             "head_dim": spec.head_size}
    out = {}
    pre = (chunk > 0) & (nd == 0)
    if pre.any():
        rows = pd.DataFrame({**heads, "batch_size": 1, "chunk_tokens": chunk[pre],
                             "prior_kv": prior[pre]})
        out["attention_prefill"] = pd.concat(
            [rows, _times(df[pre].reset_index(drop=True), where, calls)], axis=1)
    dec = (chunk == 0) & (nd > 0)
    if dec.any():
        rows = pd.DataFrame({**heads, "batch_size": nd[dec], "kv_len": kvd[dec] + 1})
        out["attention_decode"] = pd.concat(
            [rows, _times(df[dec].reset_index(drop=True), where, calls)], axis=1)
    mix = (chunk > 0) & (nd > 0)
    if mix.any():
        rows = pd.DataFrame({**heads, "chunk_tokens": chunk[mix], "prior_kv": prior[mix],
                             "batch_size": nd[mix], "kv_len": kvd[mix] + 1})
        out["attention_mixed"] = pd.concat(
            [rows, _times(df[mix].reset_index(drop=True), where, calls)], axis=1)
    return out


# --------------------------------------------------------------------------- names


def _norm(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


def resolve_sku(gpu: str, cat: Catalogue, aliases: dict[str, str]) -> str | None:
    """Catalogue SKU for an LLMServingSim GPU directory (alias, else the same name once
    case, '-' and '_' are ignored)."""
    for table in (aliases, SKU_ALIASES):
        if gpu in table and table[gpu] in cat.skus:
            return table[gpu]
    by_norm = {_norm(s): s for s in cat.skus}
    return by_norm.get(_norm(gpu))


def resolve_model(org_model: str, cat: Catalogue, aliases: dict[str, str]) -> str | None:
    """Catalogue model for ``<org>/<model>``: alias, hf_id, or the same normalised name."""
    if org_model in aliases:
        return aliases[org_model]
    found = _resolve_model(org_model, cat, {})
    if found is not None:
        return found
    if MODEL_ALIASES.get(org_model) in cat.models:
        return MODEL_ALIASES[org_model]
    by_norm = {_norm(m): m for m in cat.models}
    return by_norm.get(_norm(org_model.split("/")[-1]))


def _check_overrides(meta: dict[str, Any], spec: ModelSpec, where: str) -> None:
    """The profiling engine's ``hf_overrides`` hold the per-rank shapes of the largest TP
    profiled: they must be the catalogue model's at that TP."""
    over = (meta.get("engine_effective") or {}).get("hf_overrides") or {}
    tps = meta.get("tp_degrees") or [1]
    tp = max(int(t) for t in tps)
    expect = {"num_attention_heads": spec.num_heads // tp,
              "num_key_value_heads": kv_heads_per_gpu(spec.num_kv_heads, tp),
              "vocab_size": spec.vocab_size // tp}
    if not spec.is_moe:
        expect["intermediate_size"] = spec.ffn_size // tp
    for key, value in expect.items():
        if key in over and int(over[key]) != value:
            raise ConfigError(f"{where}: engine_effective.hf_overrides.{key}", over[key],
                              f"catalogue model {spec.name} at tp={tp} has {value}")


def _root(src: Path) -> Path:
    for cand in (src / "profiles", src / "perf", src):
        if cand.is_dir() and any(cand.glob("*/*/*/*/meta.yaml")):
            return cand
    raise ConfigError("SRC_DIR", str(src), "must hold <gpu>/<org>/<model>/<dtype>/meta.yaml "
                      "(LLMServingSim's profiler/perf layout), directly or under profiles/")


def _read_meta(path: Path) -> tuple[dict[str, Any], int, str, str]:
    """meta.yaml -> (the mapping, measurement iterations, date, CUDA version); a file
    that is not a YAML mapping, or a bad iteration count, is a ConfigError naming it."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        reason = " ".join(str(err).split())
        mark = getattr(err, "problem_mark", None)
        if getattr(err, "problem", None) and mark is not None:
            reason = f"{err.problem} at line {mark.line + 1}, column {mark.column + 1}"
        raise ConfigError("LLMServingSim meta.yaml", str(path),
                          f"cannot be read as YAML: {reason}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: document", type(raw).__name__,
                          "must be a YAML mapping (key: value lines)")
    calls = _whole(raw.get("measurement_iterations") or DEFAULT_CALLS)
    if calls is None or calls < 1:
        raise ConfigError(f"{path}: measurement_iterations", raw["measurement_iterations"],
                          "must be an integer >= 1")
    tps = raw.get("tp_degrees") or [1]
    if not isinstance(tps, list) or any((_whole(t) or 0) < 1 for t in tps):
        raise ConfigError(f"{path}: tp_degrees", tps, "must be a list of integers >= 1")
    engine = raw.get("engine_effective") or {}
    if not isinstance(engine, dict):
        raise ConfigError(f"{path}: engine_effective", engine, "must be a mapping")
    over = engine.get("hf_overrides") or {}
    if not isinstance(over, dict):
        raise ConfigError(f"{path}: engine_effective.hf_overrides", over, "must be a mapping")
    for key in ("num_attention_heads", "num_key_value_heads", "vocab_size",
                "intermediate_size"):
        if key in over and _whole(over[key]) is None:
            raise ConfigError(f"{path}: engine_effective.hf_overrides.{key}", over[key],
                              "must be an integer")
    return raw, calls, str(raw.get("profiled_at", ""))[:10], str(raw.get("cuda_version", ""))


def _whole(value: Any) -> int | None:
    """``value`` as an int when it is a whole number (or a string of one), else None."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if np.isfinite(number) and number == int(number) else None


def import_llmservingsim(src: str | Path, dest: str | Path, *,
                         sku_aliases: dict[str, str] | None = None,
                         aliases: dict[str, str] | None = None, strict: bool = False,
                         force: bool = False,
                         catalogue: Catalogue | None = None,
                         require_files: bool = False) -> list[Imported]:
    """Convert every LLMServingSim table under ``src`` into the store at ``dest``.

    Unknown GPUs and models are skipped with a warning (``strict``: ConfigError). Every
    table is read, converted and validated before any file is written;
    ``require_files``: ConfigError saying what was skipped when there is nothing to write.
    Returns the files written.
    """
    cat = catalogue or load_catalogue()
    sku_aliases, aliases = dict(sku_aliases or {}), dict(aliases or {})
    for name in sku_aliases.values():
        cat.sku(name)
    for name in aliases.values():
        cat.model(name)
    root = _root(Path(src))
    check_output_dir("DEST", dest)
    pending: list[Pending] = []
    skipped = Skipped()

    def unknown(kind: str, name: str, where: str, known: Sequence[str]) -> None:
        if strict:
            raise ConfigError(f"{where}: {kind}", name,
                              "has no catalogue match; known: " + ", ".join(sorted(known)))
        _warn(f"{where}: unknown LLMServingSim {kind} {name!r}; no catalogue match (skipped)")
        skipped.add(f"{where} (unknown {kind} {name!r})", kind, known)

    for meta_path in sorted(root.glob("*/*/*/*/meta.yaml")):
        dtype_dir = meta_path.parent
        gpu, org, model_dir, dtype_name = dtype_dir.parts[-4:]
        rel = dtype_dir.relative_to(root)
        sku = resolve_sku(gpu, cat, sku_aliases)
        if sku is None:
            unknown("gpu", gpu, str(rel), list(cat.skus))
            continue
        model = resolve_model(f"{org}/{model_dir}", cat, aliases)
        if model is None:
            unknown("model", f"{org}/{model_dir}", str(rel), list(cat.models))
            continue
        if dtype_name not in DTYPES:
            unknown("dtype", dtype_name, str(rel), list(DTYPES))
            continue
        spec = cat.model(model)
        meta_raw, calls, date, cuda = _read_meta(meta_path)
        _check_overrides(meta_raw, spec, str(meta_path))
        tp_dirs = sorted(p for p in dtype_dir.glob("tp*") if p.is_dir())
        if not tp_dirs:
            _warn(f"{rel}: no tp<N> directory (skipped)")
            skipped.add(f"{rel} (no tp<N> directory)")
        for tp_dir in tp_dirs:
            try:
                tp = int(tp_dir.name[2:])
            except ValueError:
                _warn(f"{rel}/{tp_dir.name}: not a tp<N> directory (skipped)")
                skipped.add(f"{rel}/{tp_dir.name} (not a tp<N> directory)")
                continue
            if tp < 1:
                raise ConfigError(f"{rel}/{tp_dir.name}", tp, "must be tp<N> with N >= 1")
            if spec.num_heads % tp:
                raise ConfigError(f"{rel}/{tp_dir.name}", tp,
                                  f"must divide {model}'s {spec.num_heads} heads")
            families: dict[str, list[tuple[pd.DataFrame, str, int]]] = {}

            def add(family: str, rows: pd.DataFrame, origin: str, n_src: int,
                    _families: dict = families) -> None:
                _families.setdefault(family, []).append((rows, origin, n_src))

            for table in TABLES:
                path = tp_dir / table
                if not path.is_file():
                    continue
                where = str(path)
                df = read_table(path, "LLMServingSim")
                df["_row"] = np.arange(len(df))  # the CSV row of each row, for messages
                origin = f"{rel}/{tp_dir.name}/{table}"
                if table == "dense.csv":
                    add("layer_ops", dense_rows(df, spec, tp, where, calls), origin, len(df))
                elif table == "per_sequence.csv":
                    lm, sm = per_sequence_rows(df, spec, tp, where, calls)
                    add("layer_ops", lm, origin, len(lm))
                    add("cpu_overhead", sm, origin, len(sm))
                elif table == "moe.csv":
                    if tp != 1:
                        _warn(f"{origin}: moe.csv at tp={tp} is not mapped (skipped)")
                        continue
                    add("layer_ops", moe_rows(df, spec, where, calls), origin, len(df))
                else:
                    for family, rows in attention_rows(df, spec, tp, where, calls).items():
                        add(family, rows, origin, len(df))
            for family, parts in families.items():
                origins = sorted({o for _, o, _ in parts})
                meta = ProfileMeta(
                    family=family, source="imported", device=sku, model=model, tp=tp,
                    dtype=DTYPES[dtype_name], model_shape=model_shape_of(spec), cuda=cuda,
                    date=date, origin=f"{TOOL}:" + ",".join(origins),
                )
                frame = pd.concat([p for p, _, _ in parts], ignore_index=True)
                for col in ("experts", "topk", "activated_experts"):  # 0 off the MoE rows
                    if col in frame.columns:
                        frame[col] = frame[col].fillna(0).astype("int64")
                files = sorted({str(root / o) for o in origins})
                source = files[0] if len(files) == 1 else ", ".join(files)
                pending.append(Pending(frame, meta, sum(n for _, _, n in parts), source))
    if require_files and not pending:
        hint = ("; --alias ORG/NAME=MODEL maps a model directory" if "model" in skipped.known
                else "") + ("; --sku GPU=SKU maps a GPU directory" if "gpu" in skipped.known
                            else "")
        raise skipped.error(src, hint)
    return write_all(dest, pending, force=force)


def _parse_sku(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise argparse.ArgumentTypeError(f"{text!r}: expected GPU=catalogue-sku")
    return key, value


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m profiler.import_llmservingsim",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("src", metavar="SRC_DIR", help="LLMServingSim's profiler/perf "
                        "directory (or one holding profiles/)")
    parser.add_argument("dest", metavar="DEST", help="profile store root to write into")
    parser.add_argument("--sku", action="append", type=_parse_sku, default=[],
                        metavar="GPU=SKU", help="map a GPU directory to a catalogue SKU")
    parser.add_argument("--alias", action="append", type=parse_alias, default=[],
                        metavar="ORG/NAME=MODEL",
                        help="map a model directory to a catalogue model")
    parser.add_argument("--strict", action="store_true",
                        help="unknown GPU/model names are errors, not skipped")
    parser.add_argument("--force", action="store_true",
                        help="replace files in DEST that another importer wrote")
    args = parser.parse_args(argv)
    return run_import(lambda: import_llmservingsim(args.src, args.dest,
                                                   sku_aliases=dict(args.sku),
                                                   aliases=dict(args.alias),
                                                   strict=args.strict, force=args.force,
                                                   require_files=True),
                      args.dest)


if __name__ == "__main__":
    sys.exit(main())
