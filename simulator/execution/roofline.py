"""Analytical (roofline) batch-runtime model: every operator costs max(compute, memory).

Each operator of a pipeline stage costs ``max(FLOPs / (peak * eff), bytes / (bw * eff))``,
collectives cost a ring all-reduce over the node's GPU links, and fixed per-kernel,
per-iteration and per-sequence overheads are added on top. Weights are sharded by tensor
parallelism (heads and FFN split by ``tp``); layers are split evenly over ``pp`` stages.

A batch reduces to a handful of integer features (tokens, sequences, prefill attention
work, prefill KV read, decode KV sum, ...), and ONE private function turns those features
into per-stage seconds using only ``+ - * /`` and an ``xmax`` argument. ``stage_times``
calls it with Python scalars and builtin ``max``; ``decode_steps`` with numpy arrays and
``np.maximum``. IEEE-754 makes both give identical bits, which the engine's decode fast
path relies on.

Expert parallelism (``set_expert_parallel``, MoE models): the batch also carries the
tokens of the whole EP group in the step (``group_tokens``), which set the expert work and
the dispatch/combine traffic of every MoE layer on this GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator import memory
from simulator.catalogue.specs import ModelSpec, NodeSpec, SkuSpec
from simulator.errors import ConfigError, one_of
from simulator.execution.base import ExecutionModel
from simulator.precision import BF16, Precision

TOPOLOGIES = ("nvswitch", "pairwise_nvlink", "pcie")

# Parts of one stage, in the order ``breakdown`` reports them.
PARTS = (
    "embedding",
    "qkv_proj",
    "attention_prefill",
    "attention_decode",
    "o_proj",
    "mlp",
    "norm",
    "elementwise",
    "allreduce",
    "send_recv",
    "lm_head",
    "sampling",
    "cpu_overhead",
    "launch",
    "ep_comm",
)
# The per-layer parts (already multiplied by the stage's layer count), in ``_body`` order.
_BODY = (
    "qkv_proj",
    "attention_prefill",
    "attention_decode",
    "o_proj",
    "mlp",
    "norm",
    "elementwise",
    "allreduce",
    "launch",
    "ep_comm",
)

_FRACTIONS = ("gemm_efficiency", "attention_efficiency", "memory_efficiency", "comm_efficiency")
_NON_NEGATIVE = (
    "kernel_launch_s",
    "allreduce_latency_s",
    "send_recv_latency_s",
    "cpu_overhead_base_s",
    "cpu_overhead_per_seq_s",
    "sampling_per_seq_s",
)


@dataclass(frozen=True)
class RooflineParams:
    """Efficiencies and fixed overheads of the roofline model (calibration knobs)."""

    gemm_efficiency: float = 0.7  # achieved fraction of peak FLOP/s on large GEMMs
    attention_efficiency: float = 0.5  # of peak FLOP/s in attention kernels
    memory_efficiency: float = 0.8  # achieved fraction of HBM bandwidth
    comm_efficiency: float = 0.7  # of link bandwidth for collectives and sends
    kernel_launch_s: float = 4e-6  # per kernel launch
    kernels_per_layer: int = 12
    cuda_graphs_decode: bool = True  # decode-only batches: one graph launch per stage
    allreduce_latency_s: float = 8e-6  # fixed latency per all-reduce
    send_recv_latency_s: float = 10e-6  # fixed latency per PP send/recv
    cpu_overhead_base_s: float = 2e-3  # per-iteration scheduling + input preparation
    cpu_overhead_per_seq_s: float = 1.5e-5  # grows with the sequences in the batch
    sampling_per_seq_s: float = 5e-6

    def __post_init__(self) -> None:
        for name in _FRACTIONS:
            v = getattr(self, name)
            if not _is_number(v) or not 0 < v <= 1:
                raise ConfigError(f"execution.roofline.{name}", v, "must be a number in (0, 1]")
        for name in _NON_NEGATIVE:
            v = getattr(self, name)
            if not _is_number(v) or v < 0:
                raise ConfigError(f"execution.roofline.{name}", v, "must be a number >= 0")
        k = self.kernels_per_layer
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise ConfigError("execution.roofline.kernels_per_layer", k, "must be an integer >= 0")
        if not isinstance(self.cuda_graphs_decode, bool):
            raise ConfigError(
                "execution.roofline.cuda_graphs_decode", self.cuda_graphs_decode, "must be a bool"
            )


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _gemm(n_in: float, n_out: float, wdt: int, dt: int, flops: float,
          bw: float) -> tuple[float, ...]:
    """(s per token of compute, s of weight reads, s per token of activation traffic);
    ``wdt`` bytes per weight, ``dt`` per activation."""
    return (2.0 * n_in * n_out / flops, n_in * n_out * wdt / bw, (n_in + n_out) * dt / bw)


class RooflineModel(ExecutionModel):
    """Roofline runtime of one replica of ``model`` on ``tp`` x ``pp`` GPUs of ``sku``.

    Per layer and GPU (``/tp`` = the TP-sharded share; KV heads are replicated when ``tp``
    exceeds their number, so each GPU holds at least one):

    - GEMMs (QKV, O, MLP gate+up, down, MoE router): ``2 * tokens * in * out`` FLOPs at
      ``gemm_efficiency``; bytes = weights (read once per iteration) + activations in/out.
    - MoE: ``tokens * top_k`` routed tokens through the sharded experts; the weights of
      ``min(num_experts, tokens * top_k)`` experts are read (each used expert once).
    - Activation function, 2 norms, 2 residual adds, RoPE: memory bound (bytes only).
    - Prefill attention, a chunk of ``c`` tokens after ``p`` cached ones (causal):
      ``4 * heads/tp * head_dim * c * (p + (c+1)/2)`` FLOPs at ``attention_efficiency``;
      bytes = KV of ``p + c`` tokens + Q and O of the ``c`` tokens.
    - Decode attention, a sequence with context ``L``: ``4 * heads/tp * head_dim * L``
      FLOPs; bytes = KV of ``L`` tokens + Q and O of one token. Both are linear, so the
      batch is costed exactly from ``sum(L)`` and the number of decodes.
    - TP (``tp > 1``): 2 ring all-reduces of ``tokens * hidden`` per layer (plus one after
      the vocab-parallel embedding), ``2 (tp-1)/tp * bytes / (link * comm_eff) + latency``.
    - Launches: ``kernels_per_layer`` per layer, or one CUDA-graph launch per stage for
      decode-only batches when ``cuda_graphs_decode``.
    - Expert parallelism (``set_expert_parallel(ep)``, vLLM's ``--enable-expert-parallel``
      with ``ep / tp`` data-parallel ranks): each GPU holds ``num_experts / ep`` whole
      experts. Per MoE layer the hidden states (and router logits) of the ``Tg`` tokens of
      all ranks in the step are all-gathered to every GPU, each GPU runs its experts on
      the ``Tg * top_k / ep`` routed tokens that chose them, reading the weights of
      ``min(num_experts / ep, Tg * top_k / ep)`` of them, and a reduce-scatter returns
      each rank's tokens (vLLM's allgather_reducescatter dispatch). The two collectives
      are priced as rings over the group's link: ``(ep-1)/ep * Tg * bytes / (link *
      efficiency)`` plus one latency each (part ``ep_comm``). ``Tg`` defaults to every
      rank carrying the same batch (``T * ep / tp``); the engine passes the real sum.

    Per stage: stage 0 adds the embedding lookup and the CPU overhead (base + per sequence);
    every stage but the last sends ``tokens * hidden`` activations to the next; the last
    adds the final norm, the LM head (one row per sequence, vocab sharded by TP) and
    sampling. Peak FLOP/s is bf16 (fp8 when ``dtype_bytes == 1`` and the SKU has it).

    ``precision`` (``simulator.precision``): FP8 weights run the layers' GEMMs (QKV, O,
    MLP, experts) at the SKU's fp8 peak and read one byte per weight; the router, LM head
    and activations keep the checkpoint's dtype. An FP8 KV cache reads one byte per K/V
    element in attention. The default, bf16, is the model's own dtype throughout.
    """

    def __init__(
        self,
        model: ModelSpec,
        sku: SkuSpec,
        node: NodeSpec,
        tp: int,
        pp: int,
        params: RooflineParams = RooflineParams(),  # frozen: safe to share
        precision: Precision = BF16,
    ) -> None:
        precision.check_sku(sku)
        self.precision = precision
        for name, v in (("parallel.tensor_parallel", tp), ("parallel.pipeline_parallel", pp)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(name, v, "must be an integer >= 1")
        one_of("node.topology", node.topology, TOPOLOGIES)
        if tp > node.gpus_per_node:
            raise ConfigError(
                "parallel.tensor_parallel",
                tp,
                f"must be <= {node.gpus_per_node} GPUs per node of {node.name}: "
                "tensor parallelism stays inside one node",
            )
        assert model.num_layers % pp == 0, "num_layers must be divisible by pipeline_parallel"
        self.model, self.sku, self.node, self.tp, self.pp, self.params = (
            model,
            sku,
            node,
            tp,
            pp,
            params,
        )
        self.num_stages = pp
        P = params
        self._layers = model.num_layers // pp
        dt = model.dtype_bytes  # activations (and everything not quantised)
        wdt = precision.weight_bytes(model)  # the layers' linear weights
        kdt = precision.kv_bytes(model)  # KV cache
        h = model.hidden_size
        hd = model.head_size
        peak = (sku.fp8_tflops if dt == 1 and sku.fp8_tflops > 0 else sku.bf16_tflops) * 1e12
        gemm_peak = sku.fp8_tflops * 1e12 if wdt == 1 and sku.fp8_tflops > 0 else peak
        F0 = peak * P.gemm_efficiency  # GEMM FLOP/s in the checkpoint's dtype
        F = gemm_peak * P.gemm_efficiency  # GEMM FLOP/s of the layers' linear layers
        FA = peak * P.attention_efficiency  # attention FLOP/s
        B = sku.mem_bw_gbps * 1e9 * P.memory_efficiency  # HBM bytes/s
        heads = model.num_heads / tp
        kv_heads = memory.kv_heads_per_gpu(model, tp)
        q = heads * hd  # query (and attention output) width per GPU
        kv = kv_heads * hd  # K (and V) width per GPU

        # GEMMs: (compute s/token, weight s, activation s/token).
        self._qkv = _gemm(h, q + 2 * kv, wdt, dt, F, B)
        self._o = _gemm(q, h, wdt, dt, F, B)
        f = model.ffn_size / tp
        up_mats = 2 if model.gated_mlp else 1
        self._up = _gemm(h, up_mats * f, wdt, dt, F, B)
        self._down = _gemm(f, h, wdt, dt, F, B)
        # Activation (and gating product): read up_mats * f, write f per (routed) token.
        self._act = (up_mats + 1) * f * dt / B
        self._moe = model.is_moe
        self._experts = model.num_experts
        self._top_k = model.experts_top_k
        # The router is small and replicated on every TP rank.
        self._router = (_gemm(h, model.num_experts, dt, dt, F0, B) if self._moe
                        else (0.0, 0.0, 0.0))
        # Whole experts (expert parallelism): not split by TP.
        fe = model.ffn_size
        self._eup = _gemm(h, up_mats * fe, wdt, dt, F, B)
        self._edown = _gemm(fe, h, wdt, dt, F, B)
        self._eact = (up_mats + 1) * fe * dt / B
        self._ep = 1  # expert-parallel degree (set_expert_parallel)
        self._ep_dp = 1  # data-parallel ranks of the EP group
        self._ep_tok = self._ep_lat = 0.0

        # Memory-bound per-token costs: 2 norms (read + write, weights negligible), and
        # elementwise = 2 residual adds (read 2, write 1) + RoPE (read + write Q and K).
        self._norm = 2 * (2 * h * dt) / B
        self._norm_w = 2 * h * dt / B
        self._elem = (2 * 3 * h * dt + 2 * (q + kv) * dt) / B

        # Attention. Prefill FLOPs = 2 * heads * hd * sum(c * (2p + c + 1)) (integer units).
        self._ap_f = 2.0 * heads * hd / FA
        kv_tok = 2 * kv * kdt / B  # s to read one token's K and V in one layer
        self._kv_tok = kv_tok
        self._qo_tok = 2 * q * dt / B  # s to read Q and write O of one token
        self._ad_f = 4.0 * heads * hd / FA

        # Tensor-parallel all-reduce (ring) over the node's GPU links.
        self._tp_link = self._tp_link_bw()
        self._ar_tok, self._ar_lat = self._allreduce_terms()

        # Launch overhead per stage.
        self._launch_eager = self._layers * P.kernels_per_layer * P.kernel_launch_s
        self._launch_graph = P.kernel_launch_s if P.cuda_graphs_decode else self._launch_eager

        # Edges: embedding gather (read + write tokens * hidden), CPU, LM head, sampling.
        self._embed_tok = 2 * h * dt / B
        self._cpu_base = P.cpu_overhead_base_s
        self._cpu_seq = P.cpu_overhead_per_seq_s
        self._lm = _gemm(h, model.vocab_size / tp, dt, dt, F0, B)
        self._sample_seq = P.sampling_per_seq_s
        # PP send of stage s to s + 1: (s per token, latency).
        self._send = self._send_terms()
        self._scalar: Callable | None = None  # ``_totals`` on Python scalars, built lazily

    # ------------------------------------------------------------------ bandwidths
    def _tp_link_bw(self) -> float:
        """Bytes/s of the slowest hop of a TP ring inside one node."""
        return self._group_link_bw(self.tp)

    def _group_link_bw(self, n: int) -> float:
        """Bytes/s of the slowest hop of a ring over ``n`` GPUs filling nodes in order."""
        topo = self.node.topology
        if n > self.node.gpus_per_node:
            return self.node.inter_node_bw_gbps * 1e9
        if topo == "nvswitch" or (topo == "pairwise_nvlink" and n <= 2):
            return self.sku.link_bw_gbps * 1e9
        return self.node.pcie_bw_gbps * 1e9

    def _pp_link_bw(self, s: int) -> float:
        """Bytes/s of the send from stage ``s`` to ``s + 1`` (slowest of the TP ranks).

        Stages fill nodes in order: rank ``i`` of stage ``s`` is GPU ``s * tp + i``.
        """
        gpn, tp = self.node.gpus_per_node, self.tp
        bws = []
        for i in range(tp):
            a, b = s * tp + i, (s + 1) * tp + i
            if a // gpn != b // gpn:
                bws.append(self.node.inter_node_bw_gbps * 1e9)
            elif self.node.topology == "nvswitch" or (
                self.node.topology == "pairwise_nvlink" and a // 2 == b // 2
            ):
                bws.append(self.sku.link_bw_gbps * 1e9)
            else:
                bws.append(self.node.pcie_bw_gbps * 1e9)
        return min(bws)

    # ------------------------------------------------------------------ hooks
    # Subclasses (``CalibratedModel``) replace the operator costs below. The hooks only
    # receive Python ints, except ``Lsum`` of ``_attention`` (a numpy array in
    # ``decode_steps``), which must only meet ``+ - * /`` and ``xmax``.
    def _allreduce_terms(self) -> tuple[float, float]:
        """(seconds per token, fixed seconds) of one TP all-reduce of ``hidden`` per token."""
        tp, P = self.tp, self.params
        if tp == 1:
            return 0.0, 0.0
        h, dt = self.model.hidden_size, self.model.dtype_bytes
        return (
            2 * (tp - 1) / tp * h * dt / (self._tp_link * P.comm_efficiency),
            P.allreduce_latency_s,
        )

    def _send_terms(self) -> list[tuple[float, float]]:
        """(seconds per token, fixed seconds) of the PP send from stage s to s + 1."""
        P = self.params
        tok = self.model.hidden_size * self.model.dtype_bytes
        return [
            (tok / (self._pp_link_bw(s) * P.comm_efficiency), P.send_recv_latency_s)
            for s in range(self.pp - 1)
        ]

    def _gemms(self, T, xmax: Callable) -> tuple:
        """Seconds of one layer's (QKV, O, MLP) for ``T`` tokens; MLP includes the
        activation and, for MoE, the router and the used experts."""
        qf, qw, qa = self._qkv
        qkv = xmax(qf * T, qw + qa * T)
        of, ow, oa = self._o
        o = xmax(of * T, ow + oa * T)
        uf, uw, ua = self._up
        df, dw, da = self._down
        if self._moe:
            rf, rw, ra = self._router
            R = T * self._top_k  # routed tokens
            used = -xmax(-self._experts, -R)  # min(num_experts, routed tokens)
            mlp = (
                xmax(rf * T, rw + ra * T)
                + xmax(uf * R, uw * used + ua * R)
                + self._act * R
                + xmax(df * R, dw * used + da * R)
            )
        else:
            mlp = xmax(uf * T, uw + ua * T) + self._act * T + xmax(df * T, dw + da * T)
        return qkv, o, mlp

    def _ep_moe(self, T, Tg, xmax: Callable):
        """Seconds of one MoE layer on this GPU under expert parallelism: the router on
        the rank's ``T`` tokens, then its ``num_experts / ep`` experts on their share of
        the group's ``Tg`` tokens (see the class docstring)."""
        return self._moe_roofline(T, Tg, self._ep, xmax)

    def _moe_roofline(self, T, Tg, ep: int, xmax: Callable):
        """Roofline seconds of one MoE layer on a GPU holding ``num_experts / ep`` whole
        experts, ``T`` tokens through the router and ``Tg * top_k / ep`` routed tokens."""
        rf, rw, ra = self._router
        uf, uw, ua = self._eup
        df, dw, da = self._edown
        R = Tg * self._top_k / ep  # routed tokens on this GPU
        used = -xmax(-self._experts / ep, -R)  # min(local experts, routed tokens)
        return (
            xmax(rf * T, rw + ra * T)
            + xmax(uf * R, uw * used + ua * R)
            + self._eact * R
            + xmax(df * R, dw * used + da * R)
        )

    def _ep_comm_terms(self, efficiency: float, latency_s: float) -> tuple[float, float]:
        """(seconds per group token, fixed seconds) of one MoE layer's dispatch (ring
        all-gather of hidden states and router logits) and combine (ring reduce-scatter of
        hidden states) over the EP group's link."""
        m, ep = self.model, self._ep
        nbytes = (2 * m.hidden_size + m.num_experts) * m.dtype_bytes
        link = self._group_link_bw(ep)
        return (ep - 1) / ep * nbytes / (link * efficiency), 2 * latency_s

    def set_expert_parallel(self, ep: int, comm_efficiency: float | None = None,
                            latency_s: float | None = None) -> None:
        """Price this replica as one data-parallel rank of an EP group of ``ep`` GPUs
        (``ep / tp`` ranks); ``ep = 1`` is the default, experts split by TP.

        The dispatch/combine collectives use ``comm_efficiency`` of the link and
        ``latency_s`` per collective (default: ``params.comm_efficiency`` and
        ``allreduce_latency_s``; the engine passes a calibrated model's all-reduce fit for
        ``ep`` GPUs)."""
        m, tp = self.model, self.tp
        if not isinstance(ep, int) or isinstance(ep, bool) or ep < 1:
            raise ConfigError("parallel.expert_parallel", ep, "must be an integer >= 1")
        if ep > 1 and not m.is_moe:
            raise ConfigError("parallel.expert_parallel", ep,
                              f"must be 1: {m.name} is a dense model")
        if ep > 1 and (m.num_experts % ep or ep % tp):
            raise ConfigError("parallel.expert_parallel", ep,
                              f"must divide {m.name}'s {m.num_experts} experts and be a "
                              f"multiple of tensor_parallel={tp}")
        P = self.params
        self._ep, self._ep_dp = ep, max(1, ep // tp)
        if ep == 1:
            self._ep_tok = self._ep_lat = 0.0
        else:
            eff = P.comm_efficiency if comm_efficiency is None else comm_efficiency
            lat = P.allreduce_latency_s if latency_s is None else latency_s
            self._ep_tok, self._ep_lat = self._ep_comm_terms(eff, lat)
        self._scalar = None

    @property
    def expert_parallel(self) -> int:
        """GPUs of the EP group this replica belongs to (1: no expert parallelism)."""
        return self._ep

    def _attention(self, units, Tp, pkv, D, Lsum, xmax: Callable) -> tuple:
        """Seconds of one layer's (prefill attention, decode attention); see ``_body``."""
        ap = xmax(self._ap_f * units, self._kv_tok * pkv + self._qo_tok * Tp)
        ad = xmax(self._ad_f * Lsum, self._kv_tok * Lsum + self._qo_tok * D)
        return ap, ad

    def _lm_head(self, S, xmax: Callable):
        """Seconds of the LM head GEMM for ``S`` sequences (vocab sharded by TP)."""
        lf, lw, la = self._lm
        return xmax(lf * S, lw + la * S)

    # ------------------------------------------------------------------ the model
    def _body(self, T, units, Tp, pkv, D, Lsum, decode_only, xmax: Callable,
              Tg=None) -> tuple:
        """Seconds of one stage's layers, per part in ``_BODY`` order.

        ``T`` tokens, prefill ``units`` = sum c (2p + c + 1), ``Tp`` prefill tokens, ``pkv``
        prefill KV tokens read = sum (p + c), ``D`` decodes with context sum ``Lsum``;
        with expert parallelism, ``Tg`` tokens in the EP group's step (None: every rank
        carries ``T``). Only ``+ - * /`` and ``xmax``: bit-identical for Python scalars
        and numpy arrays.
        """
        n = self._layers
        qkv, o, mlp = self._gemms(T, xmax)
        qkv = n * qkv
        o = n * o
        if self._ep > 1:
            if Tg is None:
                Tg = T * self._ep_dp
            mlp = n * self._ep_moe(T, Tg, xmax)
            ep_comm = n * (self._ep_tok * Tg + self._ep_lat)
        else:
            mlp = n * mlp
            ep_comm = 0.0
        norm = n * (self._norm * T + self._norm_w)
        elem = n * (self._elem * T)
        ap, ad = self._attention(units, Tp, pkv, D, Lsum, xmax)
        ap = n * ap
        ad = n * ad
        ar = n * (2 * (self._ar_tok * T + self._ar_lat))
        launch = self._launch_graph if decode_only else self._launch_eager
        return (qkv, ap, ad, o, mlp, norm, elem, ar, launch, ep_comm)

    def _edges(self, T, S, xmax: Callable) -> tuple:
        """(embedding, embedding all-reduce, cpu, final norm, lm_head, sampling, sends)."""
        embed = self._embed_tok * T
        embed_ar = self._ar_tok * T + self._ar_lat
        cpu = self._cpu_base + self._cpu_seq * S
        fnorm = self._norm_w + 0.5 * self._norm * T  # one norm
        lm = self._lm_head(S, xmax)
        sample = self._sample_seq * S
        sends = [tok * T + lat for tok, lat in self._send]
        return embed, embed_ar, cpu, fnorm, lm, sample, sends

    def _totals(self, T, S, units, Tp, pkv, D, Lsum, decode_only, xmax: Callable,
                Tg=None) -> list:
        """Per-stage seconds from the batch features: the single formula of both paths."""
        qkv, ap, ad, o, mlp, norm, elem, ar, launch, ep_comm = self._body(
            T, units, Tp, pkv, D, Lsum, decode_only, xmax, Tg
        )
        body = qkv + ap + ad + o + mlp + norm + elem + ar + launch
        if self._ep > 1:
            body = body + ep_comm
        embed, embed_ar, cpu, fnorm, lm, sample, sends = self._edges(T, S, xmax)
        first = embed + embed_ar + cpu
        last = fnorm + lm + sample
        pp = self.pp
        if pp == 1:
            return [body + first + last]
        out = [body + first + sends[0]]
        for s in range(1, pp - 1):
            out.append(body + sends[s])
        out.append(body + last)
        return out

    def _scalar_totals(self) -> Callable:
        """``_totals(..., max)`` as one flat function of the batch features.

        The engine calls it once per batch. For ``RooflineModel`` itself (dense models)
        it is the same operations in the same order with the constants bound once, so the
        bits are those of ``_totals``; a subclass (which may replace the hooks) and MoE
        models get ``_totals`` itself."""
        if type(self) is not RooflineModel or self._moe:
            return lambda *f: self._totals(*f, max)
        n, pp = self._layers, self.pp
        qf, qw, qa = self._qkv
        of, ow, oa = self._o
        uf, uw, ua = self._up
        df, dw, da = self._down
        act, norm, norm_w, elem = self._act, self._norm, self._norm_w, self._elem
        ap_f, kv_tok, qo_tok, ad_f = self._ap_f, self._kv_tok, self._qo_tok, self._ad_f
        ar_tok, ar_lat = self._ar_tok, self._ar_lat
        graph, eager = self._launch_graph, self._launch_eager
        embed_tok, cpu_base, cpu_seq = self._embed_tok, self._cpu_base, self._cpu_seq
        half_norm = 0.5 * norm
        lf, lw, la = self._lm
        sample_seq = self._sample_seq
        sends = self._send

        by_tokens: dict[int, tuple[float, ...]] = {}  # the terms of T alone, per T
        by_seqs: dict[int, tuple[float, float, float]] = {}  # and of S alone

        def tokens_terms(T: int) -> tuple[float, ...]:
            # builtin max(a, b) is ``b if b > a else a``
            a = qf * T
            b = qw + qa * T
            qkv = b if b > a else a
            a = of * T
            b = ow + oa * T
            o = b if b > a else a
            a = uf * T
            b = uw + ua * T
            m1 = b if b > a else a
            a = df * T
            b = dw + da * T
            m2 = b if b > a else a
            out = by_tokens[T] = (
                n * qkv, n * o, n * (m1 + act * T + m2), n * (norm * T + norm_w),
                n * (elem * T), n * (2 * (ar_tok * T + ar_lat)),
                embed_tok * T + (ar_tok * T + ar_lat),  # embedding + its all-reduce
                norm_w + half_norm * T,  # final norm
                tuple(tok * T + lat for tok, lat in sends),
            )
            return out

        def seqs_terms(S: int) -> tuple[float, float, float]:
            a = lf * S
            b = lw + la * S
            out = by_seqs[S] = (cpu_base + cpu_seq * S, b if b > a else a, sample_seq * S)
            return out

        def totals(T, S, units, Tp, pkv, D, Lsum, decode_only) -> list:
            qkv, o, mlp, nrm, elm, ar, first_t, last_t, snd = (
                by_tokens.get(T) or tokens_terms(T))
            cpu, lm, sample = by_seqs.get(S) or seqs_terms(S)
            a = ap_f * units
            b = kv_tok * pkv + qo_tok * Tp
            ap = b if b > a else a
            a = ad_f * Lsum
            b = kv_tok * Lsum + qo_tok * D
            ad = b if b > a else a
            body = (qkv + n * ap + n * ad + o + mlp + nrm + elm + ar
                    + (graph if decode_only else eager))
            if pp == 1:
                return [body + (first_t + cpu) + (last_t + lm + sample)]
            out = [body + (first_t + cpu) + snd[0]]
            for s in range(1, pp - 1):
                out.append(body + snd[s])
            out.append(body + (last_t + lm + sample))
            return out

        return totals

    # ------------------------------------------------------------------ interface
    @staticmethod
    def _features(
        prefill_chunks: Sequence[int],
        prefill_prior: Sequence[int],
        decode_kv: Sequence[int] | np.ndarray,
    ) -> tuple[int, int, int, int, int, int, int, bool]:
        """Integer features (T, S, units, Tp, pkv, D, Lsum, decode_only) of a batch."""
        Tp = units = pkv = 0
        for c, p in zip(prefill_chunks, prefill_prior, strict=True):
            Tp += c
            units += c * (2 * p + c + 1)
            pkv += p + c
        if isinstance(decode_kv, np.ndarray):
            D = decode_kv.shape[0]
            Lsum = int(decode_kv.sum())
        else:
            D = len(decode_kv)
            Lsum = sum(decode_kv)
        n = len(prefill_chunks)
        return Tp + D, n + D, units, Tp, pkv, D, Lsum, n == 0

    def stage_times(
        self,
        prefill_chunks: Sequence[int],
        prefill_prior: Sequence[int],
        decode_kv: Sequence[int] | np.ndarray,
        group_tokens: int | None = None,
    ) -> tuple[float, ...]:
        """Seconds each pipeline stage spends on the batch, stage 0 first.

        ``group_tokens``: with expert parallelism, the tokens of every rank of the EP
        group in this step (the MoE layers' work and traffic); None = every rank carries
        this batch. Ignored without expert parallelism."""
        features = self._features(prefill_chunks, prefill_prior, decode_kv)
        if group_tokens is not None and self._ep > 1:
            return tuple(self._totals(*features, max, group_tokens))
        f = self._scalar or self._set_scalar()
        return tuple(f(*features))

    def _set_scalar(self) -> Callable:
        self._scalar = self._scalar_totals()
        return self._scalar

    def stage_times_sum(
        self,
        prefill_chunks: Sequence[int],
        prefill_prior: Sequence[int],
        num_decodes: int,
        decode_kv_sum: int,
    ) -> tuple[float, ...]:
        """``stage_times`` from the decodes' count and context sum alone (all the model
        reads of them), so that the engine need not list every decode; identical bits."""
        n = len(prefill_chunks)
        if n == 1 and len(prefill_prior) == 1:  # the common hybrid batch
            Tp = prefill_chunks[0]
            p = prefill_prior[0]
            units = Tp * (2 * p + Tp + 1)
            pkv = p + Tp
        else:
            Tp = units = pkv = 0
            for c, p in zip(prefill_chunks, prefill_prior, strict=True):
                Tp += c
                units += c * (2 * p + c + 1)
                pkv += p + c
        D = num_decodes
        f = self._scalar or self._set_scalar()
        return tuple(f(Tp + D, n + D, units, Tp, pkv, D, decode_kv_sum, n == 0))

    def decode_steps(self, decode_kv: np.ndarray, steps: int) -> np.ndarray:
        """Stage times of ``steps`` decode-only iterations, iteration j at ``decode_kv + j``.

        Vectorised over j: only ``sum(L)`` changes, by ``len(decode_kv)`` per step.
        """
        kv = np.asarray(decode_kv, dtype=np.int64)
        return self.decode_steps_sum(kv.shape[0], int(kv.sum()), steps)

    def decode_steps_sum(self, num_decodes: int, decode_kv_sum: int, steps: int) -> np.ndarray:
        """``decode_steps`` from the decodes' count and context sum (iteration j has
        context sum ``decode_kv_sum + j * num_decodes``)."""
        D = num_decodes
        Lsum = decode_kv_sum + D * np.arange(steps, dtype=np.int64)
        totals = self._totals(D, D, 0, 0, 0, D, Lsum, True, np.maximum)
        out = np.empty((steps, self.pp), dtype=np.float64)
        for s, t in enumerate(totals):
            out[:, s] = t
        return out

    def breakdown(
        self,
        prefill_chunks: Sequence[int],
        prefill_prior: Sequence[int],
        decode_kv: Sequence[int] | np.ndarray,
        group_tokens: int | None = None,
    ) -> list[dict[str, float]]:
        """Per stage, seconds per part (``PARTS``); each stage sums to ``stage_times``
        (``group_tokens`` as there)."""
        T, S, units, Tp, pkv, D, Lsum, decode_only = self._features(
            prefill_chunks, prefill_prior, decode_kv
        )
        Tg = group_tokens if self._ep > 1 else None
        body = dict(zip(_BODY, self._body(T, units, Tp, pkv, D, Lsum, decode_only, max, Tg),
                        strict=True))
        embed, embed_ar, cpu, fnorm, lm, sample, sends = self._edges(T, S, max)
        out = []
        for s in range(self.pp):
            parts = dict.fromkeys(PARTS, 0.0)
            parts.update(body)
            if s == 0:
                parts["embedding"] = embed
                parts["allreduce"] += embed_ar
                parts["cpu_overhead"] = cpu
            if s < self.pp - 1:
                parts["send_recv"] = sends[s]
            if s == self.pp - 1:
                parts["norm"] += fnorm
                parts["lm_head"] = lm
                parts["sampling"] = sample
            out.append({k: float(v) for k, v in parts.items()})
        return out

    # ------------------------------------------------------------------ sizes
    # why the run uses this model where another was asked for (set by the engine when
    # ``execution.kind=profiled`` finds no profiles and falls back to this one)
    note: str = ""
    kind = "roofline"  # the execution.kind this model is

    def label(self) -> str:
        """What prices this model's parts, in words."""
        return "roofline (spec-sheet peaks x execution.roofline efficiencies)"

    def parts_in_use(self) -> list[str]:
        """The ``PARTS`` this replica has (no all-reduce at TP 1, no send at PP 1, no EP
        collectives without expert parallelism)."""
        skip = {"allreduce": self.tp == 1, "send_recv": self.pp == 1,
                "ep_comm": self._ep == 1}
        return [p for p in PARTS if not skip.get(p, False)]

    def provenance(self) -> dict[str, Any]:
        return {"kind": self.kind, "measured": {}, "model": self.label(),
                "modelled": self.parts_in_use(), "out_of_range": {}, "note": self.note}

    def weight_bytes_per_gpu(self) -> float:
        """Weight bytes on the most loaded GPU: its stage's layers / tp (experts / ep
        with expert parallelism), plus the embedding on stage 0 and the LM head on the
        last stage (both when ``pp == 1``)."""
        return memory.weight_bytes_per_gpu(self.model, self.tp, self.pp, self.precision,
                                           self._ep)

    def activation_bytes_per_gpu(self, max_tokens: int, max_seqs: int | None = None) -> float:
        """Transient-memory headroom for the largest batch (see ``memory``):
        ``4 * max_tokens * max(hidden, (q + 2 kv) / tp, up_mats * ffn / tp) * dtype``
        plus fp32 logits ``max_seqs * vocab / tp * 4``. ``max_seqs`` defaults to
        ``max_tokens`` (an upper bound: every sequence brings at least one token)."""
        seqs = max_tokens if max_seqs is None else max_seqs
        return memory.activation_bytes_per_gpu(self.model, self.tp, max_tokens, seqs)

    def flops_per_token_active(self) -> int:
        """Forward FLOPs per token for MFU: 2 * active parameters (MoE: top-k experts plus
        router; the LM head counts, the input-embedding lookup does not)."""
        m = self.model
        mats = 3 if m.gated_mlp else 2
        mlp = mats * m.hidden_size * m.ffn_size * (m.experts_top_k if m.is_moe else 1)
        if m.is_moe:
            mlp += m.hidden_size * m.num_experts
        layer = m.attention_params() + mlp + 2 * m.hidden_size
        active = m.num_layers * layer + m.vocab_size * m.hidden_size + m.hidden_size
        return 2 * active


__all__ = ["PARTS", "RooflineModel", "RooflineParams"]
