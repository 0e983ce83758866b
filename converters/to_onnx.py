"""ONNX ``.onnx``: ``torch.onnx.export(dynamo=True)`` -> one self-contained file (opset >= 17), run by ONNX Runtime.

fp32 exports the program module (``job.module``) through ``torch.export`` and checks the file with
``onnx.checker.check_model(full_check=True)`` (which also runs ONNX shape inference).

int8 is **post-training quantization by ONNX Runtime**, not the project's PT2E/QAT program (``job.quantized`` is not
used: ONNX Runtime has no importer for a PT2E graph). The fp32 export is pre-processed
(``onnxruntime.quantization.shape_inference.quant_pre_process``: shape inference + graph optimisation, BN folding)
and quantized with ``quantize_static`` in the QDQ format (QuantizeLinear/DequantizeLinear pairs around Conv, Gemm,
MatMul, Add, ...): int8 weights, symmetric, per output channel; int8 activations, asymmetric per tensor (like the
XNNPACK scheme), ranges from MinMax calibration on ``job.calibration``. The program keeps float32 inputs and
outputs (the first QuantizeLinear / last DequantizeLinear are inside the graph), so the runner feeds it like the fp32
one. ``ExportResult.reference`` is ``"fp32"``: the int8 program is compared with the fp32 module under the int8
tolerance. A stream program's state inputs/outputs are quantized too (every step re-quantizes the carried state).
"""
from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from converters.program import ExportResult, ProgramJob
from sdk.bundle import TensorSpec

__all__ = ["MIN_OPSET", "PRECISIONS", "SUFFIX", "export"]

PRECISIONS = ("fp32", "int8")
SUFFIX = ".onnx"
MIN_OPSET = 17


def export(job: ProgramJob, path: Path) -> ExportResult:
    if job.precision not in PRECISIONS:
        raise ValueError(f"ONNX export supports precisions {PRECISIONS}, got {job.precision!r}")
    if len(job.example) != len(job.input_names):
        raise ValueError(f"job has {len(job.example)} example inputs but {len(job.input_names)} input names")
    shared = sorted(set(job.input_names) & set(job.output_names))
    if shared:
        raise ValueError(f"input and output names must differ (a stream program's new state needs its own names, "
                         f"e.g. '<state>_out'); both: {shared}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if job.precision == "fp32":
        opset = _export_fp32(job, path)
        details: dict[str, Any] = {"opset": opset, "quantization": "none"}
    else:
        if not job.calibration:
            raise ValueError("int8 ONNX export needs calibration inputs (job.calibration is empty): ONNX Runtime "
                             "quantizes the fp32 export itself and calibrates activation ranges on them")
        with tempfile.TemporaryDirectory(prefix="onnx_int8_") as tmp:
            fp32, pre = Path(tmp) / "fp32.onnx", Path(tmp) / "fp32_pre.onnx"
            opset = _export_fp32(job, fp32)
            _quantize(job, fp32, pre, path)
        _check(path)
        details = {"opset": opset, "quantization": (
            f"onnxruntime {_ort_version()} post-training static quantization (quantize_static), QDQ format: int8 "
            f"weights symmetric per output channel, int8 activations asymmetric per tensor, MinMax calibration on "
            f"{len(job.calibration)} input(s); float32 program inputs/outputs. Not the PT2E/QAT program "
            f"(job.quantized): ONNX Runtime quantizes the fp32 export on its own."),
            "calibration_samples": len(job.calibration)}
    inputs, outputs = _graph_specs(path, job)
    details["file_bytes"] = path.stat().st_size
    return ExportResult(inputs, outputs, "fp32", details)


def _export_fp32(job: ProgramJob, path: Path) -> int:
    import torch

    module = job.module.eval()
    with torch.no_grad():
        torch.onnx.export(module, tuple(job.example), str(path), dynamo=True, external_data=False,
                          input_names=list(job.input_names), output_names=list(job.output_names), verbose=False)
    if not path.is_file():
        raise RuntimeError(f"torch.onnx.export wrote no file at {path}")
    stray = sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name) and p != path)
    if stray:
        raise RuntimeError(f"torch.onnx.export wrote external data next to {path} ({stray}); expected one file")
    opset = _check(path)
    if opset < MIN_OPSET:
        raise RuntimeError(f"{path.name} uses ONNX opset {opset}; the bundle needs opset >= {MIN_OPSET}")
    return opset


def _check(path: Path) -> int:
    """``onnx.checker`` with full shape inference; returns the default-domain opset."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise RuntimeError(f"ONNX checker rejected {path.name}: {e}") from e
    model = onnx.load(str(path), load_external_data=False)
    opsets = {o.domain: o.version for o in model.opset_import}
    return int(opsets.get("", opsets.get("ai.onnx", 0)))


def _quantize(job: ProgramJob, fp32: Path, pre: Path, out: Path) -> None:
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:
        raise RuntimeError(f"int8 ONNX export needs onnxruntime (pip install onnxruntime==1.31.1): {e}") from e

    names = list(job.input_names)

    class Reader(CalibrationDataReader):
        def __init__(self, samples: Sequence[tuple]):
            self._samples = [self._feed(s) for s in samples]
            self._it = iter(self._samples)

        @staticmethod
        def _feed(sample: tuple) -> dict:
            if len(sample) != len(names):
                raise ValueError(f"a calibration sample has {len(sample)} inputs, the program takes {len(names)}")
            return {n: t.detach().cpu().float().contiguous().numpy() for n, t in zip(names, sample)}

        def get_next(self):
            return next(self._it, None)

        def rewind(self):
            self._it = iter(self._samples)

    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(out), Reader(job.calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _graph_specs(path: Path, job: ProgramJob) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs/outputs as the ONNX graph declares them (must be float32, static, named as the job says)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    specs = []
    for kind, values, expected in (("input", [v for v in graph.input if v.name not in initializers],
                                    job.input_names),
                                   ("output", list(graph.output), job.output_names)):
        got = [v.name for v in values]
        if got != list(expected):
            raise RuntimeError(f"{path.name}: graph {kind}s are {got}, expected {list(expected)}")
        out = []
        for v in values:
            t = v.type.tensor_type
            if t.elem_type != onnx.TensorProto.FLOAT:
                raise RuntimeError(f"{path.name}: {kind} {v.name!r} has element type "
                                   f"{onnx.TensorProto.DataType.Name(t.elem_type)}, expected FLOAT")
            dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
            if any(d is None or d <= 0 for d in dims):
                raise RuntimeError(f"{path.name}: {kind} {v.name!r} has a non-static shape {dims}")
            out.append(TensorSpec(v.name, tuple(int(d) for d in dims), "float32"))
        specs.append(out)
    return specs[0], specs[1]
