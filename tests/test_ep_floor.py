"""The per-rank floor of an expert-parallel MoE layer: the packaged fit and its fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.catalogue import get_sku
from simulator.errors import ConfigError
from simulator.execution.ep_floor import (
    REFERENCE_SKU,
    ep_floor_for,
    load_ep_floors,
)


def test_packaged_floors_cover_the_measured_skus() -> None:
    floors = load_ep_floors()
    assert {"a100-80gb", "h100-sxm", "h200", "b200"} <= set(floors)
    for f in floors.values():
        assert f.fixed_s > 0 and f.slot_s >= 0
        assert f.seconds(4096, 8, 2048) > f.seconds(16, 8, 2048)  # grows with the tokens


def test_an_unmeasured_sku_scales_the_reference_by_bandwidth() -> None:
    floors = load_ep_floors()
    ref = floors[REFERENCE_SKU]
    l40s = get_sku("l40s")
    got = ep_floor_for(l40s, get_sku(REFERENCE_SKU).mem_bw_gbps, floors)
    assert got.fixed_s == ref.fixed_s
    assert got.slot_s == pytest.approx(ref.slot_s * get_sku(REFERENCE_SKU).mem_bw_gbps
                                       / l40s.mem_bw_gbps)
    assert "scaled by memory bandwidth" in got.source
    assert ep_floor_for(get_sku("h200"), 1.0, floors) is floors["h200"]


def test_a_broken_floor_file_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "ep_moe.yaml"
    bad.write_text("skus:\n  h100-sxm: {fixed_s: -1, slot_s: 1e-12}\n")
    with pytest.raises(ConfigError, match=r"skus\.h100-sxm\.fixed_s"):
        load_ep_floors(bad)
    bad.write_text("nothing: here\n")
    with pytest.raises(ConfigError, match="skus"):
        load_ep_floors(bad)
