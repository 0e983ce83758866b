"""ONNX Runtime runner (CPU execution provider); torch-free.

Inputs are matched to the session's inputs by position (the program order: inputs, then state), outputs are returned
in the session's output order (outputs, then new state). Programs exported by ``converters.to_onnx`` have float32
inputs and outputs at every precision (an int8 QDQ program quantizes inside the graph). ``threads`` sets the
intra-op thread pool; the inter-op pool is 1 (the programs are single chains).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sdk.backends import Runner, as_float32, unavailable
from sdk.errors import ConfigError, FrameError

__all__ = ["OnnxRuntimeRunner", "load"]

INSTALL = "pip install onnxruntime==1.31.1"
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


class OnnxRuntimeRunner(Runner):
    backend = "onnx"

    def __init__(self, path: Path, threads: int | None):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise unavailable("onnx", INSTALL, e) from e
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"onnx program {path} does not exist")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own (pybind) exception types
            raise ConfigError(f"cannot load the onnx program {path}: {e}") from e
        self.path = path
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        for i in inputs:
            if i.type not in _DTYPES:
                raise ConfigError(f"onnx program {path.name}: input {i.name!r} has type {i.type}; the runner "
                                  f"feeds float arrays only")
        self.input_names = [i.name for i in inputs]
        self.output_names = [o.name for o in outputs]
        # Symbolic (named) or unknown dimensions are None; the programs of a bundle are static.
        self._shapes = [tuple(d if isinstance(d, int) else None for d in i.shape) for i in inputs]
        self._dtypes = [_DTYPES[i.type] for i in inputs]

    @property
    def input_shapes(self) -> list[tuple[int | None, ...]]:
        return list(self._shapes)

    def _matches(self, arrays: list[np.ndarray]) -> bool:
        return len(arrays) == len(self._shapes) and all(
            a.ndim == len(s) and all(d is None or d == n for d, n in zip(s, a.shape))
            for a, s in zip(arrays, self._shapes))

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        arrays = as_float32(inputs, "onnx program")
        if not self._matches(arrays):
            raise FrameError(f"onnx program {self.path.name} expects {len(self._shapes)} input(s) "
                             f"{self.input_names} of shapes {self.input_shapes}, got {[a.shape for a in arrays]}")
        feed = {n: (a if dt is np.float32 else a.astype(dt)) for n, a, dt in zip(self.input_names, arrays,
                                                                                  self._dtypes)}
        outputs = self._session.run(self.output_names, feed)
        return [np.asarray(o, dtype=np.float32) for o in outputs]


def load(path: Path, *, threads: int | None = None) -> Runner:
    return OnnxRuntimeRunner(path, threads)
