"""One decoder layer of a catalogue model, sharded as tensor parallelism shards it.

``LayerShape`` holds the per-GPU shapes (query heads, KV heads and FFN divided by TP,
vocabulary split for the vocab-parallel embedding and LM head). ``DecoderLayer`` holds
random bf16 weights of that shape on one device and hands out, for every operator the
engine costs, a zero-argument callable that runs the operator once on pre-allocated
inputs: the timer calls it repeatedly, so allocation never lands inside a measurement.

Attention runs through ``AttentionBackend``: the ``flash_attn`` package when installed
(paged KV for decodes), else ``torch.nn.functional.scaled_dot_product_attention``, which
dispatches to its FlashAttention kernel on CUDA. Tensors use the engine's KV layout
``(batch, tokens, heads, head_dim)``; SDPA receives transposed views of it.

``DecoderLayer.forward_batch`` runs one whole layer over a mixed batch (prefill chunks
after cached tokens, plus decodes), as ``experiments/validate_batches.py`` needs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from simulator.catalogue.specs import ModelSpec
from simulator.errors import ConfigError

# Operators of ``layer_ops`` in the order they run (schema's LAYER_OPS).
DENSE_OPS = ("embedding", "input_norm", "qkv_proj", "rope", "o_proj", "post_norm",
             "gate_up_proj", "act", "down_proj", "add", "lm_head")
MOE_OPS = ("embedding", "input_norm", "qkv_proj", "rope", "o_proj", "post_norm",
           "moe_experts", "add", "lm_head")
GEMM_OPS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj", "lm_head", "moe_experts")

# Tiny stand-in used on machines without CUDA (see ``tiny_spec``).
TINY_HEAD_DIM = 8
TINY_VOCAB = 512
TINY_CONTEXT = 256


@dataclass(frozen=True)
class LayerShape:
    """Per-GPU shapes of one decoder layer of ``model`` at tensor parallelism ``tp``."""

    model: str
    tp: int
    hidden: int
    q_heads: int  # query heads on this GPU
    kv_heads: int  # KV heads on this GPU (replicated when tp exceeds their number)
    head_dim: int
    ffn: int  # intermediate width of one (expert) MLP on this GPU
    vocab: int  # vocabulary rows of the embedding / LM head on this GPU
    context: int
    gated: bool
    norm: str
    activation: str
    experts: int  # 1 = dense MLP
    topk: int
    norm_eps: float = 1e-5

    @classmethod
    def from_spec(cls, spec: ModelSpec, tp: int) -> LayerShape:
        """Shard ``spec`` by ``tp``; ConfigError (field ``tp``) when TP cannot split it."""
        if not isinstance(tp, int) or isinstance(tp, bool) or tp < 1:
            raise ConfigError("tp", tp, "must be an integer >= 1")
        divisors = [d for d in range(1, spec.num_heads + 1) if spec.num_heads % d == 0]
        if spec.num_heads % tp:
            raise ConfigError("tp", tp, f"must divide {spec.name}'s {spec.num_heads} attention "
                              f"heads; allowed: {', '.join(map(str, divisors))}")
        if tp > spec.num_kv_heads and tp % spec.num_kv_heads:
            raise ConfigError("tp", tp, f"must divide or be a multiple of {spec.name}'s "
                              f"{spec.num_kv_heads} KV heads")
        for name, value in (("ffn_size", spec.ffn_size), ("vocab_size", spec.vocab_size)):
            if value % tp:
                raise ConfigError("tp", tp, f"must divide {spec.name}'s {name}={value}")
        return cls(
            model=spec.name, tp=tp, hidden=spec.hidden_size, q_heads=spec.num_heads // tp,
            kv_heads=max(1, spec.num_kv_heads // tp), head_dim=spec.head_size,
            ffn=spec.ffn_size // tp, vocab=spec.vocab_size // tp, context=spec.max_context,
            gated=spec.gated_mlp, norm=spec.norm, activation=spec.activation,
            experts=spec.num_experts, topk=spec.experts_top_k,
        )

    @property
    def q_width(self) -> int:
        return self.q_heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def is_moe(self) -> bool:
        return self.experts > 1

    @property
    def up_width(self) -> int:
        return (2 if self.gated else 1) * self.ffn

    @property
    def ops(self) -> tuple[str, ...]:
        """The ``layer_ops`` operators this model's layer runs."""
        return MOE_OPS if self.is_moe else DENSE_OPS

    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """Bytes of K and V of one token in one layer on this GPU."""
        return 2 * self.kv_width * dtype_bytes

    def op_dims(self, op: str) -> tuple[int, int]:
        """``(n, k)`` of ``op`` as the schema records them: GEMMs are ``tokens x k @ k x n``;
        elementwise and norm ops have ``n`` = width and ``k`` = 0."""
        h = self.hidden
        dims = {
            "embedding": (h, 0),
            "input_norm": (h, 0),
            "post_norm": (h, 0),
            "add": (h, 0),
            "rope": (self.q_width + self.kv_width, 0),
            "qkv_proj": (self.q_width + 2 * self.kv_width, h),
            "o_proj": (h, self.q_width),
            "gate_up_proj": (self.up_width, h),
            "act": (self.ffn, 0),
            "down_proj": (h, self.ffn),
            "moe_experts": (self.ffn, h),
            "lm_head": (self.vocab, h),
        }
        if op not in dims:
            raise ConfigError("op", op, "allowed values are " + ", ".join(dims))
        return dims[op]

    def op_cost(self, op: str, tokens: int, dtype_bytes: int = 2) -> tuple[float, float]:
        """(FLOPs, bytes moved) of one call of ``op`` on ``tokens`` rows, for estimates."""
        n, k = self.op_dims(op)
        if op == "moe_experts":
            routed = tokens * self.topk
            used = min(self.experts, routed)
            flops = 2.0 * routed * _mlp_mats(self) * self.hidden * self.ffn
            flops += 2.0 * tokens * self.hidden * self.experts
            weights = used * _mlp_mats(self) * self.hidden * self.ffn
            return flops, (weights + 4 * routed * (self.hidden + self.up_width)) * dtype_bytes
        if k:
            return 2.0 * tokens * n * k, (n * k + tokens * (n + k)) * dtype_bytes
        reads = {"act": self.up_width, "add": 2 * n}.get(op, n)
        return float(tokens * n), tokens * (reads + n) * dtype_bytes

    def attention_cost(self, queries: int, keys_sum: float, kv_tokens: float,
                       dtype_bytes: int = 2) -> tuple[float, float]:
        """(FLOPs, bytes) of attention: ``keys_sum`` = query-key pairs, ``kv_tokens`` read."""
        flops = 4.0 * self.q_heads * self.head_dim * keys_sum
        data = (kv_tokens * 2 * self.kv_width + queries * 2 * self.q_width) * dtype_bytes
        return flops, data


def _mlp_mats(shape: LayerShape) -> int:
    """Weight matrices of one MLP / expert (3 for gated, 2 otherwise)."""
    return 3 if shape.gated else 2


def tiny_spec(spec: ModelSpec, max_tp: int = 8) -> ModelSpec:
    """A scaled-down ``spec`` for CPU runs: same heads, KV heads, gating, norm, activation
    and experts (so TP shards it the same way), head_dim 8, FFN scaled with the hidden size
    (a multiple of ``8 * max_tp``), vocabulary 512, context 256."""
    hidden = spec.num_heads * TINY_HEAD_DIM
    step = 8 * max_tp
    ffn = max(step, round(spec.ffn_size * hidden / spec.hidden_size / step) * step)
    return dataclasses.replace(
        spec, hidden_size=hidden, head_dim=TINY_HEAD_DIM, ffn_size=ffn,
        vocab_size=TINY_VOCAB, max_context=min(spec.max_context, TINY_CONTEXT),
    )


# --------------------------------------------------------------------------- attention


def _import_flash_attn() -> Any:
    try:
        import flash_attn  # type: ignore[import-not-found]
    except Exception:  # not installed, or built for another torch/CUDA
        return None
    return flash_attn


class AttentionBackend:
    """Causal prefill and decode attention on ``(batch, tokens, heads, head_dim)`` tensors.

    ``kind``: ``flash_attn`` (the package; decodes read a paged KV cache) or ``sdpa``
    (torch SDPA; contiguous KV, GQA through ``enable_gqa``). ``auto`` takes ``flash_attn``
    on CUDA when it imports, else ``sdpa``.
    """

    PAGE = 256  # flash-attn's paged KV needs blocks that are a multiple of 256 tokens

    def __init__(self, device: torch.device, kind: str = "auto") -> None:
        allowed = ("auto", "sdpa", "flash_attn")
        if kind not in allowed:
            raise ConfigError("attention", kind, "allowed values are " + ", ".join(allowed))
        self.device_type = device.type
        self.fa = _import_flash_attn() if device.type == "cuda" and kind != "sdpa" else None
        if kind == "flash_attn" and self.fa is None:
            raise ConfigError("attention", kind, "needs the flash_attn package and a CUDA "
                              "device; use attention=sdpa or attention=auto")
        self.kind = "flash_attn" if self.fa is not None else "sdpa"
        self.paged = self.kind == "flash_attn"
        # Whether SDPA takes fewer KV heads than query heads (enable_gqa) on this device;
        # if not, prefill repeats K/V heads first (correct, but reads more memory).
        self.gqa_native = self.kind == "flash_attn" or self._probe_gqa(device)

    @property
    def description(self) -> str:
        if self.paged:
            return "flash_attn (paged KV decode)"
        gqa = "" if self.gqa_native else ", GQA by repeating KV heads"
        kernels = "; FlashAttention/mem-efficient kernels" if self.device_type == "cuda" else ""
        return f"torch SDPA (contiguous KV decode{gqa}{kernels})"

    def _probe_gqa(self, device: torch.device) -> bool:
        """Run a small GQA prefill (with and without cached tokens) natively and compare it
        with repeated KV heads; False when SDPA rejects it or disagrees."""
        self.gqa_native = True
        try:
            g = torch.Generator(device=device).manual_seed(0)
            q, k, v = (torch.randn(1, n, h, 64, device=device, dtype=torch.bfloat16,
                                   generator=g) for n, h in ((4, 4), (7, 2), (7, 2)))
            for kk, vv in ((k, v), (k[:, 3:], v[:, 3:])):
                out = self.prefill(q, kk, vv)
                ref = self.prefill(q, kk.repeat_interleave(2, dim=2),
                                   vv.repeat_interleave(2, dim=2))
                if not torch.allclose(out.float(), ref.float(), atol=3e-2, rtol=3e-2):
                    return False
        except RuntimeError:
            return False
        return True

    def _kernels(self) -> Any:
        """SDPA kernel choice on CUDA: FlashAttention first, then the memory-efficient kernel
        (padding masks), math last; cuDNN attention is left out, as serving engines use
        FlashAttention and cuDNN builds a plan for every new shape (tens of ms each)."""
        if self.device_type != "cuda":
            return contextlib.nullcontext()
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                            SDPBackend.MATH])

    # -- prefill: q (B, c, Hq, d), k/v (B, p + c, Hkv, d), causal aligned bottom-right
    def prefill(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.fa is not None:
            return self.fa.flash_attn_func(q, k, v, causal=True)
        if not self.gqa_native and k.shape[2] != q.shape[2]:
            k = k.repeat_interleave(q.shape[2] // k.shape[2], dim=2)
            v = v.repeat_interleave(q.shape[2] // v.shape[2], dim=2)
        c, s = q.shape[1], k.shape[1]
        qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        gqa = qt.shape[1] != kt.shape[1]
        if c == s:
            with self._kernels():
                out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True,
                                                     enable_gqa=gqa)
        else:
            from torch.nn.attention.bias import causal_lower_right

            with self._kernels():
                out = F.scaled_dot_product_attention(
                    qt, kt, vt, attn_mask=causal_lower_right(c, s), enable_gqa=gqa)
        return out.transpose(1, 2)

    # -- decode, contiguous: q (B, 1, Hq, d), k/v (B, L, Hkv, d); lens masks padding
    def decode(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               lens: torch.Tensor | None = None) -> torch.Tensor:
        if self.fa is not None:
            seqlens = (lens if lens is not None else
                       torch.full((q.shape[0],), k.shape[1], device=q.device))
            return self.fa.flash_attn_with_kvcache(
                q, k, v, cache_seqlens=seqlens.to(torch.int32), causal=True)
        # GQA decode as MHA over the KV heads: the ``group`` query heads sharing a KV head
        # become that head's query rows (as flash-decoding packs them), so no KV copy and
        # no enable_gqa, and a padding mask keeps the fused (mem-efficient) kernels usable.
        b, _, hq, d = q.shape
        hkv = k.shape[2]
        qt = q.reshape(b, hkv, hq // hkv, d)
        kt, vt = k.transpose(1, 2), v.transpose(1, 2)
        mask = None
        if lens is not None:
            pos = torch.arange(k.shape[1], device=k.device)
            mask = (pos[None, :] < lens[:, None])[:, None, None, :]
        with self._kernels():
            out = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask)
        return out.reshape(b, 1, hq, d)

    # -- decode, paged (flash_attn only): caches (blocks, PAGE, Hkv, d)
    def decode_paged(self, q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                     seqlens: torch.Tensor, block_table: torch.Tensor) -> torch.Tensor:
        return self.fa.flash_attn_with_kvcache(
            q, k_cache, v_cache, cache_seqlens=seqlens, block_table=block_table, causal=True)


# --------------------------------------------------------------------------- the layer


def _randn(shape: Sequence[int], device: torch.device, dtype: torch.dtype,
           gen: torch.Generator, scale: float = 0.02) -> torch.Tensor:
    """Normal random values drawn directly in ``dtype`` (no float32 copy: KV tensors of
    decode points can take tens of GB)."""
    x = torch.randn(*shape, device=device, dtype=dtype, generator=gen)
    return x if scale == 1.0 else x.mul_(scale)


def _activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name == "silu":
        return F.silu
    if name == "gelu":
        return F.gelu
    return lambda x: F.gelu(x, approximate="tanh")  # gelu_new


@dataclass
class BatchKV:
    """Random KV of one mixed batch for one layer, laid out for ``forward_batch``.

    Prefill ``i`` attends over ``prefill_k[i]`` (``prior_i + chunk_i`` tokens); decodes
    attend over ``decode_k`` ``(D, max_len, Hkv, d)`` masked to ``decode_lens``.
    """

    chunks: list[int]
    prefill_k: list[torch.Tensor]
    prefill_v: list[torch.Tensor]
    decode_k: torch.Tensor | None
    decode_v: torch.Tensor | None
    decode_lens: torch.Tensor | None
    uniform: bool  # every decode has the same length: no mask needed

    @property
    def num_decodes(self) -> int:
        return 0 if self.decode_k is None else self.decode_k.shape[0]


class DecoderLayer:
    """Random bf16 weights of one TP-sharded decoder layer (plus the vocab-parallel
    embedding and LM head) on ``device``; ``op_fn`` / ``prefill_fn`` / ``decode_fn`` return
    callables that run one operator on pre-allocated inputs."""

    def __init__(self, shape: LayerShape, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.bfloat16, seed: int = 0,
                 attention: str = "auto", with_edges: bool = True) -> None:
        self.shape = s = shape
        self.device = torch.device(device)
        self.dtype = dtype
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(seed)
        self.attn = AttentionBackend(self.device, attention)
        w = self._w
        self.w_qkv = w(s.q_width + 2 * s.kv_width, s.hidden)
        self.w_o = w(s.hidden, s.q_width)
        self.norm1 = torch.ones(s.hidden, device=self.device, dtype=dtype)
        self.norm2 = torch.ones(s.hidden, device=self.device, dtype=dtype)
        self.norm_bias = torch.zeros(s.hidden, device=self.device, dtype=dtype)
        if s.is_moe:
            self.w_router = w(s.experts, s.hidden)
            self.w_experts_up = w(s.experts, s.up_width, s.hidden)
            self.w_experts_down = w(s.experts, s.hidden, s.ffn)
        else:
            self.w_up = w(s.up_width, s.hidden)
            self.w_down = w(s.hidden, s.ffn)
        self.act_fn = _activation(s.activation)
        if with_edges:
            self.w_embed = w(s.vocab, s.hidden)
            self.w_lm = w(s.vocab, s.hidden)
        inv = 1.0 / (10000.0 ** (torch.arange(0, s.head_dim, 2, device=self.device,
                                               dtype=torch.float32) / s.head_dim))
        ang = torch.arange(s.context + 1, device=self.device, dtype=torch.float32)[:, None] * inv
        self.cos, self.sin = ang.cos().to(dtype), ang.sin().to(dtype)

    def _w(self, *shape: int) -> torch.Tensor:
        return _randn(shape, self.device, self.dtype, self.gen)

    def _x(self, *shape: int) -> torch.Tensor:
        return _randn(shape, self.device, self.dtype, self.gen, scale=1.0)

    # ------------------------------------------------------------------ operators
    def norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        s = self.shape
        if s.norm == "layernorm":
            return F.layer_norm(x, (s.hidden,), weight, self.norm_bias, s.norm_eps)
        return F.rms_norm(x, (s.hidden,), weight, s.norm_eps)

    def rope(self, q: torch.Tensor, k: torch.Tensor,
             positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotary embedding (rotate-half form) of q ``(T, Hq, d)`` and k ``(T, Hkv, d)``."""
        cos = self.cos.index_select(0, positions)[:, None, :]
        sin = self.sin.index_select(0, positions)[:, None, :]

        def rot(x: torch.Tensor) -> torch.Tensor:
            x1, x2 = x.chunk(2, dim=-1)
            return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)

        return rot(q), rot(k)

    def mlp(self, x: torch.Tensor) -> torch.Tensor:
        """Dense MLP (gate/up, activation, down) or the MoE block."""
        if self.shape.is_moe:
            return self.moe(x)
        return F.linear(self.act(F.linear(x, self.w_up)), self.w_down)

    def act(self, up: torch.Tensor) -> torch.Tensor:
        """SwiGLU-style ``act(gate) * up`` for gated MLPs, ``act(x)`` otherwise."""
        if self.shape.gated:
            gate, lin = up.chunk(2, dim=-1)
            return self.act_fn(gate) * lin
        return self.act_fn(up)

    def routing(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Expert routing of ``x``: (order of the token-expert pairs sorted by expert, the
        token of each sorted pair, tokens per expert). Reads the counts on the host."""
        s = self.shape
        logits = F.linear(x, self.w_router)
        _, chosen = torch.topk(torch.softmax(logits.float(), dim=-1), s.topk, dim=-1)
        flat = chosen.reshape(-1)
        order = torch.argsort(flat)
        counts = torch.bincount(flat, minlength=s.experts).tolist()
        return order, order // s.topk, counts

    def moe(self, x: torch.Tensor,
            routing: tuple[torch.Tensor, torch.Tensor, list[int]] | None = None) -> torch.Tensor:
        """Router, top-k softmax gating and the routed tokens through their experts.

        Token-expert pairs are sorted by expert and each expert runs its GEMMs on its slice,
        as a grouped-GEMM MoE kernel does. The slice sizes must be known on the host: given
        ``routing`` (computed beforehand for the same ``x``), the call never synchronises and
        can be queued or captured like any other operator (the router GEMM, softmax, top-k
        and sort still run); without it they are read from the GPU (a host sync).
        """
        s = self.shape
        logits = F.linear(x, self.w_router)
        weights, chosen = torch.topk(torch.softmax(logits.float(), dim=-1), s.topk, dim=-1)
        weights = (weights / weights.sum(-1, keepdim=True)).to(x.dtype)
        if routing is None:
            flat = chosen.reshape(-1)
            order = torch.argsort(flat)
            token_of = order // s.topk
            counts = torch.bincount(flat, minlength=s.experts).tolist()
        else:
            torch.argsort(chosen.reshape(-1))  # the sort's cost; same result as ``routing``
            order, token_of, counts = routing
        routed = x.index_select(0, token_of)
        out = torch.empty_like(routed)
        start = 0
        for e, n in enumerate(counts):
            if n:
                part = routed[start:start + n]
                h = self.act(F.linear(part, self.w_experts_up[e]))
                out[start:start + n] = F.linear(h, self.w_experts_down[e])
                start += n
        out = out * weights.reshape(-1, 1).index_select(0, order)
        y = torch.zeros_like(x)
        return y.index_add_(0, token_of, out)

    def op_fn(self, op: str, tokens: int) -> Callable[[], Any]:
        """A callable running ``op`` once on ``tokens`` rows of fresh random input."""
        s = self.shape
        if op == "embedding":
            ids = torch.randint(0, s.vocab, (tokens,), device=self.device, generator=self.gen)
            return lambda: F.embedding(ids, self.w_embed)
        if op in ("input_norm", "post_norm"):
            x = self._x(tokens, s.hidden)
            wt = self.norm1 if op == "input_norm" else self.norm2
            return lambda: self.norm(x, wt)
        if op == "qkv_proj":
            x = self._x(tokens, s.hidden)
            return lambda: F.linear(x, self.w_qkv)
        if op == "rope":
            qkv = self._x(tokens, s.q_width + 2 * s.kv_width)
            q = qkv[:, :s.q_width].view(tokens, s.q_heads, s.head_dim)
            k = qkv[:, s.q_width:s.q_width + s.kv_width].view(tokens, s.kv_heads, s.head_dim)
            pos = torch.randint(0, s.context, (tokens,), device=self.device, generator=self.gen)
            return lambda: self.rope(q, k, pos)
        if op == "o_proj":
            x = self._x(tokens, s.q_width)
            return lambda: F.linear(x, self.w_o)
        if op == "gate_up_proj":
            x = self._x(tokens, s.hidden)
            return lambda: F.linear(x, self.w_up)
        if op == "act":
            x = self._x(tokens, s.up_width)
            return lambda: self.act(x)
        if op == "down_proj":
            x = self._x(tokens, s.ffn)
            return lambda: F.linear(x, self.w_down)
        if op == "add":
            a, b = self._x(tokens, s.hidden), self._x(tokens, s.hidden)
            return lambda: a + b
        if op == "moe_experts":
            x = self._x(tokens, s.hidden)
            route = self.routing(x)
            return lambda: self.moe(x, route)
        if op == "lm_head":
            x = self._x(tokens, s.hidden)
            return lambda: F.linear(x, self.w_lm)
        raise ConfigError("op", op, "allowed values are " + ", ".join(s.ops))

    def prefill_fn(self, batch: int, chunk: int, prior: int) -> Callable[[], Any]:
        """Causal attention of ``batch`` sequences, ``chunk`` new tokens after ``prior``."""
        s = self.shape
        q = self._x(batch, chunk, s.q_heads, s.head_dim)
        heads = s.kv_heads if self.attn.gqa_native else s.q_heads  # repeat outside timing
        k = self._x(batch, prior + chunk, heads, s.head_dim)
        v = self._x(batch, prior + chunk, heads, s.head_dim)
        return lambda: self.attn.prefill(q, k, v)

    def decode_fn(self, batch: int, kv_len: int) -> Callable[[], Any]:
        """One decode step of ``batch`` sequences attending over ``kv_len`` tokens each."""
        s = self.shape
        q = self._x(batch, 1, s.q_heads, s.head_dim)
        if self.attn.paged:
            page = self.attn.PAGE
            per_seq = math.ceil(kv_len / page)
            blocks = batch * per_seq
            k_cache = self._x(blocks, page, s.kv_heads, s.head_dim)
            v_cache = self._x(blocks, page, s.kv_heads, s.head_dim)
            perm = torch.randperm(blocks, device=self.device, generator=self.gen)
            table = perm.view(batch, per_seq).to(torch.int32)
            seqlens = torch.full((batch,), kv_len, device=self.device, dtype=torch.int32)
            return lambda: self.attn.decode_paged(q, k_cache, v_cache, seqlens, table)
        k = self._x(batch, kv_len, s.kv_heads, s.head_dim)
        v = self._x(batch, kv_len, s.kv_heads, s.head_dim)
        return lambda: self.attn.decode(q, k, v)

    # ------------------------------------------------------------------ mixed batches
    def batch_kv(self, chunks: Sequence[int], priors: Sequence[int],
                 decode_kv: Sequence[int]) -> BatchKV:
        """Random KV for one layer of a batch (prefill chunks after ``priors`` cached
        tokens; decodes attending over ``decode_kv`` tokens, the new one included)."""
        s = self.shape
        pk = [self._x(1, p + c, s.kv_heads, s.head_dim) for c, p in zip(chunks, priors,
                                                                          strict=True)]
        pv = [self._x(1, p + c, s.kv_heads, s.head_dim) for c, p in zip(chunks, priors,
                                                                          strict=True)]
        dk = dv = lens = None
        uniform = True
        if len(decode_kv):
            longest = max(decode_kv)
            dk = self._x(len(decode_kv), longest, s.kv_heads, s.head_dim)
            dv = self._x(len(decode_kv), longest, s.kv_heads, s.head_dim)
            lens = torch.tensor(list(decode_kv), device=self.device)
            uniform = min(decode_kv) == longest
        return BatchKV(list(chunks), pk, pv, dk, dv, lens, uniform)

    def forward_batch(self, x: torch.Tensor, positions: torch.Tensor,
                      kv: BatchKV) -> torch.Tensor:
        """One layer over a mixed batch: rows are the prefill chunks' tokens in order, then
        one row per decode. ``x`` is ``(T, hidden)``; returns the layer's output."""
        s = self.shape
        t = x.shape[0]
        h = self.norm(x, self.norm1)
        qkv = F.linear(h, self.w_qkv)
        q = qkv[:, :s.q_width].view(t, s.q_heads, s.head_dim)
        k = qkv[:, s.q_width:s.q_width + s.kv_width].view(t, s.kv_heads, s.head_dim)
        q, _k = self.rope(q, k, positions)
        outs = []
        start = 0
        for c, pk, pv in zip(kv.chunks, kv.prefill_k, kv.prefill_v, strict=True):
            outs.append(self.attn.prefill(q[None, start:start + c], pk, pv)[0])
            start += c
        if kv.num_decodes:
            qd = q[start:start + kv.num_decodes, None]
            lens = None if kv.uniform else kv.decode_lens
            outs.append(self.attn.decode(qd, kv.decode_k, kv.decode_v, lens)[:, 0])
        attn = torch.cat(outs, dim=0).reshape(t, s.q_width)
        x = x + F.linear(attn, self.w_o)
        return x + self.mlp(self.norm(x, self.norm2))
