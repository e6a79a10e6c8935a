"""Tests of the calibrated roofline: its calibration file, the decode fast-path contract,
physics (monotonic costs) and agreement with measured rows of the reference data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator import SimulationConfig, simulate
from simulator.catalogue import load_catalogue
from simulator.catalogue.specs import NodeSpec, SkuSpec
from simulator.errors import ConfigError
from simulator.execution.calibrated import (
    CALIBRATION_PATH,
    TP_DEGREES,
    CalibratedModel,
    load_calibration,
)
from simulator.execution.roofline import RooflineModel, RooflineParams

CAT = load_catalogue()


def calibrated(model: str, sku: str, node: str, tp: int = 1, pp: int = 1, **params):
    return CalibratedModel(CAT.model(model), CAT.sku(sku), CAT.node(node), tp, pp,
                           RooflineParams(**params))


MODELS = [
    calibrated("llama-2-7b", "a100-80gb", "dgx-a100"),
    calibrated("llama-2-70b", "h100-sxm", "hgx-h100", 4, 4),  # stages cross nodes
    calibrated("mixtral-8x7b", "h200", "hgx-h200", 2),
    calibrated("llama-3-8b", "l40s", "l40s-pcie", 2, 2, cuda_graphs_decode=False),
    calibrated("qwen2.5-7b", "b200", "hgx-b200", 4),
]
IDS = [f"{m.model.name}-{m.sku.name}-tp{m.tp}-pp{m.pp}" for m in MODELS]


def test_file_covers_every_catalogue_sku_and_node() -> None:
    cal = load_calibration()
    assert set(CAT.skus) <= set(cal.skus)
    assert set(CAT.nodes) <= set(cal.nodes)
    for name, node in CAT.nodes.items():
        fit = cal.nodes[name]
        assert {tp for tp in TP_DEGREES if tp <= node.gpus_per_node} <= set(fit.allreduce)
    for entry in cal.skus.values():  # scaled SKUs point at a measured one
        assert not entry.scaled_from or not cal.skus[entry.scaled_from].scaled_from
    assert "fit_roofline.py" in CALIBRATION_PATH.read_text().splitlines()[2]


@pytest.mark.parametrize("model", MODELS, ids=IDS)
@pytest.mark.parametrize("k", [1, 9, 64])
@pytest.mark.parametrize("seed", [0, 1])
def test_decode_steps_bit_exact(model: CalibratedModel, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    kv = rng.integers(1, 32768, size=int(rng.integers(1, 300)), dtype=np.int64)
    steps = model.decode_steps(kv, k)
    assert steps.shape == (k, model.num_stages)
    for j in range(k):
        want = model.stage_times([], [], kv + j)
        assert want == model.stage_times([], [], (kv + j).tolist())
        assert tuple(steps[j].tolist()) == want


@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_breakdown_sums_to_stage_times(model: CalibratedModel) -> None:
    batch = ([512, 17], [0, 300], list(range(500, 560)))
    parts = model.breakdown(*batch)
    assert [sum(p.values()) for p in parts] == pytest.approx(model.stage_times(*batch), rel=1e-12)
    assert all(p["attention_decode"] > 0 and p["attention_prefill"] > 0 for p in parts)
    assert model.breakdown([], [], [100])[0]["attention_prefill"] == 0.0
    assert model.breakdown([64], [0], [])[0]["attention_decode"] == 0.0


@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_monotonic_in_tokens(model: CalibratedModel) -> None:
    prefill = [model.stage_times([c], [0], [])[0] for c in range(1, 8193, 37)]
    assert np.all(np.diff(prefill) >= 0)
    chunked = [model.stage_times([512], [p], [])[0] for p in range(0, 16384, 512)]
    assert np.all(np.diff(chunked) > 0)
    ctx = [model.stage_times([], [], [L] * 32)[0] for L in range(1, 20000, 97)]
    assert np.all(np.diff(ctx) > 0)
    batch = [model.stage_times([], [], [1000] * b)[0] for b in range(1, 513, 7)]
    assert np.all(np.diff(batch) > 0)


def test_simulation_with_calibrated_execution_runs() -> None:
    def run(kind: str) -> dict:
        cfg = SimulationConfig.from_dict({
            "model": "llama-3-8b", "sku": "h100-sxm", "execution": {"kind": kind},
            "workload": {"num_requests": 60}, "seed": 3,
        })
        return simulate(cfg).summary

    cal, roof = run("calibrated"), run("roofline")
    assert cal["counts"]["completed"] == 60
    assert cal["ttft"]["p50"] > 0 and cal["tbt"]["p50"] > 0
    assert cal["tbt"]["p50"] != roof["tbt"]["p50"]  # the other model really ran


def test_collectives_follow_the_node_fits() -> None:
    one = calibrated("llama-2-70b", "h100-sxm", "hgx-h100", 8)
    pair = calibrated("llama-2-70b", "h100-sxm", "h100-pairwise-nvlink", 4)
    ar = [m.breakdown([], [], [1000] * 8)[0]["allreduce"] for m in (one, pair)]
    assert 0 < ar[0] < ar[1]  # vLLM custom all-reduce on NVSwitch beats NCCL over PCIe
    fit = load_calibration().nodes["hgx-h100"].allreduce[8]
    n = one.model.num_layers
    # 2 all-reduces per layer plus the embedding's, each at least the fitted latency.
    assert ar[0] > (2 * n + 1) * fit.latency_us * 1e-6


def test_unlisted_sku_and_node_fall_back() -> None:
    cal = load_calibration()
    slow = SkuSpec("user-gpu", 24, 165, 1008, 32, 1.0)  # Ampere-like balance
    assert cal.for_sku(slow).name == "a100-80gb"
    fast = SkuSpec("user-hopper", 80, 756, 2000, 300, 2.0)
    assert cal.for_sku(fast).name in ("h100-sxm", "b200")
    node = NodeSpec("user-box", "user-gpu", 4, "pcie", 3.0)
    assert cal.for_node(node).name == cal.topology_defaults["pcie"]
    m = CalibratedModel(CAT.model("llama-2-7b"), slow, node, 2, 1)
    assert m.stage_times([128], [0], [])[0] > 0


def test_decode_fixed_cost_is_spread_over_the_sms() -> None:
    """Decode attention's cost per (sequence, KV head) is fixed work on one SM: a GPU with
    twice the SMs (the same spec sheet otherwise) spends half of it; an SKU whose SM count
    is unknown (0) keeps the figure of the GPU the curve was fitted on."""
    assert all(spec.sm_count > 0 for spec in CAT.skus.values())
    cal = load_calibration()
    for name, entry in cal.skus.items():
        donor = entry.scaled_from or name
        assert entry.attention_decode.sms == CAT.sku(donor).sm_count
    dc = cal.skus["a100-80gb"].attention_decode
    assert dc.item_seconds(0) == dc.item_seconds(108) == pytest.approx(dc.per_item_us * 1e-6)
    assert dc.item_seconds(216) == pytest.approx(dc.item_seconds(108) / 2)
    base = CAT.sku("a100-80gb")
    model = CAT.model("llama-3-8b")
    times = {}
    for sms in (108, 216, 0):
        sku = replace(base, name=f"a100-{sms}-sms", sm_count=sms)
        m = CalibratedModel(model, sku, CAT.node("dgx-a100"), 1, 1)
        assert m.sku_calibration.name == "a100-80gb"  # the same curves, other SM count
        times[sms] = _per_layer(m, ([], [], [64] * 256), "attention_decode")
    assert times[0] == pytest.approx(times[108], rel=1e-12)
    kv_heads = model.num_kv_heads
    assert times[108] - times[216] == pytest.approx(dc.item_seconds(216) * 256 * kv_heads)


def test_bad_calibration_file_names_the_field(tmp_path: Path) -> None:
    text = CALIBRATION_PATH.read_text().replace("e_flops: 0.", "e_flops: 3.", 1)
    bad = tmp_path / "calibration.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=r"skus\.a100-40gb\.gemm\.e_flops"):
        load_calibration(str(bad))
    bad.write_text(CALIBRATION_PATH.read_text().replace("latency_us:", "latncy_us:", 1))
    with pytest.raises(ConfigError, match="unknown key"):
        load_calibration(str(bad))
    bad.write_text(CALIBRATION_PATH.read_text().replace(" sms: 108.0,", "", 1))
    with pytest.raises(ConfigError, match=r"attention_decode\.sms"):
        load_calibration(str(bad))


# ---------------------------------------------------------------- reference rows
def _per_layer(model: CalibratedModel, batch: tuple, part: str) -> float:
    return model.breakdown(*batch)[0][part] / model.model.num_layers


def _attention_row(ref: Path, system: str, kind: str, b: int, L: int) -> float:
    d = pd.read_parquet(ref / "aiconfigurator" / system / "attention" /
                        f"{kind}_attention_perf.parquet")
    m = (d.kv_cache_dtype == "bfloat16") & (d.head_dim == 128) & (d.batch_size == b)
    m &= (d.num_heads == 32) & (d.num_key_value_heads == 8)
    m &= (d.step == L - 1) if kind == "generation" else (d.isl == L)
    if "window_size" in d:
        m &= d.window_size == 0
    return float(d[m].latency.iloc[0]) * 1e-3


def test_predictions_near_measured_rows(reference_dir: Path) -> None:
    """Llama-3-8B (32 query / 8 KV heads, hidden 4096) per-layer kernels against the
    aiconfigurator rows of the same shape: every row within 50% (the fits' P95 APE is
    30-45%), the median within 15%."""
    ratios = []
    cases = (("a100-80gb", "a100_sxm", "dgx-a100"), ("h100-sxm", "h100_sxm", "hgx-h100"),
             ("h200", "h200_sxm", "hgx-h200"))
    for sku, system, node in cases:
        model = calibrated("llama-3-8b", sku, node)
        g = pd.read_parquet(reference_dir / "aiconfigurator" / system / "gemm/gemm_perf.parquet")
        g = g[(g.gemm_dtype == "bfloat16") & (g.n == 6144) & (g.k == 4096)]  # QKV
        for T in (16, 256, 2048):
            want = float(g[g.m == T].latency.iloc[0]) * 1e-3
            ratios.append(_per_layer(model, ([T], [0], []), "qkv_proj") / want)
        for b, L in ((1, 4096), (64, 1024), (256, 128)):
            want = _attention_row(reference_dir, system, "generation", b, L)
            ratios.append(_per_layer(model, ([], [], [L] * b), "attention_decode") / want)
        for b, s in ((1, 4096), (1, 512), (4, 1024)):
            want = _attention_row(reference_dir, system, "context", b, s)
            ratios.append(_per_layer(model, ([s] * b, [0] * b, []), "attention_prefill") / want)
    err = np.abs(np.array(ratios) - 1)
    assert err.max() < 0.5, ratios
    assert np.median(err) < 0.15, ratios


def test_vidur_gemm_rows(reference_dir: Path) -> None:
    """Llama-2-7B TP1 on A100, Vidur's QKV and down-projection times within 25%."""
    d = pd.read_csv(reference_dir / "vidur/profiling/compute/a100/meta-llama/Llama-2-7b-hf/mlp.csv")
    d = d[d.num_tensor_parallel_workers == 1].drop_duplicates("num_tokens").set_index("num_tokens")
    model = calibrated("llama-2-7b", "a100-80gb", "dgx-a100")
    for T in (64, 512, 4096):
        want = d.loc[T, "time_stats.attn_pre_proj.median"] * 1e-3
        got = _per_layer(model, ([T], [0], []), "qkv_proj")
        assert got == pytest.approx(want, rel=0.25), T


def test_roofline_unchanged_by_hooks() -> None:
    """The hook refactor keeps the roofline's figures (spot values, computed by hand)."""
    m = RooflineModel(CAT.model("llama-2-7b"), CAT.sku("a100-80gb"), CAT.node("dgx-a100"), 1, 1)
    sku, model = CAT.sku("a100-80gb"), CAT.model("llama-2-7b")
    B = sku.mem_bw_gbps * 1e9 * 0.8
    qkv = max(2.0 * 4096 * 12288 / (312e12 * 0.7), 4096 * 12288 * 2 / B + (4096 + 12288) * 2 / B)
    assert m.breakdown([], [], [10])[0]["qkv_proj"] == pytest.approx(model.num_layers * qkv)
