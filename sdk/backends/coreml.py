"""Core ML runner: ``coremltools.models.MLModel(...).predict`` -- macOS only.

Prediction needs Apple's Core ML framework; on any other platform the runner raises
:class:`~sdk.errors.BackendUnavailableError` (an exporter on Linux therefore records a Core ML program's parity as
``not_verified``). Written against coremltools 9's API but **not run by this project's CI**, which is Linux: the
macOS-only test in ``tests/test_to_coreml.py`` is what exercises it. Inputs are fed by the model's input names in
program order; float16 outputs (fp16 / int8-weight programs) are returned as float32. ``threads`` has no Core ML
equivalent and is ignored; ``compute_units`` defaults to ``ALL`` (CPU, GPU and Neural Engine).
"""
from __future__ import annotations

import platform
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sdk.backends import Runner, as_float32
from sdk.errors import BackendUnavailableError, ConfigError, FrameError

__all__ = ["CoreMLRunner", "load"]

NOT_ON_THIS_HOST = ("Core ML prediction runs on macOS/iOS only (it needs Apple's Core ML framework); this host is "
                    "{system}, so Core ML programs are exported and their interface checked, but not run")


class CoreMLRunner(Runner):
    backend = "coreml"

    def __init__(self, path: Path, threads: int | None, compute_units: str = "ALL"):
        if platform.system() != "Darwin":
            raise BackendUnavailableError(NOT_ON_THIS_HOST.format(system=platform.system() or "unknown"))
        try:
            import coremltools as ct
        except ImportError as e:
            raise BackendUnavailableError(f"the coreml runtime is not available: {e}; install it with "
                                          f"pip install coremltools==9.0") from e
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"Core ML program {path} does not exist")
        try:
            self._model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, compute_units))
        except Exception as e:  # coremltools raises plain Exception/RuntimeError for unreadable models
            raise ConfigError(f"cannot load the Core ML program {path}: {e}") from e
        self.path = path
        description = self._model.get_spec().description
        self.input_names = [f.name for f in description.input]
        self.output_names = [f.name for f in description.output]
        self._shapes = [tuple(int(d) for d in f.type.multiArrayType.shape) for f in description.input]

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        arrays = as_float32(inputs, "Core ML program")
        if [a.shape for a in arrays] != self._shapes:
            raise FrameError(f"Core ML program {self.path.name} expects inputs {self.input_names} of shapes "
                             f"{self._shapes}, got {[a.shape for a in arrays]}")
        outputs = self._model.predict(dict(zip(self.input_names, arrays)))
        return [np.asarray(outputs[name], dtype=np.float32) for name in self.output_names]


def load(path: Path, *, threads: int | None = None) -> Runner:
    return CoreMLRunner(path, threads)
