"""Typed records of the catalogue: model architectures, GPU SKUs and node types."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A decoder-only transformer's shape; weights and KV in ``dtype_bytes`` per element."""

    name: str
    num_layers: int
    num_heads: int
    num_kv_heads: int
    hidden_size: int
    ffn_size: int  # intermediate size of one (expert) MLP
    vocab_size: int
    max_context: int
    gated_mlp: bool = True  # SwiGLU-style gate+up projection
    norm: str = "rmsnorm"  # rmsnorm | layernorm
    activation: str = "silu"  # silu | gelu | gelu_new
    num_experts: int = 1  # 1 = dense MLP; >1 = mixture of experts
    experts_top_k: int = 1
    head_dim: int = 0  # 0 = hidden_size // num_heads
    tied_embeddings: bool = False
    dtype_bytes: int = 2
    hf_id: str = ""  # upstream checkpoint id, for reference

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 1

    @property
    def q_size(self) -> int:
        return self.num_heads * self.head_size

    @property
    def kv_size(self) -> int:
        return self.num_kv_heads * self.head_size

    def attention_params(self) -> int:
        """Parameters of one layer's attention block (QKV and O projections)."""
        return self.hidden_size * (self.q_size + 2 * self.kv_size) + self.q_size * self.hidden_size

    def mlp_params(self) -> int:
        """Parameters of one layer's MLP (all experts, plus the router for MoE)."""
        mats = 3 if self.gated_mlp else 2
        per_expert = mats * self.hidden_size * self.ffn_size
        router = self.hidden_size * self.num_experts if self.is_moe else 0
        return per_expert * self.num_experts + router

    def layer_params(self) -> int:
        return self.attention_params() + self.mlp_params() + 2 * self.hidden_size

    def embedding_params(self) -> int:
        """Input embedding plus LM head (shared when tied)."""
        n = self.vocab_size * self.hidden_size
        return n if self.tied_embeddings else 2 * n

    def total_params(self) -> int:
        return self.num_layers * self.layer_params() + self.embedding_params() + self.hidden_size

    def kv_bytes_per_token_per_layer(self) -> int:
        """Bytes of K and V cached per token in one layer (all KV heads, unsharded)."""
        return 2 * self.kv_size * self.dtype_bytes


@dataclass(frozen=True, slots=True)
class SkuSpec:
    """A GPU SKU: capacity, peak rates and on-demand price."""

    name: str
    memory_gb: float  # usable HBM, GiB as marketed (treated as 1e9 * GB bytes)
    bf16_tflops: float  # dense (no sparsity) bf16 tensor-core peak, TFLOP/s
    mem_bw_gbps: float  # HBM bandwidth, GB/s
    link_bw_gbps: float  # intra-node GPU-GPU bandwidth per GPU per direction, GB/s
    price_per_hour: float  # on-demand USD per GPU-hour
    price_source: str = ""
    fp8_tflops: float = 0.0  # dense fp8 peak; 0 = not supported
    sm_count: int = 0  # streaming multiprocessors (spec sheet); 0 = unknown

    @property
    def memory_bytes(self) -> float:
        return self.memory_gb * 1e9


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """A server type: how many GPUs, how they are linked, and the network between nodes."""

    name: str
    sku: str  # the SKU this node holds
    gpus_per_node: int
    topology: str  # nvswitch | pairwise_nvlink | pcie
    inter_node_bw_gbps: float  # per GPU per direction, GB/s
    pcie_bw_gbps: float = 32.0  # per GPU per direction, GB/s (PCIe Gen4 x16 ~ 32)
