"""Core ML: ``torch.export`` -> ``coremltools.convert`` -> an ML program ``.mlpackage`` (or a legacy ``.mlmodel``).

Precisions of the ``.mlpackage`` (minimum deployment target iOS 16 / macOS 13):

- ``fp32``: float32 weights and compute.
- ``fp16``: float16 weights and compute (what the Neural Engine runs); inputs stay float32, outputs are float16
  arrays that the runner returns as float32.
- ``int8``: float16 compute with int8 weights (``coremltools.optimize.coreml.linear_quantize_weights``, symmetric,
  per output channel) -- about half the fp16 size. This is weight-only: Core ML has no equivalent of the PT2E int8
  activation program, so the reference is the fp32 torch module under the int8 tolerance.

The graph goes through ``ep.run_decompositions`` with the default table minus ``aten.roll`` (coremltools 9 converts
``roll`` but not its ``fmod`` decomposition, measured with coremltools 9.0).

**Legacy ``.mlmodel``** (``legacy=True``, ``--coreml-format mlmodel``): coremltools 9 still converts these models to the
NeuralNetwork format (measured: the TAM-MobileNetV2 clip program converts), fp32 only. It is offered because it was
asked for, not recommended: the ML program format is what current Core ML optimises (fp16 compute, int8 weights).

**Not verifiable here**: Core ML prediction needs the Core ML framework (macOS/iOS). On Linux the export checks the
converted program's interface (input/output names, shapes, types) but cannot run it; the bundle records its parity
as ``not_verified`` with the reason, and ``tests/test_to_coreml.py`` has a macOS-only prediction test.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from converters.options import FORMATS
from converters.program import ExportResult, ProgramJob
from sdk.manifest import TensorSpec

__all__ = ["LEGACY_SUFFIX", "PRECISIONS", "SUFFIX", "export"]

PRECISIONS, SUFFIX = FORMATS["coreml"].precisions, FORMATS["coreml"].suffix
LEGACY_SUFFIX = FORMATS["coreml"].legacy_suffix


def _coremltools():
    with warnings.catch_warnings():  # "torch 2.13 has not been tested", scikit-learn version notices
        warnings.simplefilter("ignore")
        import coremltools as ct
    return ct


def _decomposed(job: ProgramJob) -> torch.export.ExportedProgram:
    ep = torch.export.export(job.module.eval(), tuple(t.detach() for t in job.example))
    table = torch.export.default_decompositions()
    table.pop(torch.ops.aten.roll.default, None)
    return ep.run_decompositions(table)


def export(job: ProgramJob, path: Path, *, legacy: bool = False) -> ExportResult:
    path = Path(path)
    if job.precision not in PRECISIONS:
        raise ValueError(f"the Core ML exporter makes {', '.join(PRECISIONS)} programs, not {job.precision!r}")
    if legacy and job.precision != "fp32":
        raise ValueError(f"a legacy .mlmodel is exported in fp32 only, not {job.precision}")
    if len(job.example) != len(job.input_names):
        raise ValueError(f"job has {len(job.example)} example inputs but {len(job.input_names)} input names")
    if job.quantized is not None and job.module is job.quantized:
        raise ValueError("Core ML converts the fp32 model (its int8 is weight-only); this source is a PT2E int8 "
                         "program only (a training.qat .pt2): export Core ML from the fp32 checkpoint")
    ct = _coremltools()
    inputs = [ct.TensorType(name=n, shape=tuple(t.shape), dtype=np.float32) for n, t in zip(job.input_names,
                                                                                              job.example)]
    outputs = [ct.TensorType(name=n) for n in job.output_names]
    details: dict[str, Any] = {"converter": f"coremltools {ct.__version__}"}
    try:
        if legacy:
            model = ct.convert(_decomposed(job), inputs=inputs, outputs=outputs, convert_to="neuralnetwork")
            details.update(format="neuralnetwork (.mlmodel)", compute_precision="float32", quantization="none")
        else:
            fp32 = job.precision == "fp32"
            model = ct.convert(_decomposed(job), inputs=inputs, outputs=outputs, convert_to="mlprogram",
                               compute_precision=ct.precision.FLOAT32 if fp32 else ct.precision.FLOAT16,
                               minimum_deployment_target=ct.target.iOS16)
            details.update(format="mlprogram (.mlpackage)", minimum_deployment_target="iOS16/macOS13",
                           compute_precision="float32" if fp32 else "float16", quantization="none")
            if job.precision == "int8":
                from coremltools.optimize.coreml import (
                    OpLinearQuantizerConfig,
                    OptimizationConfig,
                    linear_quantize_weights,
                )

                config = OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                                 weight_threshold=0)
                model = linear_quantize_weights(model, OptimizationConfig(global_config=config))
                details["quantization"] = ("int8 weights (coremltools linear_quantize_weights, symmetric, per output "
                                           "channel), float16 compute; activations are not quantized")
    except Exception as e:
        raise RuntimeError(f"coremltools could not convert the {job.mode} program: {type(e).__name__}: "
                           f"{' '.join(str(e).split())[:400]}") from e
    model.short_description = f"edgevideo {job.mode} program ({job.precision})"
    model.save(str(path))
    return ExportResult(*_interface(model, job), "fp32", details)


def _interface(model: Any, job: ProgramJob) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Input/output specs from the saved model's description, checked against the torch program's names and shapes
    (the only check possible without Core ML's runtime)."""
    with torch.no_grad():
        out = job.module(*job.example)
    expected_out = [tuple(o.shape) for o in (out if isinstance(out, (tuple, list)) else (out,))]
    description = model.get_spec().description
    specs = []
    for kind, features, names, shapes in (("input", description.input, job.input_names,
                                           [tuple(t.shape) for t in job.example]),
                                          ("output", description.output, job.output_names, expected_out)):
        got = [f.name for f in features]
        if got != list(names):
            raise RuntimeError(f"Core ML {kind}s are {got}, expected {list(names)}")
        kind_specs = []
        for feature, shape in zip(features, shapes):
            array = feature.type.multiArrayType
            declared = tuple(int(d) for d in array.shape)
            if declared and declared != shape:
                raise RuntimeError(f"Core ML {kind} {feature.name!r} has shape {declared}, the program {shape}")
            # float16 outputs (fp16/int8 programs) are returned as float32 by the runner; the spec says what to feed.
            kind_specs.append(TensorSpec(feature.name, shape, "float32"))
        specs.append(kind_specs)
    return specs[0], specs[1]
