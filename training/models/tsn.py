"""TSN: a 2D image backbone applied to every sampled frame, averaged over time (average consensus).

Frame-order invariant by construction -- on the time-reversal benchmark it is the control that must stay at pair chance.
"""
from __future__ import annotations

import torch
from torch import nn

from training.models.mobilenet_v2 import MobileNetV2, load_imagenet_weights
from training.models.registry import register_model
from training.models.temporal import temporal_mean


class ConsensusHead(nn.Module):
    """The one clip head: average consensus of per-frame features over time, dropout, linear.

    Subclasses provide ``forward_features(clips) -> (N, T, F)`` and set ``self.dropout`` / ``self.fc``. Since the head
    is linear, the clip logits are the mean over time of the per-frame logits (:meth:`forward_frames`), which is what
    the streaming models emit one frame at a time.
    """

    dropout: nn.Module
    fc: nn.Linear

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Average consensus over time, then the classifier (``pre_logits``: stop before it)."""
        pooled = temporal_mean(features)
        return pooled if pre_logits else self.fc(self.dropout(pooled))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(clips))

    def forward_frames(self, clips: torch.Tensor) -> torch.Tensor:
        """Per-frame logits ``(N, T, num_classes)``; their mean over time is ``forward(clips)`` in eval mode."""
        return self.fc(self.dropout(self.forward_features(clips)))

    def initial_state(self, height: int, width: int, batch: int = 1) -> tuple[torch.Tensor, ...]:
        """Zero streaming state (start of a stream; what ``reset()`` means) for models with a ``state_specs``."""
        p = self.fc.weight
        return tuple(torch.zeros(shape, dtype=p.dtype, device=p.device)
                     for _, shape in self.state_specs(height, width, batch))


class TSN(ConsensusHead):
    """Clips ``(N, T, 3, H, W)`` -> logits ``(N, num_classes)``: per-frame features, averaged over T, linear head."""

    def __init__(self, backbone: nn.Module, num_features: int, num_classes: int, frames: int, dropout: float = 0.5):
        super().__init__()
        self.frames = frames
        self.num_features = num_features
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_features, num_classes)

    def forward_features(self, clips: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Per-frame pooled features ``(N, T, F)``; ``start > 0``: ``clips`` are ``(N, T, C, h, w)`` activations of the
        backbone's first ``start`` blocks (a feature cache), and only the rest of the network runs."""
        n, t = clips.shape[:2]
        x = clips.flatten(0, 1)
        x = self.backbone.forward_features(x, start) if start else self.backbone.forward_features(x)
        return x.unflatten(0, (n, t))


@register_model
def tsn_mobilenet_v2(*, num_classes: int, frames: int, pretrained: bool = True, width_mult: float = 1.0,
                     dropout: float = 0.5) -> TSN:
    """TSN on MobileNetV2; ``pretrained`` loads the offline ImageNet weights (width 1.0 only)."""
    backbone = MobileNetV2(width_mult=width_mult)
    if pretrained:
        load_imagenet_weights(backbone)
    backbone.classifier = nn.Identity()
    return TSN(backbone, backbone.num_features, num_classes, frames, dropout)
