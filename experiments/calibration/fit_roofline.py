"""Fit the calibrated roofline's constants from the public GPU measurements.

    python experiments/calibration/fit_roofline.py [--reference DIR] [--out FILE]

Reads ``../shared/reference`` (aiconfigurator's vLLM operator tables and Vidur's
profiles) directly and writes ONLY the fitted constants to
``simulator/execution/calibration.yaml``: per SKU the GEMM, prefill-attention and
decode-attention curves of ``simulator.execution.calibrated``, per catalogue node the
all-reduce and send/recv fits. Fits minimise a loss on the log error (relative error)
with a small Levenberg-Marquardt in numpy: GEMM and prefill-attention curves a soft-L1
loss (``ROBUST_SCALE``), everything else the squared log error. The functions here are
reused by ``cross_sku.py``.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.catalogue import load_catalogue
from simulator.catalogue.specs import NodeSpec
from simulator.execution.calibrated import (
    CALIBRATION_PATH,
    TP_DEGREES,
    DecodeCurve,
    KernelCurve,
    LinkFit,
    load_calibration,
)
from simulator.execution.roofline import RooflineModel

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"
DT = 2  # bf16 / fp16 bytes
# Soft-L1 scale of the GEMM and prefill-attention fits, in log time (about 10%): errors
# below it count as squares, larger ones grow only linearly. The figure reported is the
# median error, and a few kernel paths far off the curve (1-token prefills that run the
# decode kernel, vendor heuristics at odd shapes) should not pull the whole curve.
ROBUST_SCALE = 0.1

# Catalogue SKU -> (aiconfigurator system, Vidur compute folder or None).
MEASURED_SKUS: dict[str, tuple[str, str | None]] = {
    "a100-80gb": ("a100_sxm", "a100"),
    "h100-sxm": ("h100_sxm", "h100"),
    "h200": ("h200_sxm", None),
    "b200": ("b200_sxm", None),
}
# SKUs without measurements -> the measured SKU whose curves they take (same kernel
# family: the tensor-core generation decides which GEMM and attention kernels run).
SCALED_SKUS: dict[str, tuple[str, str]] = {
    "a100-40gb": ("a100-80gb", "same GA100 chip and kernels, own HBM bandwidth"),
    "a10g": ("a100-80gb", "Ampere (sm_86): the same mma.sync GEMMs and FlashAttention-2"),
    "l40s": ("a100-80gb", "Ada (sm_89) runs Ampere-style mma.sync kernels and "
             "FlashAttention-2, not Hopper's wgmma/FA3"),
    "rtx-4090": ("a100-80gb", "Ada (sm_89) runs Ampere-style mma.sync kernels and "
                 "FlashAttention-2, not Hopper's wgmma/FA3"),
    "rtx-pro-6000": ("a100-80gb", "GB202 Blackwell (sm_120) has neither wgmma nor tcgen05: "
                     "mma.sync-class GEMMs and FlashAttention-2, as on Ampere"),
}
# Catalogue node -> (source kind, source name) for the all-reduce fits.
# aic: aiconfigurator custom_allreduce_perf graph rows (vLLM's TP all-reduce under CUDA
# graphs); vidur: Vidur's profiling/network all_reduce.csv (NCCL), rows inside one node.
ALLREDUCE_SOURCES: dict[str, tuple[str, str]] = {
    "dgx-a100": ("aic", "a100_sxm"),
    "hgx-h100": ("aic", "h100_sxm"),
    "hgx-h200": ("aic", "h200_sxm"),
    "hgx-b200": ("aic", "b200_sxm"),
    "a100-pairwise-nvlink": ("vidur", "a100_pairwise_nvlink"),
    "h100-pairwise-nvlink": ("vidur", "h100_pairwise_nvlink"),
}
# Catalogue node -> Vidur network folder with send_recv.csv.
SEND_SOURCES: dict[str, str] = {
    "dgx-a100": "a100_dgx",
    "hgx-h100": "h100_dgx",
    "a100-pairwise-nvlink": "a100_pairwise_nvlink",
    "h100-pairwise-nvlink": "h100_pairwise_nvlink",
}
# Nodes without (some) measurements -> node whose efficiencies and latencies they take.
SCALED_NODES: dict[str, tuple[str, str]] = {
    "dgx-a100-40gb": ("dgx-a100", "same DGX A100 chassis, NVSwitch and network"),
    "l40s-pcie": ("a100-pairwise-nvlink", "PCIe ring: its 4-GPU all-reduce crosses PCIe"),
    "a10g-pcie": ("a100-pairwise-nvlink", "PCIe ring: its 4-GPU all-reduce crosses PCIe"),
    "rtx-4090-pcie": ("a100-pairwise-nvlink", "PCIe ring: its 4-GPU all-reduce crosses PCIe"),
    "rtx-pro-6000-pcie": ("a100-pairwise-nvlink",
                          "PCIe ring: its 4-GPU all-reduce crosses PCIe"),
}
SEND_SCALED: dict[str, str] = {"hgx-h200": "hgx-h100", "hgx-b200": "hgx-h100"}
TOPOLOGY_DEFAULTS = {
    "nvswitch": "hgx-h100",
    "pairwise_nvlink": "a100-pairwise-nvlink",
    "pcie": "l40s-pcie",
}


# ---------------------------------------------------------------------------- data
def _check(path: Path) -> Path:
    if not path.exists():
        sys.exit(f"missing reference file {path} (is ../shared/reference present?)")
    return path


def gemm_rows(ref: Path, sku: str) -> pd.DataFrame:
    """bf16 GEMMs of ``sku``: aiconfigurator gemm_perf plus Vidur mlp.csv GEMM ops.

    Columns: flops, bytes, t (s), source, weight (each source sums to 1)."""
    system, vidur = MEASURED_SKUS[sku]
    d = pd.read_parquet(_check(ref / "aiconfigurator" / system / "gemm" / "gemm_perf.parquet"))
    d = d[d.gemm_dtype == "bfloat16"]
    m, n, k = (d[c].to_numpy(float) for c in "mnk")
    parts = [pd.DataFrame({
        "flops": 2 * m * n * k, "bytes": DT * (m * k + n * k + m * n),
        "t": d.latency.to_numpy() * 1e-3, "source": "aiconfigurator", "m": m, "n": n, "k": k,
    })]
    if vidur:
        parts.append(vidur_gemm_rows(ref, vidur))
    out = pd.concat(parts, ignore_index=True)
    out["weight"] = 1.0 / out.groupby("source").t.transform("size")
    return out


def vidur_gemm_rows(ref: Path, folder: str) -> pd.DataFrame:
    """QKV, O, MLP up and down GEMMs of every model in Vidur's ``compute/<folder>``."""
    files = sorted((ref / "vidur" / "profiling" / "compute" / folder).glob("*/*/mlp.csv"))
    if not files:
        sys.exit(f"no Vidur mlp.csv under {ref / 'vidur/profiling/compute' / folder}")
    rows = []
    for f in files:
        d = pd.read_csv(f)
        tp = d.num_tensor_parallel_workers.to_numpy()
        h = d.n_embd.to_numpy()
        hd = h // d.n_head.to_numpy()
        q = h // tp
        kv = np.maximum(d.n_kv_head.to_numpy() // tp, 1) * hd
        ffn = d.n_expanded_embd.to_numpy() // tp
        up = np.where(d.use_gated_mlp.to_numpy(), 2, 1) * ffn
        for op, n, k in (("attn_pre_proj", q + 2 * kv, h), ("attn_post_proj", h, q),
                         ("mlp_up_proj", up, h), ("mlp_down_proj", h, ffn)):
            m = d.num_tokens.to_numpy(float)
            n, k = n.astype(float), k.astype(float)
            rows.append(pd.DataFrame({
                "flops": 2 * m * n * k, "bytes": DT * (m * k + n * k + m * n),
                "t": d[f"time_stats.{op}.median"].to_numpy() * 1e-3, "source": "vidur",
                "m": m, "n": n, "k": k,
            }))
    return pd.concat(rows, ignore_index=True)


def _attention_table(ref: Path, sku: str, kind: str) -> pd.DataFrame:
    system = MEASURED_SKUS[sku][0]
    name = f"{kind}_attention_perf.parquet"
    d = pd.read_parquet(_check(ref / "aiconfigurator" / system / "attention" / name))
    keep = (d.kv_cache_dtype == "bfloat16") & (d.attn_dtype == "bfloat16") & (d.head_dim == 128)
    if "window_size" in d:
        keep &= d.window_size == 0
    # Every catalogue model has >= 4 query heads per GPU at TP <= 8; 1-2 heads per GPU
    # run a different (low-occupancy) regime the simulator never asks for.
    keep &= d.num_heads >= 4
    d = d[keep]
    keys = ["batch_size", "isl", "step", "num_heads", "num_key_value_heads", "head_dim"]
    return d.drop_duplicates(keys)  # A100's context table repeats some keys


def prefill_rows(ref: Path, sku: str) -> pd.DataFrame:
    """Context attention of ``b`` prompts of ``s`` tokens (no cache): the simulator's
    features are units = s (s + 1) per prompt, KV and Q/O of ``b * s`` tokens."""
    d = _attention_table(ref, sku, "context")
    b, s, h, g, hd = (d[c].to_numpy(float) for c in
                      ("batch_size", "isl", "num_heads", "num_key_value_heads", "head_dim"))
    return pd.DataFrame({
        "flops": 2 * h * hd * b * s * (s + 1),
        "bytes": b * s * (2 * g * hd * DT + 2 * h * hd * DT),
        "t": d.latency.to_numpy() * 1e-3, "source": "aiconfigurator", "weight": 1.0 / len(d),
        "b": b, "s": s, "h": h, "g": g,
    })


def decode_rows(ref: Path, sku: str) -> pd.DataFrame:
    """Generation attention of ``b`` sequences attending ``L = isl + step`` tokens."""
    d = _attention_table(ref, sku, "generation")
    b, h, g, hd = (d[c].to_numpy(float) for c in
                   ("batch_size", "num_heads", "num_key_value_heads", "head_dim"))
    L = (d.isl + d.step).to_numpy(float)
    return pd.DataFrame({
        "flops": 4 * h * hd * b * L,
        "bytes": b * L * 2 * g * hd * DT + b * 2 * h * hd * DT,
        "items": b * g, "t": d.latency.to_numpy() * 1e-3, "source": "aiconfigurator",
        "weight": 1.0 / len(d), "b": b, "L": L, "h": h, "g": g,
    })


# ---------------------------------------------------------------------------- fitting
def _sig(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def levenberg_marquardt(
    residuals: Callable[[np.ndarray], np.ndarray], theta: np.ndarray, iters: int = 200
) -> tuple[np.ndarray, float]:
    """Minimise ``sum(residuals(theta) ** 2)``; forward-difference Jacobian."""
    theta = np.asarray(theta, dtype=float)
    r = residuals(theta)
    cost = float(r @ r)
    lam = 1e-3
    for _ in range(iters):
        J = np.empty((r.size, theta.size))
        for i in range(theta.size):
            step = np.zeros_like(theta)
            step[i] = 1e-6
            J[:, i] = (residuals(theta + step) - r) / 1e-6
        A, g = J.T @ J, J.T @ r
        improved = False
        while lam < 1e10:
            delta = np.linalg.solve(A + lam * (np.diag(np.diag(A)) + 1e-9 * np.eye(theta.size)),
                                    -g)
            r2 = residuals(theta + delta)
            c2 = float(r2 @ r2)
            if np.isfinite(c2) and c2 < cost:
                theta, r, lam, improved = theta + delta, r2, max(lam / 3, 1e-9), True
                done = cost - c2 < 1e-9 * cost
                cost = c2
                break
            lam *= 4
        if not improved or done:
            break
    return theta, cost


def soft_l1(r: np.ndarray, scale: float) -> np.ndarray:
    """Residuals whose squares sum to the soft-L1 loss ``2 s^2 (sqrt(1 + (r/s)^2) - 1)``
    of ``r`` (least squares when ``scale`` is 0)."""
    if scale <= 0:
        return r
    return np.sign(r) * np.sqrt(2 * scale * scale * (np.sqrt(1 + (r / scale) ** 2) - 1))


def _kernel_curve(th: np.ndarray) -> KernelCurve:
    s = _sig(th)
    return KernelCurve(
        e_flops=float(0.02 + 0.98 * s[0]), flops_half=float(10 ** (3 + 13 * s[1])),
        flops_exp=float(0.05 + 0.95 * s[2]), e_bytes=float(0.02 + 0.98 * s[3]),
        bytes_half=float(10 ** (2 + 10 * s[4])), bytes_exp=float(0.05 + 0.95 * s[5]),
        overlap=float(s[6]), latency_us=float(100 * s[7]),
    )


def _decode_curve(th: np.ndarray, e_flops: float, sms: int) -> DecodeCurve:
    s = _sig(th)
    return DecodeCurve(
        e_flops=e_flops, e_bytes=float(0.02 + 0.98 * s[0]),
        bytes_half=float(10 ** (12 * s[1])), per_item_us=float(10 * s[2]), sms=float(sms),
        latency_us=float(100 * s[3]),
    )


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def fit_kernel(
    rows: pd.DataFrame, peak: float, bw: float, flat_memory: bool = False,
    loss_scale: float = ROBUST_SCALE,
) -> KernelCurve:
    """Best ``KernelCurve`` for ``rows`` (flops, bytes, t, weight) on a peak/bw device,
    under the soft-L1 loss of scale ``loss_scale`` on the log error (0: least squares);
    ``flat_memory`` fixes the memory efficiency to a constant (``bytes_half = 0``)."""
    F, B, t = rows.flops.to_numpy(), rows.bytes.to_numpy(), rows.t.to_numpy()
    w = np.sqrt(rows.weight.to_numpy() / rows.weight.mean())
    logt = np.log(t)

    def curve(th: np.ndarray) -> KernelCurve:
        c = _kernel_curve(th)
        return replace(c, bytes_half=0.0, bytes_exp=1.0) if flat_memory else c

    def res(th: np.ndarray) -> np.ndarray:
        return w * soft_l1(np.log(curve(th).seconds(F, B, peak, bw)) - logt, loss_scale)

    best = None
    # Starts: (e_f, log10 F_half, a_f, e_b, log10 B_half, a_b, overlap, latency_us).
    for start in ((0.8, 10, 0.7, 0.8, 7, 0.7, 0.2, 3), (0.6, 8, 0.4, 0.5, 6, 0.4, 0.5, 8),
                  (0.9, 11, 0.95, 0.9, 8, 0.95, 0.05, 1)):
        th0 = np.array([
            _logit((start[0] - 0.02) / 0.98), _logit((start[1] - 3) / 13),
            _logit((start[2] - 0.05) / 0.95), _logit((start[3] - 0.02) / 0.98),
            _logit((start[4] - 2) / 10), _logit((start[5] - 0.05) / 0.95),
            _logit(start[6]), _logit(start[7] / 100),
        ])
        th, cost = levenberg_marquardt(res, th0)
        if best is None or cost < best[1]:
            best = (th, cost)
    return curve(best[0])


def fit_decode(
    rows: pd.DataFrame, peak: float, bw: float, e_flops: float, sms: int
) -> DecodeCurve:
    """Best ``DecodeCurve`` on a GPU with ``sms`` SMs (compute efficiency fixed to
    ``e_flops``: never binding), by least squares on the log error. Not the soft-L1 loss:
    with one SKU the fixed cost of small kernels can sit in ``latency_us`` (the same on
    every SKU) or in ``bytes_half`` (scaled by bandwidth) at almost the same loss, and
    under soft-L1 the fit flips between the two with the loss scale and the start
    (docs/calibration.md, Accuracy)."""
    F, B, S, t = (rows[c].to_numpy() for c in ("flops", "bytes", "items", "t"))
    w = np.sqrt(rows.weight.to_numpy() / rows.weight.sum())
    logt = np.log(t)

    def res(th: np.ndarray) -> np.ndarray:
        c = _decode_curve(th, e_flops, sms)
        return w * (np.log(c.seconds(F, B, S, peak, bw, sms)) - logt)

    best = None
    for start in ((0.8, 6.5, 0.02, 10), (0.6, 4, 0.1, 5), (0.9, 8, 0.005, 15)):
        th0 = np.array([_logit((start[0] - 0.02) / 0.98), _logit(start[1] / 12),
                        _logit(start[2] / 10), _logit(start[3] / 100)])
        th, cost = levenberg_marquardt(res, th0)
        if best is None or cost < best[1]:
            best = (th, cost)
    return _decode_curve(best[0], e_flops, sms)


@dataclass
class SkuFit:
    gemm: KernelCurve
    attention_prefill: KernelCurve
    attention_decode: DecodeCurve


def fit_sku(ref: Path, sku: str, gemm_sources: tuple[str, ...] = ()) -> SkuFit:
    """The three curves of one measured SKU, on its own peak FLOP/s and bandwidth
    (GEMM rows of ``gemm_sources`` only, when given). Prefill attention is compute-bound
    wherever it matters, so its memory efficiency is one constant."""
    spec = load_catalogue().sku(sku)
    peak, bw = spec.bf16_tflops * 1e12, spec.mem_bw_gbps * 1e9
    rows = gemm_rows(ref, sku)
    if gemm_sources:
        rows = rows[rows.source.isin(gemm_sources)]
    gemm = fit_kernel(rows, peak, bw)
    prefill = fit_kernel(prefill_rows(ref, sku), peak, bw, flat_memory=True)
    decode = fit_decode(decode_rows(ref, sku), peak, bw, prefill.e_flops, spec.sm_count)
    return SkuFit(gemm, prefill, decode)


# ---------------------------------------------------------------------------- collectives
def allreduce_rows(ref: Path, node: str) -> pd.DataFrame:
    """All-reduce rows of ``node`` (bytes, tp, t) from its source in ALLREDUCE_SOURCES."""
    kind, name = ALLREDUCE_SOURCES[node]
    if kind == "aic":
        d = pd.read_parquet(_check(ref / "aiconfigurator" / name / "comm" /
                                   "custom_allreduce_perf.parquet"))
        d = d[d.backend == "vllm_graph"]
        return pd.DataFrame({"bytes": d.message_size.to_numpy(float) * DT,
                             "tp": d.num_gpus.to_numpy(), "t": d.latency.to_numpy() * 1e-3})
    return vidur_allreduce_rows(ref, name)


def vidur_allreduce_rows(ref: Path, folder: str) -> pd.DataFrame:
    """Vidur all_reduce.csv rows with every worker on one node. ``size`` is in bytes
    (Vidur's collectives_wrapper.py writes ``size * 2  # bytes`` of an fp16 buffer)."""
    d = pd.read_csv(_check(ref / "vidur" / "profiling" / "network" / folder / "all_reduce.csv"))
    d = d[d.num_workers == d.devices_per_node]
    return pd.DataFrame({"bytes": d["size"].to_numpy(float), "tp": d.num_workers.to_numpy(),
                         "t": d["time_stats.all_reduce.median"].to_numpy() * 1e-3})


def send_rows(ref: Path, folder: str, inter_node: bool) -> pd.DataFrame:
    """Vidur send_recv.csv rows: 2 GPUs on one node, or on two nodes (``inter_node``)."""
    d = pd.read_csv(_check(ref / "vidur" / "profiling" / "network" / folder / "send_recv.csv"))
    d = d[d.devices_per_node == (1 if inter_node else 2)]
    return pd.DataFrame({"bytes": d["size"].to_numpy(float),
                         "t": d["time_stats.send_recv.median"].to_numpy() * 1e-3})


def fit_link(bytes_: np.ndarray, t: np.ndarray, factor: float, link_bw: float) -> LinkFit:
    """``t = lat + factor * bytes / (eff * link_bw)`` by least squares on log time."""
    logt = np.log(t)

    def model(th: np.ndarray) -> np.ndarray:
        return 1e-6 * math.exp(th[0]) + factor * bytes_ / (math.exp(th[1]) * link_bw)

    def res(th: np.ndarray) -> np.ndarray:
        return np.log(model(th)) - logt

    th, _ = levenberg_marquardt(res, np.array([math.log(10.0), math.log(0.5)]))
    return LinkFit(latency_us=math.exp(th[0]), efficiency=math.exp(th[1]))


def link_seconds(fit: LinkFit, bytes_: np.ndarray, factor: float, link_bw: float) -> np.ndarray:
    return fit.latency_us * 1e-6 + factor * bytes_ / (fit.efficiency * link_bw)


def hop_bandwidths(node: NodeSpec, tp: int) -> tuple[float, float, float]:
    """(TP ring slowest hop, PP send hop inside a node, across nodes) in bytes/s, by the
    roofline's own rules (``RooflineModel._tp_link_bw`` / ``_pp_link_bw``)."""
    cat = load_catalogue()
    model = cat.model("llama-2-7b")
    r = RooflineModel(model, cat.sku(node.sku), node, tp, 1)
    # A send between GPUs 0 and 1 (as Vidur measured it): NVLink on NVSwitch and
    # pairwise-NVLink nodes, PCIe on PCIe nodes.
    intra = cat.sku(node.sku).link_bw_gbps * 1e9 if node.topology != "pcie" \
        else node.pcie_bw_gbps * 1e9
    return r._tp_link_bw(), intra, node.inter_node_bw_gbps * 1e9


@dataclass
class NodeFit:
    allreduce: dict[int, LinkFit]
    intra: LinkFit
    inter: LinkFit
    source: str
    scaled_from: str = ""


def fit_nodes(ref: Path) -> dict[str, NodeFit]:
    """All-reduce and send/recv fits for every catalogue node (measured or scaled)."""
    cat = load_catalogue()
    fits: dict[str, NodeFit] = {}
    for name, (kind, src) in ALLREDUCE_SOURCES.items():
        node = cat.node(name)
        rows = allreduce_rows(ref, name)
        ar = {}
        for tp in TP_DEGREES:
            sel = rows[rows.tp == tp]
            if tp > node.gpus_per_node or sel.empty:
                continue
            ring = hop_bandwidths(node, tp)[0]
            ar[tp] = fit_link(sel.bytes.to_numpy(), sel.t.to_numpy(), 2 * (tp - 1) / tp, ring)
        send_src = SEND_SOURCES.get(name)
        intra = inter = None
        if send_src:
            _, intra_bw, inter_bw = hop_bandwidths(node, 2)
            s = send_rows(ref, send_src, False)
            intra = fit_link(s.bytes.to_numpy(), s.t.to_numpy(), 1.0, intra_bw)
            s = send_rows(ref, send_src, True)
            inter = fit_link(s.bytes.to_numpy(), s.t.to_numpy(), 1.0, inter_bw)
            # One GPU per node may drive several NICs; a PP stage sends from every GPU at
            # once, one NIC each: cap at the catalogue's per-GPU network bandwidth.
            inter = LinkFit(inter.latency_us, min(inter.efficiency, 1.0))
        what = ("aiconfigurator custom_allreduce_perf (vllm_graph) " + src if kind == "aic"
                else "Vidur network/" + src + "/all_reduce.csv")
        fits[name] = NodeFit(ar, intra, inter, "all-reduce: " + what + "; send/recv: " + (
            f"Vidur network/{send_src}/send_recv.csv" if send_src else
            f"efficiencies of {SEND_SCALED[name]}"))
    for name, donor in SEND_SCALED.items():
        fits[name].intra, fits[name].inter = fits[donor].intra, fits[donor].inter
    for name, (donor, why) in SCALED_NODES.items():
        d = fits[donor]
        node = cat.node(name)
        if node.topology == "pcie":
            # The only measured transfers over PCIe are the 4-GPU all-reduces of a pairwise
            # node (2 of the ring's 4 hops are PCIe): every TP degree takes that fit, and a
            # send inside the node its efficiency (capped at 1) with the pair send's
            # latency. Across nodes: the DGX A100 network fit (NCCL over one NIC per GPU).
            one = d.allreduce[4]
            ar = {tp: one for tp in TP_DEGREES if tp <= node.gpus_per_node}
            intra = LinkFit(d.intra.latency_us, min(one.efficiency, 1.0))
            inter = fits["dgx-a100"].inter
            why += "; sends: its PCIe all-reduce efficiency, dgx-a100's network"
        else:
            ar = {tp: f for tp, f in d.allreduce.items() if tp <= node.gpus_per_node}
            intra, inter = d.intra, d.inter
        fits[name] = NodeFit(ar, intra, inter, f"scaled from {donor}: {why}", donor)
    missing = set(cat.nodes) - set(fits)
    if missing:
        sys.exit(f"catalogue nodes without a calibration rule: {sorted(missing)}")
    return fits


# ---------------------------------------------------------------------------- output
def _num(v: float) -> str:
    """A YAML 1.1 float literal with 4 significant digits."""
    if v == 0:
        return "0.0"
    if 1e-3 <= abs(v) < 1e5:
        s = f"{v:.4g}"
        return s if ("." in s or "e" in s) else s + ".0"
    return f"{v:.3e}"


def _mapping(d: dict) -> str:
    return "{" + ", ".join(f"{k}: {_num(v)}" for k, v in d.items()) + "}"


def render(sku_fits: dict[str, SkuFit], node_fits: dict[str, NodeFit], reference: Path) -> str:
    """The calibration.yaml text: a header saying how it was made, then the constants."""
    lines = [
        "# Calibrated roofline constants for simulator.execution.calibrated (execution.kind:",
        "# calibrated). GENERATED, do not edit by hand; remake with",
        "#   python experiments/calibration/fit_roofline.py --reference ../shared/reference",
        "# From: aiconfigurator's vLLM operator tables (ai-dynamo/aiconfigurator, Apache-2.0):",
        "#   gemm_perf bf16; context/generation_attention_perf with bf16 KV, head_dim 128,",
        "#   window 0, >= 4 query heads per GPU; custom_allreduce_perf vllm_graph rows;",
        "#   and Vidur's profiles (microsoft/vidur, MIT): compute/<sku>/*/mlp.csv GEMM ops",
        "#   (QKV, O, up, down), network/<node>/{all_reduce,send_recv}.csv.",
        "# Curves are fractions of each SKU's catalogue peak (skus.yaml): eff(x) =",
        "#   e / (1 + (x_half / x) ** exp); time = latency + max(c, m) + overlap * min(c, m)",
        "#   (soft-L1 fits). Decode: latency + per_item * sms / (SKU's SMs) * items",
        "#   + max(c, (bytes + bytes_half) / (bw * e_bytes)) (least squares).",
        "# SKUs without measurements (scaled_from) take the curves of the measured SKU of the",
        "#   same kernel family, applied to their own peak FLOP/s, bandwidth and SM count.",
        "# Collectives: all-reduce latency + 2 (tp-1)/tp * bytes / (efficiency * slowest hop),",
        "#   send latency + bytes / (efficiency * hop); hops as in the roofline (nodes.yaml).",
        "# See docs/calibration.md.",
        "",
        "skus:",
    ]
    cat = load_catalogue()
    for name in cat.skus:
        if name in sku_fits:
            f, donor = sku_fits[name], ""
            system, vidur = MEASURED_SKUS[name]
            src = f"aiconfigurator {system}" + (f" + Vidur compute/{vidur}" if vidur else "")
        else:
            donor, why = SCALED_SKUS[name]
            f, src = sku_fits[donor], f"scaled from {donor}: {why}"
        lines.append(f"  {name}:")
        lines.append(f"    source: \"{src}\"")
        if donor:
            lines.append(f"    scaled_from: {donor}")
        lines.append(f"    gemm: {_mapping(asdict(f.gemm))}")
        lines.append(f"    attention_prefill: {_mapping(asdict(f.attention_prefill))}")
        lines.append(f"    attention_decode: {_mapping(asdict(f.attention_decode))}")
    lines += ["", "nodes:"]
    for name in cat.nodes:
        f = node_fits[name]
        lines.append(f"  {name}:")
        lines.append(f"    source: \"{f.source}\"")
        if f.scaled_from:
            lines.append(f"    scaled_from: {f.scaled_from}")
        lines.append("    allreduce:")
        for tp, fit in sorted(f.allreduce.items()):
            lines.append(f"      {tp}: {_mapping(asdict(fit))}")
        lines.append("    send_recv:")
        lines.append(f"      intra_node: {_mapping(asdict(f.intra))}")
        lines.append(f"      inter_node: {_mapping(asdict(f.inter))}")
    lines += ["", "# Nodes a user catalogue adds take the entry named for their topology.",
              "topology_defaults:"]
    lines += [f"  {topo}: {node}" for topo, node in TOPOLOGY_DEFAULTS.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE,
                    help="the shared/reference folder (default: ../shared/reference)")
    ap.add_argument("--out", type=Path, default=CALIBRATION_PATH)
    args = ap.parse_args(argv)
    ref = args.reference.resolve()
    if not ref.is_dir():
        sys.exit(f"reference folder {ref} not found (pass --reference)")
    sku_fits = {}
    for sku in MEASURED_SKUS:
        sku_fits[sku] = fit_sku(ref, sku)
        print(f"fitted {sku}: {sku_fits[sku]}")
    node_fits = fit_nodes(ref)
    text = render(sku_fits, node_fits, ref)
    args.out.write_text(text)
    load_calibration.cache_clear()
    load_calibration(str(args.out))  # the file parses and passes the loader's checks
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
