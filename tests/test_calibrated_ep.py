"""Expert parallelism on the calibrated model: the GPU's local experts go through the fitted
GEMM curve (as the calibrated MoE without EP does), not the plain roofline formula."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.catalogue import load_catalogue
from simulator.execution.calibrated import CalibratedModel
from simulator.execution.roofline import RooflineModel, RooflineParams

MOE = "qwen3-30b-a3b"  # 128 experts, top-8, hidden 2048, expert ffn 768, gated


def model(ep: int = 1, tp: int = 1) -> CalibratedModel:
    cat = load_catalogue()
    m = CalibratedModel(cat.model(MOE), cat.sku("h100-sxm"), cat.node("hgx-h100"), tp, 1)
    if ep > 1:
        m.set_expert_parallel(ep)
    return m


def curve_moe(m: CalibratedModel, T: int, routed: float, used: float, ffn: float) -> float:
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
    return gemm(T, h, E) + gemm(routed, h, up, used) + act + gemm(routed, ffn, h, used)


@pytest.mark.parametrize(("T", "Tg"), [(1, 2), (128, 256), (128, 129), (2000, 4000)])
def test_ep_experts_are_priced_by_the_gemm_curve(T: int, Tg: int) -> None:
    m = model(ep=2)
    spec = m.model
    layers = spec.num_layers
    routed = Tg * spec.experts_top_k / 2
    used = min(spec.num_experts / 2, routed)
    want = curve_moe(m, T, routed, used, spec.ffn_size)
    got = m.breakdown([], [], [500] * T, group_tokens=Tg)[0]["mlp"] / layers
    assert got == pytest.approx(want, rel=1e-12)
    # not the roofline's expert formula, which the model used before
    roof = RooflineModel(spec, m.sku, m.node, 1, 1)
    roof.set_expert_parallel(2)
    assert abs(got / (roof.breakdown([], [], [500] * T, group_tokens=Tg)[0]["mlp"] / layers)
               - 1) > 0.02
    # the stage time carries it
    total = sum(m.stage_times([], [], [500] * T, group_tokens=Tg))
    assert total == pytest.approx(sum(m.breakdown([], [], [500] * T, group_tokens=Tg)[0]
                                      .values()), rel=1e-12)


def test_ep_matches_the_calibrated_moe_without_ep_for_the_same_expert_work() -> None:
    """At TP 1, a rank of an EP-2 group whose group carries twice its tokens routes as many
    tokens per expert as one GPU with every expert; while they touch at most half the
    experts, the same experts' weights are read: the same kernels, the same time."""
    one, two = model(1), model(2)
    for T in (1, 4, 8):  # T x top-8 <= 64 experts
        a = one.breakdown([], [], [300] * T)[0]["mlp"]
        b = two.breakdown([], [], [300] * T, group_tokens=2 * T)[0]["mlp"]
        assert b == pytest.approx(a, rel=1e-12)
    # with more tokens the EP rank reads only its 64 experts: less time
    a = one.breakdown([], [], [300] * 64)[0]["mlp"]
    b = two.breakdown([], [], [300] * 64, group_tokens=128)[0]["mlp"]
    assert b < 0.75 * a


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
