"""experiments/predictor_accuracy.py: the tables it fits and its mixed-attention evaluation."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator.execution.predictors import PredictorParams

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference"


@pytest.fixture(scope="module")
def pa():
    spec = importlib.util.spec_from_file_location(
        "predictor_accuracy", ROOT / "experiments" / "predictor_accuracy.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["predictor_accuracy"] = module
    spec.loader.exec_module(module)
    return module


def _mixed(prior_effect: float = 0.0) -> pd.DataFrame:
    """A mixed-attention table whose decodes' share depends on (decodes, KV) only, plus
    ``prior_effect`` x prior context."""
    idx = pd.MultiIndex.from_product(
        [[16, 32, 64, 128, 256, 512], [0, 512, 2048], [1, 2, 4, 8, 16, 32, 64],
         [17, 65, 257, 1025, 4097]],
        names=["chunk_tokens", "prior_kv", "batch_size", "kv_len"])
    df = idx.to_frame(index=False)
    alone = 10.0 + 0.1 * df["chunk_tokens"] + 0.01 * df["prior_kv"]
    share = 2.0 * df["batch_size"] * (1.0 + df["kv_len"] / 1000.0) + prior_effect * df[
        "prior_kv"]
    t = alone + share
    return df.assign(n_q_heads=32, n_kv_heads=8, head_dim=128, min_us=t, median_us=t,
                     mean_us=t, max_us=t, std_us=0.0, count=3)


def test_mixed_call_fit_sees_the_prior_context(pa) -> None:
    """The whole mixed call is fitted, prior context included: a share that grows with the
    prior context (which the old per-chunk share model averaged away) is still predicted."""
    for effect in (0.0, 0.05):
        rows = _mixed(prior_effect=effect)
        n = len(rows)
        perm = np.random.default_rng(0).permutation(n)
        cut = round(0.8 * n)
        ape, secs, kind = pa._fit_eval(rows, pa.MIXED, perm[:cut], perm[cut:],
                                        PredictorParams(seed=0))
        assert len(ape) == n - cut and secs > 0 and isinstance(kind, str)
        assert np.median(ape) < 2.0 and np.percentile(ape, 95) < 8.0, (effect, kind)


def test_repeat_spread_needs_published_spread(pa) -> None:
    rows = pd.DataFrame({"count": [3, 3, 1], "min_us": [1.0, 2.0, 1.0],
                         "max_us": [1.0, 2.0, 1.0], "median_us": [1.0, 2.0, 1.0]})
    assert len(pa.repeat_spread(rows)) == 0  # only a mean was published
    rows.loc[0, "max_us"] = 1.5
    np.testing.assert_allclose(pa.repeat_spread(rows), [50.0, 0.0])


@pytest.mark.skipif(not (REFERENCE / "llmservingsim").is_dir()
                    or not (REFERENCE / "aiconfigurator").is_dir(),
                    reason="needs ../shared/reference (llmservingsim, aiconfigurator)")
def test_load_tables_covers_what_the_engine_fits(pa, tmp_path: Path) -> None:
    tables, notes = pa.load_tables(REFERENCE, tmp_path)
    ops = {pa.operator_of(t.label) for t in tables}
    assert {"moe_experts", "lm_head", "sampling", "attention_mixed"} <= ops
    moe = [t for t in tables if t.label.startswith("aic:") and t.label.endswith(":moe_experts")]
    assert moe and all((t.rows["moe_ep"] == 1).all() for t in moe)
    for t in moe:  # one expert count, top-k and routing per table: the features decide
        assert t.rows[["experts", "topk", "distribution"]].drop_duplicates().shape[0] == 1
        assert not t.rows.duplicated(["num_tokens", "n", "k"]).any()
    assert any(t.label.startswith("lss:") and t.label.endswith(":moe_experts") for t in tables)
    assert any("moe_ep > 1" in n for n in notes)
    mixed = [t for t in tables if t.family == pa.MIXED]
    assert mixed and all(len(t.rows) == t.source_rows for t in mixed)
    # the tables of the first version keep their order ahead of the added ones
    first_added = next(i for i, t in enumerate(tables)
                       if t.label.startswith("lss:") or t.label.endswith(":moe_experts"))
    assert all(t.label.startswith(("vidur:", "aic:")) and not t.label.endswith(":moe_experts")
               for t in tables[:first_added])


@pytest.mark.skipif(not (REFERENCE / "aiconfigurator").is_dir(),
                    reason="needs ../shared/reference/aiconfigurator")
def test_ep_scaling_fits_the_floor_on_other_shapes() -> None:
    """experiments/ep_scaling.py: EP rows predicted by the floor rule with F fitted on the
    other shapes of the SKU (held out), and the rule's algebra: EP 1 is the profile,
    a large group tends to the floor."""
    spec = importlib.util.spec_from_file_location("ep_scaling",
                                                  ROOT / "experiments" / "ep_scaling.py")
    ep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ep)
    rows = ep.moe_rows(REFERENCE)
    rows = rows[rows["sku"] == "h100-sxm"]
    points = ep.ep_points(rows, 6, PredictorParams(seed=0))
    assert len(points) > 0 and (points["ep"] > 1).all() and (points["measured"] > 0).all()
    res = ep.held_out(points, 0)
    assert len(res) == len(points) and res["floor"].gt(0).all()
    fixed, slot = ep.fit_floor(points)
    assert fixed >= 0 and slot >= 0
    d = pd.DataFrame({"ep": [1, 1024], "slots": [1e6, 1e6], "t1": [500.0, 500.0]})
    F = (fixed + slot * 1e6) * 1e6
    got = ep.floor_rule(d, fixed, slot)
    assert got[0] == pytest.approx(max(500.0, F)) and got[1] == pytest.approx(
        F + (max(500.0, F) - F) / 1024)
