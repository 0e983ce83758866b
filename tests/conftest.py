"""Shared fixtures: one tiny time-reversal benchmark per test session (generated in ~5 s), and the settled clip
program with its int8 program that the exporter tests share (tests/settled_models.py).

The native C++ core's tests never skip: without cmake or executorch ``sdk.native.build`` raises
``BackendUnavailableError`` and they fail, so CI cannot pass without having built and run the core. The tools of the
environment (cmake and ninja from pyproject's ``native`` extra) are found even when the venv is not activated: its
``bin`` goes first on ``PATH``.
"""
from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path
from typing import Callable, TypeVar

import pytest

T = TypeVar("T")

# Test files in the order their work should start, heaviest first (seconds of one worker, measured 2026-12-07 with
# --durations; a stale figure only costs time). Under pytest-xdist a worker takes a whole file (``--dist loadfile``:
# its module fixtures are built once), so a heavy file queued last runs alone at the end while the other workers
# idle (pytest-xdist's own order, most tests first, queued the one-test walkthrough last). Files not listed follow.
EXPECTED_SECONDS = {
    "test_converters.py": 430, "test_own_data.py": 361, "test_export.py": 340, "test_to_pte.py": 160,
    "test_train.py": 247, "test_native.py": 170, "test_qat_export.py": 165, "test_jetson_app.py": 150,
    "test_quantize.py": 132, "test_cli_errors.py": 123, "test_export_faster.py": 92, "test_to_tflite.py": 76,
    "test_device_install.py": 68, "test_to_coreml.py": 52, "test_runtime.py": 52, "test_synthetic.py": 48,
    "test_to_onnx.py": 45, "test_train_loop.py": 45, "test_resume.py": 44, "test_loop_equivalence.py": 38,
    "test_fused_input.py": 30,
}


def pytest_configure(config: pytest.Config) -> None:
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
        # workers in parallel: one compute thread each (torch, OpenMP, in subprocesses too) instead of one per core
        # in every worker, which would oversubscribe the cores; before anything imports torch
        os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The queue (scripts/test.sh's ``--no-loadscope-reorder`` keeps it): files by ``EXPECTED_SECONDS``, longest
    first; a file's tests keep their order (a stable sort of contiguous runs)."""
    items.sort(key=lambda item: -EXPECTED_SECONDS.get(item.path.name, 0))


def shared(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], T]) -> T:
    """``build(directory)`` once per test run, not once per pytest-xdist worker: the first worker that needs it builds
    it under a lock in the run's shared temporary directory, the others wait and read its (pickled) result. For
    fixtures that write files and take minutes; what they build must not be changed by the tests."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the workers' directories sit side by side in the run's
    result = root / f"{name}.result.pkl"
    with FileLock(str(root / f"{name}.lock")):
        if result.is_file():
            return pickle.loads(result.read_bytes())
        directory = root / name
        directory.mkdir(exist_ok=True)
        value = build(directory)
        result.write_bytes(pickle.dumps(value))
        return value


@pytest.fixture(autouse=True, scope="session")
def feature_cache_dir(tmp_path_factory) -> Path:
    """Every feature cache of the session (the default cache directory, also in subprocesses) goes to a temporary
    directory: the suite never writes into ~/.cache."""
    from training.data.feature_cache import CACHE_ENV

    path = tmp_path_factory.mktemp("feature-cache")
    os.environ[CACHE_ENV] = str(path)
    return path


CONTAINERS = {".webm": ("webm", "libvpx"), ".mkv": ("matroska", "libx264"), ".avi": ("avi", "libx264"),
              ".mov": ("mov", "libx264")}  # any other suffix: H.264 in MP4


@pytest.fixture(scope="session")
def write_video():
    """``write_video(path, frames=8, fps=10, size=32) -> path``: a small video of a moving gradient, in the container
    its suffix names (VP8 in .webm, as Something-Something ships; H.264 otherwise)."""
    import av
    import numpy as np

    def write(path: Path, frames: int = 8, fps: int = 10, size: int = 32) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt, codec = CONTAINERS.get(path.suffix.lower(), ("mp4", "libx264"))
        ramp = np.add.outer(np.arange(size), np.arange(size)).astype(np.uint8) * 4
        with av.open(str(path), mode="w", format=fmt) as container:
            stream = container.add_stream(codec, rate=fps)
            stream.width = stream.height = size
            stream.pix_fmt = "yuv420p"
            for t in range(frames):
                shade = (ramp + np.uint8(8 * t % 256))[..., None]  # wraps: a moving gradient
                frame = av.VideoFrame.from_ndarray(np.repeat(shade, 3, axis=2), format="rgb24")
                frame.pts = t
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        return path

    return write


@pytest.fixture(scope="session")
def tiny_benchmark(tmp_path_factory) -> Path:
    from training.data.synthetic import generate

    return generate(tmp_path_factory.mktemp("bench") / "tiny", preset="tiny", seed=0, workers=2, progress=False)


@pytest.fixture(scope="session")
def native_bundles(tmp_path_factory) -> dict[str, Path]:
    """The tiny .pte bundles of ``tests/test_native_bundles.py`` (clip fp32 + int8, stream, FASTER), built once per
    session for the native-core tests (``test_native.py`` on x86_64, ``test_arm64.py`` on aarch64)."""
    from test_native_bundles import build_bundles

    return shared(tmp_path_factory, "native-bundles", build_bundles)


@pytest.fixture(scope="session")
def faster_trained(tiny_benchmark, tmp_path_factory) -> dict:
    """A FASTER run of trained tiny clip models and its bundles, fixed-schedule and adaptive (learned gate), built
    once per session (``tests/test_faster_trained.py``'s ``train_and_export``; ``test_native.py`` runs the adaptive
    one on the core)."""
    from test_faster_trained import train_and_export

    return shared(tmp_path_factory, "faster-trained", lambda root: train_and_export(tiny_benchmark, root))


@pytest.fixture(scope="session")
def settled_clip():
    """``ClipProgram`` of a settled ``tam_mobilenet_v2`` on 2 frames (eval mode): the exporters' clip test model."""
    from settled_models import PRE, settled

    from converters.program import ClipProgram

    return ClipProgram(settled("tam_mobilenet_v2", frames=2), PRE).eval()


@pytest.fixture(scope="session")
def settled_int8(settled_clip):
    """:class:`settled_models.Int8Case` of ``settled_clip``: its PTQ int8 program and the torch references."""
    from settled_models import int8_case

    return int8_case(settled_clip, frames=2)
