"""Temporal modules on frame-stacked 2D activations ``(N*T, C, H, W)``: TAM, CausalTAM, TSM shifts.

All of them are written with reshape / pad / slice / cat only (no ``torch.roll``, no in-place slice assignment, no 3-D
conv) so that they export and stay on the accelerated delegate (docs/design.md, contract 1). Causal modules have a
``step`` form whose state is an explicit rank-4 tensor: feeding frames one by one through ``step`` (state starting
at zeros) equals the offline ``forward`` on the same frames.
"""
from __future__ import annotations

import functools
import operator
from typing import Iterable

import torch
from torch import nn


def shift_time(x: torch.Tensor, frames: int, offset: int) -> torch.Tensor:
    """``out[t] = x[t + offset]`` along time for ``(N*T, C, H, W)`` activations, zeros where ``t + offset`` is outside.

    Written as slice + cat with zeros (``slice * 0``), not ``F.pad``: XNNPACK runs an int8 constant pad only when its
    input and output share quantization parameters, which the PT2E XNNPACK quantizer does not arrange, so an int8
    program with a padded TAM lowered but failed to load (``StaticConstantPad ... invalid_parameter``, executorch
    1.5.1); ``cat`` is quantized with shared parameters and runs.
    """
    if offset == 0:
        return x
    if abs(offset) >= frames:
        return x * 0  # every frame shifted out (e.g. a causal kernel wider than a 2-frame clip); no empty slice in cat
    nt, c, h, w = x.shape
    y = x.reshape(nt // frames, frames, c * h * w)
    k = abs(offset)
    if offset > 0:
        y = torch.cat([y[:, k:], y[:, :k] * 0], dim=1)
    else:
        y = torch.cat([y[:, :k] * 0, y[:, :frames - k]], dim=1)
    return y.reshape(nt, c, h, w)


def temporal_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over time of ``(N, T, F)`` -> ``(N, F)``, written as a rank-4 spatial mean: XNNPACK delegates that one,
    while a plain ``x.mean(1)`` stays on ExecuTorch's portable path (measured with executorch 1.5.1)."""
    return x.transpose(1, 2).unsqueeze(-1).mean((2, 3), keepdim=True).flatten(1)


def _sum(terms: Iterable[torch.Tensor]) -> torch.Tensor:
    """``t0 + t1 + ...`` without ``sum``'s leading ``0 +`` (an exported scalar constant the delegate leaves outside)."""
    return functools.reduce(operator.add, terms)


def _depthwise_1x1(channels: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, kernel_size=1, groups=channels, bias=False)


class TAM(nn.Module):
    """Temporal aggregation (bLVNet-TAM): per-channel 1x1 depthwise convs on neighbouring frames, summed, ReLU.

    ``out[t] = relu(sum_i conv_i(x[t + i - kernel // 2]))`` with zero padding in time -- a depthwise temporal
    convolution of size ``kernel`` ("blending frames"); ``activation=False`` leaves out the ReLU (for a block that
    normalises before its own activation). Parameter names follow the official code so its checkpoints
    load: ``prev`` / ``curr`` / ``next`` for kernel 3, ``blending_layers.{i}`` otherwise.
    """

    def __init__(self, channels: int, frames: int, kernel: int = 3, activation: bool = True):
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"TAM kernel (blending frames) must be odd and >= 1, got {kernel}")
        self.frames, self.kernel = frames, kernel
        if kernel == 3:
            self.prev, self.curr, self.next = (_depthwise_1x1(channels) for _ in range(3))
        else:
            self.blending_layers = nn.ModuleList(_depthwise_1x1(channels) for _ in range(kernel))
        self.relu = nn.ReLU(inplace=True) if activation else nn.Identity()

    def _taps(self) -> list[nn.Conv2d]:
        return [self.prev, self.curr, self.next] if self.kernel == 3 else list(self.blending_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.kernel // 2
        out = sum(shift_time(conv(x), self.frames, i - half) for i, conv in enumerate(self._taps()))
        return self.relu(out)


class CausalTAM(nn.Module):
    """TAM over past and present only: ``out[t] = relu(sum_j conv_j(x[t - (kernel - 1) + j]))``, e.g. (t-2, t-1, t).

    ``activation=False`` leaves out the ReLU: a *linear* depthwise temporal convolution, which is exactly the identity
    at the identity init on signed inputs too (a MobileNetV2 block input, the linear bottleneck). ``step(x_t, state)``
    is the streaming form: ``state`` holds the previous ``kernel - 1`` inputs stacked on the channel axis,
    ``(N, (kernel - 1) * C, H, W)``, oldest first; zeros at the start of a stream (= zero padding).
    """

    def __init__(self, channels: int, frames: int, kernel: int = 3, activation: bool = True):
        super().__init__()
        if kernel < 1:
            raise ValueError(f"CausalTAM kernel must be >= 1, got {kernel}")
        self.channels, self.frames, self.kernel = channels, frames, kernel
        self.blending_layers = nn.ModuleList(_depthwise_1x1(channels) for _ in range(kernel))
        self.relu = nn.ReLU(inplace=True) if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel
        return self.relu(_sum(shift_time(conv(x), self.frames, j - (k - 1)) for j, conv in enumerate(self.blending_layers)))

    def state_shape(self, batch: int, height: int, width: int) -> tuple[int, int, int, int]:
        return (batch, (self.kernel - 1) * self.channels, height, width)

    def step(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame ``(N, C, H, W)`` -> ``(output, new_state)``.

        The past taps read their slices of ``state`` directly and the current tap reads ``x`` (no concatenation of
        state and frame: with ``kernel=2`` the new state is the frame itself, nothing is copied)."""
        c, k = self.channels, self.kernel
        past = [state] if k == 2 else [state[:, j * c:(j + 1) * c] for j in range(k - 1)]
        out = self.relu(_sum(conv(h) for conv, h in zip(self.blending_layers, [*past, x])))  # forward's order
        if k == 1:
            return out, state
        return out, (x if k == 2 else torch.cat([state[:, c:], x], dim=1))


class TemporalShift(nn.Module):
    """TSM: move a fraction of the channels along time (zero-filled), no parameters.

    Offline (``online=False``): channels ``[0, C/d)`` take the next frame's values, ``[C/d, 2C/d)`` the previous
    frame's. Online (``online=True``, causal): only ``[0, C/d)`` take the previous frame's values; ``step`` carries them
    as state ``(N, C/d, H, W)``.
    """

    def __init__(self, channels: int, frames: int, fold_div: int = 8, online: bool = False):
        super().__init__()
        self.frames, self.online = frames, online
        self.fold = max(1, channels // fold_div)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.fold
        if self.online:
            return torch.cat([shift_time(x[:, :f], self.frames, -1), x[:, f:]], dim=1)
        return torch.cat([shift_time(x[:, :f], self.frames, 1), shift_time(x[:, f:2 * f], self.frames, -1),
                          x[:, 2 * f:]], dim=1)

    def state_shape(self, batch: int, height: int, width: int) -> tuple[int, int, int, int]:
        return (batch, self.fold, height, width)

    def step(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Online shift of one frame ``(N, C, H, W)`` -> ``(output, new_state)``."""
        if not self.online:
            raise RuntimeError("the offline (bi-directional) shift needs future frames: use online=True to stream")
        f = self.fold
        return torch.cat([state, x[:, f:]], dim=1), x[:, :f]


TEMPORAL_MODULES = (TAM, CausalTAM, TemporalShift)  # the modules that mix frames
