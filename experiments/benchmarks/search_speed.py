"""How long the llama70b experiment takes, and trials per minute.

    python experiments/benchmarks/search_speed.py [--experiment llama70b] [--cluster]

Runs the main job once on the embedded Ray (all local cores) and prints its wall time,
trials, trials per minute and the best capacity per dollar found. With ``--cluster`` it
also runs the same experiment on a two-node loopback Ray cluster (one CPU per node, as in
tests/test_search_app.py) and prints the speed-up of the cluster run over the local one,
measured in this one invocation. Last line:
``search_speed wall_s=<x> trials=<n> best_capacity_per_dollar=<y>``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from search_common import ENV, run_search


def _cluster(temp_dir: str) -> str:
    port = 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray = [sys.executable, "-m", "ray.scripts.scripts", "start", "--num-cpus=1",
           "--disable-usage-stats"]
    subprocess.run([*ray, "--head", f"--port={port}", f"--temp-dir={temp_dir}",
                    "--include-dashboard=false"], check=True, env=ENV, capture_output=True)
    head = f"{socket.gethostbyname(socket.gethostname())}:{port}"
    subprocess.run([*ray, f"--address={head}"], check=True, env=ENV, capture_output=True)
    wait = (f"import ray, time; ray.init(address='{head}'); t = time.time() + 60\n"
            "while sum(n['Alive'] for n in ray.nodes()) < 2 and time.time() < t:"
            " time.sleep(0.5)")
    subprocess.run([sys.executable, "-c", wait], check=True, env=ENV, capture_output=True)
    return head


def _stop(temp_dir: str) -> None:
    """Kill the processes of the cluster started here (and their children) only."""
    parent, mine = {}, set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            parent[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            ours = temp_dir.encode() in (proc / "cmdline").read_bytes()
            if ours and int(proc.name) != os.getpid():
                mine.add(int(proc.name))
        except (OSError, IndexError, ValueError):
            continue
    while children := {p for p, pp in parent.items() if pp in mine} - mine:
        mine |= children
    for pid in mine:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", default="llama70b")
    ap.add_argument("--cluster", action="store_true", help="also run on a 2-node loopback cluster")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wall, trials = run_search(Path(tmp) / "local", f"+experiment={args.experiment}",
                                  *args.overrides)
        ok = trials[trials["status"] == "ok"]
        best = float(ok["capacity_per_dollar"].max()) if len(ok) else 0.0
        sim_s = float(trials["wall_s"].sum())
        print(f"local: {len(trials)} trials in {wall:.1f} s = {len(trials) / wall * 60:.1f} "
              f"trials/min ({os.cpu_count()} CPUs; {sim_s:.0f} CPU-s inside trials, "
              f"{int(trials['simulations'].sum())} simulations)")
        for workload, grp in ok.groupby("workload"):
            top = grp.sort_values("capacity_per_dollar", ascending=False).iloc[0]
            print(f"  best for {workload}: {top['key']} {top['capacity_qps']:.3g} QPS, "
                  f"${top['cost_per_hour']:.2f}/h, {top['capacity_per_dollar']:.3g} QPS per $/h")
        if args.cluster:
            temp_dir = tempfile.mkdtemp(prefix="rb", dir="/tmp")
            try:
                head = _cluster(temp_dir)
                cwall, ctrials = run_search(Path(tmp) / "cluster",
                                            f"+experiment={args.experiment}",
                                            f"ray.address={head}", *args.overrides)
            finally:
                _stop(temp_dir)
            print(f"cluster (2 nodes x 1 CPU, loopback): {len(ctrials)} trials in {cwall:.1f} s"
                  f" = {len(ctrials) / cwall * 60:.1f} trials/min; speed-up over local "
                  f"{(len(ctrials) / cwall) / (len(trials) / wall):.2f}x")
        print(f"search_speed wall_s={wall:.1f} trials={len(trials)} "
              f"best_capacity_per_dollar={best:.4g}")


if __name__ == "__main__":
    main()
