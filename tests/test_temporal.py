"""Temporal modules: TAM equals its definition, causal forms stream exactly, no forbidden ops."""
from __future__ import annotations

import pytest
import torch

from training.models.temporal import CausalTAM, TAM, TemporalShift, shift_time, temporal_mean

N, T, C, H, W = 2, 5, 16, 3, 4


def clips() -> torch.Tensor:
    return torch.randn(N * T, C, H, W, generator=torch.Generator().manual_seed(0))


def per_frame(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(N, T, C, H, W)


def test_shift_time():
    x = clips()
    y = per_frame(shift_time(x, T, -1))
    torch.testing.assert_close(y[:, 1:], per_frame(x)[:, :-1])
    assert torch.all(y[:, 0] == 0)
    y = per_frame(shift_time(x, T, 2))
    torch.testing.assert_close(y[:, :-2], per_frame(x)[:, 2:])
    assert torch.all(y[:, -2:] == 0)


@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_tam_is_a_depthwise_temporal_convolution(kernel: int):
    tam = TAM(C, T, kernel)
    for p in tam.parameters():
        torch.nn.init.normal_(p)
    x = clips()
    taps = torch.stack([conv.weight.reshape(C) for conv in tam._taps()])  # (kernel, C)
    xf = torch.nn.functional.pad(per_frame(x), (0, 0, 0, 0, 0, 0, kernel // 2, kernel // 2))
    expected = sum(taps[i][None, None, :, None, None] * xf[:, i:i + T] for i in range(kernel)).relu()
    torch.testing.assert_close(per_frame(tam(x)), expected, rtol=1e-5, atol=1e-5)


def test_tam_key_names_follow_the_official_code():
    assert sorted(TAM(C, T, 3).state_dict()) == ["curr.weight", "next.weight", "prev.weight"]
    assert sorted(TAM(C, T, 5).state_dict())[0] == "blending_layers.0.weight"


@pytest.mark.parametrize("module", [CausalTAM(C, T, 3), CausalTAM(C, T, 1), TemporalShift(C, T, online=True)],
                         ids=["causal_tam3", "causal_tam1", "tsm_online"])
def test_streaming_equals_offline(module):
    for p in module.parameters():
        torch.nn.init.normal_(p)
    x = clips()
    offline = per_frame(module(x))
    state = torch.zeros(module.state_shape(N, H, W))
    frames = per_frame(x)
    for t in range(T):
        out, state = module.step(frames[:, t], state)
        assert state.ndim == 4
        torch.testing.assert_close(out, offline[:, t], rtol=0, atol=1e-5)


def test_causal_tam_ignores_the_future():
    tam = CausalTAM(C, T, 3)
    x = clips()
    y = per_frame(tam(x))
    x2 = per_frame(x).clone()
    x2[:, 3:] += 1.0
    torch.testing.assert_close(per_frame(tam(x2.reshape(N * T, C, H, W)))[:, :3], y[:, :3])


def test_offline_shift_moves_one_fold_each_way():
    x = clips()
    y, xf = per_frame(TemporalShift(C, T, fold_div=8)(x)), per_frame(x)
    torch.testing.assert_close(y[:, :-1, :2], xf[:, 1:, :2])
    torch.testing.assert_close(y[:, 1:, 2:4], xf[:, :-1, 2:4])
    torch.testing.assert_close(y[:, :, 4:], xf[:, :, 4:])
    with pytest.raises(RuntimeError, match="online"):
        TemporalShift(C, T).step(xf[:, 0], torch.zeros(N, 2, H, W))


def test_temporal_mean():
    x = torch.randn(3, 5, 7)
    torch.testing.assert_close(temporal_mean(x), x.mean(1))
