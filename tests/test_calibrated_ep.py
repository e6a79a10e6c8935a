"""Expert parallelism on the calibrated model: the experts go through the fitted GEMM curve
(as the calibrated MoE without EP does), not the plain roofline formula, and an EP rank
pays the per-rank floor (routing every slot of the group) plus 1/EP of the rest."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from simulator.catalogue import load_catalogue
from simulator.execution.calibrated import CalibratedModel
from simulator.execution.roofline import RooflineParams

MOE = "qwen3-30b-a3b"  # 128 experts, top-8, hidden 2048, expert ffn 768, gated


def model(ep: int = 1, tp: int = 1) -> CalibratedModel:
    cat = load_catalogue()
    m = CalibratedModel(cat.model(MOE), cat.sku("h100-sxm"), cat.node("hgx-h100"), tp, 1)
    if ep > 1:
        m.set_expert_parallel(ep)
    return m


def curve_moe(m: CalibratedModel, T: int, routed: float, used: float, ffn: float) -> float:
    """Router plus experts (:func:`curve_parts`)."""
    return sum(curve_parts(m, T, routed, used, ffn))


def curve_parts(m: CalibratedModel, T: int, routed: float, used: float,
                ffn: float) -> tuple[float, float]:
    """One MoE layer from the GEMM curve, written out: the router on ``T`` tokens, up and
    down projections over ``routed`` tokens reading ``used`` experts of width ``ffn``, and
    the roofline's memory-bound activation."""
    spec = m.model
    curve = m.sku_calibration.gemm
    peak, bw, dt = m.sku.bf16_tflops * 1e12, m.sku.mem_bw_gbps * 1e9, spec.dtype_bytes
    h, E = spec.hidden_size, spec.num_experts
    up = 2 * ffn

    def gemm(rows: float, k: float, n: float, weights: float = 1.0) -> float:
        return curve.seconds(2.0 * rows * k * n, dt * (weights * k * n + rows * (k + n)),
                             peak, bw)

    act = 3 * ffn * dt / (bw * RooflineParams().memory_efficiency) * routed
    return gemm(T, h, E), gemm(routed, h, up, used) + act + gemm(routed, ffn, h, used)


@pytest.mark.parametrize(("T", "Tg"), [(1, 2), (128, 256), (128, 129), (2000, 4000)])
def test_ep_experts_are_priced_by_the_gemm_curve(T: int, Tg: int) -> None:
    m = model(ep=2)
    spec = m.model
    layers = spec.num_layers
    routed = Tg * spec.experts_top_k  # every slot of the group, all experts
    router, t1 = curve_parts(m, T, routed, min(spec.num_experts, routed), spec.ffn_size)
    F = m._ep_floor().seconds(Tg, spec.experts_top_k, spec.hidden_size)
    want = router + F + max(t1 - F, 0.0) / 2
    got = m.breakdown([], [], [500] * T, group_tokens=Tg)[0]["mlp"] / layers
    assert got == pytest.approx(want, rel=1e-12)
    # the stage time carries it
    total = sum(m.stage_times([], [], [500] * T, group_tokens=Tg))
    assert total == pytest.approx(sum(m.breakdown([], [], [500] * T, group_tokens=Tg)[0]
                                      .values()), rel=1e-12)


def test_an_ep_rank_pays_the_floor_and_its_share_of_the_rest() -> None:
    """A rank of a larger EP group is faster, but never below the per-rank floor (routing
    every slot of the group), which the measured EP ranks show; without that floor the
    rank's share of the experts alone would fall towards nothing."""
    one = model(1)
    spec = one.model
    T, Tg = 64, 512
    layers = spec.num_layers
    times = []
    for ep in (2, 4, 8, 16):
        m = model(ep)
        times.append(m.breakdown([], [], [300] * T, group_tokens=Tg)[0]["mlp"] / layers)
        floor = m._ep_floor().seconds(Tg, spec.experts_top_k, spec.hidden_size)
        assert times[-1] > floor
    assert all(a > b for a, b in itertools.pairwise(times))
    # the halving shrinks: each step removes half of what is left above the floor
    gaps = np.diff(times)
    assert np.all(np.abs(gaps[1:]) < np.abs(gaps[:-1]))


def test_ep_one_is_unchanged() -> None:
    """EP 1 keeps the TP-sharded experts of ``_gemms``, also after switching EP back off."""
    for tp in (1, 2):
        fresh = model(1, tp)
        spec = fresh.model
        T = 96
        routed = T * spec.experts_top_k
        want = curve_moe(fresh, T, routed, min(spec.num_experts, routed), spec.ffn_size / tp)
        got = fresh.breakdown([], [], [800] * T)[0]["mlp"] / spec.num_layers
        assert got == pytest.approx(want, rel=1e-12)
        assert fresh.breakdown([], [], [800] * T)[0]["ep_comm"] == 0.0
    fresh, back = model(1), model(2)
    back.set_expert_parallel(1)
    batch = ([700], [100], [300, 900, 2000])
    assert back.stage_times(*batch) == fresh.stage_times(*batch)
    assert fresh.stage_times(*batch, group_tokens=5000) == fresh.stage_times(*batch)
    np.testing.assert_array_equal(back.decode_steps_sum(16, 8000, 5),
                                  fresh.decode_steps_sum(16, 8000, 5))


def test_ep_moe_takes_arrays_as_the_profiled_model_tabulates_it() -> None:
    """The profiled model evaluates its fallback's ``_ep_moe`` on arrays of group tokens."""
    m = model(ep=2)
    Tg = np.array([1, 2, 17, 256, 4096], dtype=np.int64)
    arr = m._ep_moe(Tg / 1, Tg.astype(np.float64), np.maximum)
    scalar = [m._ep_moe(float(t), float(t), max) for t in Tg.tolist()]
    np.testing.assert_array_equal(arr, scalar)
