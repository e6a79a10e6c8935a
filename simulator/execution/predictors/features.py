"""Features of each profile family: what the predictors see of an operator's shape.

Three views of the same shape columns (per-GPU sizes, as in the profile files):

- ``tree_features``: logs of the sizes and of the work they imply (FLOPs, bytes moved),
  plus, for ``layer_ops``, the number of GEMM row tiles (64, 128, 256 tokens) and the
  token count modulo them: the time jumps where a new tile (or wave of tiles) starts and
  where cuBLAS switches kernels. Logs of derived quantities let one
  forest serve many shapes (e.g. aiconfigurator's attention tables across head counts);
  for attention they include the kernels' work items ((sequence, KV head) pairs in
  decode, 128-row query blocks per (sequence, head) in prefill), which are what a batch
  beyond the measured ones shares with a measured shape of more heads.
- ``base_basis``: columns of a linear, roofline-like model ``t = basis @ c`` with ``c >= 0``
  (a fixed cost, bytes and FLOPs terms). The forest predicts the log-ratio to it, so a
  shape beyond the measured range follows the physics instead of a flat last leaf.
- ``axis`` and ``groups``: the one size the piecewise-linear predictor interpolates along
  and the columns that pick its curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from simulator.errors import ConfigError, one_of


@dataclass(frozen=True)
class FamilyFeatures:
    """Shape columns of one family, and its piecewise-linear axis and groups."""

    family: str
    columns: tuple[str, ...]  # shape columns a predictor reads (int64 in the profiles)
    axis: str  # the size the piecewise-linear predictor interpolates along
    groups: tuple[str, ...]  # columns that select one piecewise-linear curve


FAMILY_FEATURES = {
    "layer_ops": FamilyFeatures("layer_ops", ("num_tokens", "n", "k"), "num_tokens", ("n", "k")),
    # a MoE layer's experts (every expert on the GPU; n, k: one expert's FFN slice): the
    # time follows the experts the routed tokens touch as well as the tokens
    "moe_experts": FamilyFeatures("moe_experts", ("num_tokens", "n", "k", "experts", "topk"),
                                  "num_tokens", ("n", "k", "experts", "topk")),
    "attention_prefill": FamilyFeatures(
        "attention_prefill",
        ("n_q_heads", "n_kv_heads", "head_dim", "batch_size", "chunk_tokens", "prior_kv"),
        "chunk_tokens",
        ("n_q_heads", "n_kv_heads", "head_dim", "batch_size", "prior_kv"),
    ),
    "attention_decode": FamilyFeatures(
        "attention_decode",
        ("n_q_heads", "n_kv_heads", "head_dim", "batch_size", "kv_len"),
        "kv_len",
        ("n_q_heads", "n_kv_heads", "head_dim", "batch_size"),
    ),
    # one attention call over a prefill chunk (of prior context prior_kv) and batch_size
    # decodes of kv_len tokens each: the whole call is fitted, its decodes' share taken
    # against the prefill's own fit (ProfiledModel)
    "attention_mixed": FamilyFeatures(
        "attention_mixed",
        ("n_q_heads", "n_kv_heads", "head_dim", "chunk_tokens", "prior_kv", "batch_size",
         "kv_len"),
        "kv_len",
        ("n_q_heads", "n_kv_heads", "head_dim", "chunk_tokens", "prior_kv", "batch_size"),
    ),
    "collective": FamilyFeatures(
        "collective", ("num_gpus", "gpus_per_node", "size_bytes"), "size_bytes",
        ("num_gpus", "gpus_per_node"),
    ),
    "cpu_overhead": FamilyFeatures("cpu_overhead", ("batch_size",), "batch_size", ()),
}
TILES = (64, 128, 256)


def family_features(family: str) -> FamilyFeatures:
    """The :class:`FamilyFeatures` of ``family`` (ConfigError for an unknown one)."""
    one_of("predictor.family", family, FAMILY_FEATURES)
    return FAMILY_FEATURES[family]


def _cols(X: pd.DataFrame, family: str) -> dict[str, np.ndarray]:
    spec = family_features(family)
    missing = [c for c in spec.columns if c not in X.columns]
    if missing:
        raise ConfigError(f"predictor[{family}].X", list(X.columns),
                          "missing shape columns " + ", ".join(missing))
    return {c: X[c].to_numpy(dtype=np.float64) for c in spec.columns}


def tree_features(family: str, X: pd.DataFrame) -> np.ndarray:
    """Forest inputs, one row per shape (logs of sizes and work; tile residues)."""
    c = _cols(X, family)
    log = np.log
    if family == "layer_ops":
        T, n, k = c["num_tokens"], c["n"], np.maximum(c["k"], 1.0)
        cols = [log(T), log(n), log(k), log(T * n * k), log(T * (n + k) + n * k)]
        cols += [np.mod(T, t) for t in TILES] + [np.floor((T - 1) / t) for t in TILES]
        # output tiles of a 128 x 128 tiling: the work units spread over the SMs
        cols.append(log(np.ceil(T / 128) * np.ceil(n / 128)))
    elif family == "moe_experts":
        T, n, k, E, K = c["num_tokens"], c["n"], c["k"], c["experts"], c["topk"]
        hit = touched_experts(T, E, K)
        per = T * K / E  # routed tokens per expert
        cols = [log(T), log(n), log(k), log(E), log(K), log(hit), log(T * K), log(per),
                log(hit * n * k), log(T * K * n * k), np.log2(np.maximum(per, 1.0) / 16)]
    elif family == "attention_decode":
        B, L = c["batch_size"], c["kv_len"]
        q, kv, hd = c["n_q_heads"], c["n_kv_heads"], c["head_dim"]
        cols = [log(B), log(L), log(B * L), log(q), log(kv), log(hd),
                log(B * L * kv * hd), log(B * q * hd),
                # (sequence, KV head) pairs: the kernel's work items, so that a batch
                # beyond the measured ones matches a measured head shape with as many;
                # query heads per KV head (GQA group); KV bytes of one sequence
                log(B * kv), log(q / kv), log(L * kv * hd)]
    elif family == "attention_prefill":
        B, ch, p = c["batch_size"], c["chunk_tokens"], c["prior_kv"]
        q, kv, hd = c["n_q_heads"], c["n_kv_heads"], c["head_dim"]
        units = ch * (2 * p + ch + 1)
        cols = [log(B), log(ch), log(p + 1), log(B * ch), log(B * units * q * hd),
                log(B * (p + ch) * kv * hd), log(q), log(kv), log(hd),
                # thread blocks of 128 query rows per (sequence, head), query heads per
                # KV head, attended pairs per head and (sequence, head) pairs
                log(B * q * np.ceil(ch / 128)), log(q / kv), log(ch * (p + (ch + 1) / 2)),
                log(B * q)]
    elif family == "attention_mixed":
        ch, p, B, L = c["chunk_tokens"], c["prior_kv"], c["batch_size"], c["kv_len"]
        q, kv, hd = c["n_q_heads"], c["n_kv_heads"], c["head_dim"]
        pairs = ch * (p + (ch + 1) / 2)  # the chunk's attended (query, key) pairs per head
        cols = [log(ch), log(p + 1), log(B), log(L), log(B * L), log(q), log(kv), log(hd),
                log(pairs * q * hd), log((p + ch) * kv * hd), log(q * np.ceil(ch / 128)),
                log(B * L * kv * hd), log(B * kv), log(q / kv),
                # the decodes' work relative to the chunk's: which one the call waits on
                log(B * L * kv / (pairs * q / 64 + (p + ch) * kv))]
    elif family == "collective":
        n, g, s = c["num_gpus"], c["gpus_per_node"], c["size_bytes"]
        cols = [log(s), log(n), log(g), log(s * (n - 1) / n + 1.0)]
    else:  # cpu_overhead
        cols = [log(c["batch_size"])]
    return np.column_stack(cols)


def base_basis(family: str, X: pd.DataFrame) -> np.ndarray:
    """Columns of the non-negative linear base model (fixed, bytes and FLOPs terms)."""
    c = _cols(X, family)
    one = np.ones(len(X))
    if family == "layer_ops":
        T, n, k = c["num_tokens"], c["n"], c["k"]
        cols = [one, T * (n + k), T * n * k, n * k]
    elif family == "moe_experts":  # weights of the touched experts, routed tokens' work
        T, n, k, E, K = c["num_tokens"], c["n"], c["k"], c["experts"], c["topk"]
        hit = touched_experts(T, E, K)
        cols = [one, hit, hit * n * k, T * K * (n + k), T * K * n * k]
    elif family == "attention_decode":
        B, L = c["batch_size"], c["kv_len"]
        q, kv, hd = c["n_q_heads"], c["n_kv_heads"], c["head_dim"]
        cols = [one, B, B * kv, B * q * hd, B * L * kv * hd, B * L * q * hd]
    elif family == "attention_prefill":
        B, ch, p = c["batch_size"], c["chunk_tokens"], c["prior_kv"]
        q, kv, hd = c["n_q_heads"], c["n_kv_heads"], c["head_dim"]
        cols = [one, B, B * ch * q * hd, B * ch * (2 * p + ch + 1) * q * hd,
                B * (p + ch) * kv * hd]
    elif family == "attention_mixed":  # the chunk's prefill terms plus the decodes'
        ch, p, B, L = c["chunk_tokens"], c["prior_kv"], c["batch_size"], c["kv_len"]
        q, kv, hd = c["n_q_heads"], c["n_kv_heads"], c["head_dim"]
        cols = [one, ch * q * hd, ch * (2 * p + ch + 1) * q * hd, (p + ch) * kv * hd,
                B, B * kv, B * L * kv * hd, B * L * q * hd]
    elif family == "collective":
        n, g, s = c["num_gpus"], c["gpus_per_node"], c["size_bytes"]
        ring = s * (n - 1) / n
        cols = [one, n, ring, s, s / n, ring * (g < n)]  # last: a ring that leaves the node
    else:  # cpu_overhead
        cols = [one, c["batch_size"]]
    return np.column_stack(cols)


def touched_experts(tokens: np.ndarray, experts: np.ndarray, topk: np.ndarray) -> np.ndarray:
    """Expected distinct experts that ``tokens`` tokens routed to ``topk`` of ``experts``
    each (uniformly) touch: E (1 - (1 - k/E)^T), at least 1."""
    E = np.maximum(experts, 1.0)
    frac = np.clip(topk / E, 0.0, 1.0)
    return np.maximum(E * -np.expm1(tokens * np.log1p(-np.minimum(frac, 1 - 1e-12))), 1.0)


def fit_base(A: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative ``c`` minimising ``sum(((A @ c) / y - 1) ** 2)`` (columns rescaled)."""
    scale = np.abs(A).max(axis=0)
    scale[scale == 0] = 1.0
    M = (A / scale) / y[:, None]
    coef, _ = nnls(M, np.ones(len(y)), maxiter=50 * M.shape[1])
    coef = coef / scale
    if not np.any(coef > 0):  # degenerate: a constant at the geometric mean
        coef = np.zeros(A.shape[1])
        coef[0] = float(np.exp(np.mean(np.log(y))))
    return coef


__all__ = ["FAMILY_FEATURES", "FamilyFeatures", "base_basis", "family_features", "fit_base",
           "touched_experts", "tree_features"]
