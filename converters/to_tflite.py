"""LiteRT ``.tflite``: ``litert_torch.convert`` (torch.export -> StableHLO -> TFLite flatbuffer; no TensorFlow).

fp32 converts the program module. int8 (full integer: int8 weights per channel, int8 activations and int8 program
inputs/outputs) is converted **from ``job.quantized``** (the PT2E program with the XNNPACK quantizer's scheme, QAT or
calibrated by ``converters.export``), so the ``.tflite`` runs on the quantization grid the int8 torch program was
trained/calibrated on (``ExportResult.reference = "quantized"``). litert-torch only reads PT2E graphs whose weights are
*not* folded into int8 constants (``convert_pt2e(fold_quantize=False)``): a folded int8 weight feeding
``dequantize_per_channel`` fails in the StableHLO lowering ("uniform_dequantize operand must be ... quantized values,
but got tensor<...xi8>"). :func:`unfold_quantized_weights` rewrites every ``int8 constant -> dequantize`` back into
``fp32 constant -> quantize -> dequantize`` with the same scales and zero points: the fp32 constant is the dequantized
weight, which quantizes back to the identical int8 values, so the rewritten graph computes what ``job.quantized``
computes. (litert-torch's own ``PT2EQuantizer`` calibration is not used: with torchao 0.17 its histogram observer
fails on these graphs, ``"histogram_cpu" not implemented for 'Long'``.)

Tensor order: the runner (:mod:`sdk.backends.litert`) takes the program order from the file's signature names
(``args_0..``, ``output_0..``, natural order); after writing the file, the export runs it in that runner and checks,
by values, that each output matches the torch module's output at the same position better than any other output of
the same shape (stream programs have several state tensors of equal shapes), and that the counts and shapes agree
with ``job``. A mismatch raises.

fp16 is not offered: litert-torch's only fp16 path is the generative API's weight-only float-casting recipe
(ai-edge-quantizer), which stores fp16 weights and still computes in fp32.
"""
from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from converters.options import FORMATS
from converters.program import ExportResult, ProgramJob
from sdk.manifest import TensorSpec

__all__ = ["PRECISIONS", "SUFFIX", "export", "unfold_quantized_weights"]

PRECISIONS, SUFFIX = FORMATS["tflite"].precisions, FORMATS["tflite"].suffix

DIRECT_METHOD = ("int8 from the PT2E XNNPACKQuantizer program (job.quantized: its QAT/PTQ ranges, per-channel "
                 "symmetric weights); int8 I/O")
_DTYPES = {np.dtype(np.float32): "float32", np.dtype(np.float16): "float16", np.dtype(np.int8): "int8",
           np.dtype(np.uint8): "uint8", np.dtype(np.int32): "int32", np.dtype(np.int64): "int64"}


# -------------------------------------------------------------------------------------------------- conversion
def _litert():
    # litert-torch prints a progress line per conversion stage unless told otherwise; keep a user's explicit choice.
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    import litert_torch

    return litert_torch


def _static_quant_config():
    """A ``QuantConfig`` in PT2E static mode: litert-torch reads only ``is_dynamic`` from the quantizer (it sets the
    converter's ``qdq_conversion_mode = "STATIC"``, which turns quantize/dequantize pairs into int8 tensors)."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig

    return QuantConfig(pt2e_quantizer=PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True)))


def _convert(module: nn.Module, example: tuple[torch.Tensor, ...], path: Path, quant_config=None) -> None:
    litert_torch = _litert()
    model = litert_torch.convert(module, example, quant_config=quant_config)
    model.export(str(path))


def _attr(gm: torch.fx.GraphModule, target: str) -> Any:
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def unfold_quantized_weights(module: nn.Module) -> tuple[nn.Module, int]:
    """Rewrite every ``int8/uint8 constant -> dequantize_per_{channel,tensor}`` of the converted PT2E graphs in
    ``module`` (the module itself, or graphs inside a wrapper such as a QAT ``.pt2`` program behind
    :class:`~converters.program.ClipProgram`'s normalisation), in place, into ``fp32 constant -> quantize ->
    dequantize`` with the same parameters -- the ``fold_quantize=False`` form that litert-torch converts. Returns the
    module and the number of rewritten constants. Exact: the fp32 constant is ``scale * (q - zero_point)``, which
    quantizes back to ``q``."""
    graphs = [m for m in module.modules() if isinstance(m, torch.fx.GraphModule)]
    if not graphs:
        raise ValueError(f"{type(module).__name__} holds no PT2E graph to unfold")
    return module, sum(_unfold_graph(gm) for gm in graphs)


def _unfold_graph(gm: torch.fx.GraphModule) -> int:
    import torchao.quantization.pt2e  # noqa: F401  (registers the quantized_decomposed ops)

    qd = torch.ops.quantized_decomposed
    pairs = {qd.dequantize_per_channel.default: qd.quantize_per_channel.default,
             qd.dequantize_per_tensor.default: qd.quantize_per_tensor.default}
    count = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in pairs:
            continue
        source = node.args[0]
        if not isinstance(source, torch.fx.Node) or source.op != "get_attr":
            continue
        q = _attr(gm, source.target)
        if not isinstance(q, torch.Tensor) or q.dtype not in (torch.int8, torch.uint8):
            continue
        args = [_attr(gm, a.target) if isinstance(a, torch.fx.Node) and a.op == "get_attr" else a for a in node.args]
        if any(isinstance(a, torch.fx.Node) for a in args):
            continue  # parameters computed in the graph: not a folded constant
        real = node.target(*args, **node.kwargs).detach().clone()
        name = f"_tflite_unfolded_{count}"
        gm.register_buffer(name, real)
        with gm.graph.inserting_before(node):
            constant = gm.graph.get_attr(name)
            quantize = gm.graph.call_function(pairs[node.target], (constant, *node.args[1:]), dict(node.kwargs))
        node.replace_input_with(source, quantize)
        if not source.users:
            gm.graph.erase_node(source)
        count += 1
    gm.graph.lint()
    gm.recompile()
    return count


def _first_line(error: BaseException, limit: int = 400) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:limit]}"


# ---------------------------------------------------------------------------------------------- verification
def _torch_outputs(module: nn.Module, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        out = module(*(torch.from_numpy(np.ascontiguousarray(a)) for a in inputs))
    out = out if isinstance(out, (tuple, list)) else (out,)
    return [o.detach().float().numpy() for o in out]


def _check_inputs(job: ProgramJob) -> list[np.ndarray]:
    """Inputs that tell equal-shaped tensors apart: the example (``converters.export`` passes a real clip, or a frame
    with the state torch reached on it), with any all-zero state replaced by random non-negative values (zero state
    is reproduced by any order of equal-shaped outputs)."""
    generator = torch.Generator().manual_seed(0)
    return [t.detach().float().numpy() if i == 0 or bool(t.any()) else torch.rand(t.shape, generator=generator).numpy()
            for i, t in enumerate(job.example)]


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / (np.linalg.norm(b) + 1e-12))


def _verify(path: Path, job: ProgramJob, reference: nn.Module) -> tuple[list[TensorSpec], list[TensorSpec], dict]:
    """The written program's I/O specs (program order), after checking counts, shapes and order against ``job``."""
    from sdk.backends.litert import LiteRTRunner, tensor_quantization

    runner = LiteRTRunner(path, threads=None)
    inputs = _check_inputs(job)
    expected = _torch_outputs(reference, inputs)
    if len(runner.input_details) != len(job.input_names) or len(runner.output_details) != len(job.output_names):
        raise RuntimeError(f"{path.name}: the .tflite has {len(runner.input_details)} inputs / "
                           f"{len(runner.output_details)} outputs, the program {len(job.input_names)} / "
                           f"{len(job.output_names)}")
    got_in = [tuple(int(s) for s in d["shape"]) for d in runner.input_details]
    want_in = [tuple(t.shape) for t in job.example]
    if got_in != want_in:
        raise RuntimeError(f"{path.name}: input shapes in signature order {got_in} differ from the program's {want_in}")
    outputs = runner.run(inputs)
    if [o.shape for o in outputs] != [e.shape for e in expected]:
        raise RuntimeError(f"{path.name}: output shapes in signature order {[o.shape for o in outputs]} differ from "
                           f"the program's {[e.shape for e in expected]}")
    for i, (out, name) in enumerate(zip(outputs, job.output_names)):
        errors = {j: _relative_error(out, e) for j, e in enumerate(expected) if e.shape == out.shape}
        best = min(errors.values())
        if errors[i] > best * (1 + 1e-6) + 1e-9:
            closest = min(errors, key=errors.get)
            raise RuntimeError(f"{path.name}: tensor order not preserved: .tflite output {i} matches program output "
                               f"{closest} ({job.output_names[closest]!r}, relative error {errors[closest]:.3g}) "
                               f"better than {name!r} ({errors[i]:.3g})")
    specs = []
    for names, details in ((job.input_names, runner.input_details), (job.output_names, runner.output_details)):
        specs.append([TensorSpec(name, tuple(int(s) for s in d["shape"]), _DTYPES.get(np.dtype(d["dtype"]),
                                                                                      np.dtype(d["dtype"]).name),
                                 tensor_quantization(d)) for name, d in zip(names, details)])
    check = {"max_abs_diff": max(float(np.abs(o - e).max()) for o, e in zip(outputs, expected)),
             "max_relative_error": max(_relative_error(o, e) for o, e in zip(outputs, expected)),
             "io_order": "signature names args_i / output_i; verified by values"}
    return specs[0], specs[1], check


# ---------------------------------------------------------------------------------------------------- export
def export(job: ProgramJob, path: Path) -> ExportResult:
    path = Path(path)
    if job.precision not in PRECISIONS:
        raise ValueError(f"the tflite exporter makes {', '.join(PRECISIONS)} programs, not {job.precision!r}")
    if len(job.example) != len(job.input_names):
        raise ValueError(f"job has {len(job.example)} example inputs but {len(job.input_names)} input names")
    example = tuple(t.detach().contiguous() for t in job.example)
    details: dict[str, Any] = {"converter": "litert-torch", "runtime": "ai-edge-litert Interpreter (XNNPACK)"}
    job.module.eval()
    if job.precision == "fp32":
        _convert(job.module, example, path)
        reference_module, reference, details["quantization"] = job.module, "fp32", "none"
    else:
        if job.quantized is None:
            raise ValueError("an int8 .tflite is converted from the PT2E-quantized program (job.quantized), which "
                             "this job lacks (converters.export calibrates one when the checkpoint is not QAT)")
        unfolded, count = unfold_quantized_weights(copy.deepcopy(job.quantized))
        try:
            _convert(unfolded, example, path, _static_quant_config())
        except Exception as e:
            raise RuntimeError(f"int8 .tflite export failed: {_first_line(e)}") from e
        reference_module, reference, details["quantization"] = unfolded, "quantized", DIRECT_METHOD
        details["unfolded_constants"] = count
    if not path.is_file():
        raise RuntimeError(f"litert-torch wrote no file at {path}")
    inputs, outputs, details["export_check"] = _verify(path, job, reference_module)
    return ExportResult(inputs, outputs, reference, details)
