"""What every exporter receives and returns: the program to export (:class:`ProgramJob`) and what it wrote
(:class:`ExportResult`). One module per backend (``to_pte``, ``to_coreml``, ``to_tflite``, ``to_onnx``) implements::

    def export(job: ProgramJob, path: Path) -> ExportResult

with its file suffix, precisions and needed packages in the format table (:mod:`converters.options`),
and the runtime side lives in ``sdk.backends`` (``load_runner(backend, path)``), which parity uses: a program is
checked in the runtime the device will use, not in a converter's own emulation.

The program modules (:class:`ClipProgram`, :class:`StreamProgram`) put the bundle's calling convention around a
registry model (``sdk/bundle.py`` module docstring): float32 RGB in ``[0, 255]`` after resize and crop, scaling and
mean/std normalisation inside the program, a batch of one, rank <= 4 at the boundary.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sdk.manifest import TensorSpec
from sdk.preprocess import Preprocess

__all__ = ["ClipProgram", "ExportResult", "Normalize", "ProgramJob", "StreamProgram", "to_nchw"]


@dataclass
class ProgramJob:
    """One program to export.

    Attributes:
        mode: ``clip`` or ``stream``.
        module: the fp32 program (eval mode), inputs/outputs as in ``input_names``/``output_names``.
        example: example inputs (batch of one, the exact shapes the program takes; static shapes); real values where
            possible (a clip, a frame with a reached state): the LiteRT exporter tells outputs apart by them.
        input_names, output_names: tensor names for the manifest, in call order (stream: state names included).
        precision: ``fp32`` | ``fp16`` | ``int8``.
        quantized: the int8 program as a PT2E-converted module with the XNNPACK scheme (from ``training.qat``, or
            calibrated by ``converters.export``), same inputs/outputs as ``module``; None for fp32/fp16. Every int8
            program of a bundle (.pte, .tflite, .onnx) is built from it, so they are one int8 model in several
            runtimes; Core ML's int8 is weight-only and quantizes ``module``'s weights itself.
    """

    mode: str
    module: nn.Module
    example: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    precision: str = "fp32"
    quantized: nn.Module | None = None


@dataclass
class ExportResult:
    """What an exporter wrote: the program's tensors as the runtime sees them (dtype, quantization of int8 I/O) and
    backend details for the manifest (delegation report, quantization method, compute precision, ...).

    ``reference`` says which torch module the program must match: ``"quantized"`` (``job.quantized``, the program
    was built from it) or ``"fp32"`` (``job.module``; an fp32 program, or an int8 one quantized by the backend's
    own tooling, compared with the int8 tolerance)."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    reference: str = "fp32"
    details: dict[str, Any] = field(default_factory=dict)


class Normalize(nn.Module):
    """``x * scale`` then ``(x - mean) / std`` per channel as one multiply-add (``x * a + b``) on NCHW, with the
    runtime's and training's factors (:meth:`sdk.preprocess.Preprocess.value_affine`)."""

    def __init__(self, preprocess: Preprocess):
        super().__init__()
        a, b = preprocess.value_affine()
        self.register_buffer("a", torch.from_numpy(a).reshape(1, 3, 1, 1))
        self.register_buffer("b", torch.from_numpy(b).reshape(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.a + self.b


def to_nchw(x: torch.Tensor, layout: str) -> torch.Tensor:
    """Frames in a program's input ``layout`` (``TCHW`` or ``THWC``) as ``(T, C, H, W)``."""
    return x.permute(0, 3, 1, 2) if layout == "THWC" else x


class ClipProgram(nn.Module):
    """``(clip (T, 3, H, W) float32 RGB in [0, 255]) -> (logits (1, K),)``; ``(T, H, W, 3)`` for a THWC layout.

    ``model`` is a registry classifier (clips ``(N, T, 3, H, W)`` -> logits) or the int8 PT2E module of one.
    """

    def __init__(self, model: nn.Module, preprocess: Preprocess):
        super().__init__()
        self.model, self.normalize, self.layout = model, Normalize(preprocess), preprocess.layout

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        x = self.normalize(to_nchw(clip, self.layout))
        return self.model(x.reshape(1, *x.shape))  # a reshape stays in the XNNPACK delegate; unsqueeze does not


class StreamProgram(nn.Module):
    """``(frame (1, 3, H, W), *state) -> (logits (1, K), features (1, F), *new_state)`` of a causal model's ``step``."""

    def __init__(self, model: nn.Module, preprocess: Preprocess):
        super().__init__()
        self.model, self.normalize, self.layout = model, Normalize(preprocess), preprocess.layout

    def forward(self, frame: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model.step(self.normalize(to_nchw(frame, self.layout)), *state))
