"""Catalogue entries for checking against real serving engines: Qwen3 (dense and MoE),
Mistral Large 2, Llama-3.1, and the RTX 4090 / RTX PRO 6000 PCIe GPUs with their nodes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator import ConfigError, SimulationConfig
from simulator import catalogue as cat
from simulator.execution.calibrated import CalibratedModel, load_calibration
from simulator.execution.roofline import RooflineModel

NEW_MODELS = ("qwen3-8b", "qwen3-32b", "qwen3-30b-a3b", "mistral-large-2407")


@pytest.mark.parametrize(
    ("name", "params", "active"),
    [
        ("qwen3-8b", 8.19e9, 8.19e9),
        ("qwen3-32b", 32.8e9, 32.8e9),
        ("qwen3-30b-a3b", 30.5e9, 3.3e9),  # Qwen's model card: 30.5B total, 3.3B activated
        ("mistral-large-2407", 122.6e9, 122.6e9),  # "123B"
        ("llama-3.1-8b", 8.03e9, 8.03e9),
        ("llama-3.1-70b", 70.6e9, 70.6e9),
        ("llama-3.1-405b", 405.9e9, 405.9e9),
    ],
)
def test_parameter_counts(name: str, params: float, active: float) -> None:
    m = cat.get_model(name)
    assert m.total_params() == pytest.approx(params, rel=0.01)
    # active = FLOPs per token / 2 (the input embedding is a lookup, not counted)
    flops = RooflineModel(m, cat.get_sku("h200"), cat.get_node("hgx-h200"), 8, 1
                          ).flops_per_token_active()
    embed = m.vocab_size * m.hidden_size
    assert (flops / 2 + embed) == pytest.approx(active, rel=0.02)


def test_attention_shapes() -> None:
    q8, q32, moe, large = (cat.get_model(n) for n in NEW_MODELS)
    # Qwen3 sets head_dim 128 explicitly: q width = heads x head_dim, not always hidden
    assert (q8.q_size, q8.kv_size) == (32 * 128, 8 * 128) and q8.q_size == q8.hidden_size
    assert (q32.q_size, q32.hidden_size) == (64 * 128, 5120)
    assert (moe.q_size, moe.kv_size, moe.hidden_size) == (32 * 128, 4 * 128, 2048)
    assert large.head_size == 12288 // 96 == 128 and large.num_kv_heads == 8
    for m in (q8, q32, moe, large):
        assert m.kv_bytes_per_token_per_layer() == 2 * m.num_kv_heads * 128 * 2
        assert not m.tied_embeddings and m.gated_mlp and m.hf_id
    assert (q8.num_layers, q32.num_layers, moe.num_layers, large.num_layers) == (36, 64, 48, 88)
    assert q8.vocab_size == q32.vocab_size == moe.vocab_size == 151936
    assert large.vocab_size == 32768 and large.max_context == 131072
    assert q8.max_context == 40960


def test_qwen3_moe_fields() -> None:
    m = cat.get_model("qwen3-30b-a3b")
    assert m.is_moe and (m.num_experts, m.experts_top_k, m.ffn_size) == (128, 8, 768)
    # all 128 experts' gate/up/down plus the router, in every layer
    assert m.mlp_params() == 128 * 3 * 2048 * 768 + 2048 * 128
    assert not cat.get_model("qwen3-32b").is_moe


@pytest.mark.parametrize(
    ("sku", "mem", "bf16", "fp8", "bw", "link", "node", "pcie"),
    [
        ("rtx-4090", 24, 165, 330, 1008, 32, "rtx-4090-pcie", 32),
        ("rtx-pro-6000", 96, 504, 1008, 1792, 64, "rtx-pro-6000-pcie", 64),
    ],
)
def test_pcie_gpus_and_their_nodes(sku: str, mem: float, bf16: float, fp8: float, bw: float,
                                   link: float, node: str, pcie: float) -> None:
    s = cat.get_sku(sku)
    assert (s.memory_gb, s.bf16_tflops, s.fp8_tflops, s.mem_bw_gbps, s.link_bw_gbps) == (
        mem, bf16, fp8, bw, link)
    assert s.price_per_hour > 0 and "RunPod" in s.price_source and "$" in s.price_source
    n = cat.get_node(cat.default_node_for(sku))
    assert n.name == node and n.topology == "pcie" and n.pcie_bw_gbps == pcie
    assert n.gpus_per_node == 8 and n.inter_node_bw_gbps > 0
    # no measurements: the calibrated model takes the Ampere-class curves and PCIe fits
    cal = load_calibration()
    assert cal.for_sku(s).scaled_from == "a100-80gb"
    assert cal.for_node(n).scaled_from == "a100-pairwise-nvlink"


@pytest.mark.parametrize(
    ("model", "sku", "tp"),
    [
        ("llama-3.1-8b", "rtx-4090", 1),
        ("llama-3.1-8b", "rtx-pro-6000", 1),
        ("qwen3-32b", "rtx-pro-6000", 2),
        ("qwen3-30b-a3b", "rtx-pro-6000", 1),
        ("qwen3-8b", "h100-sxm", 1),
        ("mistral-large-2407", "h200", 4),
    ],
)
def test_deployments_of_the_reference_runs_build(model: str, sku: str, tp: int) -> None:
    cfg = SimulationConfig.from_dict({
        "model": model, "sku": sku, "parallel": {"tensor_parallel": tp},
        "scheduler": {"name": "vllm_v1", "max_batch_size": 128, "chunk_size": 2048},
        "execution": {"kind": "calibrated"},
    })
    assert cfg.kv_capacity().num_tokens > 10_000
    ex = CalibratedModel(cfg.model_spec, cfg.sku_spec, cfg.node_spec, tp, 1)
    t_decode = ex.stage_times([], [], [1000] * 64)[0]
    t_prefill = ex.stage_times([2048], [0], [])[0]
    assert 0 < t_decode < t_prefill < 10.0


def test_models_that_do_not_fit_a_4090() -> None:
    with pytest.raises(ConfigError, match="does not fit on rtx-4090"):
        SimulationConfig(model="qwen3-32b", sku="rtx-4090")


def test_kv_tokens_override_reproduces_the_rtx4090_run(reference_dir: Path) -> None:
    """The RTX 4090 vLLM run reports its KV capacity; the override makes it exact (the
    memory-derived value differs because the catalogue counts 24 GB, not 24 GiB)."""
    meta = json.loads((reference_dir / "llmservingsim" / "runs" / "RTX4090" / "Llama-3.1-8B"
                       / "meta.json").read_text())
    kv = meta["kv_cache"]
    sched = {"name": "vllm_v1", "max_batch_size": meta["engine_kwargs"]["max_num_seqs"],
             "chunk_size": meta["engine_kwargs"]["max_num_batched_tokens"],
             "block_size": kv["block_size"]}
    derived = SimulationConfig.from_dict({"model": "llama-3.1-8b", "sku": "rtx-4090",
                                          "scheduler": sched}).kv_capacity()
    assert derived.num_tokens == pytest.approx(kv["num_kv_tokens"], rel=0.15)
    exact = SimulationConfig.from_dict({
        "model": "llama-3.1-8b", "sku": "rtx-4090",
        "scheduler": {**sched, "kv_tokens_override": kv["num_kv_tokens"]},
    }).kv_capacity()
    assert (exact.num_blocks, exact.num_tokens) == (kv["num_gpu_blocks"], kv["num_kv_tokens"])
