"""GPU memory accounting: weights per GPU, activation headroom and paged-KV capacity."""

from __future__ import annotations

from dataclasses import dataclass

from simulator.catalogue.specs import ModelSpec, SkuSpec
from simulator.errors import ConfigError
from simulator.precision import BF16, Precision


def kv_heads_of(n_kv_heads: int, tp: int) -> int:
    """KV heads each TP rank holds of ``n_kv_heads``; heads are replicated when TP exceeds
    their number (the one rule; the profile schema uses it too)."""
    return max(1, n_kv_heads // tp)


def kv_heads_per_gpu(model: ModelSpec, tp: int) -> int:
    """KV heads each TP rank of ``model`` holds (:func:`kv_heads_of`)."""
    return kv_heads_of(model.num_kv_heads, tp)


def weight_bytes_per_gpu(model: ModelSpec, tp: int, pp: int,
                         precision: Precision = BF16, ep: int = 1) -> float:
    """Weight bytes on the most loaded GPU of a replica (its stage's layers split by TP).

    Stage 0 holds the input embedding and the last stage the LM head; with one stage the
    same GPU holds both. Norm weights are replicated. With FP8 weights the layers' linear
    weights (all but the MoE router) take ``precision.weight_bytes`` per element; the rest
    stays in the checkpoint's dtype. With expert parallelism (``ep > 1``, MoE models) each
    GPU holds ``num_experts / ep`` whole experts instead of a 1/TP slice of every expert;
    attention and the router stay split by TP.
    """
    layers = model.num_layers // pp
    embed = model.vocab_size * model.hidden_size / tp
    head_bytes = embed if (pp > 1 or not model.tied_embeddings) else 0.0
    edge = embed + head_bytes if pp == 1 else max(embed, head_bytes + model.hidden_size)
    saved = model.dtype_bytes - precision.weight_bytes(model)
    router = model.hidden_size * model.num_experts if model.is_moe else 0
    if ep > 1:
        attn = model.attention_params()
        experts = (model.mlp_params() - router) / ep
        per_layer = (attn + router) / tp + experts + 2 * model.hidden_size
        total = (layers * per_layer + edge) * model.dtype_bytes
        return total - layers * (attn / tp + experts) * saved
    sharded = model.attention_params() + model.mlp_params()
    per_layer = sharded / tp + 2 * model.hidden_size
    total = (layers * per_layer + edge) * model.dtype_bytes
    if saved:
        total -= layers * (sharded - router) / tp * saved
    return total


def activation_bytes_per_gpu(model: ModelSpec, tp: int, max_tokens: int, max_seqs: int) -> float:
    """Peak transient memory of one forward pass, reserved before KV blocks are carved out.

    A few live activation tensors of the widest layer for ``max_tokens`` tokens, plus fp32
    logits of ``max_seqs`` rows over the TP-sharded vocabulary. Mirrors how vLLM profiles a
    dummy forward pass at the scheduler's largest batch before sizing its KV cache.
    """
    widest = max(
        model.hidden_size,
        (model.q_size + 2 * model.kv_size) // tp,
        (2 if model.gated_mlp else 1) * model.ffn_size // tp,
    )
    live_tensors = 4
    acts = live_tensors * max_tokens * widest * model.dtype_bytes
    logits = max_seqs * (model.vocab_size // tp) * 4
    return float(acts + logits)


@dataclass(frozen=True, slots=True)
class KvCapacity:
    """Paged-KV capacity of one replica and how it was derived (bytes are per GPU)."""

    num_blocks: int
    block_size: int
    block_bytes: int
    gpu_bytes: float
    usable_bytes: float
    weight_bytes: float
    activation_bytes: float

    @property
    def num_tokens(self) -> int:
        return self.num_blocks * self.block_size


def kv_capacity(
    model: ModelSpec,
    sku: SkuSpec,
    *,
    tp: int,
    pp: int,
    block_size: int,
    gpu_memory_utilization: float,
    max_tokens: int,
    max_seqs: int,
    num_blocks_override: int = 0,
    kv_tokens_override: int = 0,
    precision: Precision = BF16,
    ep: int = 1,
) -> KvCapacity:
    """Blocks = (memory x utilisation - weights - activation headroom) / block bytes.

    Every GPU of a replica holds the KV of its stage's layers for its share of KV heads, so
    the per-GPU block size fixes the replica's capacity. ``num_blocks_override`` sets the
    block count, ``kv_tokens_override`` the capacity in tokens (blocks = tokens //
    block_size), as a real engine reports it. ``precision`` sets the weight and KV element
    sizes; ``ep`` the expert-parallel degree (each GPU holds 1/``ep`` of the experts, see
    ``weight_bytes_per_gpu``). Raises ConfigError when the model does not fit.
    """
    layers = model.num_layers // pp
    block_bytes = block_size * layers * 2 * kv_heads_per_gpu(model, tp) * model.head_size
    block_bytes *= precision.kv_bytes(model)
    usable = sku.memory_bytes * gpu_memory_utilization
    weights = weight_bytes_per_gpu(model, tp, pp, precision, ep)
    acts = activation_bytes_per_gpu(model, tp, max_tokens, max_seqs)
    free = usable - weights - acts
    blocks = int(free // block_bytes) if free > 0 else 0
    if num_blocks_override:
        blocks = num_blocks_override
    if kv_tokens_override:
        blocks = kv_tokens_override // block_size
        if blocks < 1:
            raise ConfigError("scheduler.kv_tokens_override", kv_tokens_override,
                              f"must hold at least one KV block of {block_size} tokens")
    if blocks < 1:
        raise ConfigError(
            "model",
            model.name,
            f"does not fit on {sku.name} with tensor_parallel={tp}, pipeline_parallel={pp}"
            + (f", expert_parallel={ep}" if ep > 1 else "") + ": "
            f"{weights / 1e9:.1f} GB weights + {acts / 1e9:.1f} GB activations per GPU exceed "
            f"{usable / 1e9:.1f} GB ({sku.memory_gb} GB x gpu_memory_utilization="
            f"{gpu_memory_utilization}); raise tensor/pipeline parallelism or pick a larger GPU",
        )
    return KvCapacity(blocks, block_size, block_bytes, sku.memory_bytes, usable, weights, acts)
