"""Profile-driven batch runtimes: measured operator times through fitted predictors.

``ProfiledModel`` has the stage structure of :class:`RooflineModel` (per layer: norms,
QKV/O/MLP GEMMs, RoPE and residual adds, prefill and decode attention, two TP
all-reduces; stage 0 adds the embedding, its all-reduce and the CPU overhead, every stage
but the last the PP send, the last the final norm, LM head and sampling), but each
operator's time comes from the profiles of (model, SKU, TP) where they have it:

- ``layer_ops`` of the model at this TP (e.g. Vidur's ``mlp.csv``): required; a missing
  file is a ConfigError naming the profiler command and the fallback kinds. A table with
  norms but no residual ``add`` rows measured vLLM's fused add + RMSNorm kernel (its
  ``fused_add_rms_norm``, LLMServingSim's tables): the add is in the norm times, and no
  separate add is priced. FP8 weights read fp8 ``layer_ops``, else the model dtype's
  with each GEMM times the fallback's fp8 / native ratio at the same tokens;
- attention: the model's own ``attention_prefill``/``attention_decode`` files, else the
  SKU's shape-keyed tables (aiconfigurator's), fitted on all head shapes and evaluated at
  this model's heads per GPU (when the table holds that shape), else the fallback;
- the decodes of a mixed batch: vLLM v1 runs a batch's prefill chunks and decodes as one
  attention call, in which a decode costs more than in a decode-only call (the mixed rows
  of LLMServingSim's vLLM 0.19 tables: 1.2-2.8x the sum of the two separate calls). With
  the model's own ``attention_mixed`` file, a mixed batch's attention is its prefill
  attention plus the decodes' share of the mixed call. The whole
  mixed call is fitted over (chunk, prior context, decodes, KV length); the share is that
  fit minus this model's price of the chunk alone, tabulated over (decodes, context) at up
  to ``MIXED_CHUNKS`` x ``MIXED_PRIORS`` measured (chunk, prior context) points and
  interpolated bilinearly in (log2 chunk, log2(prior + 1)) between them; a batch's chunk
  is its prefill tokens, its prior context their token-weighted mean. (Fitting the
  difference of two measured calls instead, noisy where the decodes add little, missed the
  measured mixed call by 35% at P95 against 6.5% for the whole-call fit.) Under an FP8
  KV cache without an fp8 ``attention_mixed`` file, the model dtype's share (its fit less
  the chunk at the model dtype, the engine's price times the fallback's ratio) is carried
  to FP8 by the fallback's decode ratio, as the other attention tables are.
  Without the file, the decode-only table prices those decodes;
- TP all-reduce and PP send: the node's ``collective`` file (``num_gpus = tp``,
  ``gpus_per_node = tp``; a send is ``num_gpus = 2`` with 2 or 1 GPUs on one node);
- CPU overhead, sampling and the LM head: the model's ``cpu_overhead`` file and
  ``lm_head`` rows when present.

Anything else comes from ``fallback`` (a RooflineModel or a subclass such as
CalibratedModel): its GEMM, attention, LM-head and collective hooks, its parameters for
the memory-bound ops, launch, CPU and sampling overheads.

Expert parallelism (``expert_parallel`` = ep > 1, one data-parallel rank of an EP group,
see :class:`RooflineModel`): a MoE layer's time depends on the tokens of the whole group
in the step (``group_tokens``), tabulated per group token count. Each GPU runs its
``num_experts / ep`` experts on ``Tg * top_k / ep`` routed tokens, but routes and
permutes all ``Tg * top_k`` slots of the group: the ``moe_experts`` profile (measured
with every expert on one GPU) is read at the group's ``Tg`` tokens and the GPU pays the
per-rank floor ``F(Tg)`` plus ``1 / ep`` of the rest (:mod:`~simulator.execution.ep_floor`,
``F`` fitted per SKU on measured EP ranks: held-out median error 12% against 48% for
the earlier rule, the profile at ``Tg / ep`` times a roofline ratio;
``experiments/EP_SCALING.md``); without that profile (or at TP > 1, where the profile
would hold TP slices of the experts) the fallback prices it. The
dispatch and combine collectives come from the fallback (``set_expert_parallel``).

Predictors (:mod:`~simulator.execution.predictors`) are fitted once per profile and cached
on disk, then compiled into lookup tables over the operating range: every token count up
to ``max_tokens``, every batch size up to ``max_batch``, KV lengths and prefill chunks on an
octave grid. A shape outside the range a profile measured is predicted at the nearest
measured shape and scaled by the fallback's ratio between the two (the roofline carries
the growth); such lookups are counted in :attr:`ProfiledModel.out_of_range`. Shapes beyond
the compiled tables (more tokens than ``max_tokens``, larger batches than ``max_batch``)
scale the table's last entry linearly and count as ``"beyond_table"``.

Prefill attention of ``n`` chunks ``(c_i, p_i)`` is looked up as ``n`` chunks of the
equal-work chunk ``c`` with ``c (c + 1) = mean(c_i (2 p_i + c_i + 1))`` and no prior
context (Vidur's reduction; the tables are measured from an empty cache); decode attention
of ``D`` sequences as ``D`` sequences of the mean context (the profiler measures batches
of equal KV lengths), so decodes enter only through their count and context sum:
``stage_times_sum`` and ``decode_steps_sum`` (the engine's decode cohorts) take just those.
``decode_steps`` uses the same arithmetic as ``stage_times`` on numpy arrays, so the two
agree bit for bit.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from simulator import memory
from simulator.catalogue.specs import ModelSpec, NodeSpec, SkuSpec
from simulator.errors import ConfigError
from simulator.execution.base import ExecutionModel
from simulator.execution.ep_floor import ep_floor_for, rank_seconds
from simulator.execution.predictors.cache import PredictorCache
from simulator.execution.predictors.params import FALLBACKS, ProfiledParams
from simulator.execution.predictors.selection import FitResult
from simulator.execution.predictors.tables import (
    OctaveAxis,
    OctaveTable,
    SparseRowTable,
    TokenTable,
    integer_points,
)
from simulator.execution.roofline import PARTS, RooflineModel
from simulator.precision import BF16, Precision
from simulator.profiles import ProfileStore, model_shape_of, per_gpu_heads
from simulator.profiles.schema import rows_with_heads

_DTYPE_NAMES = {1: "fp8", 2: "bf16", 4: "fp32"}
_MLP_OPS = ("gate_up_proj", "act", "down_proj")
# layer_ops GEMMs -> the column of RooflineModel._gemms (qkv, o, mlp) that prices them
_GEMM_COLUMN = {"qkv_proj": 0, "o_proj": 1, "gate_up_proj": 2, "down_proj": 2,
                "moe_experts": 2}
_CPU_OPS = ("schedule", "prepare_inputs", "process_outputs")
MIXED_CHUNKS = 8  # chunk sizes with tables of the decodes' share of a mixed call
MIXED_PRIORS = 8  # prior contexts with tables of it (per chunk size)


@dataclass
class _Source:
    """Fitted predictors of one profile table and what they cover."""

    results: dict[str, FitResult]
    origin: str  # file the rows came from

    def has(self, op: str) -> bool:
        return op in self.results

    def predict(self, op: str, X: pd.DataFrame) -> np.ndarray:
        """Seconds (the profiles hold microseconds)."""
        return self.results[op].predict(X) * 1e-6

    def hi(self, op: str, col: str) -> float:
        return self.results[op].ranges[col][1]

    def lo(self, op: str, col: str) -> float:
        return self.results[op].ranges[col][0]


# the roofline's PARTS made of several profiled operators
_PART_OPS = {
    "mlp": ("gate_up_proj", "act", "down_proj", "moe_experts"),
    "norm": ("input_norm", "post_norm"),
    "elementwise": ("rope", "add"),
    "attention_decode": ("attention_decode", "attention_mixed"),
}


def spread_log2(values: np.ndarray, most: int, offset: int = 0) -> list[int]:
    """The distinct ``values``, or ``most`` of them spread evenly in log2(value + offset)
    (each the measured value nearest a target): the grid points of a mixed-call table."""
    v = np.unique(np.asarray(values, dtype=np.int64))
    if len(v) > most:
        lv = np.log2(v + offset)
        want = np.linspace(lv[0], lv[-1], most)
        v = np.unique([v[np.argmin(np.abs(lv - w))] for w in want])
    return [int(x) for x in v]


def store_roots(params: ProfiledParams) -> tuple[str, ...]:
    """The profile stores to search: ``execution.profiled.store``, or the measured profiles
    shipped with the package (``simulator/profiles/data``: H100 Llama-3-8B, Llama-2-70B,
    Llama-3-70B) when none is named."""
    if params.store:
        return tuple(params.store)
    return (str(resources.files("simulator.profiles") / "data"),)


class MissingProfilesError(ConfigError):
    """No store holds ``layer_ops`` for the (model, SKU, TP): the engine then runs the
    configured fallback model (unless ``execution.profiled.require_profiles``)."""


def require_layer_ops(params: ProfiledParams, model: str, device: str, tp: int,
                      dtype: str = "bf16") -> tuple[ProfileStore, str]:
    """(store, root) holding ``layer_ops`` for (model, device, TP); MissingProfilesError
    naming the profiler command to run, or the fallback kinds, when none does."""
    stores = [ProfileStore(r) for r in store_roots(params)]
    for store in stores:
        if "layer_ops" in store.coverage(model, device, tp, dtype):
            return store, str(store.root)
    try:
        stores[0].require(model, device, tp, ("layer_ops",), dtype)
    except ConfigError as err:
        others = [str(s.root) for s in stores[1:]]
        extra = f" (also searched {', '.join(others)})" if others else ""
        value = err.value if dtype in ("bf16", "fp16") else f"{err.value} in {dtype}"
        raise MissingProfilesError(err.field, value, err.allowed + extra) from err
    raise AssertionError("require() found a file coverage() did not")  # pragma: no cover


class ProfiledModel(ExecutionModel):
    """Batch runtimes of one replica from measured profiles (see the module docstring)."""

    def __init__(
        self,
        model: ModelSpec,
        sku: SkuSpec,
        node: NodeSpec,
        tp: int,
        pp: int,
        params: ProfiledParams,
        *,
        max_batch: int = 256,
        max_tokens: int = 0,
        fallback: RooflineModel | None = None,
        cache: PredictorCache | None = None,
        expert_parallel: int = 1,
        precision: Precision = BF16,
    ) -> None:
        if fallback is None:
            fallback = _fallback(params.fallback, model, sku, node, tp, pp, precision)
        if expert_parallel != fallback.expert_parallel:
            if fallback.expert_parallel != 1:
                raise ConfigError("execution.profiled.fallback", fallback.expert_parallel,
                                  f"models expert_parallel={fallback.expert_parallel}, not "
                                  f"{expert_parallel}")
            fallback.set_expert_parallel(expert_parallel)
        if (fallback.model, fallback.tp, fallback.pp) != (model, tp, pp):
            raise ConfigError("execution.profiled.fallback", type(fallback).__name__,
                              "must model the same model, TP and PP")
        for name, v in (("max_batch", max_batch), ("max_tokens", max_tokens)):
            if not isinstance(v, int) or isinstance(v, bool) or v < (1 if name == "max_batch"
                                                                     else 0):
                raise ConfigError(f"execution.profiled.{name}", v, "must be a positive integer")
        self.model, self.sku, self.node, self.tp, self.pp = model, sku, node, tp, pp
        self.params, self.fallback = params, fallback
        self.num_stages = pp
        self.cache = cache if cache is not None else PredictorCache(params.cache_dir or None)
        self.out_of_range: Counter[str] = Counter()
        self.sources: dict[str, str] = {}  # component -> origin of the profile it came from
        # family -> operator -> fitted predictor ("" for attention); shapes they are asked at
        self.fitted: dict[str, dict[str, FitResult]] = {}
        self.layer_shapes: dict[str, tuple[int, int]] = {}  # layer op -> (n, k)
        self.heads: dict[str, int] = {}  # per-GPU n_q_heads, n_kv_heads, head_dim
        self._stores = [ProfileStore(r) for r in store_roots(params)]
        self._dtype = _DTYPE_NAMES.get(model.dtype_bytes, "bf16")
        # FP8 weights take layer_ops measured in fp8, else the model dtype's GEMMs times the
        # fallback's fp8 / native ratio; an FP8 KV cache takes attention from fp8 tables,
        # else the model dtype's times the same kind of ratio
        self.precision = precision
        self._wscale = False  # FP8 weights priced from the model dtype's layer_ops
        self._native_fb: RooflineModel | None = None
        self._wdtype = "fp8" if precision.weights == "fp8" else self._dtype
        self._kvdtype = "fp8" if precision.kv_cache == "fp8" else self._dtype
        self._fit = params.predictor_params()
        self._layers = model.num_layers // pp
        self._max_tokens = max(max_tokens or model.max_context, 1)
        self._max_batch = max_batch
        self._ep = fallback.expert_parallel
        self._ep_dp = self._ep // tp
        self._build()

    @property
    def expert_parallel(self) -> int:
        """GPUs of the EP group this replica belongs to (1: no expert parallelism)."""
        return self._ep

    def provenance(self) -> dict[str, Any]:
        """Measured operators and their profiles; the parts no profile covers, priced by
        the fallback; the out-of-range lookups so far (see the base class)."""
        covered = set(self.sources)
        for part, ops in _PART_OPS.items():
            if covered & set(ops):
                covered.add(part)
        modelled = [p for p in self.fallback.parts_in_use() if p not in covered]
        return {"kind": "profiled", "measured": dict(sorted(self.sources.items())),
                "model": self.fallback.label(), "modelled": modelled,
                "out_of_range": dict(self.out_of_range), "note": ""}

    # ------------------------------------------------------------------ profiles
    def _require_layer_ops(self) -> tuple[pd.DataFrame, Any]:
        """The model's ``layer_ops`` in the weights' dtype, else (FP8 weights) in the model
        dtype, whose GEMMs ``_build`` then scales (``_wscale``)."""
        m, d, tp = self.model.name, self.sku.name, self.tp
        try:
            store, _ = require_layer_ops(self.params, m, d, tp, self._wdtype)
        except MissingProfilesError:
            if self._wdtype == self._dtype:
                raise
            store, _ = require_layer_ops(self.params, m, d, tp, self._dtype)
            self._wscale = True
            return store.load(d, m, tp, "layer_ops", self._dtype)
        return store.load(d, m, tp, "layer_ops", self._wdtype)

    def _native(self) -> RooflineModel:
        """The fallback model at the model's own dtype (weights and KV cache), for the
        ratios that carry native-dtype profiles to FP8."""
        if self._native_fb is None:
            fb = self.fallback
            self._native_fb = type(fb)(self.model, self.sku, self.node, self.tp, self.pp,
                                       fb.params)
            if self._ep > 1:
                self._native_fb.set_expert_parallel(self._ep)
        return self._native_fb

    def _fitted(self, df: pd.DataFrame, meta: Any, family: str) -> _Source:
        identity = {"device": meta.device, "model": meta.model, "tp": meta.tp,
                    "dtype": meta.dtype, "node": meta.node}
        return _Source(self.cache.fitted(identity, df, family, self._fit), _describe(meta))

    def _attention_source(self, family: str, dtype: str = ""
                          ) -> tuple[_Source, dict[str, int]] | None:
        """Predictors for an attention family (in ``dtype``, default the KV cache's) and
        the per-GPU head shape to ask them."""
        dtype = dtype or self._kvdtype
        m, d, tp = self.model, self.sku.name, self.tp
        heads = per_gpu_heads(model_shape_of(m), tp)
        for store in self._stores:
            if family in store.coverage(m.name, d, tp, dtype):
                df, meta = store.load(d, m.name, tp, family, dtype)
                return self._fitted(df, meta, family), heads
        for store in self._stores:
            if family in store.shape_tables(d, dtype):
                df, meta = store.load(d, "", 1, family, dtype)
                mine = rows_with_heads(df, heads)
                if mine.any():  # fit on every head shape; the box is this model's rows
                    src = self._fitted(df, meta, family)
                    box = df[mine]
                    res = src.results[""]
                    box_ranges = {c: (float(box[c].min()), float(box[c].max()))
                                  for c in res.ranges}
                    src.results = {"": FitResult(res.predictor, res.scores, res.rows,
                                                 res.seconds, box_ranges)}
                    return src, heads
        return None

    def _collective_source(self) -> _Source | None:
        for store in self._stores:
            try:
                df, meta = store.load(self.sku.name, "", 1, "collective", self._dtype,
                                      node=self.node.name)
            except ConfigError as err:
                if err.field != "profile":  # a broken file is an error, a missing one is not
                    raise
                continue
            return self._fitted(df, meta, "collective")
        return None

    def _model_source(self, family: str) -> _Source | None:
        m, d, tp = self.model.name, self.sku.name, self.tp
        for store in self._stores:
            if family in store.coverage(m, d, tp, self._dtype):
                df, meta = store.load(d, m, tp, family, self._dtype)
                return self._fitted(df, meta, family)
        return None

    # ------------------------------------------------------------------ build
    def _build(self) -> None:
        m, P = self.model, self.fallback.params
        fb = self.fallback
        dt, h, tp = m.dtype_bytes, m.hidden_size, self.tp
        bw = self.sku.mem_bw_gbps * 1e9 * P.memory_efficiency
        peak = (self.sku.fp8_tflops if dt == 1 and self.sku.fp8_tflops > 0
                else self.sku.bf16_tflops) * 1e12 * P.gemm_efficiency
        self._bw, self._peak = bw, peak
        q = m.num_heads // tp * m.head_size
        kv = memory.kv_heads_per_gpu(m, tp) * m.head_size

        df, meta = self._require_layer_ops()
        layer = self._fitted(df, meta, "layer_ops")
        shapes = {op: (int(g["n"].iloc[0]), int(g["k"].iloc[0])) for op, g in df.groupby("op")}
        self.fitted["layer_ops"], self.layer_shapes = layer.results, shapes
        self._layer_hi = min(layer.hi(op, "num_tokens") for op in layer.results)
        self._layer_lo = max(layer.lo(op, "num_tokens") for op in layer.results)

        # -- token tables (per layer unless noted), seconds
        hi = self._max_tokens
        T = integer_points(hi, self.params.dense_tokens, self.params.tokens_per_octave)
        Tf = T.astype(np.float64)
        gemm = np.array([fb._gemms(int(t), max) for t in T])  # (qkv, o, mlp) per layer
        wratio = None  # FP8 weights from native layer_ops: the fallback's fp8 / native
        if self._wscale:
            wratio = gemm / np.array([self._native()._gemms(int(t), max) for t in T])

        def op_or(op: str, fallback_values: np.ndarray) -> np.ndarray:
            if not layer.has(op):
                return fallback_values
            self.sources[op] = layer.origin
            n, k = shapes[op]
            out = self._anchored(layer, op, "num_tokens", self._layer_X(op, Tf, n, k),
                                 self._layer_roof(op, n, k))
            if wratio is not None and op in _GEMM_COLUMN:
                out = out * wratio[:, _GEMM_COLUMN[op]]
                self.sources[op] += (f", x the {fb.kind} model's {self._wdtype} / "
                                     f"{self._dtype} GEMM ratio")
            return out

        norm1_fb = (2 * h * dt * Tf + h * dt) / bw
        parts = {
            "qkv_proj": op_or("qkv_proj", gemm[:, 0]),
            "o_proj": op_or("o_proj", gemm[:, 1]),
        }
        if m.is_moe and self._ep > 1:
            self._build_ep(layer, shapes)
        elif m.is_moe:
            parts["mlp"] = op_or("moe_experts", gemm[:, 2])
        elif all(layer.has(op) for op in _MLP_OPS):
            f = m.ffn_size // tp
            up = (2 if m.gated_mlp else 1) * f
            act_fb = (up + f) * dt * Tf / bw  # read up_mats x f, write f per token
            parts["mlp"] = (op_or("gate_up_proj", gemm[:, 2]) + op_or("act", act_fb)
                            + op_or("down_proj", gemm[:, 2]))
        else:
            parts["mlp"] = gemm[:, 2]
        input_norm = op_or("input_norm", norm1_fb)
        parts["norm"] = input_norm + op_or("post_norm", norm1_fb)
        if layer.has("input_norm") and not layer.has("add"):  # fused into the norm kernel
            add = np.zeros_like(Tf)
            self.sources["add"] = f"fused into input_norm/post_norm ({layer.origin})"
        else:
            add = op_or("add", 3 * h * dt * Tf / bw)
        parts["elementwise"] = op_or("rope", 2 * (q + kv) * dt * Tf / bw) + 2 * add
        coll = self._collective_source()
        if coll is not None:
            self.fitted["collective"] = coll.results
        ar = self._allreduce(coll, Tf)
        parts["allreduce"] = 2 * ar
        self._parts_T = {k: TokenTable(T, v, hi) for k, v in parts.items()}
        dense = (parts["qkv_proj"] + parts["o_proj"] + parts.get("mlp", 0.0) + parts["norm"]
                 + parts["elementwise"] + parts["allreduce"])
        self._dense = TokenTable(T, dense, hi)
        embed = op_or("embedding", 2 * h * dt * Tf / bw)
        self._embed = TokenTable(T, embed, hi)
        self._embed_ar = TokenTable(T, ar, hi)
        self._first_T = TokenTable(T, embed + ar, hi)
        self._fnorm = TokenTable(T, input_norm, hi)
        self._sends = [TokenTable(T, self._send(coll, s, Tf), hi) for s in range(self.pp - 1)]

        # -- sequence tables (stage 0 CPU, last stage LM head + sampling)
        S = integer_points(self._max_batch, self.params.batch_dense, 16)
        Sf = S.astype(np.float64)
        cpu_src = self._model_source("cpu_overhead")

        def cpu_roof(x: np.ndarray) -> np.ndarray:
            return P.cpu_overhead_base_s + P.cpu_overhead_per_seq_s * x

        self._cpu_hi = math.inf
        if cpu_src is not None and all(cpu_src.has(op) for op in _CPU_OPS):
            X = pd.DataFrame({"batch_size": S})
            cpu = sum(self._anchored(cpu_src, op, "batch_size", X, cpu_roof) for op in _CPU_OPS)
            self.sources["cpu_overhead"] = cpu_src.origin
            self._cpu_hi = min(cpu_src.hi(op, "batch_size") for op in _CPU_OPS)
        else:
            cpu = P.cpu_overhead_base_s + P.cpu_overhead_per_seq_s * Sf
        if cpu_src is not None and cpu_src.has("sampling"):
            sample = self._anchored(cpu_src, "sampling", "batch_size",
                                    pd.DataFrame({"batch_size": S}), lambda x: x + 0.0)  # linear
            self.sources["sampling"] = cpu_src.origin
        else:
            sample = P.sampling_per_seq_s * Sf
        lm_fb = np.array([fb._lm_head(int(s), max) for s in S])
        self._lm_hi = math.inf
        if layer.has("lm_head"):
            n, k = shapes["lm_head"]
            X = pd.DataFrame({"num_tokens": S, "n": n, "k": k})
            lm = self._anchored(layer, "lm_head", "num_tokens", X,
                                lambda x: self._op_roofline(x, n, k))
            self.sources["lm_head"] = layer.origin
            self._lm_hi = layer.hi("lm_head", "num_tokens")
        else:
            lm = lm_fb
        smax = self._max_batch
        self._cpu = TokenTable(S, cpu, smax)
        self._lm = TokenTable(S, lm, smax)
        self._sample = TokenTable(S, sample, smax)
        self._first_S = TokenTable(S, cpu, smax)
        self._last_S = TokenTable(S, lm + sample, smax)

        # -- attention tables: rows = sequences (batch), columns = KV length / chunk
        rows = integer_points(smax, self.params.batch_dense, 16)
        self._moved: dict[tuple, np.ndarray] = {}  # roofline ratios beyond the box, per shape
        axis = OctaveAxis.covering(self._max_tokens, self.params.axis_per_octave)
        self._decode, self._decode_box = self._attention_table("attention_decode", rows, axis)
        self._prefill, self._prefill_box = self._attention_table("attention_prefill", rows,
                                                                 axis)
        # the decodes' share of a mixed call: tables over (chunk, prior) grid points
        self._mixed_lc: list[float] = []  # log2 of the grid's chunk sizes
        self._mixed_lp: list[float] = []  # log2(prior + 1) of its prior contexts
        self._mixed: list[list[OctaveTable]] = []  # [chunk][prior]
        self._mixed_box: tuple[float, ...] | None = None
        self._mixed_cp: tuple[float, ...] = ()  # measured (chunk lo, hi, prior lo, hi)
        found = self._mixed_source()
        if found is not None:  # a share is smooth: 4 points per doubling of the context
            src, heads, chunks, priors, native = found
            coarse = OctaveAxis.covering(self._max_tokens, min(4, self.params.axis_per_octave))
            saved = self.out_of_range.copy()  # pricing the chunks alone is not a lookup
            for c in chunks:
                tabs = []
                for p in priors:
                    alone = self._prefill_attn([c], [p])
                    if native:  # the share of a model-dtype call: its chunk in that dtype
                        alone *= self._prefill_kv_ratio(c, p)
                    table, self._mixed_box = self._attention_table(
                        "attention_decode", rows, coarse, found=(src, heads),
                        label="attention_mixed", at={"chunk_tokens": c, "prior_kv": p},
                        minus=alone, table=SparseRowTable, native_kv=native)
                    tabs.append(table)
                self._mixed.append(tabs)
            self.out_of_range = saved
            self._mixed_lc = [math.log2(c) for c in chunks]
            self._mixed_lp = [math.log2(p + 1) for p in priors]
            res = src.results[""]
            self._mixed_cp = (*res.ranges["chunk_tokens"], *res.ranges["prior_kv"])
        # -- launches, as the roofline
        eager = self._layers * P.kernels_per_layer * P.kernel_launch_s
        self._launch_eager = eager
        self._launch_graph = P.kernel_launch_s if P.cuda_graphs_decode else eager
        used = [op for op, part in (("all_reduce", "allreduce"), ("send_recv", "send_recv"))
                if part in self.sources]
        self._coll_hi = min((coll.hi(op, "size_bytes") / (h * dt) for op in used),
                            default=math.inf)

    def _build_ep(self, layer: _Source, shapes: dict[str, tuple[int, int]]) -> None:
        """Per-layer tables over the EP group's tokens: the MoE layer on this GPU and its
        dispatch + combine (module docstring)."""
        fb, ep, m = self.fallback, self._ep, self.model
        hi = self._max_tokens * self._ep_dp
        G = integer_points(hi, self.params.dense_tokens, self.params.tokens_per_octave)
        Gf = G.astype(np.float64)
        if layer.has("moe_experts") and self.tp == 1:  # measured with whole experts
            n, k = shapes["moe_experts"]
            # every expert on one GPU at the group's tokens, then this rank's part of it:
            # the floor F every rank pays plus 1 / ep of the rest (ep_floor.py)
            t1 = self._anchored(layer, "moe_experts", "num_tokens",
                                self._layer_X("moe_experts", Gf, n, k),
                                self._layer_roof("moe_experts", n, k))
            if self._wscale:  # FP8 weights from the native profile
                t1 = t1 * (np.asarray(fb._moe_roofline(Gf, Gf, 1, np.maximum))
                           / np.asarray(self._native()._moe_roofline(Gf, Gf, 1, np.maximum)))
            floor = ep_floor_for(self.sku)
            moe = rank_seconds(t1, floor.seconds(Gf, m.experts_top_k, m.hidden_size), ep)
            self.sources["moe_experts"] = (
                f"{layer.origin} at the group's tokens"
                + (f" in {self._wdtype}" if self._wscale else "")
                + f", the per-rank floor plus 1/{ep} of the rest (floor: {floor.source})")
        else:
            moe = np.asarray(fb._ep_moe(Gf / self._ep_dp, Gf, np.maximum)) + 0.0 * Gf
        comm = fb._ep_tok * Gf + fb._ep_lat
        self._parts_G = {"mlp": TokenTable(G, moe, hi), "ep_comm": TokenTable(G, comm, hi)}
        self._group = TokenTable(G, moe + comm, hi)

    def _grp(self, Tg: int) -> float:
        """Per-layer seconds of the MoE layer and its EP collectives for ``Tg`` group tokens
        (beyond the table: linear from its last entry)."""
        hi = self._group.hi
        if Tg <= hi:
            return self._group.cells[Tg]
        self.out_of_range["beyond_table"] += 1
        return self._group.cells[hi] * (Tg / hi)

    def _anchored(self, src: _Source, op: str, col: str, X: pd.DataFrame,
                  roof: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Seconds of ``op`` at ``X``; beyond the measured [lo, hi] of ``col``, the value at
        the nearest measured size times ``roof(x) / roof(nearest)``."""
        x = X[col].to_numpy(dtype=np.float64)
        c = np.clip(x, src.lo(op, col), src.hi(op, col))
        Xc = X.copy()
        Xc[col] = c
        out = src.predict(op, Xc)
        moved = c != x
        if moved.any():
            out[moved] *= roof(x[moved]) / roof(c[moved])
        return out

    def _layer_X(self, op: str, T: np.ndarray, n: int, k: int) -> pd.DataFrame:
        """A ``layer_ops`` predictor's input for ``op`` at tokens ``T`` (MoE rows also
        carry the model's expert count and top-k)."""
        X = pd.DataFrame({"num_tokens": T, "n": n, "k": k})
        if op == "moe_experts":
            X["experts"], X["topk"] = self.model.num_experts, self.model.experts_top_k
        return X

    def _layer_roof(self, op: str, n: int, k: int) -> Callable[[np.ndarray], np.ndarray]:
        """The roofline shape that carries ``op`` beyond its measured tokens: the
        fallback's MoE layer (the experts the tokens touch) or one GEMM."""
        if op == "moe_experts":
            fb = self.fallback
            return lambda x: np.asarray(fb._moe_roofline(x, x, 1, np.maximum)) + 0.0 * x
        return lambda x: self._op_roofline(x, n, k)

    def _op_roofline(self, T: np.ndarray, n: int, k: int) -> np.ndarray:
        """Roofline shape of one ``T x k @ k x n`` GEMM (element-wise when k == 0)."""
        dt = self.model.dtype_bytes
        if k == 0:
            return (2 * T * n + n) * dt / self._bw
        return np.maximum(2.0 * T * n * k / self._peak, (n * k + T * (n + k)) * dt / self._bw)

    def _allreduce(self, coll: _Source | None, Tf: np.ndarray) -> np.ndarray:
        """Seconds of one TP all-reduce of ``T x hidden`` (0 at tp = 1)."""
        tp = self.tp
        if tp == 1:
            return np.zeros_like(Tf)
        tok, lat = self.fallback._allreduce_terms()
        if coll is None or not coll.has("all_reduce"):
            return tok * Tf + lat
        res = coll.results["all_reduce"]
        X = pd.DataFrame({"num_gpus": tp, "gpus_per_node": tp,
                          "size_bytes": Tf * self.model.hidden_size * self.model.dtype_bytes})
        if not self._measured_group(res, {"num_gpus": tp, "gpus_per_node": tp}):
            return tok * Tf + lat
        self.sources["allreduce"] = coll.origin
        return self._anchored(coll, "all_reduce", "size_bytes", X,
                              lambda b: tok * b / (self.model.hidden_size
                                                   * self.model.dtype_bytes) + lat)

    def _send(self, coll: _Source | None, s: int, Tf: np.ndarray) -> np.ndarray:
        """Seconds of the PP send of ``T x hidden`` from stage ``s`` to ``s + 1``."""
        tok, lat = self.fallback._send_terms()[s]
        gpn = self.node.gpus_per_node
        same = all((s * self.tp + i) // gpn == ((s + 1) * self.tp + i) // gpn
                   for i in range(self.tp))
        group = {"num_gpus": 2, "gpus_per_node": 2 if same else 1}
        if coll is None or not coll.has("send_recv") or not self._measured_group(
                coll.results["send_recv"], group):
            return tok * Tf + lat
        self.sources["send_recv"] = coll.origin
        nbytes = self.model.hidden_size * self.model.dtype_bytes
        X = pd.DataFrame({**group, "size_bytes": Tf * nbytes})
        return self._anchored(coll, "send_recv", "size_bytes", X,
                              lambda b: tok * b / nbytes + lat)

    @staticmethod
    def _measured_group(res: FitResult, group: dict[str, int]) -> bool:
        """Whether ``group``'s values lie inside the fitted ranges (GPU counts measured)."""
        return all(res.ranges[c][0] <= v <= res.ranges[c][1] for c, v in group.items())

    def _mixed_source(self) -> tuple[_Source, dict[str, int], list[int], list[int],
                                     bool] | None:
        """The fitted whole mixed call (module docstring), this model's heads per GPU, the
        grid's chunk sizes and prior contexts (measured values, at most ``MIXED_CHUNKS`` /
        ``MIXED_PRIORS`` spread in log2), and whether the file is in the model dtype
        under an FP8 KV cache (its share then carried to FP8 by the fallback's ratio);
        None without the model's ``attention_mixed`` file. (The share is taken against
        this model's own price of the chunk, wherever that comes from, so a single-chunk
        batch costs the fit.)"""
        m, d, tp = self.model, self.sku.name, self.tp
        for dtype in dict.fromkeys((self._kvdtype, self._dtype)):
            for store in self._stores:
                if "attention_mixed" not in store.coverage(m.name, d, tp, dtype):
                    continue
                mixed, meta = store.load(d, m.name, tp, "attention_mixed", dtype)
                src = self._fitted(mixed, meta, "attention_mixed")
                chunks = spread_log2(mixed["chunk_tokens"].to_numpy(), MIXED_CHUNKS)
                priors = spread_log2(mixed["prior_kv"].to_numpy(), MIXED_PRIORS, offset=1)
                return (src, per_gpu_heads(model_shape_of(m), tp), chunks, priors,
                        dtype != self._kvdtype)
        return None

    def _prefill_kv_ratio(self, chunk: int, prior: int) -> float:
        """The fallback's model-dtype / KV-dtype price of one chunk's prefill attention."""
        args = (chunk * (2 * prior + chunk + 1), chunk, prior + chunk, 0, 0, max)
        return (self._native()._attention(*args)[0]
                / max(self.fallback._attention(*args)[0], 1e-30))

    def _attention_table(self, family: str, rows: np.ndarray, axis: OctaveAxis, *,
                         found: tuple[_Source, dict[str, int]] | None = None,
                         label: str = "", at: dict[str, int] | None = None,
                         minus: float = 0.0, table: type[OctaveTable] = OctaveTable,
                         native_kv: bool = False,
                         ) -> tuple[OctaveTable, tuple[float, ...] | None]:
        """Per-layer seconds over (sequences, KV length or equal-work chunk), from
        ``found`` (else the family's profiles); ``label`` names it in ``sources`` and
        ``fitted`` (default: the family). ``at``: further shape columns held fixed (a
        mixed call's chunk and prior context); ``minus``: seconds taken off every cell
        inside the measured range (floored at 0) before the roofline carries the cells
        beyond it; ``table``: the table class; ``native_kv``: ``found`` is in the model
        dtype under an FP8 KV cache. The box is the measured (batch lo, batch hi, axis lo,
        axis hi), None without profiles."""
        fb = self.fallback
        pts = axis.points
        # an FP8 KV cache read from the model dtype's profiles
        native = self._native() if native_kv else None
        if found is None:
            found = self._attention_source(family)
            if found is None and self._kvdtype != self._dtype:
                found = self._attention_source(family, self._dtype)
                if found is not None:
                    native = self._native()
        label = label or family
        decode = family == "attention_decode"

        def roof(n: int, x: np.ndarray, model: RooflineModel = fb) -> np.ndarray:
            if decode:
                return np.asarray(model._attention(0, 0, 0, n, n * x, np.maximum)[1]) + 0.0 * x
            return np.array([model._attention(n * c * (c + 1), n * c, n * c, 0, 0, max)[0]
                             for c in x.tolist()])

        if found is None:
            grid = np.array([roof(int(n), pts) for n in rows])
            return table(rows, axis, grid, self._max_batch), None
        src, heads = found
        self.sources[label] = src.origin
        self.fitted[label], self.heads = src.results, heads
        col = "kv_len" if decode else "chunk_tokens"
        res = src.results[""]
        b_lo, b_hi = res.ranges["batch_size"]
        x_lo, x_hi = res.ranges[col]
        rb = rows.astype(np.float64)
        nb = np.clip(rb, b_lo, b_hi)
        xc = np.clip(pts, x_lo, x_hi)
        # clipping repeats shapes: predict each distinct (batch, axis) pair once
        ub, ib = np.unique(nb, return_inverse=True)
        ux, ix = np.unique(xc, return_inverse=True)
        X = pd.DataFrame({
            **{c: np.full(len(ub) * len(ux), v) for c, v in heads.items()},
            "batch_size": np.repeat(ub, len(ux)),
            col: np.tile(ux, len(ub)),
        })
        if not decode:
            X["prior_kv"] = 0
        for c, v in (at or {}).items():
            X[c] = v
        grid = src.predict("", X).reshape(len(ub), len(ux))[np.ix_(ib, ix)]
        if minus:
            grid = np.maximum(grid - minus, 0.0)
        key = (decode, b_lo, b_hi, x_lo, x_hi, len(rows), axis.hi_exp, axis.per_octave)
        if key not in self._moved:  # beyond the measured range: along the roofline
            ratio = np.ones_like(grid)
            for i, n in enumerate(rows):
                moved = (nb[i] != rb[i]) | (xc != pts)
                if moved.any():
                    ratio[i, moved] = roof(int(n), pts[moved]) / roof(int(nb[i]), xc[moved])
            self._moved[key] = ratio
        grid *= self._moved[key]
        if native is not None:  # the fallback's FP8 / native-dtype ratio at each cell
            self.sources[label] += (f", x the {self.fallback.kind} model's "
                                    f"{self._kvdtype} / {self._dtype} KV ratio")
            for i, n in enumerate(rows):
                grid[i] *= roof(int(n), pts) / roof(int(n), pts, native)
        return table(rows, axis, grid, self._max_batch), (b_lo, b_hi, x_lo, x_hi)

    # ------------------------------------------------------------------ lookups
    def _count(self, ntok: int, nseq: int, k: int = 1) -> None:
        """Count ``k`` lookups of ``ntok`` tokens and ``nseq`` sequences outside the profiles."""
        oor = self.out_of_range
        if ntok > self._layer_hi or ntok < self._layer_lo:
            oor["layer_ops"] += k
        if ntok > self._coll_hi:
            oor["collective"] += k
        if nseq > self._cpu_hi:
            oor["cpu_overhead"] += k
        if nseq > self._lm_hi:
            oor["lm_head"] += k
        if ntok > self._dense.hi or nseq > self._max_batch:
            oor["beyond_table"] += k

    def _tok(self, ntok: int) -> tuple[float, float, float, list[float]]:
        """(dense layer, stage-0 extra, last-stage extra, sends) seconds for ``ntok`` tokens."""
        hi = self._dense.hi
        if ntok <= hi:
            return (self._dense.cells[ntok], self._first_T.cells[ntok], self._fnorm.cells[ntok],
                    [t.cells[ntok] for t in self._sends])
        r = ntok / hi  # beyond the table: linear in tokens from its last entry
        return (self._dense.cells[hi] * r, self._first_T.cells[hi] * r,
                self._fnorm.cells[hi] * r, [t.cells[hi] * r for t in self._sends])

    def _seq(self, nseq: int) -> tuple[float, float]:
        """(stage-0 CPU, last-stage LM head + sampling) seconds for ``nseq`` sequences."""
        if nseq <= self._max_batch:
            return self._first_S.cells[nseq], self._last_S.cells[nseq]
        r = nseq / self._max_batch  # beyond the table: linear in sequences
        return self._first_S.cells[-1] * r, self._last_S.cells[-1] * r

    def _decode_attn(self, nd: int, Lsum: int, chunks: Sequence[int] = (),
                     prior: Sequence[int] = ()) -> float:
        """Per-layer seconds of decode attention over ``nd`` sequences of context sum; with
        prefill ``chunks`` (of prior contexts ``prior``) in the same batch, their share of
        the mixed call where the profiles have it (module docstring): at the chunks'
        tokens and their token-weighted mean prior context."""
        if nd == 0:
            return 0.0
        if len(chunks) and self._mixed:
            tokens = sum(chunks)
            mean = sum(c * p for c, p in zip(chunks, prior, strict=True)) / tokens
            cp, box, x = self._mixed_cp, self._mixed_box, Lsum / nd
            if not (cp[0] <= tokens <= cp[1] and cp[2] <= min(prior) and max(prior) <= cp[3]
                    and box[0] <= nd <= box[1] and box[2] <= x <= box[3]):
                self.out_of_range["attention_mixed"] += 1
            i, wi = _bracket(self._mixed_lc, math.log2(tokens))
            j, wj = _bracket(self._mixed_lp, math.log2(mean + 1.0))
            tabs = self._mixed
            v = self._table_attn(tabs[i][j], None, "attention_mixed", nd, Lsum)
            if wj:
                v += wj * (self._table_attn(tabs[i][j + 1], None, "", nd, Lsum) - v)
            if wi:
                u = self._table_attn(tabs[i + 1][j], None, "", nd, Lsum)
                if wj:
                    u += wj * (self._table_attn(tabs[i + 1][j + 1], None, "", nd, Lsum) - u)
                v += wi * (u - v)
            return v
        return self._table_attn(self._decode, self._decode_box, "attention_decode", nd, Lsum)

    def _table_attn(self, t: OctaveTable, box: tuple[float, ...] | None, name: str, nd: int,
                    Lsum: int) -> float:
        """Per-layer seconds from decode-shaped table ``t`` (``box``: its measured range,
        lookups outside it counted under ``name``)."""
        x = Lsum / nd
        if box is not None and not (box[0] <= nd <= box[1] and box[2] <= x <= box[3]):
            self.out_of_range[name] += 1
        if nd <= t.rows and x <= t.axis.upper:
            return t.lookup(nd, max(x, 1.0))
        if name and x > t.axis.upper:  # (more sequences than rows: counted by _count)
            self.out_of_range["beyond_table"] += 1
        ndc = min(nd, t.rows)
        xc = min(x, t.axis.upper)
        return t.lookup(ndc, max(xc, 1.0)) * (nd / ndc) * (x / xc)

    def _prefill_attn(self, chunks: Sequence[int], prior: Sequence[int]) -> float:
        """Per-layer seconds of prefill attention: ``n`` chunks of the equal-work chunk."""
        n = len(chunks)
        if n == 0:
            return 0.0
        units = 0
        for c, p in zip(chunks, prior, strict=True):
            units += c * (2 * p + c + 1)
        ceq = max((math.sqrt(1.0 + 4.0 * units / n) - 1.0) / 2.0, 1.0)
        box = self._prefill_box
        if box is not None and not (box[0] <= n <= box[1] and box[2] <= ceq <= box[3]):
            self.out_of_range["attention_prefill"] += 1
        t = self._prefill
        if n <= t.rows and ceq <= t.axis.upper:
            return t.lookup(n, ceq)
        self.out_of_range["beyond_table"] += 1
        nc = min(n, t.rows)
        cc = min(ceq, t.axis.upper)
        return t.lookup(nc, cc) * (n / nc) * (ceq / cc) ** 2

    def _combine(self, T: int, S: int, ap: Any, ad: Any, decode_only: bool,
                 Tg: int | None = None) -> list:
        """Per-stage seconds; ``ad`` may be a numpy array (``decode_steps``): only + and *.
        ``Tg``: the EP group's tokens (expert parallelism; None = every rank carries T)."""
        dense, first_t, last_t, sends = self._tok(T)
        first_s, last_s = self._seq(S)
        n = self._layers
        launch = self._launch_graph if decode_only else self._launch_eager
        body = n * (dense + ap + ad) + launch
        if self._ep > 1:
            body = body + n * self._grp(T * self._ep_dp if Tg is None else Tg)
        first = first_t + first_s
        last = last_t + last_s
        pp = self.pp
        if pp == 1:
            return [body + first + last]
        out = [body + first + sends[0]]
        for s in range(1, pp - 1):
            out.append(body + sends[s])
        out.append(body + last)
        return out

    @staticmethod
    def _decode_sum(decode_kv: Sequence[int] | np.ndarray) -> tuple[int, int]:
        if isinstance(decode_kv, np.ndarray):
            return decode_kv.shape[0], int(decode_kv.sum())
        return len(decode_kv), int(sum(decode_kv))

    # ------------------------------------------------------------------ interface
    def stage_times(
        self,
        prefill_chunks: Sequence[int],
        prefill_prior: Sequence[int],
        decode_kv: Sequence[int] | np.ndarray,
        group_tokens: int | None = None,
    ) -> tuple[float, ...]:
        """Seconds each pipeline stage spends on the batch, stage 0 first (``group_tokens``
        as in :meth:`RooflineModel.stage_times`)."""
        D, Lsum = self._decode_sum(decode_kv)
        return self._stage_times(prefill_chunks, prefill_prior, D, Lsum, group_tokens)

    def stage_times_sum(
        self,
        prefill_chunks: Sequence[int],
        prefill_prior: Sequence[int],
        num_decodes: int,
        decode_kv_sum: int,
    ) -> tuple[float, ...]:
        """``stage_times`` from the decodes' count and context sum alone, for the engine's
        decode cohorts: the decodes are priced as ``num_decodes`` sequences of the mean
        context (the profiles measure batches of equal KV lengths), so these two numbers
        are all ``stage_times`` reads of them; identical bits."""
        return self._stage_times(prefill_chunks, prefill_prior, num_decodes,
                                 int(decode_kv_sum), None)

    def _stage_times(self, prefill_chunks: Sequence[int], prefill_prior: Sequence[int],
                     D: int, Lsum: int, group_tokens: int | None) -> tuple[float, ...]:
        """The one scalar formula of ``stage_times`` and ``stage_times_sum``."""
        n = len(prefill_chunks)
        T = sum(prefill_chunks) + D
        ap = self._prefill_attn(prefill_chunks, prefill_prior)
        ad = self._decode_attn(D, Lsum, prefill_chunks, prefill_prior)
        self._count(T, n + D)
        return tuple(self._combine(T, n + D, ap, ad, n == 0, group_tokens))

    def decode_steps(self, decode_kv: np.ndarray, steps: int) -> np.ndarray:
        """Stage times of ``steps`` decode-only iterations, iteration j at ``decode_kv + j``;
        the same lookups and arithmetic as ``stage_times`` on arrays (identical bits)."""
        kv = np.asarray(decode_kv, dtype=np.int64)
        return self.decode_steps_sum(kv.shape[0], int(kv.sum()), steps)

    def decode_steps_sum(self, num_decodes: int, decode_kv_sum: int, steps: int) -> np.ndarray:
        """``decode_steps`` from the decodes' count and context sum (iteration j has
        context sum ``decode_kv_sum + j * num_decodes``), as ``stage_times_sum``."""
        nd = int(num_decodes)
        out = np.empty((steps, self.pp), dtype=np.float64)
        t = self._decode
        Lsum = int(decode_kv_sum) + nd * np.arange(steps, dtype=np.int64)
        if nd == 0 or nd > t.rows or nd > self._dense.hi or steps == 0 or (
                Lsum[-1] / nd > t.axis.upper):
            for j in range(steps):
                out[j] = self._stage_times([], [], nd, int(Lsum[j]), None)
            return out
        x = Lsum / nd
        box = self._decode_box
        if box is not None:
            over = (int(np.count_nonzero((x > box[3]) | (x < box[2])))
                    if box[0] <= nd <= box[1] else steps)
            if over:
                self.out_of_range["attention_decode"] += over
        ad = t.lookup_row(nd, np.maximum(x, 1.0))
        self._count(nd, nd, steps)
        totals = self._combine(nd, nd, 0.0, ad, True)
        for s, tot in enumerate(totals):
            out[:, s] = tot
        return out

    def breakdown(
        self,
        prefill_chunks: Sequence[int],
        prefill_prior: Sequence[int],
        decode_kv: Sequence[int] | np.ndarray,
        group_tokens: int | None = None,
    ) -> list[dict[str, float]]:
        """Per stage, seconds per part (the roofline's ``PARTS``); each stage sums to
        ``stage_times`` up to rounding."""
        saved = self.out_of_range.copy()  # a breakdown is not a lookup of the simulation
        nd, Lsum = self._decode_sum(decode_kv)
        n_p = len(prefill_chunks)
        ntok = sum(prefill_chunks) + nd
        nseq = n_p + nd
        n = self._layers
        hi = self._dense.hi
        ti, r = (ntok, 1.0) if ntok <= hi else (hi, ntok / hi)
        mb = self._max_batch
        si, rs = (nseq, 1.0) if nseq <= mb else (mb, nseq / mb)
        body = {k: n * tab.cells[ti] * r for k, tab in self._parts_T.items()}
        body["attention_prefill"] = n * self._prefill_attn(prefill_chunks, prefill_prior)
        body["attention_decode"] = n * self._decode_attn(nd, Lsum, prefill_chunks,
                                                         prefill_prior)
        body["launch"] = self._launch_graph if n_p == 0 else self._launch_eager
        if self._ep > 1:
            Tg = ntok * self._ep_dp if group_tokens is None else group_tokens
            gh = self._group.hi
            gi, rg = (Tg, 1.0) if Tg <= gh else (gh, Tg / gh)
            for k, tab in self._parts_G.items():
                body[k] = n * tab.cells[gi] * rg
        out = []
        for s in range(self.pp):
            parts = dict.fromkeys(PARTS, 0.0)
            parts.update(body)
            if s == 0:
                parts["embedding"] = self._embed.cells[ti] * r
                parts["allreduce"] += self._embed_ar.cells[ti] * r
                parts["cpu_overhead"] = self._cpu.cells[si] * rs
            if s < self.pp - 1:
                parts["send_recv"] = self._sends[s].cells[ti] * r
            if s == self.pp - 1:
                parts["norm"] += self._fnorm.cells[ti] * r
                parts["lm_head"] = self._lm.cells[si] * rs
                parts["sampling"] = self._sample.cells[si] * rs
            out.append({k: float(v) for k, v in parts.items()})
        self.out_of_range.clear()
        self.out_of_range.update(saved)
        return out

    # ------------------------------------------------------------------ sizes
    def weight_bytes_per_gpu(self) -> float:
        """As :meth:`RooflineModel.weight_bytes_per_gpu`."""
        return self.fallback.weight_bytes_per_gpu()

    def activation_bytes_per_gpu(self, max_tokens: int, max_seqs: int | None = None) -> float:
        """As :meth:`RooflineModel.activation_bytes_per_gpu`."""
        return self.fallback.activation_bytes_per_gpu(max_tokens, max_seqs)

    def flops_per_token_active(self) -> int:
        """As :meth:`RooflineModel.flops_per_token_active` (for MFU)."""
        return self.fallback.flops_per_token_active()


def _bracket(grid: list[float], x: float) -> tuple[int, float]:
    """(index i, weight of grid[i + 1]) of ``x`` between two grid points; held at the
    ends (weight 0 at the first or last point)."""
    i = bisect_right(grid, x) - 1
    if i < 0:
        return 0, 0.0
    if i >= len(grid) - 1:
        return len(grid) - 1, 0.0
    return i, (x - grid[i]) / (grid[i + 1] - grid[i])


def _describe(meta: Any) -> str:
    """One profile file in words: its source kind, what it covers, its date."""
    if meta.model:
        what = f"{meta.device}/{meta.model}/tp{meta.tp}"
    elif meta.family == "collective":
        what = f"{meta.device}, node {meta.node or '?'}"
    else:
        what = f"{meta.device}, shape-keyed table"
    date = f", {meta.date}" if meta.date else ""
    return f"{meta.source} {meta.family} ({what}, {meta.dtype}{date})"


def _fallback(kind: str, model: ModelSpec, sku: SkuSpec, node: NodeSpec, tp: int,
              pp: int, precision: Precision = BF16) -> RooflineModel:
    if kind == "calibrated":
        from simulator.execution.calibrated import CalibratedModel

        return CalibratedModel(model, sku, node, tp, pp, precision=precision)
    return RooflineModel(model, sku, node, tp, pp, precision=precision)


__all__ = ["FALLBACKS", "ProfiledModel", "ProfiledParams"]
