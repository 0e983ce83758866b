"""Tiny random models that behave like trained ones, shared by the exporter tests.

A fresh model (identity TAMs, unit BN statistics, 0.01-std head) gives nearly the same tiny logits for every input and
ignores time, which would make every parity comparison trivially pass. :func:`settled` randomises the TAM taps,
measures the BatchNorm statistics on a few clips, damps the residual branches and scales up the head. Without the
damping a random MobileNetV2 with measured BN statistics is chaotic (+-0.5 grey levels of input noise move its logits
by ~40% of their spread), and no int8 program can follow it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sdk.preprocess import Preprocess
from training.models.registry import create
from training.models.resnet import Bottleneck
from training.models.tam_mobilenet import TemporalInvertedResidual
from training.models.temporal import TAM, CausalTAM

SIZE, CLASSES = 32, 4
PRE = Preprocess(size=SIZE)


def rgb_clips(n: int, frames: int, seed: int) -> torch.Tensor:
    """``(n, frames, 3, SIZE, SIZE)`` float32 RGB in [0, 255]: random textures (upsampled 16x16 noise)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n * frames, 3, SIZE // 2, SIZE // 2, generator=g) * 255
    up = F.interpolate(low, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return up.reshape(n, frames, 3, SIZE, SIZE).clamp(0, 255)


def settled(name: str, frames: int, seed: int = 0, damp: float = 0.2, classes: int = CLASSES) -> nn.Module:
    """A random model whose logits depend on the input and on time, and that is not chaotic (module docstring)."""
    torch.manual_seed(seed)
    model = create(name, num_classes=classes, frames=frames, pretrained=False)
    mean = torch.tensor(PRE.mean).view(1, 1, 3, 1, 1)
    std = torch.tensor(PRE.std).view(1, 1, 3, 1, 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (TAM, CausalTAM)):
                for conv in m.modules():  # identity init (current tap 1, others 0) + U(0, 0.5) on every tap
                    if isinstance(conv, nn.Conv2d):
                        conv.weight.add_(torch.rand_like(conv.weight) * 0.5)
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None  # cumulative average
        model.train()
        for i in range(2):  # big-little models read 2T frames
            model((rgb_clips(8, getattr(model, "input_frames", frames), 100 + i) / 255 - mean) / std)
        for block in model.modules():
            if isinstance(block, TemporalInvertedResidual):
                last_bn = [b for b in block.conv.modules() if isinstance(b, nn.BatchNorm2d)][-1]
            elif isinstance(block, Bottleneck):  # ResNet / bLResNet residual branch
                last_bn = block.bn3
            else:
                continue
            last_bn.weight.mul_(damp)
            last_bn.bias.mul_(damp)
        nn.init.normal_(_classifier(model).weight, 0, 0.3)
    return model.eval()


def _classifier(model: nn.Module) -> nn.Linear:
    """The last linear layer (``fc``; bLVNet-TAM keeps the official ``new_fc``)."""
    return model.new_fc if hasattr(model, "new_fc") else model.fc


def ptq(program: nn.Module, calibration: list[tuple[torch.Tensor, ...]]) -> nn.Module:
    """The int8 PT2E program (XNNPACK scheme) of ``program``, calibrated on ``calibration``: what converters.export
    builds every int8 program of a bundle from."""
    from training import quantize

    gm = quantize.prepare(program, calibration[0], qat=False, dynamic_batch=False)
    quantize.calibrate(gm, calibration)
    return quantize.convert(gm)


@dataclass
class Int8Case:
    """A settled clip program, its int8 PT2E program and both torch references on 16 clips held out from
    calibration: built once per session (``conftest.settled_int8``) and shared by the .pte / .tflite / .onnx tests,
    since calibration and the torch int8 reference take most of an int8 test's time."""

    fp32: nn.Module
    quantized: nn.Module
    example: tuple[torch.Tensor, ...]
    clips: torch.Tensor
    ref_q: np.ndarray
    ref_f: np.ndarray


def int8_case(fp32: nn.Module, frames: int) -> Int8Case:
    """PTQ of ``fp32`` on 16 clips of ``frames`` frames, and the references on 16 others."""
    calibration = [(c,) for c in rgb_clips(16, frames, 2)]
    quantized = ptq(fp32, calibration)
    clips = rgb_clips(16, frames, 3)
    with torch.no_grad():
        ref_q = np.concatenate([quantized(c).numpy() for c in clips])
        ref_f = np.concatenate([fp32(c).numpy() for c in clips])
    return Int8Case(fp32, quantized, calibration[0], clips, ref_q, ref_f)


def assert_int8_follows(runner, case: Int8Case) -> None:
    """An int8 program in its runtime follows the torch int8 program (and so fp32) on the case's held-out clips.
    Errors are relative to how much the logits vary between inputs (what a classifier uses): the runtimes' int8
    kernels round differently from torch's reference q/dq ops and the differences accumulate over the layers
    (measured 0.1-0.3 on these models); a broken program (wrong scales, shuffled channels, constant output) is >= 1
    against either reference."""
    got = np.concatenate([runner.run([c.numpy()])[0] for c in case.clips])
    signal = case.ref_f.std(axis=0).mean()
    assert signal > 0.1, "the test model ignores its input"
    assert np.sqrt(((got - case.ref_q) ** 2).mean()) / signal <= 0.5
    assert np.sqrt(((got - case.ref_f) ** 2).mean()) / signal <= 0.5
    assert (got.argmax(1) == case.ref_q.argmax(1)).mean() >= 0.8
