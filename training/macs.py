"""Counting multiply-accumulates: one definition shared by the recipes (train, distill, FASTER), the profiling tool
and the exporter's provenance, so every GMACs figure in a report, table or manifest is counted the same way.

A library, not a recipe: ``converters`` may import it (``training.profile`` is the command-line tool on top).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["call_gmacs", "count_gmacs"]


def call_gmacs(fn: Callable[..., object], *args: torch.Tensor) -> float:
    """GMACs of ``fn(*args)`` without gradients: FLOPs / 2 as ``torch.utils.flop_counter`` counts them (matmuls and
    convolutions; element-wise arithmetic is not counted)."""
    with torch.no_grad(), FlopCounterMode(display=False) as flops:
        fn(*args)
    return flops.get_total_flops() / 2e9


def count_gmacs(model: nn.Module, clip: torch.Tensor) -> float:
    """GMACs of one eval forward pass of ``model`` on ``clip``; the model's train/eval mode is restored."""
    was_training = model.training
    model.eval()
    try:
        return call_gmacs(model, clip)
    finally:
        model.train(was_training)
