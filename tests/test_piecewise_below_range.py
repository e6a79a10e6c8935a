"""Piecewise-linear predictors below the fitted range: the first segment, continued and
clamped to what physics allows (time never rises as the size falls, and never falls
faster than in proportion to it), for both interpolations and the running median."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simulator.execution.predictors import PiecewiseLinearPredictor

VARIANTS = [(interp, smooth) for interp in ("log", "linear") for smooth in (1, 3)]
BELOW = np.array([1, 2, 3, 5, 8, 13, 20, 31])  # token counts under the first knot (32)


def frame(tokens: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"num_tokens": tokens, "n": 4096, "k": 4096})


def fit(tokens: np.ndarray, t: np.ndarray, interp: str, smooth: int) -> PiecewiseLinearPredictor:
    return PiecewiseLinearPredictor(interp=interp, smooth=smooth).fit(frame(tokens), t)


def loglog_slopes(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.diff(np.log(t)) / np.diff(np.log(x))


@pytest.mark.parametrize(("interp", "smooth"), VARIANTS)
@pytest.mark.parametrize("power", [0.0, 0.3, 0.6, 1.0, 1.7, -0.5])
def test_below_range_follows_a_physical_curve(interp: str, smooth: int, power: float) -> None:
    # a first segment of any steepness, rising or falling (noise), then a smooth rise
    tokens = np.array([32, 64, 128, 256, 512, 1024])
    t1 = 10.0 * 2.0 ** power
    t = np.concatenate([[10.0, t1], t1 * (tokens[2:] / 64) ** 0.9])
    pred = fit(tokens, t, interp, smooth)
    x = np.append(BELOW, 32)
    p = pred.predict(frame(x))
    assert p[-1] == pytest.approx(t[0])
    slopes = loglog_slopes(x, p)
    assert np.all(slopes >= -1e-12) and np.all(slopes <= 1 + 1e-9)
    assert np.all(p[:-1] <= t[0] * (1 + 1e-12))  # never above the first knot's time
    assert np.all(p[:-1] >= t[0] * BELOW / 32 * (1 - 1e-12))  # nor below proportional


@pytest.mark.parametrize(("interp", "smooth"), VARIANTS)
def test_a_flat_curve_stays_flat(interp: str, smooth: int) -> None:
    tokens = np.array([16, 32, 64, 128, 256])
    pred = fit(tokens, np.full(len(tokens), 7.0), interp, smooth)
    assert pred.predict(frame(np.array([1, 4, 15]))) == pytest.approx([7.0, 7.0, 7.0])
    # size 0 (log-size -inf) is finite: the flat value, or 0 along a proportional segment
    assert pred.predict(frame(np.array([0]))) == pytest.approx([7.0])


def test_the_first_segment_continues_where_it_is_physical() -> None:
    # log: a power law of exponent 0.6 is continued exactly (a MoE layer whose experts
    # touched grow with the tokens); linear: a latency + size / bandwidth line is
    tokens = np.array([2, 4, 8, 16, 32, 64])
    below = np.array([1, 1.5])
    law = 20.0 * tokens ** 0.6
    p = fit(tokens, law, "log", 1).predict(frame(below))
    assert p == pytest.approx(20.0 * below ** 0.6, rel=1e-9)
    line = 6.0 + 0.5 * tokens
    p = fit(tokens, line, "linear", 1).predict(frame(below))
    assert p == pytest.approx(6.0 + 0.5 * below, rel=1e-9)


@pytest.mark.parametrize("interp", ["log", "linear"])
def test_steep_and_falling_first_segments_are_clamped(interp: str) -> None:
    tokens = np.array([4, 8, 16, 32])
    steep = fit(tokens, np.array([10.0, 40.0, 50.0, 60.0]), interp, 1)  # x4 for x2 tokens
    assert steep.predict(frame(np.array([1, 2]))) == pytest.approx([2.5, 5.0])  # proportional
    falling = fit(tokens, np.array([10.0, 8.0, 12.0, 20.0]), interp, 1)  # noise: a dip
    assert falling.predict(frame(np.array([1, 2]))) == pytest.approx([10.0, 10.0])  # held


@pytest.mark.parametrize(("interp", "smooth"), VARIANTS)
def test_in_range_predictions_are_the_interpolated_knots(interp: str, smooth: int) -> None:
    rng = np.random.default_rng(0)
    tokens = np.array([3, 4, 8, 16, 48, 64, 200, 512])
    t = 5.0 + 0.1 * tokens * (1 + 0.2 * rng.standard_normal(len(tokens)))
    pred = fit(tokens, t, interp, smooth)
    kx, ky, _ = pred.curves_[(4096, 4096)]
    knots = np.exp(ky)
    if smooth == 1:
        assert knots == pytest.approx(t, rel=1e-12)  # knots at the measured times
    assert pred.predict(frame(tokens)) == pytest.approx(knots, rel=1e-12)
    lx = np.log(np.arange(3, 513, dtype=np.float64))
    p = pred.predict(frame(np.arange(3, 513)))
    if interp == "log":
        want = np.exp(np.interp(lx, kx, ky))
    else:
        want = np.interp(np.exp(lx), np.exp(kx), knots)
    assert np.array_equal(p, want)  # bit for bit the interpolation


def test_one_knot_curves_and_other_groups_still_hold() -> None:
    one = PiecewiseLinearPredictor().fit(frame(np.array([8, 8])), np.array([4.0, 4.0]))
    assert one.predict(frame(np.array([1, 8]))) == pytest.approx([4.0, 4.0])
    # a group not fitted takes the nearest curve, below its range too, scaled by the base
    X = pd.concat([frame(np.array([4, 8, 16, 32])).assign(n=1024),
                   frame(np.array([4, 8, 16, 32]))], ignore_index=True)
    t = np.array([10.0, 15.0, 20.0, 30.0, 10.0, 15.0, 20.0, 30.0])
    pred = PiecewiseLinearPredictor().fit(X, t)
    p = pred.predict(pd.DataFrame({"num_tokens": [1, 2, 4], "n": 2048, "k": 4096}))
    slopes = loglog_slopes(np.array([1.0, 2.0, 4.0]), p)
    assert np.all(slopes > 0) and np.all(slopes <= 1 + 1e-9)
