"""Accuracy of the operator-time predictors on the public reference profiles.

    python experiments/predictor_accuracy.py [--reference ../shared/reference]
        [--max-rows 20000] [--seed 0] [--quick] [--only TEXT] [--by-table]

Imports Vidur's profiles (per-model ``layer_ops``, collectives), aiconfigurator's
shape-keyed tables (attention prefill/decode, GEMM, fused MoE, collectives) and
LLMServingSim's per-model tables (``layer_ops`` with ``lm_head`` and, for Qwen3-30B-A3B,
``moe_experts``; ``cpu_overhead`` op ``sampling``; attention prefill/decode/mixed) into a
temporary store with the project's importers, then, for every table and operator, fitted
as ``simulator.execution.profiled`` fits it:

- random split: fit (grid search + CV, ``simulator.execution.predictors``) on a random 80%
  of the rows, report the absolute percentage error (APE) on the other 20%;
- extrapolation split: hold out whole upper ranges and fit on the rest: the largest 20%
  of token counts (``layer_ops``; GEMM ``m``), of message sizes (collectives), of batch
  sizes (``cpu_overhead``), of KV lengths and of batch sizes (decode attention), of chunk
  sizes and of batch sizes (prefill attention), of KV lengths and of decode counts
  (mixed attention) (each a separate fit).

``moe_experts`` is its own operator with its own features (tokens, n, k, experts, top-k:
the experts the routed tokens touch set the weights read), as ``ProfiledModel`` fits a
model's MoE rows. A model's profile holds one expert count, top-k
and routing with every expert on the GPU (``_build_ep`` scales for expert parallelism), so
aiconfigurator's MoE sweep is fitted as one table per (experts, top-k, routing
distribution) of its ``moe_ep = 1`` rows (the ``moe_tp`` slices differ in ``n``); its rows
with experts split over GPUs (``moe_ep > 1``: experts per GPU, which no feature carries)
are counted and left out.

``attention_mixed`` (a prefill chunk and decodes in one call) is fitted as
``ProfiledModel._mixed_source`` fits it: the whole call over (chunk, prior context,
decodes, KV length) (the engine prices the decodes' share as that fit less its price of
the chunk alone, on a grid of chunk sizes and prior contexts: at its points a
single-chunk batch costs the fit); the APE is the whole call's.

Every dtype the importers write is included (Vidur's fp16; aiconfigurator's bf16 and fp8;
LLMServingSim's bf16), each table fitted on its own. Tables larger than ``--max-rows``
are subsampled (seeded) to that many rows before the splits; every table reports the rows
it used out of the rows it has.

Prints, per operator, median and P95 APE of both splits, the P95 spread of the repeated
calls behind a row ((max - min) / median, where a row merges several published calls:
the noise floor; LLMServingSim publishes only the mean of its 3 calls, so its tables
have none), the rows used, the fit time and the models the grid search chose; the same
per source (vidur, aic, lss); for GEMM tables measured once per shape, the spread of the
rows of at most 16 tokens (one row tile) around the median of their (n, k), the noise
floor there. The last line is
``predictor_accuracy median_ape=<x> p95_ape=<y> extrap_median_ape=<z>`` (percent, pooled
over every held-out row).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from profiler.import_aiconfigurator import import_aiconfigurator  # noqa: E402
from profiler.import_llmservingsim import import_llmservingsim  # noqa: E402
from profiler.import_vidur import import_vidur  # noqa: E402
from simulator.execution.predictors import (  # noqa: E402
    FAMILY_FEATURES,
    ForestPredictor,
    PiecewiseLinearPredictor,
    PredictorParams,
    op_family,
    select,
    training_rows,
)
from simulator.profiles import ProfileStore  # noqa: E402

TARGET = "median_us"
MIXED = "attention_mixed"
# aiconfigurator's MoE rows: one table per value of these (what a model's profile fixes)
MOE_KEYS = ("experts", "topk", "distribution")
# family -> the columns whose upper 20% of rows are held out in the extrapolation split
EXTRAPOLATE = {
    "layer_ops": ("num_tokens",),
    "moe_experts": ("num_tokens",),
    "collective": ("size_bytes",),
    "cpu_overhead": ("batch_size",),
    "attention_decode": ("kv_len", "batch_size"),
    "attention_prefill": ("chunk_tokens", "batch_size"),
    MIXED: ("kv_len", "batch_size"),
}


class Table(NamedTuple):
    """One fitted table: label ``<source>:<device>/<where>/tp<N>/<dtype>:<operator>``."""

    label: str
    family: str
    rows: pd.DataFrame
    source_rows: int  # rows of the source table for this operator, before any cap or drop


def load_tables(reference: Path, dest: Path) -> tuple[list[Table], list[str]]:
    """Every table and operator of the reference data, and notes on rows left out.

    The tables the first version of this report fitted come first, in their old order
    (the seeded splits of those tables are unchanged); the added ones (aiconfigurator's
    MoE, LLMServingSim's tables) follow."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        import_vidur(reference / "vidur" / "profiling", dest / "vidur")
        import_aiconfigurator(reference / "aiconfigurator", dest / "aic")
        lss = reference / "llmservingsim"
        if lss.is_dir():
            import_llmservingsim(lss, dest / "lss")
    out: list[Table] = []
    added: list[Table] = []
    notes: list[str] = []
    for sub in ("vidur", "aic", "lss"):
        if not (dest / sub).is_dir():
            notes.append(f"{sub}: no reference data, not evaluated")
            continue
        store = ProfileStore(dest / sub)
        entries = store.entries()
        for e in entries.itertuples():
            df = pd.read_parquet(e.path)
            where = e.model or (f"network-{e.node}" if e.node else "ops")
            tag = f"{sub}:{e.device}/{where}/tp{e.tp}/{e.dtype}"
            if e.family == MIXED:
                added.append(Table(f"{tag}:{MIXED}", MIXED, df, len(df)))
                continue
            if e.family not in FAMILY_FEATURES:
                notes.append(f"{tag}: family {e.family} has no predictor (not evaluated)")
                continue
            for op, rows in training_rows(df, e.family).items():
                label = op or e.family
                if op == "moe_experts" and "moe_ep" in rows.columns:  # aiconfigurator's sweep
                    one = rows[rows["moe_ep"] == 1]
                    notes.append(f"{tag}:moe_experts: {len(one)} of {len(rows)} rows fitted, "
                                 f"{rows['moe_ep'].gt(1).sum()} with experts split over GPUs "
                                 "(moe_ep > 1) left out")
                    for key, part in one.groupby(list(MOE_KEYS), sort=True):
                        e_, k_, d_ = key
                        added.append(Table(
                            f"{sub}:{e.device}/{where}-e{e_}-top{k_}-{d_}/tp{e.tp}/{e.dtype}"
                            f":{label}", "moe_experts", part.reset_index(drop=True),
                            len(part)))
                    continue
                t = Table(f"{tag}:{label}", op_family(e.family, op), rows, len(rows))
                (out if sub != "lss" and op != "moe_experts" else added).append(t)
    return out + added, notes


def _ape(pred: np.ndarray, actual: np.ndarray) -> np.ndarray:
    return np.abs(pred / np.maximum(actual, 1e-3) - 1.0) * 100.0


def _fit_eval(rows: pd.DataFrame, family: str, train: np.ndarray, test: np.ndarray,
              params: PredictorParams) -> tuple[np.ndarray, float, str]:
    """Held-out APEs (%), fit seconds and the kind of model the grid search chose."""
    cols = list(FAMILY_FEATURES[family].columns)
    tr, te = rows.iloc[train], rows.iloc[test]
    res = select(tr[cols], tr[TARGET].to_numpy(), family, params)
    pred = res.predict(te[cols])
    return _ape(pred, te[TARGET].to_numpy()), res.seconds, model_name(res.predictor)


def model_name(pred: object) -> str:
    """``forest``, or ``piecewise <log|linear>`` plus ``+median`` when its knots are
    smoothed: the kind of model the grid search chose."""
    if isinstance(pred, PiecewiseLinearPredictor):
        return f"piecewise {pred.interp}" + ("+median" if pred.smooth > 1 else "")
    return "forest" if isinstance(pred, ForestPredictor) else type(pred).__name__


def repeat_spread(rows: pd.DataFrame) -> np.ndarray:
    """(max - min) / median of the repeated calls behind each row (rows with count > 1), %;
    empty where the source published only their mean (min = max on every such row:
    LLMServingSim's tables)."""
    rep = rows[rows["count"] > 1]
    if (rep["max_us"] == rep["min_us"]).all():
        return np.array([])
    return ((rep["max_us"] - rep["min_us"]) / rep[TARGET].clip(lower=1e-3)).to_numpy() * 100


def plateau_spread(rows: pd.DataFrame) -> np.ndarray:
    """|time / median - 1| (%) of GEMM rows of at most 16 tokens around the median of
    their (n, k): one row tile, so one kernel's work, measured once per row; a noise floor
    for tables without repeated calls (aiconfigurator's GEMMs)."""
    flat = rows[rows["num_tokens"] <= 16]
    med = flat.groupby(["n", "k"])[TARGET].transform("median")
    return (np.abs(flat[TARGET] / med - 1) * 100).to_numpy()


def operator_of(label: str) -> str:
    """The operator name of a table label (``...:<op>``)."""
    return label.rsplit(":", 1)[1]


def source_of(label: str) -> str:
    """The source of a table label (``vidur``, ``aic``, ``lss``)."""
    return label.split(":", 1)[0]


def run(reference: Path, max_rows: int, seed: int, quick: bool,
        only: str = "") -> tuple[pd.DataFrame, list[str]]:
    """One row per (table, split) with the held-out APEs, fit time, chosen model and rows
    used; and the notes on rows left out."""
    params = PredictorParams(seed=seed)
    rng = np.random.default_rng(seed)
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        tables, notes = load_tables(reference, Path(tmp))
    if quick:  # one Vidur model file per SKU, the H100 aiconfigurator tables, one LSS model
        keep = ("vidur:h100-sxm/llama-2-70b/tp4", "vidur:a100-80gb/llama-3-8b/tp1",
                "vidur:h100-sxm/network", "aic:h100-sxm/ops/", "aic:h100-sxm/network",
                "lss:rtx-pro-6000/qwen3-30b-a3b/tp1")
        tables = [t for t in tables if t.label.startswith(keep)]
    if only:
        tables = [t for t in tables if only in t.label]
        notes = [n for n in notes if only in n]
    for label, family, rows, source_rows in tables:
        rows = rows.reset_index(drop=True)
        if len(rows) > max_rows:
            rows = rows.iloc[np.sort(rng.choice(len(rows), max_rows, replace=False))]
            rows = rows.reset_index(drop=True)
        n = len(rows)
        if n < 10:
            notes.append(f"{label}: {n} rows, too few to split (not evaluated)")
            continue
        perm = rng.permutation(n)
        cut = round(0.8 * n)
        ape, secs, kind = _fit_eval(rows, family, perm[:cut], perm[cut:], params)
        plateau = (plateau_spread(rows) if operator_of(label) == "gemm"
                   and rows["count"].max() == 1 else np.array([]))
        base = {"table": label, "op": operator_of(label), "source": source_of(label),
                "rows": n, "source_rows": source_rows}
        records.append({**base, "split": "random", "ape": ape, "fit_s": secs, "kind": kind,
                        "spread": repeat_spread(rows.iloc[perm[cut:]]), "plateau": plateau})
        for col in EXTRAPOLATE.get(family, ()):
            v = rows[col].to_numpy()
            thr = np.quantile(v, 0.8)
            test = np.flatnonzero(v >= thr) if np.any(v < thr) else np.array([], int)
            train = np.flatnonzero(v < thr)
            if len(test) == 0 or len(train) < 10:
                continue
            ape, secs, kind = _fit_eval(rows, family, train, test, params)
            records.append({**base, "split": f"extrapolate:{col}", "ape": ape, "fit_s": secs,
                            "kind": kind, "spread": np.array([]), "plateau": np.array([])})
    return pd.DataFrame(records), notes


def summarise(res: pd.DataFrame, by: tuple[str, ...] = ("op",)) -> pd.DataFrame:
    """Per operator (or per ``by``): median/P95 APE (random split), median APE
    (extrapolation), rows used of the tables' rows, fit time, chosen models."""
    rows = []
    for key, part in res.groupby(list(by), sort=True):
        rnd = part[part["split"] == "random"]
        ext = part[part["split"] != "random"]
        a = np.concatenate(rnd["ape"].to_list())
        x = np.concatenate(ext["ape"].to_list()) if len(ext) else np.array([np.nan])
        models = Counter(rnd["kind"])
        spread = np.concatenate(rnd["spread"].to_list())
        rows.append({
            **dict(zip(by, key, strict=True)), "tables": len(rnd),
            "rows_used": int(rnd["rows"].sum()), "rows_of": int(rnd["source_rows"].sum()),
            "held_out": len(a),
            "median_ape": np.median(a), "p95_ape": np.percentile(a, 95),
            "extrap_median_ape": np.median(x),
            "repeat_spread_p95": np.percentile(spread, 95) if len(spread) else np.nan,
            "fit_s": part["fit_s"].sum(),
            "chosen": ", ".join(f"{k} {v}" for k, v in models.most_common()),
        })
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, default=ROOT.parent / "shared" / "reference")
    ap.add_argument("--max-rows", type=int, default=20000,
                    help="subsample larger tables to this many rows (0: no cap)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="a few tables only (smoke run)")
    ap.add_argument("--only", default="", help="only tables whose label contains this")
    ap.add_argument("--by-table", action="store_true", help="also print each table's figures")
    args = ap.parse_args()
    if not (args.reference / "vidur").is_dir():
        sys.exit(f"needs the reference data: {args.reference} not found")
    t0 = time.perf_counter()
    res, notes = run(args.reference, args.max_rows or sys.maxsize, args.seed, args.quick,
                     args.only)
    if res.empty:
        sys.exit("no table matched")
    if args.by_table:
        for (table, split), part in res.groupby(["table", "split"], sort=True):
            a = np.concatenate(part["ape"].to_list())
            print(f"{table} {split}: median {np.median(a):.2f}% p95 "
                  f"{np.percentile(a, 95):.2f}% rows {part['rows'].iloc[0]}/"
                  f"{part['source_rows'].iloc[0]} ({part['kind'].iloc[0]})")
    with pd.option_context("display.width", 250, "display.max_columns", 20,
                           "display.max_colwidth", 90, "display.float_format", "{:.2f}".format):
        print(summarise(res).to_string(index=False))
        print()
        print(summarise(res, ("source", "op")).drop(columns="chosen").to_string(index=False))
    for note in notes:
        print(f"note: {note}")
    rnd = res[res["split"] == "random"]
    capped = rnd[rnd["rows"] < rnd["source_rows"]]
    for r in capped.itertuples():
        print(f"{r.table}: fitted on a subsample of {r.rows} of its {r.source_rows} rows "
              f"(--max-rows)")
    for r in rnd[rnd["plateau"].map(len) > 0].itertuples():
        a = np.concatenate(rnd[rnd["table"] == r.table]["ape"].to_list())
        print(f"{r.table}: P95 APE {np.percentile(a, 95):.2f}%, spread of the <= 16-token "
              f"plateau P95 {np.percentile(r.plateau, 95):.1f}%")
    ext = res[res["split"] != "random"]
    for split, part in ext.groupby("split"):
        print(f"{split}: median APE {np.median(np.concatenate(part['ape'].to_list())):.2f}%")
    a = np.concatenate(rnd["ape"].to_list())
    x = np.concatenate(ext["ape"].to_list())
    print(f"tables={len(rnd)} fits={len(res)} rows_used={int(rnd['rows'].sum())} "
          f"rows_of={int(rnd['source_rows'].sum())} fit_s={res['fit_s'].sum():.1f} "
          f"wall_s={time.perf_counter() - t0:.1f}")
    print(f"predictor_accuracy median_ape={np.median(a):.2f} p95_ape={np.percentile(a, 95):.2f} "
          f"extrap_median_ape={np.median(x):.2f}")


if __name__ == "__main__":
    main()
