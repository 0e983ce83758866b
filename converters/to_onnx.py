"""ONNX ``.onnx``: ``torch.onnx.export(dynamo=True)`` -> one self-contained file (opset >= 17), run by ONNX Runtime.

fp32 exports the program module (``job.module``) through ``torch.export`` and checks the file with
``onnx.checker.check_model(full_check=True)`` (which also runs ONNX shape inference).

int8 exports **``job.quantized``** -- the PT2E program with the XNNPACK quantizer's scheme (QAT from
``training.qat`` or calibrated by ``converters.export``), the same int8 model the ``.pte`` and the ``.tflite`` are built
from. The exporter turns its ``quantize``/``dequantize`` ops into ONNX QuantizeLinear/DequantizeLinear (QDQ format:
int8 weight initializers with per-channel scales, int8 activations per tensor); ONNX Runtime fuses the QDQ pairs into
int8 kernels (QLinearConv, ...) when it loads the file. The program keeps float32 inputs and outputs, so the runner
feeds it like the fp32 one, and ``ExportResult.reference`` is ``"quantized"``: parity is measured against the torch
int8 program, like the other int8 programs. (ONNX Runtime's own post-training quantization, ``quantize_static`` on
the fp32 export, was used before: it is a different int8 model with its own ranges, comparable only with fp32, and on
the TAM-MobileNetV2 student it agreed with fp32 on 0.89 of 100 clips where the PT2E program agreed on 0.88.)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from converters.options import FORMATS
from converters.program import ExportResult, ProgramJob
from sdk.manifest import TensorSpec

__all__ = ["MIN_OPSET", "PRECISIONS", "SUFFIX", "export"]

PRECISIONS, SUFFIX = FORMATS["onnx"].precisions, FORMATS["onnx"].suffix
MIN_OPSET = 17
QDQ_METHOD = ("int8 from the PT2E XNNPACKQuantizer program (job.quantized: its QAT/PTQ ranges), QDQ format: int8 "
              "weights per output channel, int8 activations per tensor; float32 program inputs/outputs")


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
        module, reference, method = job.module, "fp32", "none"
    else:
        if job.quantized is None:
            raise ValueError("int8 ONNX export needs the PT2E-quantized program (job.quantized)")
        module, reference, method = job.quantized, "quantized", QDQ_METHOD
    opset = _export(module, job, path)
    inputs, outputs = _graph_specs(path, job)
    return ExportResult(inputs, outputs, reference, {"opset": opset, "quantization": method,
                                                     "file_bytes": path.stat().st_size})


def _export(module: Any, job: ProgramJob, path: Path) -> int:
    import torch

    module = module.eval()
    with torch.no_grad():
        torch.onnx.export(module, tuple(job.example), str(path), dynamo=True, external_data=False,
                          input_names=list(job.input_names), output_names=list(job.output_names), verbose=False)
    if not path.is_file():
        raise RuntimeError(f"torch.onnx.export wrote no file at {path}")
    stray = sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name) and p != path)
    if stray:
        raise RuntimeError(f"torch.onnx.export wrote external data next to {path} ({stray}); expected one file")
    _strip_node_metadata(path)
    opset = _check(path)
    if opset < MIN_OPSET:
        raise RuntimeError(f"{path.name} uses ONNX opset {opset}; the bundle needs opset >= {MIN_OPSET}")
    return opset


def _strip_node_metadata(path: Path) -> None:
    """Drop the exporter's per-node debug metadata (FX node text, stack traces with this machine's source paths,
    module hierarchy): 5 % of an fp32 TAM-MobileNetV2 file and 30 % of its int8 one, and nothing a runtime reads."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graphs = [model.graph, *(f for f in model.functions)]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            del node.metadata_props[:]
            for attribute in node.attribute:  # subgraphs of If / Loop / Scan
                graphs.extend([attribute.g] if attribute.HasField("g") else attribute.graphs)
    onnx.save(model, str(path))


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
