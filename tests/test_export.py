"""Exportability: torch.export without graph breaks, XNNPACK lowering, and no temporal op on the portable path."""
from __future__ import annotations

import pytest
import torch

from converters.delegation import lower_to_xnnpack
from training.models import create, list_models
from training.models.temporal import TAM, CausalTAM, TemporalShift

T = 4


@pytest.mark.parametrize(
    "module",
    [TAM(8, T), TAM(8, T, kernel=5), CausalTAM(8, T), TemporalShift(8, T, fold_div=4),
     TemporalShift(8, T, fold_div=4, online=True)],
    ids=["tam3", "tam5", "causal_tam", "tsm", "tsm_online"],
)
def test_temporal_modules_are_fully_delegated(module):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), module)
    _, report = lower_to_xnnpack(model, (torch.randn(T, 3, 8, 8),))
    print(report)
    assert report.delegate_calls >= 1 and not report.unexpected, str(report)


def test_streaming_step_of_causal_tam_is_fully_delegated():
    class Step(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tam = CausalTAM(8, T)

        def forward(self, x, state):
            return self.tam.step(x, state)

    _, report = lower_to_xnnpack(Step(), (torch.randn(1, 8, 6, 6), torch.zeros(1, 16, 6, 6)))
    assert not report.unexpected, str(report)


def _check_model(name: str) -> None:
    model = create(name, num_classes=10, frames=2, pretrained=False)
    clip = torch.randn(1, getattr(model, "input_frames", 2), 3, 64, 64)
    _, report = lower_to_xnnpack(model, (clip,))
    print(f"{name}: {report}")
    assert not report.temporal_on_portable_path, f"{name}: {report}"


# the blocks and temporal modules of a lighter registered model the default tier exports (bLVNet-TAM-R50,
# TSM-/TSN-MobileNetV2) at 15-50 s each: in the slow tier
HEAVY_REPEATS = {"blvnet_tam_r101", "tsm_resnet50", "tsn_resnet50"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY_REPEATS else n
                                  for n in list_models()])
def test_every_registered_model_exports_and_keeps_temporal_ops_delegated(name: str):
    _check_model(name)
