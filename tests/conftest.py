"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def reference_dir() -> Path:
    """``../shared/reference`` next to the repo (Vidur's traces and data); skip when absent."""
    path = Path(__file__).resolve().parents[2] / "shared" / "reference"
    if not path.is_dir():
        pytest.skip(f"../shared/reference is absent: {path} not found (reference data tests)")
    return path
