"""TAM-head MobileNetV2: the temporal model that learns on 2 CPU cores, and its order-blind control.

An ImageNet MobileNetV2 trunk (``features[:trunk]``, per frame) followed by a small temporal head at the trunk's
resolution: a 1x1 reduction, ``blocks`` residual TAM blocks and a 1x1 expansion, then the TSN harness (average
consensus over time, dropout, linear). Every layer lives in ``backbone.features``, so the trunk can be frozen and its
output cached once per frame (:mod:`training.data.feature_cache`) and the head trained for many epochs on the cache
(``forward_features(cached, start=trunk)``); the exported model is the whole network.

Why this shape (measured on the ``small`` time-reversal benchmark, 112 px, 16 frames, README "Models that learn"):
fine-tuning ImageNet blocks 14-18 with TAMs costs ~77 s per epoch on 2 cores, this head ~15 s, and it learns the
frame order within a few epochs. A TAM block is ``relu(x + project(dw3x3(relu(bn(tam(x))))))``: the TAM (depthwise
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
from training.models.temporal import TAM

__all__ = ["TAMBlock", "tam_head_mobilenet_v2", "tsn_head_mobilenet_v2"]


class TAMBlock(nn.Module):
    """``relu(x + project(dw3x3(relu(bn(tam(x))))))`` on frame-stacked ``(N*T, C, H, W)`` activations."""

    def __init__(self, channels: int, frames: int, kernel: int = 3):
        super().__init__()
        self.temporal = TAM(channels, frames, kernel, activation=False)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.spatial = ConvBNReLU6(channels, channels, kernel=3, groups=channels)
        self.project = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.project(self.spatial(self.relu(self.bn(self.temporal(x))))))


def _trunk_and_head(pretrained: bool, frames: int, trunk: int, width: int, blocks: int, features: int,
                    kernel: int) -> MobileNetV2:
    backbone = MobileNetV2()
    if pretrained:
        load_imagenet_weights(backbone)
    if not 1 <= trunk < len(backbone.features):
        raise ValueError(f"trunk must be in [1, {len(backbone.features) - 1}], got {trunk}")
    head = nn.Sequential(ConvBNReLU6(backbone.features[trunk - 1].out_channels, width, kernel=1),
                         *(TAMBlock(width, frames, kernel) for _ in range(blocks)),
                         ConvBNReLU6(width, features, kernel=1))
    backbone.features = nn.Sequential(*backbone.features[:trunk], *head)
    backbone.num_features = features
    backbone.trunk = trunk
    return backbone


@register_model
def tam_head_mobilenet_v2(*, num_classes: int, frames: int, pretrained: bool = True, trunk: int = 14,
                          width: int = 128, blocks: int = 2, features: int = 256, dropout: float = 0.5,
                          kernel: int = 3) -> TemporalMobileNetV2:
    """ImageNet MobileNetV2 ``features[:trunk]`` + a TAM head (``blocks`` TAM blocks at ``width`` channels, pooled
    ``features``); freeze the trunk (``freeze=trunk``) to train on a feature cache."""
    backbone = _trunk_and_head(pretrained, frames, trunk, width, blocks, features, kernel)
    return TemporalMobileNetV2(backbone, num_classes, frames, dropout)


@register_model
def tsn_head_mobilenet_v2(*, num_classes: int, frames: int, pretrained: bool = True, trunk: int = 14,
                          width: int = 128, blocks: int = 2, features: int = 256,
                          dropout: float = 0.5) -> TemporalMobileNetV2:
    """:func:`tam_head_mobilenet_v2` with current-frame-only TAMs (``kernel=1``): same cost, frame-order blind."""
    return tam_head_mobilenet_v2(num_classes=num_classes, frames=frames, pretrained=pretrained, trunk=trunk,
                                 width=width, blocks=blocks, features=features, dropout=dropout, kernel=1)
