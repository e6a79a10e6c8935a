"""The fluid-model capacity estimate that picks a search's first trials."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from scipy.stats import spearmanr

from simulator import ConfigError
from vidur_search import settings
from vidur_search.capacity import CapacitySettings, Slo
from vidur_search.prior import estimate_capacity, prior_points, rank_candidates
from vidur_search.search import Sweep
from vidur_search.space import Candidate, simulation_config
from vidur_search.trial import TrialContext, execution_model, run_trial

PROMPTS = np.full(400, 1024)
DECODES = np.full(400, 128)


def _base() -> dict:
    return {"model": "llama-3-8b", "nodes": {}, "execution": {"kind": "roofline"}, "seed": 0,
            "workload": {"arrival": {"kind": "poisson", "rate": 1.0},
                         "lengths": {"kind": "zipf", "min_prefill": 64, "max_prefill": 2048,
                                     "min_decode": 16, "max_decode": 512,
                                     "zipf_theta": 0.6}}}


def _estimate(cand: Candidate, slo: Slo | None = None) -> float:
    cfg = simulation_config(_base(), cand, 400)
    return estimate_capacity(cfg, execution_model(cfg), PROMPTS, DECODES, slo or Slo())


def test_the_estimate_follows_the_hardware_the_batch_cap_and_the_slo() -> None:
    h100 = _estimate(Candidate("h100-sxm", 1, 1, 1, "sarathi", 256, 512))
    a100 = _estimate(Candidate("a100-80gb", 1, 1, 1, "sarathi", 256, 512))
    assert h100 > 1.3 * a100 > 0  # ~3x the FLOP/s, ~1.6x the bandwidth
    capped = _estimate(Candidate("h100-sxm", 1, 1, 1, "sarathi", 4, 512))
    assert capped < 0.2 * h100  # four running requests cannot use the GPU
    # no iteration fits a 1 ms TBT; a whole-prompt scheduler stalls decodes for a prompt
    assert _estimate(Candidate("h100-sxm", 1, 1, 1, "sarathi", 256, 512), Slo(tbt_s=1e-3)) == 0
    assert _estimate(Candidate("h100-sxm", 1, 1, 1, "vllm_v0", 256, 0), Slo(tbt_s=0.02)) == 0


def test_the_estimate_ranks_candidates_like_the_measured_capacity() -> None:
    """What the search relies on: the order, not the value, of the estimate."""
    cands = [Candidate("h100-sxm", 1, 1, 1, "sarathi", 128, 512),
             Candidate("h100-sxm", 1, 1, 1, "sarathi", 8, 512),
             Candidate("a100-80gb", 1, 1, 1, "sarathi", 128, 512),
             Candidate("a100-80gb", 1, 1, 1, "vllm_v0", 32, 0),
             Candidate("h100-sxm", 2, 1, 1, "orca", 64, 0),
             Candidate("a100-80gb", 1, 1, 1, "sarathi", 16, 2048)]
    ctx = TrialContext(base=_base(), workload_name="chat", slo=Slo(),
                       capacity=CapacitySettings(precision=0.1, min_requests=150,
                                                    window_s=30), requests_per_replica=600,
                       replica_scaling="linear", prices={"h100-sxm": 2.0, "a100-80gb": 1.0})
    est = dict(rank_candidates(ctx, cands))
    measured = {c: run_trial(ctx, c)["capacity_per_dollar"] for c in cands}
    rho = spearmanr([est[c] for c in cands], [measured[c] for c in cands]).statistic
    assert rho >= 0.8, (est, measured)
    assert max(est, key=est.get) == max(measured, key=measured.get)


def test_prior_points_take_one_per_layout_and_scheduler_none_at_zero_and_stop_at_k() -> None:
    a = [Candidate("h100-sxm", 1, 1, 1, "sarathi", b, 512) for b in (128, 256)]
    b = Candidate("h100-sxm", 2, 1, 1, "sarathi", 256, 512)
    c = Candidate("h100-sxm", 1, 1, 1, "vllm_v0", 256, 0)
    d = Candidate("a100-80gb", 1, 1, 1, "sarathi", 256, 512)
    ranked = [(a[1], 2.0), (a[0], 1.9), (b, 1.8), (c, 1.5), (d, 0.0)]
    assert prior_points(ranked, 8) == [a[1], b, c]
    assert prior_points(ranked, 1) == [a[1]]
    assert prior_points(ranked, 0) == []


def _app(*overrides: str) -> dict:
    settings.register()
    with initialize_config_module(config_module="vidur_search.conf.app", version_base=None):
        cfg = compose(config_name="config", overrides=["+experiment=smoke", *overrides])
    app = OmegaConf.to_container(cfg, resolve=True)
    app["workloads"] = {k: v for k, v in app["workloads"].items() if v is not None}
    return app


def test_a_sweep_measures_the_estimated_best_first_and_not_again_on_resume(
        tmp_path: Path) -> None:
    app = _app("search.prior_points=2")
    sweep = Sweep(app, tmp_path, storage_url=f"sqlite:///{tmp_path}/optuna.db",
                  study_prefix="t")
    plan = sweep.plans()[0]
    ranked = rank_candidates(plan.ctx, sweep.space.candidates)
    best = prior_points(ranked, 2)
    assert plan.warm_points == [sweep.sampled.encode(c) for c in best]
    row = run_trial(plan.ctx, best[0])
    row["trial_id"] = "chat-0"
    sweep.table.append(row)
    assert sweep.plans()[0].warm_points == [sweep.sampled.encode(best[1])]
    # a sweep killed after Tune enqueued its first points but before it ran them: the
    # resumed study asks for the waiting ones itself, so they are not enqueued twice
    study = optuna.create_study(study_name="t-chat", storage=f"sqlite:///{tmp_path}/optuna.db",
                                direction="maximize")
    study.enqueue_trial(sweep.sampled.encode(best[1]))
    assert sweep.plans()[0].warm_points == []
    assert Sweep(_app("search.prior_points=0"), tmp_path / "b",
                 storage_url=f"sqlite:///{tmp_path}/b.db", study_prefix="t"
                 ).plans()[0].warm_points == []


def test_a_negative_prior_points_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"search\.prior_points"):
        settings.check(_app("search.prior_points=-1"))
