"""How many TPE trials reach the exhaustive grid's best capacity per dollar.

    python experiments/benchmarks/search_quality.py [--seeds 3] [--trials 40]

On a space small enough to enumerate (Llama-2-70B, chat lengths, three SKUs, TP 2/4/8 x
PP 1/2 filling 8 GPUs, three schedulers, three batch caps, two chunk sizes), runs the
grid over every runnable candidate, then TPE with ``--trials`` trials for each seed, and
reports for each seed the number of distinct configurations TPE measured before one came
within 2% of the grid's best, as a share of the grid's size (goal: <= 10%). Last line:
``search_quality grid_trials=<n> tpe_trials_to_2pct=<median> share=<median/n>``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from search_common import run_search

SPACE = [
    "+experiment=llama70b", "workloads.arxiv=null", "search.space.tensor_parallel=[2,4,8]",
    "search.space.pipeline_parallel=[1,2]", "search.space.max_gpus=8",
    "search.space.batch_caps=[64,128,256]", "search.space.chunk_sizes=[512,2048]",
    "search.capacity.min_requests_per_replica=150", "search.capacity.precision=0.01",
]


def _first_within(trials, best: float, tol: float) -> int | None:
    """1-based count of distinct configurations measured (in completion order) until
    one came within ``tol`` of ``best``; None if none did."""
    hit = (trials["capacity_per_dollar"] >= (1 - tol) * best).to_numpy().nonzero()[0]
    return int(hit[0]) + 1 if len(hit) else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--keep", type=Path, help="keep runs here; reuse a finished grid run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = args.keep or Path(tmp_dir)
        gwall, grid = run_search(tmp / "grid", *SPACE, "search=grid")
        best = float(grid["capacity_per_dollar"].max())
        print(f"grid: {len(grid)} configurations in {gwall:.0f} s, best {best:.4g} QPS per $/h "
              f"({grid.loc[grid['capacity_per_dollar'].idxmax(), 'key']})")
        needed = []
        for seed in range(args.seeds):
            wall, tpe = run_search(tmp / f"tpe{seed}", *SPACE, "search=tpe",
                                   f"search.num_trials={args.trials}",
                                   f"search.sampler_seed={seed}")
            n, n5 = _first_within(tpe, best, 0.02), _first_within(tpe, best, 0.05)
            found = float(tpe["capacity_per_dollar"].max())
            print(f"tpe seed {seed}: {len(tpe)} distinct configurations in {wall:.0f} s, best "
                  f"{found:.4g} ({found / best:.1%} of grid); within 2% after "
                  f"{n or 'never (within budget)'}, within 5% after {n5 or 'never'}")
            needed.append(n if n else len(grid))
        med = statistics.median(needed)
        print(f"search_quality grid_trials={len(grid)} tpe_trials_to_2pct={med:g} "
              f"share={med / len(grid):.3f}")


if __name__ == "__main__":
    main()
