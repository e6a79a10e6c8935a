"""Simulator speed: 10,000 requests of Llama-2-70B, TP4 on H100, Sarathi (chunk 512),
Azure conversation lengths (../shared/reference), Poisson arrivals near capacity.

Also times the 512-request Vidur comparison case (Llama-3-8B, A100, Sarathi chunk 512,
Azure conversation lengths, Poisson 6.45 QPS) end to end from the command line, warm.

    python experiments/benchmarks/sim_speed.py [--requests 10000] [--rate QPS] [--pp N]
        [--reference] [--skip-cli]

``--pp N`` runs the same model on TP4 x PP N (rate from that configuration's saturation);
``--reference`` also times the run with ``engine.fast_forward=false`` (every event through
the heap, per-request decode lists: the path the shortcuts are checked against).

Last line: ``sim_speed requests_per_s=<x> events_per_s=<y> wall_s=<z> peak_rss_mb=<m>``
(simulated requests per wall second of the whole run: workload, loop and summary).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TRACE = ROOT.parent / "shared/reference/vidur/processed_traces/splitwise_conv.csv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=0.0,
                    help="QPS; 0 = 85%% of the measured saturation throughput")
    ap.add_argument("--pp", type=int, default=1, help="pipeline stages (TP stays 4)")
    ap.add_argument("--reference", action="store_true",
                    help="also time the run with engine.fast_forward=false")
    ap.add_argument("--skip-cli", action="store_true", help="skip the 512-request CLI case")
    args = ap.parse_args()
    if not TRACE.exists():
        sys.exit(f"needs {TRACE} (../shared/reference is absent)")

    from simulator import SimulationConfig, simulate

    def config(rate: float, n: int, fast: bool = True) -> SimulationConfig:
        return SimulationConfig.from_dict({
            "model": "llama-2-70b", "sku": "h100-sxm",
            "parallel": {"tensor_parallel": 4, "pipeline_parallel": args.pp},
            "engine": {"fast_forward": fast},
            "scheduler": {"name": "sarathi", "chunk_size": 512, "max_batch_size": 256},
            "workload": {"num_requests": n, "trace_file": str(TRACE),
                         "arrival": {"kind": "poisson", "rate": rate},
                         "lengths": {"kind": "trace", "max_total_tokens": 4096}},
        })

    rate = args.rate
    if rate <= 0:  # saturate once with everything at t=0 to find the throughput
        cfg = config(1.0, 2000)
        cfg.workload.arrival.kind = "static"
        sat = simulate(cfg).summary["throughput"]["requests_per_s"]
        rate = round(0.85 * sat, 2)
        print(f"saturation throughput {sat:.2f} req/s -> rate {rate} req/s")

    cfg = config(rate, args.requests)
    t0 = time.perf_counter()
    res = simulate(cfg)
    summary = res.summary
    wall = time.perf_counter() - t0
    rec = res.records
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"requests={len(rec.arrival)} batches={len(rec.batch_start)} "
          f"events={rec.events} loop_s={rec.wall_s:.3f} "
          f"ttft_p90={summary['ttft']['p90']:.3f}s tbt_p99={summary['tbt']['p99']:.4f}s "
          f"preemptions={summary['counts']['preemptions']}")

    if args.reference:
        t2 = time.perf_counter()
        ref = simulate(config(rate, args.requests, fast=False))
        ref_summary = ref.summary
        ref_wall = time.perf_counter() - t2
        same = all(np.array_equal(getattr(rec, k), getattr(ref.records, k), equal_nan=True)
                   for k in ("completed_at", "first_token_at", "token_time", "batch_start",
                             "batch_end", "batch_kv_blocks_used"))
        same = same and ref_summary["ttft"] == summary["ttft"]
        print(f"reference (engine.fast_forward=false) requests_per_s="
              f"{len(ref.records.arrival) / ref_wall:.0f} wall_s={ref_wall:.3f} "
              f"loop_s={ref.records.wall_s:.3f} identical_results={same}")

    if not args.skip_cli:
        cmd = [sys.executable, "-m", "vidur_search.simulate", "model=llama-3-8b",
               "sku=a100-80gb", "scheduler=sarathi", "scheduler.chunk_size=512",
               "workload=trace_lengths", f"workload.trace_file={TRACE}",
               "workload.arrival.rate=6.45", "workload.num_requests=512",
               "output.progress=false", "output.dir=/tmp/vidur_search_bench_cli"]
        subprocess.run(cmd, check=True, capture_output=True)  # warm the file cache
        t1 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        print(f"cli_512_requests wall_s={time.perf_counter() - t1:.3f} (goal <= 1 s; "
              f"Vidur: 24.7 s)")

    print(f"sim_speed requests_per_s={len(rec.arrival) / wall:.0f} "
          f"events_per_s={rec.events / rec.wall_s:.0f} wall_s={wall:.3f} "
          f"peak_rss_mb={peak_rss:.0f}")


if __name__ == "__main__":
    main()
