"""Shared by the search benchmarks: run the main job in a subprocess and time it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def run_search(out: Path, *overrides: str) -> tuple[float, pd.DataFrame]:
    """Run ``python -m vidur_search OVERRIDES output.dir=OUT``; (wall seconds, trials).
    Trials are priced by the roofline model (as when the benchmarks' figures were
    measured) unless the overrides name an ``execution.kind``."""
    pinned = [] if any(o.startswith("execution.kind=") for o in overrides) else [
        "execution.kind=roofline"]
    cmd = [sys.executable, "-m", "vidur_search", f"output.dir={out}",
           "output.progress=false", *pinned, *overrides]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return wall, pd.read_parquet(out / "trials.parquet")
