"""The per-rank floor of an expert-parallel MoE layer, fitted on measured EP ranks.

Under expert parallelism every rank of the group sees all the group's tokens: it routes
and permutes every routed slot (``T x top_k`` of them) and then computes its own
``num_experts / ep`` experts. Measured per rank (aiconfigurator's fused-MoE sweep), the
layer's time is ``F(T) + (t1(T) - F(T)) / ep``: ``t1`` the same layer with every expert
on one GPU at the group's ``T`` tokens, ``F(T) = fixed_s + slot_s * T * top_k * hidden``
the part no rank sheds. ``ep_moe.yaml`` next to this module holds ``fixed_s`` and
``slot_s`` per SKU, written by ``experiments/ep_scaling.py --write`` (which also reports
the held-out error). A SKU without measurements takes the reference SKU's constants,
``slot_s`` scaled by the ratio of memory bandwidths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import yaml

from simulator.catalogue import get_sku
from simulator.catalogue.specs import SkuSpec
from simulator.errors import ConfigError

EP_FLOOR_PATH = Path(__file__).with_name("ep_moe.yaml")
REFERENCE_SKU = "h100-sxm"  # scaled from for SKUs without measurements


@dataclass(frozen=True)
class EpFloor:
    """``F(T) = fixed_s + slot_s * T * top_k * hidden`` seconds, and where it came from."""

    fixed_s: float
    slot_s: float
    source: str

    def seconds(self, tokens, top_k: int, hidden: int):
        """The floor at ``tokens`` group tokens (scalar or numpy array)."""
        return self.fixed_s + self.slot_s * tokens * top_k * hidden


def load_ep_floors(path: str | Path | None = None) -> dict[str, EpFloor]:
    """SKU -> fitted floor, from ``ep_moe.yaml`` (default: the packaged file)."""
    p = Path(path) if path else EP_FLOOR_PATH
    try:
        raw = yaml.safe_load(p.read_text())
    except OSError as err:
        raise ConfigError("ep_floor", str(p), f"cannot be read: {err}") from err
    skus = raw.get("skus") if isinstance(raw, dict) else None
    if not isinstance(skus, dict) or not skus:
        raise ConfigError(f"{p.name}: skus", skus, "must map SKU names to fixed_s and slot_s")
    out = {}
    for name, v in skus.items():
        for key in ("fixed_s", "slot_s"):
            x = v.get(key) if isinstance(v, dict) else None
            if not isinstance(x, int | float) or isinstance(x, bool) or x < 0:
                raise ConfigError(f"{p.name}: skus.{name}.{key}", x,
                                  "must be a number >= 0 (seconds)")
        out[str(name)] = EpFloor(float(v["fixed_s"]), float(v["slot_s"]),
                                 f"fitted on measured EP ranks of {name} ({p.name})")
    return out


@cache
def _packaged() -> dict[str, EpFloor]:
    return load_ep_floors()


def rank_seconds(t1, floor, ep: int, xmax: Callable = np.maximum):
    """One EP rank's MoE layer from ``t1`` (the layer with every expert on one GPU at the
    group's tokens) and the ``floor`` there: the floor plus ``1 / ep`` of the rest."""
    return floor + xmax(t1 - floor, 0.0) / ep


def ep_floor_for(sku: SkuSpec, ref_bw_gbps: float | None = None,
                 floors: dict[str, EpFloor] | None = None) -> EpFloor:
    """The floor of ``sku``: its own fit, else the reference SKU's with ``slot_s`` scaled
    by ``ref_bw_gbps / sku.mem_bw_gbps`` (``ref_bw_gbps``: the reference SKU's bandwidth,
    default the built-in catalogue's). ``floors``: default the packaged file, read once."""
    floors = _packaged() if floors is None else floors
    if ref_bw_gbps is None:
        ref_bw_gbps = get_sku(REFERENCE_SKU).mem_bw_gbps
    if sku.name in floors:
        return floors[sku.name]
    if REFERENCE_SKU not in floors:
        raise ConfigError("ep_floor.skus", sorted(floors), f"must include {REFERENCE_SKU}")
    ref = floors[REFERENCE_SKU]
    return EpFloor(ref.fixed_s, ref.slot_s * ref_bw_gbps / sku.mem_bw_gbps,
                   f"{REFERENCE_SKU}'s fit scaled by memory bandwidth "
                   f"({ref_bw_gbps:g} / {sku.mem_bw_gbps:g} GB/s)")


__all__ = ["EP_FLOOR_PATH", "REFERENCE_SKU", "EpFloor", "ep_floor_for", "load_ep_floors",
           "rank_seconds"]
