"""How well the profiled model's expert-parallel rule predicts measured EP MoE layers.

    python experiments/ep_scaling.py [--reference ../shared/reference] [--max-groups 0]

A model's ``moe_experts`` profile is measured with every expert on one GPU. Under expert
parallelism (``parallel.expert_parallel = e``) ``ProfiledModel._build_ep`` prices a GPU
of the group as that profile read at ``T / e`` tokens (the same routed tokens per GPU)
times the fallback's ratio of the MoE roofline with ``E / e`` local experts and ``T``
group tokens to the roofline of the profile's shape. aiconfigurator measured both sides
(``moe/moe_perf.parquet``: one GPU as rank 0 of an EP group, no communication), so this
script checks the rule on held-out measurements: per (SKU, shape, routing) of the bf16
rows with ``moe_tp = 1``, the ``moe_ep = 1`` rows are fitted as ``ProfiledModel`` fits a
profile (the ``moe_experts`` predictor family), and every ``moe_ep = e > 1`` row is
predicted by the rule with a calibrated fallback of that shape. It prints the absolute
percentage error per EP degree, routing and SKU, beside two alternatives: the profile at
``T / e`` alone (``plain``), and the profile at the group's ``T`` tokens times the
roofline ratio at ``T`` (``at_T``); and as its last line
``ep_scaling median_ape=<x> p95_ape=<y> rows=<n>`` (the rule's). Rows whose ``T / e``
lies outside the profile's measured tokens are left out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from profiler.import_aiconfigurator import SYSTEMS  # noqa: E402
from simulator.catalogue import load_catalogue  # noqa: E402
from simulator.catalogue.specs import ModelSpec  # noqa: E402
from simulator.execution.calibrated import CalibratedModel  # noqa: E402
from simulator.execution.predictors import PredictorParams, select  # noqa: E402

COLS = ["num_tokens", "n", "k", "experts", "topk"]
SHAPE = ["hidden_size", "inter_size", "topk", "num_experts", "distribution"]


def moe_rows(reference: Path) -> pd.DataFrame:
    """bf16 MoE rows with experts whole on their GPU (``moe_tp = 1``), every system."""
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
    # repeated shapes: the median latency, in us
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


def evaluate(rows: pd.DataFrame, max_groups: int, params: PredictorParams) -> pd.DataFrame:
    """One row per measured EP row: its measurement, the rule's and the plain profile's."""
    cat = load_catalogue()
    out = []
    groups = list(rows.groupby(["sku", *SHAPE], sort=True))
    if max_groups:
        groups = groups[:max_groups]
    for (sku, hidden, inter, topk, experts, dist), g in groups:
        one = g[g["moe_ep_size"] == 1]
        eps = g[g["moe_ep_size"] > 1]
        if len(one) < 5 or eps.empty:
            continue
        X = pd.DataFrame({"num_tokens": one["num_tokens"], "n": inter, "k": hidden,
                          "experts": experts, "topk": topk})
        fit = select(X, one["us"].to_numpy(), "moe_experts", params)
        lo, hi = float(one["num_tokens"].min()), float(one["num_tokens"].max())
        spec = shape_model(int(hidden), int(inter), int(topk), int(experts))
        s = cat.sku(sku)
        node = cat.node(cat.default_node_for(sku))
        for e, part in eps.groupby("moe_ep_size"):
            e = int(e)
            if experts % e:
                continue
            fb = CalibratedModel(spec, s, node, 1, 1)
            fb.set_expert_parallel(e)
            T = part["num_tokens"].to_numpy(dtype=np.float64)
            Te = T / e
            inside = (Te >= lo) & (Te <= hi)  # the profile's measured range
            Xe = pd.DataFrame({"num_tokens": Te, "n": inter, "k": hidden,
                               "experts": experts, "topk": topk})
            plain = fit.predict(Xe)
            ratio = (np.asarray(fb._moe_roofline(Te, T, e, np.maximum))
                     / np.asarray(fb._moe_roofline(Te, Te, 1, np.maximum)))
            Xg = Xe.assign(num_tokens=T)
            at_T = fit.predict(Xg) * (np.asarray(fb._moe_roofline(T, T, e, np.maximum))
                                      / np.asarray(fb._moe_roofline(T, T, 1, np.maximum)))
            out.append(pd.DataFrame({
                "sku": sku, "shape": f"{hidden}/{inter}/top{topk}/{experts}",
                "distribution": dist, "ep": e, "tokens": T, "inside": inside,
                "measured": part["us"].to_numpy(), "rule": plain * ratio, "plain": plain,
                "at_T": at_T}))
    return pd.concat(out, ignore_index=True)


def _ape(pred: pd.Series, actual: pd.Series) -> np.ndarray:
    return np.abs(pred.to_numpy() / actual.to_numpy() - 1.0) * 100.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, default=ROOT.parent / "shared" / "reference")
    ap.add_argument("--max-groups", type=int, default=0, help="first N groups only (smoke)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    res = evaluate(moe_rows(args.reference), args.max_groups, PredictorParams(seed=0))
    res = res[res["inside"]]  # T / e inside the profile's measured tokens
    res = res.assign(ape=_ape(res["rule"], res["measured"]),
                     ape_plain=_ape(res["plain"], res["measured"]),
                     signed=(res["rule"] / res["measured"] - 1.0) * 100.0,
                     ape_T=_ape(res["at_T"], res["measured"]),
                     signed_T=(res["at_T"] / res["measured"] - 1.0) * 100.0)

    def stats(d: pd.DataFrame) -> pd.Series:
        return pd.Series({"rows": len(d), "median_ape": np.median(d["ape"]),
                          "p95_ape": np.percentile(d["ape"], 95),
                          "median_signed": np.median(d["signed"]),
                          "plain_median_ape": np.median(d["ape_plain"]),
                          "at_T_median_ape": np.median(d["ape_T"]),
                          "at_T_signed": np.median(d["signed_T"])})

    with pd.option_context("display.width", 200, "display.float_format", "{:.2f}".format):
        for by in (["ep"], ["distribution"], ["sku"]):
            print(res.groupby(by).apply(stats, include_groups=False).to_string())
            print()
    print(f"groups={res.groupby(['sku', 'shape', 'distribution']).ngroups} "
          f"wall_s={time.perf_counter() - t0:.1f}")
    print(f"ep_scaling median_ape={np.median(res['ape']):.2f} "
          f"p95_ape={np.percentile(res['ape'], 95):.2f} rows={len(res)}")


if __name__ == "__main__":
    main()
