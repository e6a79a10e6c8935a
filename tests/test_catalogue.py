"""The catalogue is data: every entry loads, shapes are right, prices are sourced, and a
user's own catalogue directory merges over the built-in one with checked entries."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from simulator import ConfigError, SimulationConfig
from simulator import catalogue as cat

MODELS = [
    "llama-2-7b",
    "llama-2-13b",
    "llama-2-70b",
    "llama-3-8b",
    "llama-3-70b",
    "llama-3.1-8b",
    "llama-3.1-70b",
    "llama-3.1-405b",
    "codellama-34b",
    "mistral-7b",
    "mixtral-8x7b",
    "qwen2.5-7b",
    "qwen2.5-72b",
    "phi-2",
    "internlm-20b",
]
SKUS = ["a100-40gb", "a100-80gb", "h100-sxm", "h200", "l40s", "a10g", "b200"]
NODES = [
    "dgx-a100",
    "dgx-a100-40gb",
    "hgx-h100",
    "hgx-h200",
    "hgx-b200",
    "a100-pairwise-nvlink",
    "h100-pairwise-nvlink",
    "l40s-pcie",
    "a10g-pcie",
]

TINY = (
    "tiny: {num_layers: 4, num_heads: 8, num_kv_heads: 8, hidden_size: 512,"
    " ffn_size: 2048, vocab_size: 1000, max_context: 2048}\n"
)
MODEL_FIELDS = (
    "num_layers: 4, num_heads: 8, num_kv_heads: 8, hidden_size: 512, ffn_size: 1,"
    " vocab_size: 1, max_context: 1"
)
SKU_FIELDS = "memory_gb: 80, bf16_tflops: 989, mem_bw_gbps: 3350, link_bw_gbps: 450"


def test_every_listed_name_loads() -> None:
    assert set(MODELS) <= set(cat.model_names())
    assert set(SKUS) <= set(cat.sku_names())
    assert set(NODES) <= set(cat.node_names())
    for name in cat.model_names():
        m = cat.get_model(name)
        assert m.name == name and m.hf_id and m.total_params() > 0
    for name in cat.node_names():
        node = cat.get_node(name)
        assert node.name == name and node.sku in cat.sku_names()


def test_every_sku_has_a_positive_sourced_price_and_a_node() -> None:
    for name in cat.sku_names():
        sku = cat.get_sku(name)
        assert sku.price_per_hour > 0 and sku.price_source.strip()
        assert sku.memory_gb > 0 and sku.bf16_tflops > 0 and sku.mem_bw_gbps > 0
        default = cat.default_node_for(name)
        assert cat.get_node(default).sku == name
        assert default == cat.load_catalogue().nodes_for(name)[0]


@pytest.mark.parametrize(
    ("name", "params", "tol"),
    [
        ("llama-2-70b", 69.0e9, 0.01),
        ("llama-3-8b", 8.03e9, 0.02),
        ("mixtral-8x7b", 46.7e9, 0.02),
        ("llama-2-7b", 6.74e9, 0.01),
        ("llama-2-13b", 13.0e9, 0.01),
        ("llama-3.1-405b", 405.9e9, 0.01),
        ("qwen2.5-7b", 7.61e9, 0.01),
        ("qwen2.5-72b", 72.7e9, 0.01),
        ("phi-2", 2.78e9, 0.01),
    ],
)
def test_model_shapes_give_published_parameter_counts(name: str, params: float, tol: float) -> None:
    assert cat.get_model(name).total_params() == pytest.approx(params, rel=tol)


def test_shapes_that_differ_from_the_defaults() -> None:
    mixtral = cat.get_model("mixtral-8x7b")
    assert (mixtral.num_experts, mixtral.experts_top_k) == (8, 2)
    phi = cat.get_model("phi-2")
    assert not phi.gated_mlp and phi.norm == "layernorm" and phi.activation == "gelu_new"
    assert phi.head_size == 80
    assert cat.get_model("llama-3.1-8b").max_context == 131072
    assert cat.get_model("llama-2-70b").kv_bytes_per_token_per_layer() == 2 * 8 * 128 * 2


def test_unknown_names_list_the_allowed_ones() -> None:
    for getter, field, bad, known in (
        (cat.get_model, "model", "llama-9", "llama-2-70b"),
        (cat.get_sku, "sku", "v100", "h100-sxm"),
        (cat.get_node, "node", "dgx-v100", "hgx-h100"),
    ):
        with pytest.raises(ConfigError, match=known) as err:
            getter(bad)
        assert err.value.field == field and err.value.value == bad
        assert "allowed values are" in str(err.value)
    with pytest.raises(ConfigError, match="h100-sxm"):
        cat.default_node_for("v100")


def test_user_catalogue_adds_a_model_and_replaces_a_price(tmp_path: Path) -> None:
    (tmp_path / "models.yaml").write_text(TINY)
    (tmp_path / "skus.yaml").write_text(
        f"h100-sxm: {{{SKU_FIELDS}, price_per_hour: 1.5, price_source: our contract}}\n"
    )
    c = cat.load_catalogue(tmp_path)
    assert c.model("tiny").num_layers == 4
    assert c.model("llama-2-70b") == cat.get_model("llama-2-70b")  # built-ins kept
    assert c.sku("h100-sxm").price_per_hour == 1.5
    assert c.sku("h100-sxm").price_source == "our contract"
    assert cat.get_sku("h100-sxm").price_per_hour != 1.5  # built-in untouched
    assert cat.load_catalogue(str(tmp_path)) is c  # cached while the files are unchanged
    cfg = SimulationConfig(model="tiny", sku="h100-sxm", catalogue=str(tmp_path))
    assert cfg.model_spec.hidden_size == 512 and cfg.sku_spec.price_per_hour == 1.5


def test_user_catalogue_is_reread_when_a_file_changes(tmp_path: Path) -> None:
    f = tmp_path / "models.yaml"
    f.write_text(TINY)
    assert cat.load_catalogue(tmp_path).model("tiny").num_layers == 4
    f.write_text(TINY.replace("num_layers: 4", "num_layers: 6"))
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert cat.load_catalogue(tmp_path).model("tiny").num_layers == 6


def test_user_sku_needs_a_node_and_a_user_node_needs_a_known_sku(tmp_path: Path) -> None:
    (tmp_path / "skus.yaml").write_text(f"mi300x: {{{SKU_FIELDS}, price_per_hour: 3}}\n")
    with pytest.raises(ConfigError, match=r"mi300x.*has no node type"):
        cat.load_catalogue(tmp_path)
    (tmp_path / "nodes.yaml").write_text(
        "mi300x-8: {sku: mi300x, gpus_per_node: 8, topology: nvswitch, inter_node_bw_gbps: 50}\n"
    )
    c = cat.load_catalogue(tmp_path)
    assert c.default_node_for("mi300x") == "mi300x-8"
    (tmp_path / "nodes.yaml").write_text(
        "x: {sku: tpu, gpus_per_node: 8, topology: nvswitch, inter_node_bw_gbps: 50}\n"
    )
    with pytest.raises(ConfigError, match=r"nodes\.yaml: x\.sku.*allowed values are"):
        cat.load_catalogue(tmp_path)


@pytest.mark.parametrize(
    ("fname", "text", "words"),
    [
        ("models.yaml", "bad: {num_layers: 4}", ["bad.num_heads", "missing"]),
        (
            "models.yaml",
            f"bad: {{{MODEL_FIELDS.replace('hidden_size: 512', 'hidden_size: -1')}}}",
            ["bad.hidden_size", "-1", "> 0"],
        ),
        (
            "models.yaml",
            f"bad: {{{MODEL_FIELDS.replace('num_kv_heads: 8', 'num_kv_heads: 3')}}}",
            ["bad.num_kv_heads", "divide"],
        ),
        (
            "models.yaml",
            f"bad: {{{MODEL_FIELDS}, num_experts: 2, experts_top_k: 4}}",
            ["bad.experts_top_k", "num_experts=2"],
        ),
        ("models.yaml", f"bad: {{{MODEL_FIELDS}, norm: batchnorm}}", ["bad.norm", "rmsnorm"]),
        ("models.yaml", f"bad: {{{MODEL_FIELDS}, gated_mlp: 1}}", ["bad.gated_mlp", "bool"]),
        ("models.yaml", "bad: {layers: 4}", ["bad.layers", "unknown field"]),
        (
            "skus.yaml",
            f"bad: {{{SKU_FIELDS.replace('memory_gb: 80', 'memory_gb: -80')}, price_per_hour: 2}}",
            ["bad.memory_gb", "-80", "> 0"],
        ),
        ("skus.yaml", f"bad: {{{SKU_FIELDS}}}", ["bad.price_per_hour", "missing"]),
        (
            "skus.yaml",
            f"bad: {{{SKU_FIELDS}, price_per_hour: 0}}",
            ["bad.price_per_hour", "> 0"],
        ),
        (
            "skus.yaml",
            f"bad: {{{SKU_FIELDS.replace('memory_gb: 80', 'memory_gb: 80GB')}, price_per_hour: 2}}",
            ["bad.memory_gb", "float"],
        ),
        (
            "nodes.yaml",
            "bad: {sku: h100-sxm, gpus_per_node: 8, topology: ring, inter_node_bw_gbps: 50}",
            ["bad.topology", "nvswitch"],
        ),
        ("nodes.yaml", "bad: {sku: h100-sxm}", ["bad.gpus_per_node", "missing"]),
        ("models.yaml", "[1, 2]", ["mapping"]),
        ("models.yaml", "bad: {num_layers: [", ["not valid YAML"]),
    ],
)
def test_malformed_user_entries_name_file_entry_and_field(
    tmp_path: Path, fname: str, text: str, words: list[str]
) -> None:
    (tmp_path / fname).write_text(text)
    with pytest.raises(ConfigError) as err:
        cat.load_catalogue(tmp_path)
    assert fname in str(err.value)
    for w in words:
        assert w in str(err.value)


def test_catalogue_path_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be a directory"):
        cat.load_catalogue(tmp_path / "missing")
    assert cat.load_catalogue(None) is cat.load_catalogue("") is cat.load_catalogue()


def test_catalogue_tables_are_read_only() -> None:
    with pytest.raises(TypeError):
        cat.load_catalogue().models["x"] = cat.get_model("phi-2")  # type: ignore[index]
