"""TAM-head MobileNetV2: the temporal model that learns on 2 CPU cores, and its order-blind control.

An ImageNet MobileNetV2 trunk (``features[:trunk]``, per frame; 7 blocks: stride 8, 32 channels) followed by a small
temporal head (:data:`HEAD_STAGES`): 1x1 reductions, residual TAM blocks at the trunk's resolution and at half of it,
and a 1x1 expansion, then the TSN harness (average consensus over time, dropout, linear). Every layer lives in ``backbone.features``, so the trunk can be frozen and its
output cached once per frame (:mod:`training.data.feature_cache`) and the head trained for many epochs on the cache
(``forward_features(cached, start=trunk)``); the exported model is the whole network.

Why this shape (measured on the ``small`` time-reversal benchmark at 112 px, docs/results.md):
fine-tuning ImageNet blocks 14-18 with TAMs costs ~77 s per epoch on 2 cores (16 frames), a head like this one
10-15 s, and it learns the frame order within a few epochs; on the stride-8 trunk output it separates rotation,
orbit and stretch directions better than on the stride-16 one (features[:14]). A TAM block is ``relu(x + project(dw3x3(relu(bn(tam(x))))))``: the TAM (depthwise
temporal conv over t-1, t, t+1) mixes neighbouring frames per channel, the spatial depthwise conv relates that change
to its neighbourhood (motion direction), and the 1x1 projection mixes channels.

``tsn_head_mobilenet_v2`` is the same network with ``kernel=1`` TAMs (the current frame's tap only): the same
parameters per frame and the same MACs, no temporal modelling -- the control that must stay at pair chance.
"""
from __future__ import annotations

import torch
from torch import nn

from training.models.mobilenet_v2 import ConvBNReLU6, MobileNetV2, load_imagenet_weights
from training.models.registry import register_model
from training.models.tam_mobilenet import TemporalMobileNetV2
from training.models.temporal import TAM, CausalTAM

__all__ = ["TAMBlock", "tam_head_mobilenet_v2", "tam_head_mobilenet_v2_causal", "tsn_head_mobilenet_v2"]


class TAMBlock(nn.Module):
    """``relu(x + project(dw3x3(relu(bn(tam(x))))))`` on frame-stacked ``(N*T, C, H, W)`` activations.

    ``causal=True`` uses a :class:`CausalTAM` (taps t-kernel+1 .. t) and the block streams with :meth:`step`."""

    def __init__(self, channels: int, frames: int, kernel: int = 3, causal: bool = False):
        super().__init__()
        self.temporal = (CausalTAM(channels, frames, kernel, activation=False) if causal
                         else TAM(channels, frames, kernel, activation=False))
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.spatial = ConvBNReLU6(channels, channels, kernel=3, groups=channels)
        self.project = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def _rest(self, x: torch.Tensor, mixed: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.project(self.spatial(self.relu(self.bn(mixed)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._rest(x, self.temporal(x))

    def step(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame ``(N, C, H, W)`` with the causal TAM's state -> ``(output, new_state)``."""
        mixed, new_state = self.temporal.step(x, state)
        return self._rest(x, mixed), new_state


# The head, as data: output channels, TAM blocks, stride of the stage's entry (2: a depthwise 3x3 stride-2 conv first).
# The first stage works at the trunk's resolution (stride 8 after features[:7]), the second at half of it.
# c, n, s
HEAD_STAGES = ((96, 1, 1), (192, 2, 2))


def _trunk_and_head(pretrained: bool, frames: int, trunk: int, features: int, kernel: int,
                    causal: bool = False) -> MobileNetV2:
    backbone = MobileNetV2()
    if pretrained:
        load_imagenet_weights(backbone)
    if not 1 <= trunk < len(backbone.features):
        raise ValueError(f"trunk must be in [1, {len(backbone.features) - 1}], got {trunk}")
    cin = backbone.features[trunk - 1].out_channels
    head: list[nn.Module] = []
    for c, n, stride in HEAD_STAGES:
        if stride != 1:
            head.append(ConvBNReLU6(cin, cin, kernel=3, stride=stride, groups=cin))
        head.append(ConvBNReLU6(cin, c, kernel=1))
        head += [TAMBlock(c, frames, kernel, causal) for _ in range(n)]
        cin = c
    head.append(ConvBNReLU6(cin, features, kernel=1))
    backbone.features = nn.Sequential(*backbone.features[:trunk], *head)
    backbone.num_features = features
    return backbone


@register_model
def tam_head_mobilenet_v2(*, num_classes: int, frames: int, pretrained: bool = True, trunk: int = 7,
                          features: int = 256, dropout: float = 0.2, kernel: int = 3) -> TemporalMobileNetV2:
    """ImageNet MobileNetV2 ``features[:trunk]`` + a TAM head (:data:`HEAD_STAGES`, pooled ``features``); freeze the
    trunk (``freeze=trunk``) to train on a feature cache."""
    return TemporalMobileNetV2(_trunk_and_head(pretrained, frames, trunk, features, kernel), num_classes, frames,
                               dropout)


@register_model
def tam_head_mobilenet_v2_causal(*, num_classes: int, frames: int, pretrained: bool = True, trunk: int = 7,
                                 features: int = 256, dropout: float = 0.2, kernel: int = 3) -> TemporalMobileNetV2:
    """:func:`tam_head_mobilenet_v2` with causal TAMs (taps t-2, t-1, t): trains on the feature cache like the
    teacher, and streams one frame at a time (``step``; state: the last ``kernel - 1`` inputs of each TAM block)."""
    return TemporalMobileNetV2(_trunk_and_head(pretrained, frames, trunk, features, kernel, causal=True),
                               num_classes, frames, dropout)


@register_model
def tsn_head_mobilenet_v2(*, num_classes: int, frames: int, pretrained: bool = True, trunk: int = 7,
                          features: int = 256, dropout: float = 0.2) -> TemporalMobileNetV2:
    """:func:`tam_head_mobilenet_v2` with current-frame-only TAMs (``kernel=1``): same cost, frame-order blind."""
    return tam_head_mobilenet_v2(num_classes=num_classes, frames=frames, pretrained=pretrained, trunk=trunk,
                                 features=features, dropout=dropout, kernel=1)
