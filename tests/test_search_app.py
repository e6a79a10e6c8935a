"""The main job end to end: ``python -m vidur_search +experiment=smoke`` in a subprocess."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "vidur_search", "+experiment=smoke", "output.progress=false",
            *args]


def _app(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(*args), capture_output=True, text=True, cwd=ROOT, env=ENV,
                          timeout=timeout)


@pytest.mark.parametrize("sampler", ["tpe", "nsga2"])
def test_smoke_experiment_end_to_end(tmp_path: Path, sampler: str) -> None:
    out = tmp_path / "run"
    p = _app(f"output.dir={out}", "ray.num_cpus=2", "output.target_qps=100",
             f"search={sampler}")
    assert p.returncode == 0, p.stderr[-3000:]
    trials = pd.read_parquet(out / "trials.parquet")
    assert len(trials) >= 1 and trials["key"].is_unique
    assert (trials["status"] == "ok").all() and (trials["capacity_qps"] > 0).any()
    ok = trials[trials["capacity_qps"] > 0]
    assert (ok["capacity_per_dollar"] - ok["capacity_qps"] / ok["cost_per_hour"]).abs().max() \
        < 1e-9
    assert (ok["ttft_p90"] <= 2.0).all() and (ok["tbt_p99"] <= 0.2).all()  # the smoke SLO
    pareto = pd.read_parquet(out / "pareto.parquet")
    assert 1 <= len(pareto) <= len(ok)
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "smoke" in html
    assert "runnable of" in p.stderr + p.stdout  # the space summary
    assert (out / "optuna.db").exists()
    # the default execution: the measured H100 profiles the package ships (TP 1 and 2)
    assert (trials["execution"] == "profiled").all()


def test_a_sweep_killed_with_sigkill_resumes_without_rerunning_finished_trials(
        tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = (f"output.dir={out}", "ray.num_cpus=2", "search.num_trials=8")
    proc = subprocess.Popen(_cmd(*args), cwd=ROOT, env=ENV, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    table = out / "trials.parquet"
    deadline = time.monotonic() + 240
    first = pd.DataFrame()
    while time.monotonic() < deadline and proc.poll() is None:
        if table.exists():
            try:  # the app replaces the file while we poll: a read may see two versions
                first = pd.read_parquet(table)
            except (OSError, ValueError):
                first = pd.DataFrame()
            if len(first) >= 2:
                break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = pd.read_parquet(table)
    assert len(first) >= 2, "the sweep finished no trial before it was killed"

    p = _app(*args)
    assert p.returncode == 0, p.stderr[-3000:]
    final = pd.read_parquet(table)
    assert final["key"].is_unique  # nothing measured twice
    kept = final.set_index("trial_id").loc[first["trial_id"]]
    assert (kept["capacity_qps"].to_numpy() == first["capacity_qps"].to_numpy()).all()
    study = optuna.load_study(study_name="smoke-chat", storage=f"sqlite:///{out}/optuna.db")
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) == 8  # the budget, across both runs


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    out = tmp_path / "run"
    p = _app(f"output.dir={out}", "ray.num_cpus=2", "search=grid",
             "search.capacity.max_trial_s=1e-9")
    assert p.returncode == 0, p.stderr[-3000:]
    trials = pd.read_parquet(out / "trials.parquet")
    assert len(trials) == 8  # every candidate of the grid was tried
    assert (trials["status"] == "failed").all()
    assert trials["error"].str.contains("search.capacity.max_trial_s").all()
    assert "max_trial_s" in (out / "report.html").read_text()


@pytest.mark.parametrize(("override", "code", "message"), [
    ("search.space.max_gpuss=2", 1, "Key 'max_gpuss' not in 'SpaceSettings'"),
    ("search.num_trials=many", 1, "Value 'many' of type 'str' could not be converted to"),
    ("search.space.tensor_parallel=[3]", 2, "no configuration can run"),
    ("sku.skus=[h100]", 2, "sku"),
    ("slo.ttft_quantile=p42", 2, "slo.ttft_quantile='p42' is invalid: allowed values are"),
    ("+sku.prices.h100-sxm=0", 2, "sku.prices.h100-sxm=0"),
    ("workloads.chat.lengths.kind=gauss", 2, "workloads.chat.lengths.kind"),
    # no measured A100 profiles ship with the package: when they are required, say what
    # to profile (by default such trials run on the fallback model instead)
    ("execution.profiled.require_profiles=true sku.skus=[a100-80gb]", 2,
     "python -m profiler model=llama-3-8b"),
])
def test_config_errors_are_reported_before_any_trial(
        tmp_path: Path, override: str, code: int, message: str) -> None:
    out = tmp_path / "run"
    p = _app(f"output.dir={out}", *override.split(), timeout=120)
    assert p.returncode == code, p.stderr[-2000:]
    assert message in p.stderr
    assert not (out / "trials.parquet").exists()


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free ports: the sockets stay bound until all are chosen, or the
    kernel may hand the same port out twice (it did, in CI: head and client on one)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _stop_nodes(temp_dir: str, gcs_port: int = 0) -> None:
    """Stop only the Ray processes this test started: those whose command line names its
    temp dir, Ray Client's per-connection servers of its head (they name only the head's
    GCS address), and their children (agents rename themselves); ``ray stop`` would stop
    every Ray process on the machine."""
    client = f":{gcs_port}\0".encode() if gcs_port else None
    parent: dict[int, int] = {}
    mine: set[int] = set()
    me = os.getpid()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            parent[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (proc / "cmdline").read_bytes()
            ours = temp_dir.encode() in cmd or (
                client is not None and b"ray.util.client.server" in cmd and client in cmd)
            if ours and int(proc.name) != me:
                mine.add(int(proc.name))
        except (OSError, IndexError, ValueError):
            continue
    grown = True
    while grown:
        children = {pid for pid, ppid in parent.items() if ppid in mine} - mine
        grown = bool(children)
        mine |= children
    for pid in mine:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_the_smoke_experiment_runs_across_a_two_node_loopback_cluster(tmp_path: Path) -> None:
    """Both address forms a user has: the GCS address (``auto`` / ``host:port``, the
    driver joins the cluster) and Ray Client (``ray://host:port``, Tune's driver runs on
    the head node and the trials still land in this output folder)."""
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths
    port, client_port = _free_ports(2)
    ray = [sys.executable, "-m", "ray.scripts.scripts", "start", "--num-cpus=1",
           "--disable-usage-stats"]
    try:
        head_started = subprocess.run(
            [*ray, "--head", f"--port={port}", f"--temp-dir={temp_dir}",
             f"--ray-client-server-port={client_port}", "--include-dashboard=false"],
            env=ENV, capture_output=True, text=True, timeout=120)
        assert head_started.returncode == 0, head_started.stderr[-2000:]
        head = f"{socket.gethostbyname(socket.gethostname())}:{port}"
        started = subprocess.run([*ray, f"--address={head}"], env=ENV, capture_output=True,
                                 text=True, timeout=120)
        if started.returncode != 0:  # Ray bound 127.0.0.1 rather than the host address
            head = f"127.0.0.1:{port}"
            subprocess.run([*ray, f"--address={head}"], check=True, env=ENV,
                           capture_output=True, timeout=120)
        wait = (f"import ray, time; ray.init(address='{head}'); t = time.time() + 60\n"
                "while sum(n['Alive'] for n in ray.nodes()) < 2 and time.time() < t:"
                " time.sleep(0.5)\nprint(sum(n['Alive'] for n in ray.nodes()))")
        alive = subprocess.run([sys.executable, "-c", wait], env=ENV, capture_output=True,
                               text=True, timeout=120)
        assert alive.stdout.strip().endswith("2"), alive.stderr[-2000:]
        out = tmp_path / "run"
        # a fresh worker per trial: with reuse, a loaded machine could start node B's
        # worker only after node A's reused one had run every trial (seen in CI)
        p = _app(f"output.dir={out}", f"ray.address={head}", "search=grid",
                 "ray.reuse_actors=false",
                 "search.capacity.min_requests_per_replica=600",
                 "search.capacity.max_requests_per_replica=1200",
                 "search.capacity.precision=0.02")
        assert p.returncode == 0, p.stderr[-3000:]
        trials = pd.read_parquet(out / "trials.parquet")
        assert len(trials) == 8 and (trials["status"] == "ok").all()
        assert trials["node_id"].nunique() == 2, trials["node_id"].value_counts()

        out = tmp_path / "client"
        p = _app(f"output.dir={out}", f"ray.address=ray://127.0.0.1:{client_port}")
        assert p.returncode == 0, p.stderr[-3000:]
        assert "written by the cluster's head" in p.stderr  # the sqlite study's warning
        trials = pd.read_parquet(out / "trials.parquet")
        assert len(trials) >= 3 and (trials["status"] == "ok").all()
        assert trials["key"].is_unique and trials["trial_id"].is_unique
        assert (out / "report.html").exists()
    finally:
        _stop_nodes(temp_dir, port)


def test_nightly_runs_diff_against_the_previous_night_and_flag_a_regression(
        tmp_path: Path) -> None:
    root = tmp_path / "nightly" / "smoke"
    first = _app("output=nightly", f"output.dir={root / '2026-11-23_02-00-00'}",
                 "ray.num_cpus=2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "no previous run" in first.stdout
    # the same deployments at a higher price: capacity per dollar falls, a regression
    second = _app("output=nightly", f"output.dir={root / '2026-11-24_02-00-00'}",
                  "ray.num_cpus=2", "+sku.prices.h100-sxm=6.0")
    assert second.returncode == 3, second.stderr[-3000:]
    diff = (root / "2026-11-24_02-00-00" / "diff.md").read_text()
    assert "regression" in diff.lower() and "chat" in diff
    assert (root / "optuna.db").exists()  # one study storage shared by the nights
