"""Expert-parallel MoE layers: the profiled model's rule against measured EP ranks.

    python experiments/ep_scaling.py [--reference ../shared/reference] [--write]
        [--max-groups 0]

A model's ``moe_experts`` profile is measured with every expert on one GPU. Under expert
parallelism (``parallel.expert_parallel = e``) ``ProfiledModel._build_ep`` prices one
GPU's MoE layer as ``F(T) + (t1(T) - F(T)) / e`` (``simulator/execution/ep_floor.py``):
``t1`` the profile at the group's ``T`` tokens, ``F`` a per-rank floor (routing and
permuting every routed slot of the group) fitted per SKU. aiconfigurator measured both
sides (``moe/moe_perf.parquet``: one GPU as rank 0 of an EP group, no communication). Per
(SKU, shape, routing) of the bf16 rows with ``moe_tp = 1``, the ``moe_ep = 1`` rows are
fitted as ``ProfiledModel`` fits a profile (the ``moe_experts`` predictor family) and
every ``moe_ep > 1`` row whose ``T`` lies in the fitted tokens is predicted:

- ``floor``: the rule, with ``F`` fitted per SKU on the other half of the shapes
  (2 folds of the shapes, seeded): held-out shapes only;
- ``ratio``: the previous rule, the profile at ``T / e`` times the calibrated roofline's
  ratio for ``E / e`` local experts (rows whose ``T / e`` is in the fitted tokens);
- ``calibrated``: the calibrated model's own EP layer without a profile (its GEMM curve
  for ``t1``, the packaged floor: fitted on every shape, so in-sample), less its router;
  and ``calibrated_share``, its previous formula: the local experts' kernels on their
  share of the routed slots only.

It prints the absolute percentage error per EP degree, routing and SKU, and as its last
line ``ep_scaling median_ape=<x> p95_ape=<y> ratio_median_ape=<z>
calibrated_median_ape=<c> calibrated_share_median_ape=<s> rows=<n>`` (the first two: the
floor rule's on held-out shapes). ``--write`` fits ``F`` per SKU on every shape
(balanced routing where measured) and writes ``simulator/execution/ep_moe.yaml``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from profiler.import_aiconfigurator import SYSTEMS  # noqa: E402
from simulator.catalogue import load_catalogue  # noqa: E402
from simulator.catalogue.specs import ModelSpec  # noqa: E402
from simulator.execution.calibrated import CalibratedModel  # noqa: E402
from simulator.execution.ep_floor import EP_FLOOR_PATH, rank_seconds  # noqa: E402
from simulator.execution.predictors import PredictorParams, select  # noqa: E402

SHAPE = ["hidden_size", "inter_size", "topk", "num_experts", "distribution"]


def moe_rows(reference: Path) -> pd.DataFrame:
    """bf16 MoE rows with experts whole on their GPU (``moe_tp = 1``), every system;
    repeated shapes merged (median), latency in ``us``."""
    parts = []
    for system, sku in SYSTEMS.items():
        path = reference / "aiconfigurator" / system / "moe" / "moe_perf.parquet"
        if not path.is_file():
            continue
        df = pd.read_parquet(path)
        df = df[(df["moe_dtype"] == "bfloat16") & (df["moe_tp_size"] == 1)]
        parts.append(df.assign(sku=sku))
    if not parts:
        raise SystemExit(f"no aiconfigurator MoE tables under {reference}")
    out = pd.concat(parts, ignore_index=True)
    keys = ["sku", *SHAPE, "moe_ep_size", "num_tokens"]
    return out.groupby(keys, as_index=False)["latency"].median().assign(
        us=lambda d: d["latency"] * 1e3)


def shape_model(hidden: int, inter: int, topk: int, experts: int) -> ModelSpec:
    """A one-layer MoE model of this shape (attention sizes are not used here)."""
    heads = max(1, hidden // 128)
    return ModelSpec(name=f"moe-{hidden}-{inter}-{topk}-{experts}", num_layers=1,
                     num_heads=heads, num_kv_heads=heads, hidden_size=hidden,
                     ffn_size=inter, vocab_size=32000, max_context=131072,
                     num_experts=experts, experts_top_k=topk)


def ep_points(rows: pd.DataFrame, max_groups: int, params: PredictorParams) -> pd.DataFrame:
    """One row per measured EP row: the measurement, the single-GPU fit at ``T``
    (``t1``) and the previous rule's prediction (``ratio``, NaN where ``T / e`` is
    outside the fitted tokens). Rows whose ``T`` is outside the fitted tokens are left
    out."""
    cat = load_catalogue()
    out = []
    groups = list(rows.groupby(["sku", *SHAPE], sort=True))
    for (sku, hidden, inter, topk, experts, dist), g in groups[:max_groups or None]:
        one, eps = g[g["moe_ep_size"] == 1], g[g["moe_ep_size"] > 1]
        if len(one) < 5 or eps.empty:
            continue
        shape = {"n": inter, "k": hidden, "experts": experts, "topk": topk}

        def X(tokens: np.ndarray, shape: dict = shape) -> pd.DataFrame:
            return pd.DataFrame({"num_tokens": tokens, **shape})

        fit = select(X(one["num_tokens"]), one["us"].to_numpy(), "moe_experts", params)
        lo, hi = float(one["num_tokens"].min()), float(one["num_tokens"].max())
        spec = shape_model(int(hidden), int(inter), int(topk), int(experts))
        s, node = cat.sku(sku), cat.node(cat.default_node_for(sku))
        for e, part in eps.groupby("moe_ep_size"):
            e = int(e)
            tok = part["num_tokens"].to_numpy(dtype=np.float64)
            keep = (tok >= lo) & (tok <= hi)
            if experts % e or not keep.any():
                continue
            T = tok[keep]
            fb = CalibratedModel(spec, s, node, 1, 1)
            fb.set_expert_parallel(e)
            Te = T / e
            ratio = (np.asarray(fb._moe_roofline(Te, T, e, np.maximum))
                     / np.asarray(fb._moe_roofline(Te, Te, 1, np.maximum)))
            old = np.where(Te >= lo, fit.predict(X(Te)) * ratio, np.nan)
            # the calibrated model's own EP layer (no profile; the packaged floor), less its
            # router, which aiconfigurator's rows do not hold
            router = np.array([fb._gemm(t, hidden, experts, quantised=False) for t in T])
            cal = (np.asarray(fb._ep_moe(T, T, np.maximum)) - router) * 1e6
            # its previous EP formula: the local experts on their share of the slots only
            R = T * topk / e
            used = np.minimum(experts / e, R)
            up = (2 if spec.gated_mlp else 1) * inter
            share = (np.array([fb._gemm(r, hidden, up, u) + fb._gemm(r, inter, hidden, u)
                               for r, u in zip(R, used, strict=True)]) + fb._eact * R) * 1e6
            out.append(pd.DataFrame({
                "sku": sku, "shape": f"{hidden}/{inter}/top{topk}/{experts}",
                "distribution": dist, "ep": e, "tokens": T,
                "slots": T * topk * hidden, "measured": part["us"].to_numpy()[keep],
                "t1": fit.predict(X(T)), "ratio": old, "calibrated": cal,
                "calibrated_share": share}))
    return pd.concat(out, ignore_index=True)


def fit_floor(d: pd.DataFrame) -> tuple[float, float]:
    """(fixed_s, slot_s) of ``F`` from EP points: least squares, relative to the
    measurement, of ``(measured - t1 / e) / (1 - 1 / e) = F`` (balanced routing where
    the points have it; coefficients >= 0)."""
    if (d["distribution"] == "balanced").any():
        d = d[d["distribution"] == "balanced"]
    e = d["ep"].to_numpy(dtype=np.float64)
    y = (d["measured"].to_numpy() - d["t1"].to_numpy() / e) / (1 - 1 / e)
    w = 1.0 / d["measured"].to_numpy()
    A = np.column_stack([np.ones(len(d)), d["slots"].to_numpy()]) * w[:, None]
    from scipy.optimize import nnls
    coef, _ = nnls(A / A.max(axis=0), y * w)
    coef = coef / A.max(axis=0)
    return float(coef[0]) * 1e-6, float(coef[1]) * 1e-6  # us -> s


def floor_rule(d: pd.DataFrame, fixed_s: float, slot_s: float) -> np.ndarray:
    """The engine's ``rank_seconds`` (``F + (t1 - F) / e``, ``t1`` not below ``F``) in
    us."""
    F = (fixed_s + slot_s * d["slots"].to_numpy()) * 1e6
    return rank_seconds(d["t1"].to_numpy(), F, d["ep"].to_numpy())


def held_out(points: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The floor rule's prediction of every point, ``F`` fitted per SKU on the other
    fold of the shapes (2 folds, seeded)."""
    out = []
    rng = np.random.default_rng(seed)
    for _, d in points.groupby("sku"):
        shapes = np.array(sorted(d["shape"].unique()))
        rng.shuffle(shapes)
        for fold in (shapes[::2], shapes[1::2]):
            test = d["shape"].isin(set(fold))
            if not test.any() or test.all():
                continue
            fixed, slot = fit_floor(d[~test])
            out.append(d[test].assign(floor=floor_rule(d[test], fixed, slot)))
    return pd.concat(out, ignore_index=True)


def _ape(pred: pd.Series, actual: pd.Series) -> np.ndarray:
    return np.abs(pred.to_numpy() / actual.to_numpy() - 1.0) * 100.0


def write_floors(points: pd.DataFrame, path: Path) -> dict[str, dict[str, float]]:
    """Fit ``F`` per SKU on every shape and write it to ``path``."""
    skus = {}
    for sku, d in points.groupby("sku"):
        fixed, slot = fit_floor(d)
        skus[sku] = {"fixed_s": float(f"{fixed:.4g}"), "slot_s": float(f"{slot:.4g}"),
                     "rows": len(d)}
    doc = {"written_by": "experiments/ep_scaling.py --write",
           "date": dt.date.today().isoformat(),
           "model": "F(T) = fixed_s + slot_s * T * top_k * hidden, per rank of an EP group",
           "skus": skus}
    path.write_text("# Fitted on aiconfigurator's measured EP MoE ranks (bf16, balanced "
                    "routing); do not edit by hand.\n" + yaml.safe_dump(doc, sort_keys=False))
    return skus


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, default=ROOT.parent / "shared" / "reference")
    ap.add_argument("--max-groups", type=int, default=0, help="first N groups only (smoke)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true", help=f"write {EP_FLOOR_PATH.name}")
    args = ap.parse_args()
    t0 = time.perf_counter()
    points = ep_points(moe_rows(args.reference), args.max_groups, PredictorParams(seed=0))
    res = held_out(points, args.seed)
    res = res.assign(ape=_ape(res["floor"], res["measured"]),
                     signed=(res["floor"] / res["measured"] - 1.0) * 100.0,
                     ape_ratio=_ape(res["ratio"], res["measured"]),
                     ape_cal=_ape(res["calibrated"], res["measured"]),
                     ape_share=_ape(res["calibrated_share"], res["measured"]))

    def stats(d: pd.DataFrame) -> pd.Series:
        return pd.Series({"rows": len(d), "median_ape": np.median(d["ape"]),
                          "p95_ape": np.percentile(d["ape"], 95),
                          "median_signed": np.median(d["signed"]),
                          "ratio_median_ape": np.nanmedian(d["ape_ratio"]),
                          "calibrated_median_ape": np.median(d["ape_cal"]),
                          "calibrated_share_median_ape": np.median(d["ape_share"])})

    with pd.option_context("display.width", 200, "display.float_format", "{:.2f}".format):
        for by in (["ep"], ["distribution"], ["sku"]):
            print(res.groupby(by).apply(stats, include_groups=False).to_string())
            print()
    if args.write:
        for sku, v in write_floors(points, EP_FLOOR_PATH).items():
            print(f"{sku}: fixed {v['fixed_s'] * 1e6:.1f} us, "
                  f"{v['slot_s'] * 1e12:.3f} ps per slot x hidden ({v['rows']} points)")
        print(f"written {EP_FLOOR_PATH.relative_to(ROOT)}")
    print(f"groups={res.groupby(['sku', 'shape', 'distribution']).ngroups} "
          f"wall_s={time.perf_counter() - t0:.1f}")
    print(f"ep_scaling median_ape={np.median(res['ape']):.2f} "
          f"p95_ape={np.percentile(res['ape'], 95):.2f} "
          f"ratio_median_ape={np.nanmedian(res['ape_ratio']):.2f} "
          f"calibrated_median_ape={np.median(res['ape_cal']):.2f} "
          f"calibrated_share_median_ape={np.median(res['ape_share']):.2f} rows={len(res)}")


if __name__ == "__main__":
    main()
