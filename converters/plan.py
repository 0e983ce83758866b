"""Steps 2 and 3 of an export: the program plan (the torch programs, their example inputs and tensor names, the
inputs they are checked on), int8 calibration, and the torch references every runtime is compared with.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from converters import parity as parity_mod
from converters.options import say
from converters.program import ClipProgram, StreamProgram
from converters.source import Source
from sdk.errors import ConfigError

__all__ = ["Programs", "plan", "quantize", "references", "representative_input", "step_inputs"]


@dataclass
class Programs:
    """One program of the bundle (its torch modules, example inputs, tensor names) and the inputs it is checked on.

    ``role`` is ``model`` for an ordinary bundle and ``expensive`` / ``cheap`` / ``aggregator`` in a FASTER bundle;
    ``golden`` / ``parity`` / ``calibration`` hold program-shaped inputs per clip (clip: ``(clip,)``, stream: the
    clip's frames ``(T, 1, 3, H, W)``, aggregate: a feature sequence ``(S, 1, ...)``)."""

    mode: str
    fp32: nn.Module | None
    quantized: nn.Module | None
    example: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    zero_state: tuple[torch.Tensor, ...]
    role: str = "model"
    golden: list[tuple[np.ndarray, ...]] = field(default_factory=list)
    parity: list[tuple[np.ndarray, ...]] = field(default_factory=list)
    calibration: list[torch.Tensor] = field(default_factory=list)
    refs: dict[str, tuple[parity_mod.Outputs, parity_mod.Outputs]] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        """Program ids and golden keys start with it: the mode for an ordinary bundle, the role in a FASTER one."""
        return self.mode if self.role == "model" else self.role

    @property
    def state_at(self) -> int:
        """Index of the first new-state output."""
        return {"stream": 2, "aggregate": 1}.get(self.mode, len(self.output_names))


def plan(source: Source, mode: str) -> Programs:
    pre, size = source.preprocess, source.preprocess.size
    frame_shape = (size, size, 3) if pre.layout == "THWC" else (3, size, size)
    if mode == "clip":
        example = (torch.zeros(source.sampler.frames, *frame_shape),)
        fp32 = None if source.model is None else ClipProgram(source.model, pre).eval()
        quant = None if source.quantized is None else ClipProgram(source.quantized, pre).eval()
        return Programs("clip", fp32, quant, example, ["clip"], ["logits"], ())
    if source.model is None:
        raise ConfigError("an int8 .pt2 from training.qat is a clip program; export --mode stream from the fp32 "
                          "checkpoint (int8 stream programs are calibrated at export)")
    if not getattr(source.model, "causal", False):
        raise ConfigError(f"{source.meta.config.get('arch', 'this model')} looks at future frames and cannot "
                          "stream; train a causal model (tam_mobilenet_v2_causal, tsm_mobilenet_v2_online) or "
                          "export --mode clip")
    spec = source.model.state_specs(size, size)
    zero = tuple(torch.zeros(shape) for _, shape in spec)
    example = (torch.zeros(1, *frame_shape), *zero)
    names = [n for n, _ in spec]
    return Programs("stream", StreamProgram(source.model, pre).eval(), None, example, ["frame", *names],
                    ["logits", "features", *[f"new_{n}" for n in names]], zero)


def step_inputs(programs: Programs, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Program-shaped inputs of one clip (or feature sequence): ``(clip,)``, or, streaming,
    ``(frames (T, 1, ...),)``."""
    return (x.unsqueeze(1),) if programs.mode == "stream" else (x,)


def calibration_inputs(programs: Programs, items: list[torch.Tensor]) -> list[tuple[torch.Tensor, ...]]:
    """Representative program inputs: clips, or every step of each clip (feature sequence) with the state torch
    reached there."""
    if programs.mode == "clip":
        return [(c,) for c in items]
    out = []
    with torch.no_grad():
        for item in items:
            state = programs.zero_state
            for step in step_inputs(programs, item)[0]:
                out.append((step, *state))
                state = tuple(programs.fp32(step, *state)[programs.state_at:])
    return out


def representative_input(programs: Programs, item: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """A real program input: the clip, or its middle step with the state torch reached there."""
    steps = calibration_inputs(programs, [item])
    return steps[len(steps) // 2]


def quantize(programs: Programs, precision: str) -> None:
    """int8 by post-training calibration (PT2E, XNNPACK scheme) on ``programs.calibration`` when the source is fp32;
    a QAT ``.pt2`` is int8 already."""
    if precision != "int8" or programs.quantized is not None:
        return
    from training import quantize as pt2e

    say(f"{programs.prefix}: post-training int8 calibration (PT2E, XNNPACK scheme) on "
        f"{len(programs.calibration)} inputs")
    gm = pt2e.prepare(programs.fp32, programs.example, qat=False, dynamic_batch=False)
    pt2e.calibrate(gm, calibration_inputs(programs, programs.calibration))
    programs.quantized = pt2e.convert(gm)


def _torch_run(module: nn.Module):
    def run(inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            out = module(*[torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in inputs])
        return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]
    return run


def references(programs: Programs, golden: dict[str, np.ndarray]) -> None:
    """The torch programs (fp32, and int8 when there is one) on the golden and parity inputs: what every runtime is
    compared with; the inputs and reference outputs go into ``golden``."""
    zero = [s.numpy() for s in programs.zero_state]
    for kind, module in (("fp32", programs.fp32), ("quantized", programs.quantized)):
        if module is not None:
            run = _torch_run(module)
            programs.refs[kind] = (parity_mod.run_clips(run, programs.mode, programs.golden, zero),
                                   parity_mod.run_clips(run, programs.mode, programs.parity, zero))
    golden[f"{programs.prefix}/input/{programs.input_names[0]}"] = np.stack([g[0] for g in programs.golden])
    for kind, (outputs, _) in programs.refs.items():
        golden[f"{programs.prefix}/reference_{kind}/logits"] = outputs.steps
        if outputs.features is not None:
            golden[f"{programs.prefix}/reference_{kind}/features"] = outputs.features
