"""Accuracy of the operator-time predictors on the public reference profiles.

    python experiments/predictor_accuracy.py [--reference ../shared/reference]
        [--max-rows 20000] [--seed 0] [--quick]

Imports Vidur's profiles (per-model ``layer_ops``, collectives) and aiconfigurator's
shape-keyed tables (attention prefill/decode, GEMM, collectives) into a temporary store
with the project's importers, then, for every table and operator:

- random split: fit (grid search + CV, ``simulator.execution.predictors``) on a random 80%
  of the rows, report the absolute percentage error (APE) on the other 20%;
- extrapolation split: hold out whole upper ranges and fit on the rest: the largest 20%
  of token counts (``layer_ops``; GEMM ``m``), of message sizes (collectives), of KV
  lengths and of batch sizes (decode attention), of chunk sizes and of batch sizes
  (prefill attention) (each a separate fit).

Every dtype the importers write is included (Vidur's fp16; aiconfigurator's bf16 and, where
the importer reads them, fp8), each table fitted on its own. Tables larger than
``--max-rows`` are subsampled (seeded) to that many rows before the splits;
aiconfigurator's MoE rows are left out (the predictors' features do not model experts).

Prints, per operator, median and P95 APE of both splits, the P95 spread of the repeated
calls behind a row ((max - min) / median, where a row merges several calls: the noise
floor), the fit time and the models the grid search chose; for GEMM tables measured once
per shape, the spread of the rows of at most 16 tokens (one row tile) around the median of
their (n, k), the noise floor there. The last line is
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
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from profiler.import_aiconfigurator import import_aiconfigurator  # noqa: E402
from profiler.import_vidur import import_vidur  # noqa: E402
from simulator.execution.predictors import (  # noqa: E402
    FAMILY_FEATURES,
    ForestPredictor,
    PiecewiseLinearPredictor,
    PredictorParams,
    select,
    training_rows,
)
from simulator.profiles import ProfileStore  # noqa: E402

TARGET = "median_us"
# family -> the columns whose upper 20% of rows are held out in the extrapolation split
EXTRAPOLATE = {
    "layer_ops": ("num_tokens",),
    "collective": ("size_bytes",),
    "attention_decode": ("kv_len", "batch_size"),
    "attention_prefill": ("chunk_tokens", "batch_size"),
}


def load_tables(reference: Path, dest: Path) -> list[tuple[str, str, pd.DataFrame]]:
    """(table label, family, rows) for every table and operator of the reference data."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        import_vidur(reference / "vidur" / "profiling", dest / "vidur")
        import_aiconfigurator(reference / "aiconfigurator", dest / "aic")
    out = []
    for sub in ("vidur", "aic"):
        store = ProfileStore(dest / sub)
        for e in store.entries().itertuples():
            if e.family not in FAMILY_FEATURES:
                continue
            df = pd.read_parquet(e.path)
            if e.family == "layer_ops":
                df = df[df["op"] != "moe_experts"]
            where = e.model or (f"network-{e.node}" if e.node else "ops")
            for op, rows in training_rows(df, e.family).items():
                label = op or e.family
                out.append((f"{sub}:{e.device}/{where}/tp{e.tp}/{e.dtype}:{label}", e.family,
                            rows))
    return out


def _fit_eval(rows: pd.DataFrame, family: str, train: np.ndarray, test: np.ndarray,
              params: PredictorParams) -> tuple[np.ndarray, float, str]:
    cols = list(FAMILY_FEATURES[family].columns)
    tr, te = rows.iloc[train], rows.iloc[test]
    res = select(tr[cols], tr[TARGET].to_numpy(), family, params)
    pred = res.predict(te[cols])
    ape = np.abs(pred / np.maximum(te[TARGET].to_numpy(), 1e-3) - 1.0) * 100.0
    return ape, res.seconds, model_name(res.predictor)


def model_name(pred: object) -> str:
    """``forest``, or ``piecewise <log|linear>`` plus ``+median`` when its knots are
    smoothed: the kind of model the grid search chose."""
    if isinstance(pred, PiecewiseLinearPredictor):
        return f"piecewise {pred.interp}" + ("+median" if pred.smooth > 1 else "")
    return "forest" if isinstance(pred, ForestPredictor) else type(pred).__name__


def repeat_spread(rows: pd.DataFrame) -> np.ndarray:
    """(max - min) / median of the repeated calls behind each row (rows with count > 1), %."""
    rep = rows[rows["count"] > 1]
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


def run(reference: Path, max_rows: int, seed: int, quick: bool,
        only: str = "") -> pd.DataFrame:
    """One row per (table, split) with the held-out APEs, fit time and chosen model."""
    params = PredictorParams(seed=seed)
    rng = np.random.default_rng(seed)
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        tables = load_tables(reference, Path(tmp))
    if quick:  # one Vidur model file per SKU and the H100 aiconfigurator tables
        keep = ("vidur:h100-sxm/llama-2-70b/tp4", "vidur:a100-80gb/llama-3-8b/tp1",
                "vidur:h100-sxm/network", "aic:h100-sxm")
        tables = [t for t in tables if t[0].startswith(keep)]
    if only:
        tables = [t for t in tables if only in t[0]]
    for label, family, rows in tables:
        rows = rows.reset_index(drop=True)
        if len(rows) > max_rows:
            rows = rows.iloc[np.sort(rng.choice(len(rows), max_rows, replace=False))]
            rows = rows.reset_index(drop=True)
        n = len(rows)
        if n < 10:
            continue
        perm = rng.permutation(n)
        cut = round(0.8 * n)
        ape, secs, kind = _fit_eval(rows, family, perm[:cut], perm[cut:], params)
        plateau = (plateau_spread(rows) if family == "layer_ops" and rows["count"].max() == 1
                   else np.array([]))
        records.append({"table": label, "op": operator_of(label), "split": "random",
                        "ape": ape, "fit_s": secs, "model": kind, "rows": n,
                        "spread": repeat_spread(rows.iloc[perm[cut:]]), "plateau": plateau})
        for col in EXTRAPOLATE.get(family, ()):
            v = rows[col].to_numpy()
            thr = np.quantile(v, 0.8)
            test = np.flatnonzero(v >= thr) if np.any(v < thr) else np.array([], int)
            train = np.flatnonzero(v < thr)
            if len(test) == 0 or len(train) < 10:
                continue
            ape, secs, kind = _fit_eval(rows, family, train, test, params)
            records.append({"table": label, "op": operator_of(label),
                            "split": f"extrapolate:{col}", "ape": ape, "fit_s": secs,
                            "model": kind, "rows": n, "spread": np.array([])})
    return pd.DataFrame(records)


def summarise(res: pd.DataFrame) -> pd.DataFrame:
    """Per operator: median/P95 APE (random split), median APE (extrapolation), fit time."""
    rows = []
    for op, part in res.groupby("op", sort=True):
        rnd = part[part["split"] == "random"]
        ext = part[part["split"] != "random"]
        a = np.concatenate(rnd["ape"].to_list())
        x = np.concatenate(ext["ape"].to_list()) if len(ext) else np.array([np.nan])
        models = rnd["model"].value_counts()
        spread = np.concatenate(rnd["spread"].to_list())
        rows.append({
            "operator": op, "tables": len(rnd), "held_out": len(a),
            "median_ape": np.median(a), "p95_ape": np.percentile(a, 95),
            "extrap_median_ape": np.median(x),
            "repeat_spread_p95": np.percentile(spread, 95) if len(spread) else np.nan,
            "fit_s": part["fit_s"].sum(),
            "chosen": ", ".join(f"{k} {v}" for k, v in models.items()),
        })
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, default=ROOT.parent / "shared" / "reference")
    ap.add_argument("--max-rows", type=int, default=20000,
                    help="subsample larger tables to this many rows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="a few tables only (smoke run)")
    ap.add_argument("--only", default="", help="only tables whose label contains this")
    ap.add_argument("--by-table", action="store_true", help="also print each table's figures")
    args = ap.parse_args()
    if not (args.reference / "vidur").is_dir():
        sys.exit(f"needs the reference data: {args.reference} not found")
    t0 = time.perf_counter()
    res = run(args.reference, args.max_rows, args.seed, args.quick, args.only)
    summary = summarise(res)
    if args.by_table:
        for (table, split), part in res.groupby(["table", "split"], sort=True):
            a = np.concatenate(part["ape"].to_list())
            print(f"{table} {split}: median {np.median(a):.2f}% p95 "
                  f"{np.percentile(a, 95):.2f}% ({part['model'].iloc[0]})")
    with pd.option_context("display.width", 200, "display.max_columns", 20,
                           "display.float_format", "{:.2f}".format):
        print(summary.to_string(index=False))
    rnd = res[res["split"] == "random"]
    for r in rnd[rnd["plateau"].map(len) > 0].itertuples():
        a = np.concatenate(rnd[rnd["table"] == r.table]["ape"].to_list())
        print(f"{r.table}: P95 APE {np.percentile(a, 95):.2f}%, spread of the <= 16-token "
              f"plateau P95 {np.percentile(r.plateau, 95):.1f}%")
    ext = res[res["split"] != "random"]
    for split, part in ext.groupby("split"):
        print(f"{split}: median APE {np.median(np.concatenate(part['ape'].to_list())):.2f}%")
    a = np.concatenate(res[res["split"] == "random"]["ape"].to_list())
    x = np.concatenate(ext["ape"].to_list())
    print(f"tables={int((res['split'] == 'random').sum())} fits={len(res)} "
          f"fit_s={res['fit_s'].sum():.1f} wall_s={time.perf_counter() - t0:.1f}")
    print(f"predictor_accuracy median_ape={np.median(a):.2f} p95_ape={np.percentile(a, 95):.2f} "
          f"extrap_median_ape={np.median(x):.2f}")


if __name__ == "__main__":
    main()
