"""LiteRT (TFLite) runner: ``ai_edge_litert.interpreter.Interpreter`` with its default XNNPACK delegate; torch-free.

Tensor order: a ``.tflite`` file lists its input/output tensors in no guaranteed order (litert-torch writes the
outputs of a multi-output program by tensor index, e.g. features before logits). The program order is taken from the
file's signature instead: litert-torch names the inputs ``args_0, args_1, ...`` and the outputs ``output_0,
output_1, ...`` in call order, and the runner sorts the signature names by their numeric suffix (natural order:
``args_2`` before ``args_10``). A file without a signature falls back to the interpreter's tensor order. The exporter
(``converters.to_tflite``) checks, by values, that this order reproduces the torch program.

int8/uint8 inputs are quantized and int8/uint8 outputs dequantized with each tensor's own (per-tensor) parameters,
``real = scale * (q - zero_point)``, so :meth:`LiteRTRunner.run` always takes and returns float32 arrays.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sdk.backends import Runner, as_float32, unavailable
from sdk.errors import ConfigError, FrameError
from sdk.manifest import Quantization

__all__ = ["LiteRTRunner", "load", "program_order", "tensor_quantization"]

INSTALL = "pip install ai-edge-litert==2.3.0"
_QUANTIZED = (np.int8, np.uint8)


def _natural_key(name: str) -> tuple[str, int, str]:
    """``args_10`` -> ``("args_", 10, name)``: numeric suffixes sort as numbers."""
    m = re.match(r"^(.*?)(\d+)$", name)
    return (m.group(1), int(m.group(2)), name) if m else (name, -1, name)


def program_order(interpreter: Any) -> tuple[list[dict], list[dict], str | None]:
    """The input and output tensor details of ``interpreter`` in program order, and the signature key used (None
    when the file has no signature and the interpreter's own order is used). Each detail dict gets a ``"signature_name"``.
    """
    signatures = interpreter.get_signature_list()
    if not signatures:
        inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
        for d in (*inputs, *outputs):
            d["signature_name"] = d["name"]
        return inputs, outputs, None
    key = "serving_default" if "serving_default" in signatures else min(signatures)
    runner = interpreter.get_signature_runner(key)
    try:
        ins, outs = runner.get_input_details(), runner.get_output_details()
    finally:
        # A live SignatureRunner keeps references to the interpreter's buffers and makes invoke() refuse to run.
        del runner
    ordered = []
    for details in (ins, outs):
        names = sorted(details, key=_natural_key)
        ordered.append([dict(details[n], signature_name=n) for n in names])
    return ordered[0], ordered[1], key


def tensor_quantization(detail: dict) -> Quantization | None:
    """Per-tensor affine parameters of an int8/uint8 tensor (None for float tensors); per-axis I/O is refused."""
    if np.dtype(detail["dtype"]).type not in _QUANTIZED:
        return None
    params = detail.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []), dtype=np.float64)
    zero_points = np.asarray(params.get("zero_points", []), dtype=np.int64)
    if scales.size == 0:
        scale, zero_point = detail.get("quantization", (0.0, 0))
        scales, zero_points = np.array([scale]), np.array([zero_point])
    if scales.size != 1 or not scales[0] > 0:
        raise ConfigError(f"tflite tensor {detail['name']!r} ({np.dtype(detail['dtype']).name}) has no per-tensor "
                          f"quantization (scales {scales.tolist()}): the runner cannot convert it to float32")
    return Quantization(float(scales[0]), int(zero_points[0]))


class LiteRTRunner(Runner):
    backend = "tflite"

    def __init__(self, path: Path, threads: int | None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as e:
            raise unavailable("tflite", INSTALL, e) from e
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"tflite program {path} does not exist")
        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ConfigError(f"cannot load the tflite program {path}: {e}") from e
        self.path = path
        inputs, outputs, self.signature = program_order(self._interpreter)
        self._inputs = [(d["index"], tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"]), tensor_quantization(d))
                        for d in inputs]
        self._outputs = [(d["index"], np.dtype(d["dtype"]), tensor_quantization(d)) for d in outputs]
        self.input_details, self.output_details = inputs, outputs

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        return [shape for _, shape, _, _ in self._inputs]

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        arrays = as_float32(inputs, "tflite program")
        if len(arrays) != len(self._inputs) or any(a.shape != shape for a, (_, shape, _, _) in
                                                   zip(arrays, self._inputs)):
            raise FrameError(f"tflite program {self.path.name} expects {len(self._inputs)} input(s) of shapes "
                             f"{self.input_shapes}, got {[a.shape for a in arrays]}")
        interpreter = self._interpreter
        for a, (index, _, dtype, quant) in zip(arrays, self._inputs):
            if quant is not None:
                a = quant.quantize(a, dtype.name)
            elif a.dtype != dtype:
                a = a.astype(dtype)
            interpreter.set_tensor(index, a)
        interpreter.invoke()
        results = []
        for index, _, quant in self._outputs:
            out = interpreter.get_tensor(index)  # a copy
            results.append(quant.dequantize(out) if quant is not None else np.asarray(out, dtype=np.float32))
        return results


def load(path: Path, *, threads: int | None = None) -> Runner:
    return LiteRTRunner(path, threads)
