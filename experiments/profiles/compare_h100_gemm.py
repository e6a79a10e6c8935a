"""Agreement of our H100 GEMM measurements with Vidur's published H100 profiles.

    python experiments/profiles/compare_h100_gemm.py [--reference ../shared/reference]

Imports Vidur's ``profiling/compute/h100/meta-llama/Llama-2-70b-hf/mlp.csv`` into a
temporary store (``python -m profiler.import_vidur``), and compares, per GEMM (QKV, O,
gate/up, down) and TP, its median time at each of Vidur's token counts with ours
(``simulator/profiles/data``, measured by ``python -m profiler``), interpolated log-log
between our grid points. Prints the ratio ours / Vidur per operator and TP, and as its
last line ``h100_gemm_agreement median_ratio=<x> p10=<a> p90=<b> rows=<n>``. Vidur
measured fp16 with PyTorch eager GEMMs on an H100 SXM in 2023-24; we measured bf16 inside
CUDA graphs (no launch gaps) with torch 2.11 / CUDA 13.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.profiles import ProfileStore

GEMMS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, default=ROOT.parent / "shared" / "reference")
    args = ap.parse_args()
    src = args.reference / "vidur" / "profiling"
    if not src.is_dir():
        raise SystemExit(f"{src} not found: pass --reference /path/to/shared/reference")
    ours = ProfileStore(resources.files("simulator.profiles") / "data")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "profiler.import_vidur", str(src), tmp],
                       check=True, capture_output=True, cwd=ROOT)
        theirs = ProfileStore(tmp)
        for tp in (2, 4, 8):
            a, _ = ours.load("h100-sxm", "llama-2-70b", tp, "layer_ops")
            b, _ = theirs.load("h100-sxm", "llama-2-70b", tp, "layer_ops", "fp16")
            for op in GEMMS:
                mine = a[a["op"] == op].sort_values("num_tokens")
                ref = b[b["op"] == op]
                x, y = np.log(mine["num_tokens"]), np.log(mine["median_us"])
                inside = ref[(ref["num_tokens"] >= mine["num_tokens"].min())
                             & (ref["num_tokens"] <= mine["num_tokens"].max())]
                est = np.exp(np.interp(np.log(inside["num_tokens"]), x, y))
                rows += [{"tp": tp, "op": op, "num_tokens": int(t), "ours_us": float(e),
                          "vidur_us": float(v)}
                         for t, e, v in zip(inside["num_tokens"], est, inside["median_us"],
                                            strict=True)]
    df = pd.DataFrame(rows)
    df["ratio"] = df["ours_us"] / df["vidur_us"]
    table = df.groupby(["op", "tp"])["ratio"].agg(["median", "count"]).unstack("tp")
    print(table.round(3).to_string())
    small = df[df["num_tokens"] < 64]["ratio"].median()
    large = df[df["num_tokens"] >= 512]["ratio"].median()
    print(f"median ratio below 64 tokens {small:.3f}, at 512+ tokens {large:.3f}")
    q = df["ratio"].quantile([0.1, 0.5, 0.9])
    print(f"h100_gemm_agreement median_ratio={q[0.5]:.3f} p10={q[0.1]:.3f} p90={q[0.9]:.3f} "
          f"rows={len(df)}")


if __name__ == "__main__":
    main()
