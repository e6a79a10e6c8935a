"""How many TPE trials reach the exhaustive grid's best capacity per dollar.

    python experiments/benchmarks/search_quality.py [--space small|llama70b] [--seeds 3]
        [--trials 40] [--keep DIR]

On a space small enough to enumerate, runs the grid over every runnable candidate, then
the TPE search as the main job runs it (the fluid model's ``search.prior_points`` best
candidates first, see ``vidur_search/prior.py``) with ``--trials`` trials for each seed,
and the same TPE without the prior (``search.prior_points=0``). For each it reports the
number of distinct configurations measured before one came within 2% of the grid's best,
as a share of the grid's size (goal: <= 10%). Spaces (Llama-2-70B, chat lengths, capacity
precision 1%): ``small``: three SKUs, TP 2/4/8 x PP 1/2 filling 8 GPUs, three schedulers,
batch caps 64/128/256, chunks 512/2048 (180 candidates, ~1 min of grid on 2 cores);
``llama70b``: the llama70b experiment's chat space (TP 1-8 x PP 1-4 filling 16 GPUs,
batch caps 32-512, chunks 256-4096: 1,030 candidates, ~25 min of grid). Last line:
``search_quality grid_trials=<n> tpe_trials_to_2pct=<median> share=<median/n>`` (TPE
with the prior, the main job's default).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from search_common import run_search

COMMON = ["+experiment=llama70b", "workloads.arxiv=null", "search.capacity.precision=0.01"]
SPACES = {
    "small": [*COMMON, "search.space.tensor_parallel=[2,4,8]",
              "search.space.pipeline_parallel=[1,2]", "search.space.max_gpus=8",
              "search.space.batch_caps=[64,128,256]", "search.space.chunk_sizes=[512,2048]",
              "search.capacity.min_requests_per_replica=150"],
    "llama70b": COMMON,
}


def _first_within(trials, best: float, tol: float) -> int | None:
    """1-based count of distinct configurations measured (in completion order) until
    one came within ``tol`` of ``best``; None if none did."""
    hit = (trials["capacity_per_dollar"] >= (1 - tol) * best).to_numpy().nonzero()[0]
    return int(hit[0]) + 1 if len(hit) else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", choices=sorted(SPACES), default="small")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--keep", type=Path, help="keep runs here; reuse a finished grid run")
    args = ap.parse_args()
    space = SPACES[args.space]
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = args.keep or Path(tmp_dir)
        gwall, grid = run_search(tmp / f"grid-{args.space}", *space, "search=grid")
        best = float(grid["capacity_per_dollar"].max())
        print(f"grid: {len(grid)} configurations in {gwall:.0f} s, best {best:.4g} QPS per $/h "
              f"({grid.loc[grid['capacity_per_dollar'].idxmax(), 'key']})")
        needed: dict[str, list[int]] = {"with prior": [], "without prior": []}
        for variant, extra in (("with prior", []), ("without prior", ["search.prior_points=0"])):
            for seed in range(args.seeds):
                wall, tpe = run_search(tmp / f"tpe-{args.space}-{len(extra)}-{seed}", *space,
                                       "search=tpe", f"search.num_trials={args.trials}",
                                       f"search.sampler_seed={seed}", *extra)
                n, n5 = _first_within(tpe, best, 0.02), _first_within(tpe, best, 0.05)
                found = float(tpe["capacity_per_dollar"].max())
                print(f"tpe {variant}, seed {seed}: {len(tpe)} distinct configurations in "
                      f"{wall:.0f} s, best {found:.4g} ({found / best:.1%} of grid); within 2% "
                      f"after {n or 'never (within budget)'}, within 5% after {n5 or 'never'}")
                needed[variant].append(n if n else len(grid))
        for variant, ns in needed.items():
            med = statistics.median(ns)
            print(f"{variant}: median {med:g} configurations ({med / len(grid):.1%} of the grid)")
        med = statistics.median(needed["with prior"])
        print(f"search_quality grid_trials={len(grid)} tpe_trials_to_2pct={med:g} "
              f"share={med / len(grid):.3f}")


if __name__ == "__main__":
    main()
