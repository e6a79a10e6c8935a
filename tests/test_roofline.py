"""Tests of the roofline execution model: the fast-path contract, consistency, physics."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.catalogue.specs import ModelSpec, NodeSpec, SkuSpec
from simulator.errors import ConfigError
from simulator.execution.roofline import PARTS, RooflineModel, RooflineParams

LLAMA7 = ModelSpec("llama-2-7b", 32, 32, 32, 4096, 11008, 32000, 4096)
LLAMA70 = ModelSpec("llama-2-70b", 80, 64, 8, 8192, 28672, 32000, 4096)
MIXTRAL = ModelSpec(
    "mixtral-8x7b", 32, 32, 8, 4096, 14336, 32000, 32768, num_experts=8, experts_top_k=2
)
A100 = SkuSpec("a100-80gb", 80, 312, 2039, 300, 1.8)
H100 = SkuSpec("h100-80gb", 80, 989, 3350, 450, 2.5)
NODE_A100 = NodeSpec("a100x8", "a100-80gb", 8, "nvswitch", 25)
NODE_H100 = NodeSpec("h100x8", "h100-80gb", 8, "nvswitch", 50)
NODE_PAIR = NodeSpec("a100x8-pair", "a100-80gb", 8, "pairwise_nvlink", 25)
NODE_H100_4 = NodeSpec("h100x4", "h100-80gb", 4, "nvswitch", 50)

MODELS = [
    RooflineModel(LLAMA7, A100, NODE_A100, 1, 1),
    RooflineModel(LLAMA70, H100, NODE_H100, 4, 2),
    RooflineModel(LLAMA70, H100, NODE_H100_4, 4, 4),  # stages across nodes
    RooflineModel(MIXTRAL, H100, NODE_H100, 2, 1),
    RooflineModel(LLAMA7, A100, NODE_PAIR, 1, 4, RooflineParams(cuda_graphs_decode=False)),
]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: f"{m.model.name}-tp{m.tp}-pp{m.pp}")
@pytest.mark.parametrize("k", [1, 7, 64])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decode_steps_bit_exact(model: RooflineModel, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    kv = rng.integers(1, 32768, size=int(rng.integers(1, 300)), dtype=np.int64)
    steps = model.decode_steps(kv, k)
    assert steps.shape == (k, model.num_stages)
    for j in range(k):
        want_arr = model.stage_times([], [], kv + j)
        want_list = model.stage_times([], [], (kv + j).tolist())
        assert want_arr == want_list
        assert tuple(steps[j].tolist()) == want_arr


@settings(max_examples=60, deadline=None)
@given(
    kv=st.lists(st.integers(1, 200_000), min_size=0, max_size=200),
    k=st.sampled_from([1, 7, 64]),
    which=st.integers(0, len(MODELS) - 1),
)
def test_decode_steps_bit_exact_hypothesis(kv: list[int], k: int, which: int) -> None:
    model = MODELS[which]
    arr = np.array(kv, dtype=np.int64)
    steps = model.decode_steps(arr, k)
    for j in range(k):
        assert tuple(steps[j].tolist()) == model.stage_times([], [], [x + j for x in kv])


@pytest.mark.parametrize("model", MODELS, ids=lambda m: f"{m.model.name}-tp{m.tp}-pp{m.pp}")
@pytest.mark.parametrize(
    "batch",
    [
        ([], [], [100]),
        ([], [], list(range(1, 200))),
        ([4096], [0], []),
        ([512, 17, 1000], [0, 300, 2048], list(range(500, 600))),
    ],
)
def test_breakdown_sums_to_stage_times(model: RooflineModel, batch: tuple) -> None:
    times = model.stage_times(*batch)
    parts = model.breakdown(*batch)
    assert len(parts) == len(times) == model.num_stages
    for stage, t in zip(parts, times, strict=True):
        assert set(stage) == set(PARTS)
        assert all(v >= 0 for v in stage.values())
        assert sum(stage.values()) == pytest.approx(t, rel=1e-9, abs=0)


def test_stage_specific_parts() -> None:
    m = RooflineModel(LLAMA70, H100, NODE_H100, 2, 4)
    parts = m.breakdown([256], [0], [1000] * 8)
    assert parts[0]["embedding"] > 0 and parts[0]["cpu_overhead"] > 0
    assert all(p["embedding"] == 0 and p["cpu_overhead"] == 0 for p in parts[1:])
    assert all(p["send_recv"] > 0 for p in parts[:-1]) and parts[-1]["send_recv"] == 0
    assert parts[-1]["lm_head"] > 0 and parts[-1]["sampling"] > 0
    assert all(p["lm_head"] == 0 for p in parts[:-1])


def test_monotonic_in_decode_kv_and_prefill_tokens() -> None:
    m = RooflineModel(LLAMA7, A100, NODE_A100, 1, 1)
    small = m.stage_times([], [], [1000] * 32)[0]
    big = m.stage_times([], [], [2000] * 32)[0]
    assert big > small
    more = m.stage_times([], [], [1000] * 64)[0]
    assert more > small
    assert m.stage_times([1024], [0], [])[0] > m.stage_times([512], [0], [])[0]
    # The same chunk after a longer cached prefix attends more.
    assert m.stage_times([512], [4096], [])[0] > m.stage_times([512], [0], [])[0]


def test_tp2_faster_than_tp1_for_large_prefill() -> None:
    t1 = RooflineModel(LLAMA70, H100, NODE_H100, 1, 1).stage_times([4096], [0], [])[0]
    t2 = RooflineModel(LLAMA70, H100, NODE_H100, 2, 1).stage_times([4096], [0], [])[0]
    assert t2 < 0.65 * t1


def test_pp2_roughly_halves_layer_time() -> None:
    batch = ([2048], [0], [])
    one = RooflineModel(LLAMA70, H100, NODE_H100, 4, 1).breakdown(*batch)[0]
    two = RooflineModel(LLAMA70, H100, NODE_H100, 4, 2).breakdown(*batch)
    layer_parts = ("qkv_proj", "attention_prefill", "o_proj", "mlp", "elementwise")
    whole = sum(one[p] for p in layer_parts)
    for stage in two:
        assert sum(stage[p] for p in layer_parts) == pytest.approx(whole / 2, rel=1e-9)
    t1 = RooflineModel(LLAMA70, H100, NODE_H100, 4, 1).stage_times(*batch)[0]
    t2 = RooflineModel(LLAMA70, H100, NODE_H100, 4, 2).stage_times(*batch)
    assert all(0.45 * t1 < t < 0.6 * t1 for t in t2)


def test_70b_decode_batch1_memory_bound() -> None:
    m = RooflineModel(LLAMA70, H100, NODE_H100, 1, 1)
    t = m.stage_times([], [], [128])[0]
    bound = m.weight_bytes_per_gpu() / (H100.mem_bw_gbps * 1e9 * m.params.memory_efficiency)
    assert bound <= t <= 1.2 * bound


def test_sanity_magnitudes() -> None:
    m = RooflineModel(LLAMA7, A100, NODE_A100, 1, 1)
    assert 5e-3 <= m.stage_times([], [], [512])[0] <= 15e-3
    assert 0.2 <= m.stage_times([4096], [0], [])[0] <= 0.6


def test_pairwise_nvlink_tp4_slower_than_nvswitch() -> None:
    batch = ([2048], [0], [1000] * 16)
    sw = RooflineModel(LLAMA7, A100, NODE_A100, 4, 1)
    pair = RooflineModel(LLAMA7, A100, NODE_PAIR, 4, 1)
    assert pair.stage_times(*batch)[0] > sw.stage_times(*batch)[0]
    assert pair.breakdown(*batch)[0]["allreduce"] > sw.breakdown(*batch)[0]["allreduce"]
    # At tp = 2 the pair's NVLink carries the ring: same as the switch.
    assert RooflineModel(LLAMA7, A100, NODE_PAIR, 2, 1).stage_times(*batch) == (
        RooflineModel(LLAMA7, A100, NODE_A100, 2, 1).stage_times(*batch)
    )


def test_pp_send_crossing_nodes_is_slower() -> None:
    batch = ([2048], [0], [])
    within = RooflineModel(LLAMA70, H100, NODE_H100, 4, 2).breakdown(*batch)[0]["send_recv"]
    across = RooflineModel(LLAMA70, H100, NODE_H100_4, 4, 2).breakdown(*batch)[0]["send_recv"]
    assert across > within


def test_tp_above_gpus_per_node_raises() -> None:
    with pytest.raises(ConfigError) as e:
        RooflineModel(LLAMA70, H100, NODE_H100_4, 8, 1)
    assert e.value.field == "parallel.tensor_parallel"
    assert e.value.value == 8


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("gemm_efficiency", 0.0),
        ("memory_efficiency", 1.5),
        ("kernel_launch_s", -1e-6),
        ("kernels_per_layer", 2.5),
        ("cuda_graphs_decode", "yes"),
        ("comm_efficiency", True),
    ],
)
def test_params_validated(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as e:
        RooflineParams(**{field: value})
    assert e.value.field == f"execution.roofline.{field}"


def test_cuda_graphs_only_for_decode_only_batches() -> None:
    base = RooflineParams()
    eager = dataclasses.replace(base, cuda_graphs_decode=False)
    g = RooflineModel(LLAMA7, A100, NODE_A100, 1, 1, base)
    e = RooflineModel(LLAMA7, A100, NODE_A100, 1, 1, eager)
    assert g.breakdown([], [], [100])[0]["launch"] < e.breakdown([], [], [100])[0]["launch"]
    assert g.stage_times([16], [0], [100]) == e.stage_times([16], [0], [100])


def test_moe_reads_only_used_experts() -> None:
    m = RooflineModel(MIXTRAL, H100, NODE_H100, 1, 1)
    one = m.breakdown([], [], [100])[0]["mlp"]  # 2 experts used
    many = m.breakdown([], [], [100] * 64)[0]["mlp"]  # all 8 experts used
    assert 2.5 < many / one < 4.5


def test_sizes() -> None:
    m = RooflineModel(LLAMA7, A100, NODE_A100, 1, 1)
    assert m.weight_bytes_per_gpu() == pytest.approx(LLAMA7.total_params() * 2, rel=1e-6)
    assert m.activation_bytes_per_gpu(8192, 256) > 0
    assert m.flops_per_token_active() == pytest.approx(2 * 6.6e9, rel=0.05)
    dense_like = RooflineModel(MIXTRAL, H100, NODE_H100, 1, 1).flops_per_token_active()
    assert dense_like == pytest.approx(2 * 12.9e9, rel=0.05)  # ~12.9B active of ~46.7B
