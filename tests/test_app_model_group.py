"""The search app's `model` config group offers every catalogue model."""

from __future__ import annotations

from pathlib import Path

import yaml

from simulator.catalogue import load_catalogue

GROUP = Path(__file__).resolve().parents[1] / "conf" / "app" / "model"


def test_every_catalogue_model_has_a_model_option() -> None:
    """`python -m vidur_search model=NAME` works for each model `simulate` knows."""
    names = {yaml.safe_load(p.read_text())["name"]: p.stem for p in GROUP.glob("*.yaml")}
    assert all(stem == name for name, stem in names.items())  # file name = model name
    assert set(load_catalogue().models) <= set(names)
