"""The single-simulation command as a person runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vidur_search.simulate", *args],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_default_run_prints_a_summary_and_writes_outputs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    p = _cli(f"output.dir={out}", "output.progress=false", "workload.num_requests=64",
             "output.chrome_trace=true", "seed=3")
    assert p.returncode == 0, p.stderr
    assert "TTFT" in p.stdout and str(out) in p.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["completed"] == 64
    assert summary["config"]["model"] == "llama-3-8b" and summary["config"]["seed"] == 3
    for name in ("requests.parquet", "batches.parquet", "replicas.parquet", "trace.json"):
        assert (out / name).stat().st_size > 0


def test_same_overrides_same_summary(tmp_path: Path) -> None:
    args = ("output.progress=false", "workload.num_requests=50", "scheduler=vllm_v1",
            "parallel.replicas=2", "router=random", "seed=5")
    a, b = tmp_path / "a", tmp_path / "b"
    assert _cli(*args, f"output.dir={a}").returncode == 0
    assert _cli(*args, f"output.dir={b}").returncode == 0
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    for s in (sa, sb):
        s.pop("simulator")
        s.pop("config")
    assert sa == sb


def test_bad_cli_value_is_a_clear_error_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "bad"
    p = _cli("parallel.tensor_parallel=3", f"output.dir={out}")
    assert p.returncode == 2
    assert "parallel.tensor_parallel=3" in p.stderr and "allowed: 1, 2, 4, 8" in p.stderr
    assert not (out / "summary.json").exists()
    p = _cli("workload.arrival.rate=-1", f"output.dir={out}")
    assert p.returncode == 2 and "workload.arrival.rate" in p.stderr


def test_wheel_ships_the_config_tree_and_catalogue(tmp_path: Path) -> None:
    """Hydra must find conf/ from an installed (non-editable) package."""
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(dist), str(ROOT)], check=True, timeout=300,
                   capture_output=True)
    wheel = next(dist.glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in ("vidur_search/conf/simulate.yaml", "vidur_search/conf/scheduler/sarathi.yaml",
              "vidur_search/conf/workload/chat.yaml", "simulator/catalogue/models.yaml",
              "simulator/catalogue/skus.yaml", "simulator/catalogue/nodes.yaml",
              "vidur_search/conf/app/config.yaml", "vidur_search/conf/app/experiment/smoke.yaml",
              "vidur_search/conf/app/experiment/llama70b.yaml",
              "vidur_search/conf/app/slo/paper.yaml", "simulator/profiles/data/README.md",
              "simulator/profiles/data/h100-sxm/llama-3-8b/tp1/layer_ops.parquet",
              "simulator/execution/calibration.yaml"):
        assert f in names, f
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = subprocess.run([sys.executable, "-c", "import simulator; print(simulator.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, env=env, check=True)
    assert probe.stdout.strip().startswith(str(site))
    p = _cli(f"output.dir={tmp_path / 'out'}", "output.progress=false",
             "workload.num_requests=16", cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "out" / "summary.json").exists()
    # the search app composes its config tree (with an experiment preset) from the wheel
    job = subprocess.run([sys.executable, "-m", "vidur_search", "+experiment=llama70b",
                          "--cfg", "job"], capture_output=True, text=True, cwd=tmp_path,
                         env=env, timeout=120)
    assert job.returncode == 0, job.stderr
    assert "llama-2-70b" in job.stdout and "sampler: tpe" in job.stdout


def test_simulate_takes_model_and_sku_as_plain_keys(tmp_path: Path) -> None:
    """The search app's `model`/`sku` config groups must not capture simulate's keys."""
    p = _cli("model=llama-2-7b", "sku=a100-80gb", "workload.num_requests=8",
             "output.progress=false", f"output.dir={tmp_path / 'o'}")
    assert p.returncode == 0, p.stderr
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["counts"]["requests"] == 8 and summary["config"]["model"] == "llama-2-7b"
