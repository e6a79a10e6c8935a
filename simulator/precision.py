"""Numeric precision of a deployment: the weights and the KV cache, each bf16 or fp8.

``bf16`` keeps the checkpoint's element size (``ModelSpec.dtype_bytes``: 2 bytes for every
built-in model). ``fp8`` stores one byte per element:

- weights: the decoder layers' linear layers (QKV, O, MLP / experts) as in vLLM's FP8
  (W8A8) quantisation: half the weight memory and half the weight bytes a GEMM reads, and
  GEMMs at the SKU's fp8 tensor-core rate. Embeddings, the LM head, norms and the MoE
  router stay in the checkpoint's dtype, as vLLM leaves them; activations too.
- kv_cache: half the KV bytes per token, so more blocks fit in the same memory and
  attention reads half the KV bytes. Attention math stays in bf16.

FP8 weights need FP8 tensor cores (``SkuSpec.fp8_tflops > 0``): ``check_sku`` raises
ConfigError naming the SKU otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.catalogue.specs import ModelSpec, SkuSpec
from simulator.errors import ConfigError, one_of

PRECISIONS = ("bf16", "fp8")


@dataclass(frozen=True)
class Precision:
    """Storage precision of the weights and of the KV cache (``bf16`` or ``fp8``)."""

    weights: str = "bf16"
    kv_cache: str = "bf16"

    def __post_init__(self) -> None:
        one_of("precision.weights", self.weights, PRECISIONS)
        one_of("precision.kv_cache", self.kv_cache, PRECISIONS)

    def weight_bytes(self, model: ModelSpec) -> int:
        """Bytes per element of the quantised (linear-layer) weights."""
        return 1 if self.weights == "fp8" else model.dtype_bytes

    def kv_bytes(self, model: ModelSpec) -> int:
        """Bytes per element of the KV cache."""
        return 1 if self.kv_cache == "fp8" else model.dtype_bytes

    def check_sku(self, sku: SkuSpec) -> None:
        """ConfigError when FP8 weights are asked of an SKU without FP8 tensor cores."""
        if self.weights == "fp8" and sku.fp8_tflops <= 0:
            raise ConfigError(
                "precision.weights", self.weights,
                f"sku {sku.name} has no FP8 tensor cores (fp8_tflops: 0 in skus.yaml); "
                "use weights: bf16 or an SKU with fp8_tflops > 0",
            )


BF16 = Precision()  # frozen: safe to share as a default

__all__ = ["BF16", "PRECISIONS", "Precision"]
