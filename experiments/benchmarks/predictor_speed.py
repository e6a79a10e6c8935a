"""Batch-runtime lookups: compiled tables vs calling the fitted scikit-learn models directly.

    python experiments/benchmarks/predictor_speed.py [--batches 20000] [--direct 200]
        [--model llama-2-70b --sku h100-sxm --tp 4] [--cache-dir DIR]

Imports the reference profiles (Vidur's per-model operators and collectives,
aiconfigurator's attention tables; ../shared/reference) into a temporary store, builds a
``ProfiledModel`` (fitting its predictors into ``--cache-dir``, a temporary directory by
default), then times, in the same run and on the same random batches (Sarathi-like: up to
64 decodes of 10..4000 tokens, 30% with one prefill chunk of 512 tokens minus the decodes
after 0..3000 cached tokens):

- ``lookup``: ``ProfiledModel.stage_times`` (the compiled numpy tables);
- ``sklearn``: the same batch costed by the fitted predictors called directly (one
  ``predict`` per operator on a one-row frame: the layer's operators at the batch's token
  count, the all-reduce at its size, decode and prefill attention at the batch's shape),
  with the same stage arithmetic. Also prints how far the two agree.

The model is built twice: first with an empty predictor cache (every predictor fitted),
then again from the filled cache (a warm start, as every later simulation of the same
model, SKU and TP sees it).

Last line: ``predictor_speed fit_s=<x> warm_load_s=<y> batch_us=<z> cache_mb=<m>``: seconds
to build the model with a cold cache and with a warm one, microseconds per ``stage_times``
call (one batch's runtime through the compiled tables), and the cache's size on disk.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from profiler.import_aiconfigurator import import_aiconfigurator  # noqa: E402
from profiler.import_vidur import import_vidur  # noqa: E402
from simulator.catalogue import default_node_for, load_catalogue  # noqa: E402
from simulator.execution.predictors.cache import PredictorCache  # noqa: E402
from simulator.execution.profiled import ProfiledModel, ProfiledParams  # noqa: E402

LAYER_OPS = ("input_norm", "qkv_proj", "rope", "o_proj", "post_norm", "gate_up_proj", "act",
             "down_proj", "add", "add")  # two residual adds per layer


def batches(n: int, seed: int) -> list[tuple[list[int], list[int], list[int]]]:
    """Random Sarathi-like batches (chunk budget 512)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        nd = int(rng.integers(1, 65))
        kv = rng.integers(10, 4000, nd).tolist()
        if rng.random() < 0.3:
            out.append(([512 - nd], [int(rng.integers(0, 3000))], kv))
        else:
            out.append(([], [], kv))
    return out


def direct_stage_times(pm: ProfiledModel, chunks: list[int], prior: list[int],
                       kv: list[int]) -> float:
    """Stage-0 seconds of a batch from one-row predictions of the fitted models."""
    T = sum(chunks) + len(kv)
    layer = pm.fitted["layer_ops"]
    dense = 0.0
    for op in LAYER_OPS:
        n, k = pm.layer_shapes[op]
        dense += layer[op].predict(pd.DataFrame({"num_tokens": [T], "n": [n], "k": [k]}))[0]
    size = T * pm.model.hidden_size * pm.model.dtype_bytes
    ar = pm.fitted["collective"]["all_reduce"].predict(pd.DataFrame(
        {"num_gpus": [pm.tp], "gpus_per_node": [pm.tp], "size_bytes": [size]}))[0]
    dense += 2 * ar
    heads = {c: [v] for c, v in pm.heads.items()}
    ad = pm.fitted["attention_decode"][""].predict(pd.DataFrame(
        {**heads, "batch_size": [len(kv)], "kv_len": [sum(kv) / len(kv)]}))[0]
    ap = 0.0
    if chunks:
        units = sum(c * (2 * p + c + 1) for c, p in zip(chunks, prior, strict=True))
        ceq = (math.sqrt(1 + 4 * units / len(chunks)) - 1) / 2
        ap = pm.fitted["attention_prefill"][""].predict(pd.DataFrame(
            {**heads, "batch_size": [len(chunks)], "chunk_tokens": [ceq], "prior_kv": [0]}))[0]
    one = {"num_tokens": [T], "k": [0]}
    emb = layer["embedding"].predict(pd.DataFrame(
        {**one, "n": [pm.layer_shapes["embedding"][0]]}))[0]
    fnorm = layer["input_norm"].predict(pd.DataFrame(
        {**one, "n": [pm.layer_shapes["input_norm"][0]]}))[0]
    # parts without profiles here (CPU, LM head, sampling, launch): the model's fallback
    bd = pm.breakdown(chunks, prior, kv)[0]
    rest = bd["cpu_overhead"] + bd["lm_head"] + bd["sampling"] + bd["launch"]
    layers = pm.model.num_layers // pm.pp
    return (layers * (dense + ap + ad) + emb + ar + fnorm) * 1e-6 + rest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, default=ROOT.parent / "shared" / "reference")
    ap.add_argument("--batches", type=int, default=20000, help="batches timed via lookup")
    ap.add_argument("--direct", type=int, default=200, help="of those, timed via sklearn")
    ap.add_argument("--model", default="llama-2-70b")
    ap.add_argument("--sku", default="h100-sxm")
    ap.add_argument("--tp", type=int, default=4)
    ap.add_argument("--cache-dir", default="")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not (args.reference / "vidur").is_dir():
        sys.exit(f"needs the reference data: {args.reference} not found")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            import_vidur(args.reference / "vidur" / "profiling", tmp / "vidur")
            import_aiconfigurator(args.reference / "aiconfigurator", tmp / "aic")
        cat = load_catalogue()
        params = ProfiledParams(store=(str(tmp / "vidur"), str(tmp / "aic")))
        cache_dir = Path(args.cache_dir) if args.cache_dir else tmp / "cache"
        if any(cache_dir.glob("*")):
            sys.exit(f"--cache-dir {cache_dir} is not empty: the cold build must fit every "
                     "predictor; give an empty or new directory")

        def build(cache: PredictorCache) -> tuple[ProfiledModel, float]:
            t0 = time.perf_counter()
            pm = ProfiledModel(cat.model(args.model), cat.sku(args.sku),
                               cat.node(default_node_for(args.sku)), args.tp, 1, params,
                               max_batch=128, cache=cache)
            return pm, time.perf_counter() - t0

        cold = PredictorCache(cache_dir)
        pm, fit_s = build(cold)
        warm = PredictorCache(cache_dir)
        _, warm_s = build(warm)
        cache_mb = sum(f.stat().st_size for f in cache_dir.rglob("*") if f.is_file()) / 2**20
    missing = {"attention_decode", "attention_prefill", "collective"} - set(pm.fitted)
    if missing:
        sys.exit(f"{args.model} on {args.sku} at tp={args.tp} lacks profiles: {missing}")
    work = batches(args.batches, args.seed)
    t0 = time.perf_counter()
    for b in work:
        pm.stage_times(*b)
    lookup_us = (time.perf_counter() - t0) / len(work) * 1e6
    sub = work[: args.direct]
    t0 = time.perf_counter()
    direct = [direct_stage_times(pm, *b) for b in sub]
    sklearn_us = (time.perf_counter() - t0) / len(sub) * 1e6
    table = np.array([pm.stage_times(*b)[0] for b in sub])
    diff = np.abs(table / np.array(direct) - 1) * 100
    print(f"model build, cold cache (fitted {cold.fits} profiles): {fit_s:.1f} s; warm cache "
          f"({warm.hits} hits, {warm.fits} fitted): {warm_s:.2f} s; cache {cache_mb:.1f} MB")
    print(f"lookup vs direct predictions, stage-0 time: median {np.median(diff):.2f}% "
          f"max {diff.max():.2f}% over {len(sub)} batches; out of range: "
          f"{dict(pm.out_of_range) or 'none'}")
    print(f"lookup: {len(work)} calls, {lookup_us:.2f} us each; sklearn: {len(sub)} calls, "
          f"{sklearn_us:.0f} us each")
    print(f"lookup speedup over sklearn: {sklearn_us / lookup_us:.0f}x")
    print(f"predictor_speed fit_s={fit_s:.1f} warm_load_s={warm_s:.2f} batch_us={lookup_us:.2f} "
          f"cache_mb={cache_mb:.1f}")


if __name__ == "__main__":
    main()
