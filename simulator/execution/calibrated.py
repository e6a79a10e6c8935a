"""Calibrated roofline: the roofline model with its efficiencies replaced by curves fitted
to GPU measurements, per SKU, and its collectives by fits per node type.

The constants live in ``calibration.yaml`` next to this module, written by
``experiments/calibration/fit_roofline.py`` from the public measurements in
``../shared/reference`` (see ``docs/calibration.md``). Three kernel families are fitted:

- GEMM and prefill attention (``KernelCurve``): a kernel of ``F`` FLOPs moving ``B`` bytes
  takes ``lat + max(c, m) + overlap * min(c, m)`` with ``c = F / (peak * eff_f(F))`` and
  ``m = B / (bw * eff_b(B))``, where ``eff(x) = e_max / (1 + (x_half / x) ** a)``: the
  achieved fraction of peak FLOP/s (bytes/s) rises with the problem size towards
  ``e_max`` (``a = 1`` is the ``e_max * x / (x + x_half)`` ramp). ``a`` is kept in
  (0, 1], so the time never falls when the problem grows.
- Decode attention (``DecodeCurve``): ``lat + per_item * D * kv_heads + max(F / (peak *
  e_f), (B + B_half) / (bw * e_b))`` for ``D`` sequences (one work item per sequence and
  KV head on the GPU); linear in the context sum, as the engine's bit-exact decode fast
  path needs (``ExecutionModel`` docstring). ``per_item`` is a fixed time per work item
  on one SM, spread over the SMs: a GPU with ``S`` SMs (``SkuSpec.sm_count``) takes
  ``per_item_us * sms / S``, where ``sms`` is the SM count of the GPU it was fitted on.
- Collectives: a TP all-reduce of ``b`` bytes over ``n`` GPUs takes
  ``lat + 2 (n-1)/n * b / (eff * link)`` (ring), a PP send ``lat + b / (eff * link)``,
  with ``link`` the roofline's nominal bandwidth of the slowest hop.

Everything else (norms, activations, embedding, CPU, launch and sampling overheads) is the
roofline's, from ``RooflineParams``. Curves are fractions of the SKU's spec-sheet peak,
so an SKU without measurements uses the curves of its ``scaled_from`` SKU with its own
peak FLOP/s, bandwidth and SM count; an SKU or node missing from the file (a user catalogue) falls
back as ``Calibration.for_sku`` and ``Calibration.for_node`` describe.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from simulator import memory
from simulator.catalogue import load_catalogue
from simulator.catalogue.specs import ModelSpec, NodeSpec, SkuSpec
from simulator.errors import ConfigError
from simulator.execution.ep_floor import EpFloor, ep_floor_for, rank_seconds
from simulator.execution.roofline import RooflineModel, RooflineParams
from simulator.precision import BF16, Precision

CALIBRATION_PATH = Path(__file__).with_name("calibration.yaml")
FAMILIES = ("gemm", "attention_prefill", "attention_decode")
TP_DEGREES = (2, 4, 8)
_DEFAULT_PARAMS = RooflineParams()  # frozen: safe to share


def _field(path: str, raw: Mapping[str, Any], name: str, lo: float, hi: float) -> float:
    """``raw[name]`` as a float in [lo, hi], or ConfigError naming ``path.name``."""
    if name not in raw:
        raise ConfigError(f"{path}.{name}", None, "missing; every curve field is required")
    v = raw[name]
    if not isinstance(v, int | float) or isinstance(v, bool) or not lo <= v <= hi:
        raise ConfigError(f"{path}.{name}", v, f"must be a number in [{lo}, {hi}]")
    return float(v)


def _check_keys(path: str, raw: Any, names: tuple[str, ...]) -> None:
    if not isinstance(raw, Mapping):
        raise ConfigError(path, raw, "must be a mapping of " + ", ".join(names))
    for key in raw:
        if key not in names:
            raise ConfigError(
                f"{path}.{key}", raw[key], "unknown key; allowed: " + ", ".join(names)
            )


@dataclass(frozen=True)
class KernelCurve:
    """Runtime of one GEMM or prefill-attention kernel from its FLOPs and bytes."""

    e_flops: float  # asymptotic fraction of peak FLOP/s
    flops_half: float  # FLOPs where the compute efficiency is half of e_flops
    flops_exp: float  # steepness of the compute ramp, (0, 1]
    e_bytes: float  # asymptotic fraction of memory bandwidth
    bytes_half: float
    bytes_exp: float
    overlap: float  # share of the shorter of compute and memory time not hidden
    latency_us: float  # fixed GPU time per kernel

    @classmethod
    def from_dict(cls, path: str, raw: Any) -> KernelCurve:
        names = tuple(f.name for f in fields(cls))
        _check_keys(path, raw, names)
        return cls(
            e_flops=_field(path, raw, "e_flops", 1e-3, 1.0),
            flops_half=_field(path, raw, "flops_half", 0.0, 1e18),
            flops_exp=_field(path, raw, "flops_exp", 1e-3, 1.0),
            e_bytes=_field(path, raw, "e_bytes", 1e-3, 2.0),
            bytes_half=_field(path, raw, "bytes_half", 0.0, 1e15),
            bytes_exp=_field(path, raw, "bytes_exp", 1e-3, 1.0),
            overlap=_field(path, raw, "overlap", 0.0, 1.0),
            latency_us=_field(path, raw, "latency_us", 0.0, 1e4),
        )

    def seconds(self, flops: Any, nbytes: Any, peak: float, bw: float) -> Any:
        """Kernel time; ``flops`` and ``nbytes`` > 0, Python floats or numpy arrays."""
        c = flops * (1.0 + (self.flops_half / flops) ** self.flops_exp) / (peak * self.e_flops)
        m = nbytes * (1.0 + (self.bytes_half / nbytes) ** self.bytes_exp) / (bw * self.e_bytes)
        if isinstance(c, np.ndarray) or isinstance(m, np.ndarray):
            hi, lo = np.maximum(c, m), np.minimum(c, m)
        else:
            hi, lo = (c, m) if c >= m else (m, c)
        return self.latency_us * 1e-6 + hi + self.overlap * lo


@dataclass(frozen=True)
class DecodeCurve:
    """Runtime of one decode-attention kernel (linear in the context length)."""

    e_flops: float
    e_bytes: float
    bytes_half: float  # bytes-equivalent of the ramp: the kernel costs (B + bytes_half)
    per_item_us: float  # GPU time per (sequence, KV head on the GPU) work item ...
    sms: float  # ... on a GPU with this many SMs (the one the curve was fitted on)
    latency_us: float

    @classmethod
    def from_dict(cls, path: str, raw: Any) -> DecodeCurve:
        names = tuple(f.name for f in fields(cls))
        _check_keys(path, raw, names)
        return cls(
            e_flops=_field(path, raw, "e_flops", 1e-3, 1.0),
            e_bytes=_field(path, raw, "e_bytes", 1e-3, 2.0),
            bytes_half=_field(path, raw, "bytes_half", 0.0, 1e15),
            per_item_us=_field(path, raw, "per_item_us", 0.0, 1e3),
            sms=_field(path, raw, "sms", 1.0, 1e4),
            latency_us=_field(path, raw, "latency_us", 0.0, 1e4),
        )

    def item_seconds(self, sm_count: int) -> float:
        """Time per work item on a GPU with ``sm_count`` SMs: the fixed work of one item
        runs on one SM, so more SMs do more items at once. ``sm_count`` 0 (unknown) keeps
        the fitted GPU's figure."""
        return self.per_item_us * 1e-6 * (self.sms / sm_count if sm_count > 0 else 1.0)

    def seconds(self, flops: Any, nbytes: Any, items: Any, peak: float, bw: float,
                sm_count: int = 0) -> Any:
        """Kernel time for ``items`` >= 1 (sequence, KV head) pairs (numpy arrays allowed)
        on a GPU with ``sm_count`` SMs (0: as fitted)."""
        c = flops / (peak * self.e_flops)
        m = (nbytes + self.bytes_half) / (bw * self.e_bytes)
        both = np.maximum(c, m) if isinstance(c, np.ndarray) or isinstance(m, np.ndarray) \
            else max(c, m)
        return self.latency_us * 1e-6 + self.item_seconds(sm_count) * items + both


@dataclass(frozen=True)
class LinkFit:
    """A collective's fixed time and its efficiency against the nominal hop bandwidth."""

    latency_us: float
    efficiency: float

    @classmethod
    def from_dict(cls, path: str, raw: Any) -> LinkFit:
        _check_keys(path, raw, ("latency_us", "efficiency"))
        return cls(
            _field(path, raw, "latency_us", 0.0, 1e5), _field(path, raw, "efficiency", 1e-4, 10.0)
        )


@dataclass(frozen=True)
class SkuCalibration:
    """The three kernel curves of one SKU (own measurements or ``scaled_from``'s)."""

    name: str
    gemm: KernelCurve
    attention_prefill: KernelCurve
    attention_decode: DecodeCurve
    scaled_from: str = ""  # "" = fitted on this SKU's own measurements


@dataclass(frozen=True)
class NodeCalibration:
    """All-reduce fits per TP degree and PP send fits inside / across nodes."""

    name: str
    allreduce: Mapping[int, LinkFit]
    send_intra_node: LinkFit
    send_inter_node: LinkFit
    scaled_from: str = ""

    def allreduce_fit(self, tp: int) -> LinkFit:
        """The fit for ``tp`` GPUs: measured, else the largest measured degree below it,
        else the smallest measured one."""
        if tp in self.allreduce:
            return self.allreduce[tp]
        below = [n for n in self.allreduce if n < tp]
        return self.allreduce[max(below) if below else min(self.allreduce)]


@dataclass(frozen=True)
class Calibration:
    """Everything in one ``calibration.yaml``."""

    skus: Mapping[str, SkuCalibration]
    nodes: Mapping[str, NodeCalibration]
    topology_defaults: Mapping[str, str]  # topology -> node entry for unlisted nodes
    path: str = ""

    def for_sku(self, sku: SkuSpec) -> SkuCalibration:
        """``sku``'s entry; an SKU the file does not list takes the curves of the measured
        SKU (one without ``scaled_from``) closest in machine balance, i.e. in
        ``log(peak FLOP/s / bandwidth)``, the ratio that sets where kernels turn from
        memory- to compute-bound."""
        if sku.name in self.skus:
            return self.skus[sku.name]
        measured = [s for s in self.skus.values() if not s.scaled_from]
        if not measured:
            raise ConfigError("sku", sku.name, f"{self.path} lists no measured SKU to scale from")
        cat = load_catalogue()

        def balance(spec: SkuSpec) -> float:
            return math.log(spec.bf16_tflops * 1e3 / spec.mem_bw_gbps)

        target = balance(sku)
        known = [s for s in measured if s.name in cat.skus]
        if not known:
            raise ConfigError("sku", sku.name, f"{self.path}: no measured SKU in the catalogue")
        return min(known, key=lambda s: (abs(balance(cat.skus[s.name]) - target), s.name))

    def for_node(self, node: NodeSpec) -> NodeCalibration:
        """``node``'s entry; a node the file does not list takes the entry named for its
        topology in ``topology_defaults``."""
        if node.name in self.nodes:
            return self.nodes[node.name]
        name = self.topology_defaults.get(node.topology)
        if name is None or name not in self.nodes:
            raise ConfigError(
                "node.topology", node.topology,
                f"{self.path}: topology_defaults names no node entry for it",
            )
        return self.nodes[name]


def _parse(raw: Any, path: str) -> Calibration:
    _check_keys(path, raw, ("skus", "nodes", "topology_defaults"))
    skus: dict[str, SkuCalibration] = {}
    for name, entry in (raw.get("skus") or {}).items():
        p = f"{path}: skus.{name}"
        _check_keys(p, entry, (*FAMILIES, "scaled_from", "source"))
        for fam in FAMILIES:
            if fam not in entry:
                raise ConfigError(f"{p}.{fam}", None, "missing; each SKU needs " + ", ".join(
                    FAMILIES))
        skus[name] = SkuCalibration(
            name,
            KernelCurve.from_dict(f"{p}.gemm", entry["gemm"]),
            KernelCurve.from_dict(f"{p}.attention_prefill", entry["attention_prefill"]),
            DecodeCurve.from_dict(f"{p}.attention_decode", entry["attention_decode"]),
            str(entry.get("scaled_from", "")),
        )
    nodes: dict[str, NodeCalibration] = {}
    for name, entry in (raw.get("nodes") or {}).items():
        p = f"{path}: nodes.{name}"
        _check_keys(p, entry, ("allreduce", "send_recv", "scaled_from", "source"))
        ar = entry.get("allreduce")
        if not isinstance(ar, Mapping) or not ar:
            raise ConfigError(f"{p}.allreduce", ar, "must map TP degrees (2, 4, 8) to fits")
        for tp in ar:
            if tp not in TP_DEGREES:
                raise ConfigError(f"{p}.allreduce.{tp}", tp, "TP degree must be 2, 4 or 8")
        sr = entry.get("send_recv")
        _check_keys(f"{p}.send_recv", sr, ("intra_node", "inter_node"))
        nodes[name] = NodeCalibration(
            name,
            {int(tp): LinkFit.from_dict(f"{p}.allreduce.{tp}", v) for tp, v in ar.items()},
            LinkFit.from_dict(f"{p}.send_recv.intra_node", sr.get("intra_node")),
            LinkFit.from_dict(f"{p}.send_recv.inter_node", sr.get("inter_node")),
            str(entry.get("scaled_from", "")),
        )
    defaults = dict(raw.get("topology_defaults") or {})
    return Calibration(skus, nodes, defaults, path)


@cache
def load_calibration(path: str | None = None) -> Calibration:
    """Parse and check a calibration file (default: the packaged ``calibration.yaml``)."""
    p = Path(path) if path else CALIBRATION_PATH
    try:
        raw = yaml.safe_load(p.read_text())
    except OSError as e:
        raise ConfigError("calibration", str(p), f"cannot be read: {e}") from e
    return _parse(raw, p.name)


class CalibratedModel(RooflineModel):
    """``RooflineModel`` whose GEMM, attention and collective costs come from the fitted
    curves of ``calibration`` (default: the packaged file) for ``sku`` and ``node``.

    Per layer and GPU, every GEMM (QKV, O, MLP up and down, MoE router, LM head) is one
    kernel of ``m = tokens`` rows through ``KernelCurve`` (MoE experts: one grouped kernel
    over the routed tokens and the used experts' weights; with expert parallelism the
    per-rank floor plus ``1 / ep`` of the group's all-experts kernels, ``_ep_moe``);
    prefill attention is one kernel over all prefill chunks of the batch; decode attention
    one ``DecodeCurve`` kernel over all decodes. Costs that depend only on the token
    counts are memoised per count.

    ``precision`` as in ``RooflineModel``: FP8 weights put the layers' GEMM kernels at the
    SKU's fp8 peak with one byte per weight (the curve fitted on bf16 GEMMs is assumed to
    hold as a fraction of the fp8 peak); an FP8 KV cache halves the KV bytes of both
    attention kernels.
    """

    def __init__(
        self,
        model: ModelSpec,
        sku: SkuSpec,
        node: NodeSpec,
        tp: int,
        pp: int,
        params: RooflineParams = _DEFAULT_PARAMS,
        calibration: Calibration | None = None,
        precision: Precision = BF16,
    ) -> None:
        cal = calibration if calibration is not None else load_calibration()
        self.calibration = cal
        self.sku_calibration = cal.for_sku(sku)
        self.node_calibration = cal.for_node(node)
        self._gemm_cache: dict[int, tuple[float, float, float]] = {}
        self._lm_cache: dict[int, float] = {}
        self._ep_cache: dict[tuple, float] = {}  # (ep, T, Tg) -> ``_ep_moe``
        self._floor: EpFloor | None = None  # the per-rank EP floor (``_ep_floor``)
        dt = model.dtype_bytes
        self._peak = (sku.fp8_tflops if dt == 1 and sku.fp8_tflops > 0 else sku.bf16_tflops) * 1e12
        self._wdt = precision.weight_bytes(model)
        self._gemm_peak = (sku.fp8_tflops * 1e12 if self._wdt == 1 and sku.fp8_tflops > 0
                           else self._peak)
        self._bw = sku.mem_bw_gbps * 1e9
        super().__init__(model, sku, node, tp, pp, params, precision)  # calls the hooks below
        kdt = precision.kv_bytes(model)
        heads = model.num_heads / tp
        hd = model.head_size
        kv = memory.kv_heads_per_gpu(model, tp) * hd
        q = heads * hd
        # Prefill attention: FLOPs per unit of sum c (2p + c + 1); bytes per KV token read
        # and per Q/O token.
        self._ap_flops = 2.0 * heads * hd
        self._kv_bytes = 2.0 * kv * kdt
        self._qo_bytes = 2.0 * q * dt
        # Decode attention, as coefficients of (Lsum, D) so it stays + - * / and xmax.
        dc = self.sku_calibration.attention_decode
        self._dc_f = 4.0 * heads * hd / (self._peak * dc.e_flops)
        mem = self._bw * dc.e_bytes
        self._dc_kv = self._kv_bytes / mem
        self._dc_qo = self._qo_bytes / mem
        self._dc_half = dc.bytes_half / mem
        self._dc_lat = dc.latency_us * 1e-6
        self._dc_seq = dc.item_seconds(sku.sm_count) * memory.kv_heads_per_gpu(model, tp)

    kind = "calibrated"

    def label(self) -> str:
        sc, nc = self.sku_calibration, self.node_calibration
        curves = sc.scaled_from or sc.name
        scaled = (f", scaled to {self.sku.name}'s spec sheet" if curves != self.sku.name
                  else "")
        links = nc.scaled_from or nc.name
        return (f"calibrated (kernel curves fitted on {curves}{scaled}; collectives fitted "
                f"on {links}; other parts roofline)")

    # ------------------------------------------------------------------ collectives
    def _allreduce_terms(self) -> tuple[float, float]:
        tp = self.tp
        if tp == 1:
            return 0.0, 0.0
        fit = self.node_calibration.allreduce_fit(tp)
        h, dt = self.model.hidden_size, self.model.dtype_bytes
        return 2 * (tp - 1) / tp * h * dt / (self._tp_link * fit.efficiency), fit.latency_us * 1e-6

    def _send_terms(self) -> list[tuple[float, float]]:
        tok = self.model.hidden_size * self.model.dtype_bytes
        gpn, tp = self.node.gpus_per_node, self.tp
        out = []
        for s in range(self.pp - 1):
            crosses = any((s * tp + i) // gpn != ((s + 1) * tp + i) // gpn for i in range(tp))
            fit = self.node_calibration.send_inter_node if crosses \
                else self.node_calibration.send_intra_node
            out.append((tok / (self._pp_link_bw(s) * fit.efficiency), fit.latency_us * 1e-6))
        return out

    # ------------------------------------------------------------------ kernels
    def _gemm(self, m: float, k: float, n: float, weights: float = 1.0,
              quantised: bool = True) -> float:
        """One GEMM kernel: ``m`` rows times ``weights`` weight matrices of ``k x n``;
        ``quantised``: a layer linear (weights in ``precision.weights``), else in the
        checkpoint's dtype (router, LM head)."""
        dt = self.model.dtype_bytes
        flops = 2.0 * m * k * n
        if quantised and self._wdt != dt:
            nbytes = self._wdt * weights * k * n + dt * m * (k + n)
            return self.sku_calibration.gemm.seconds(flops, nbytes, self._gemm_peak, self._bw)
        nbytes = dt * (weights * k * n + m * (k + n))
        return self.sku_calibration.gemm.seconds(flops, nbytes, self._peak, self._bw)

    def _gemms(self, T, xmax: Callable) -> tuple:
        cached = self._gemm_cache.get(T)
        if cached is not None:
            return cached
        m, t = self.model, float(T)
        h, tp = m.hidden_size, self.tp
        hd = m.head_size
        q = m.num_heads / tp * hd
        kv = memory.kv_heads_per_gpu(m, tp) * hd
        f = m.ffn_size / tp
        up = (2 if m.gated_mlp else 1) * f
        qkv = self._gemm(t, h, q + 2 * kv)
        o = self._gemm(t, q, h)
        if m.is_moe:
            r = t * m.experts_top_k
            used = min(float(m.num_experts), r)
            mlp = (
                self._gemm(t, h, m.num_experts, quantised=False)
                + self._gemm(r, h, up, used)
                + self._act * r
                + self._gemm(r, f, h, used)
            )
        else:
            mlp = self._gemm(t, h, up) + self._act * t + self._gemm(t, f, h)
        out = (qkv, o, mlp)
        self._gemm_cache[T] = out
        return out

    def _ep_moe(self, T, Tg, xmax: Callable):
        """One MoE layer on this GPU under expert parallelism, through the GEMM curve as
        the MoE of ``_gemms``: the router kernel on the rank's ``T`` tokens, then the
        experts. At ``ep = 1``: one grouped kernel each for the up and down projections
        over the ``Tg * top_k`` routed tokens, reading the weights of ``min(num_experts,
        routed)`` experts. At ``ep > 1`` every rank routes and permutes all the group's
        slots: the per-rank floor ``F(Tg)`` (:mod:`~simulator.execution.ep_floor`, fitted
        on measured EP ranks) plus ``1 / ep`` of the all-experts kernels above it
        (``experiments/EP_SCALING.md``: 16.2% median error, in-sample, against 49.9% for
        the GPU's experts over their share of the routed tokens alone). ``T`` and ``Tg`` may be
        numpy arrays (the profiled model tabulates it); for Python numbers the result is
        memoised per (ep, T, Tg)."""
        m, ep = self.model, self._ep
        key = None if isinstance(T, np.ndarray) or isinstance(Tg, np.ndarray) else (ep, T, Tg)
        if key is not None:
            cached = self._ep_cache.get(key)
            if cached is not None:
                return cached
        h, fe = m.hidden_size, m.ffn_size
        up = (2 if m.gated_mlp else 1) * fe

        def experts(R, used):  # up and down over R routed tokens reading ``used`` experts
            return self._gemm(R, h, up, used) + self._eact * R + self._gemm(R, fe, h, used)

        router = self._gemm(T, h, m.num_experts, quantised=False)
        if ep == 1:
            R = Tg * m.experts_top_k  # routed tokens on this GPU
            out = router + experts(R, -xmax(-m.num_experts, -R))
        else:  # the per-rank floor plus 1 / ep of the all-experts layer above it
            Rg = Tg * m.experts_top_k
            t1 = experts(Rg, -xmax(-m.num_experts, -Rg))
            F = self._ep_floor().seconds(Tg, m.experts_top_k, h)
            out = router + rank_seconds(t1, F, ep, xmax)
        if key is not None:
            self._ep_cache[key] = out
        return out

    def _ep_floor(self) -> EpFloor:
        """This SKU's per-rank EP floor (loaded once)."""
        if self._floor is None:
            self._floor = ep_floor_for(self.sku)
        return self._floor

    def _lm_head(self, S, xmax: Callable):
        cached = self._lm_cache.get(S)
        if cached is None:
            cached = self._gemm(float(S), self.model.hidden_size, self.model.vocab_size / self.tp,
                                quantised=False)
            self._lm_cache[S] = cached
        return cached

    def _attention(self, units, Tp, pkv, D, Lsum, xmax: Callable) -> tuple:
        if Tp:
            ap = self.sku_calibration.attention_prefill.seconds(
                self._ap_flops * units,
                self._kv_bytes * pkv + self._qo_bytes * Tp,
                self._peak,
                self._bw,
            )
        else:
            ap = 0.0
        if D:
            ad = (
                xmax(self._dc_f * Lsum, self._dc_kv * Lsum + self._dc_qo * D + self._dc_half)
                + (self._dc_lat + self._dc_seq * D)
            )
        else:
            ad = 0.0
        return ap, ad


__all__ = [
    "CALIBRATION_PATH",
    "CalibratedModel",
    "Calibration",
    "DecodeCurve",
    "KernelCurve",
    "LinkFit",
    "NodeCalibration",
    "SkuCalibration",
    "load_calibration",
]
