"""Shared fixtures: one tiny time-reversal benchmark per test session (generated in ~5 s)."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_benchmark(tmp_path_factory) -> Path:
    from training.data.synthetic import generate

    return generate(tmp_path_factory.mktemp("bench") / "tiny", preset="tiny", seed=0, workers=2, progress=False)


@pytest.fixture(scope="session")
def native_bundles(tmp_path_factory) -> dict[str, Path]:
    """The tiny .pte bundles of ``tests/test_native_bundles.py`` (clip fp32 + int8, stream, FASTER), built once per
    session for the native-core tests (``test_native.py`` on x86_64, ``test_arm64.py`` on aarch64)."""
    from test_native_bundles import build_bundles

    return build_bundles(tmp_path_factory.mktemp("native-bundles"))
