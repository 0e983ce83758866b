"""ExecuTorch ``.pte``: ``torch.export`` -> XNNPACK delegate -> ExecuTorch program.

fp32 lowers the program module; int8 lowers ``job.quantized`` -- the PT2E graph with the XNNPACK quantizer's scheme
(QAT from ``training.qat``, or calibrated by the export), which XNNPACK runs as int8 kernels. The delegation report
(the ops left on ExecuTorch's portable kernels) goes into the manifest; a temporal op there is listed separately,
since it is a bug (docs/design.md, contract 1).
"""
from __future__ import annotations

from pathlib import Path

from converters.delegation import lower_to_xnnpack
from converters.options import FORMATS
from converters.program import ExportResult, ProgramJob
from sdk.manifest import TensorSpec

PRECISIONS, SUFFIX = FORMATS["pte"].precisions, FORMATS["pte"].suffix


def export(job: ProgramJob, path: Path) -> ExportResult:
    if job.precision == "int8":
        if job.quantized is None:
            raise ValueError("int8 .pte needs the PT2E-quantized program (job.quantized)")
        module, reference, method = job.quantized, "quantized", "PT2E XNNPACKQuantizer int8 (per-channel weights)"
    else:
        module, reference, method = job.module, "fp32", "none"
    edge, report = lower_to_xnnpack(module, job.example)
    program = edge.to_executorch()
    with open(path, "wb") as f:
        program.write_to_file(f)
    inputs = [TensorSpec(n, tuple(t.shape)) for n, t in zip(job.input_names, job.example)]
    outputs = [TensorSpec(n, tuple(t.shape)) for n, t in zip(job.output_names, _output_shapes(job))]
    return ExportResult(inputs, outputs, reference, {
        "delegate": "XnnpackPartitioner", "delegated_subgraphs": report.delegate_calls,
        "non_delegated_ops": dict(sorted(report.non_delegated.items())),
        "temporal_ops_outside_delegate": report.temporal_on_portable_path, "quantization": method})


def _output_shapes(job: ProgramJob):
    import torch

    with torch.no_grad():
        out = job.module.eval()(*job.example)
    return out if isinstance(out, (tuple, list)) else (out,)
