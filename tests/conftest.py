"""Shared fixtures: one tiny time-reversal benchmark per test session (generated in ~5 s)."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_benchmark(tmp_path_factory) -> Path:
    from training.data.synthetic import generate

    return generate(tmp_path_factory.mktemp("bench") / "tiny", preset="tiny", seed=0, workers=2, progress=False)
