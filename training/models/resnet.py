"""ResNet-50/101 in plain ``torch.nn`` with torchvision's key names, and the TSN / TSM video baselines built on it.

* :class:`ResNet` -- torchvision's v1.5 ResNet (stride on the 3x3 conv), same parameter names (``conv1``, ``bn1``,
  ``layer{1..4}.{i}.conv{1,2,3}`` / ``bn{1,2,3}`` / ``downsample.{0,1}``, ``fc``) so a torchvision ImageNet file loads
  with :func:`load_weights`. No ImageNet weights exist offline: ``pretrained=True`` is refused, ``weights_path`` loads a
  file the user provides.
* ``tsn_resnet50`` -- TSN (average consensus, :class:`training.models.tsn.TSN`) on ResNet-50.
* ``tsm_resnet50`` -- TSM (Lin et al., ICCV 2019): offline bi-directional temporal shift of 1/8 + 1/8 of the channels
  (``fold_div=8``) inserted in the residual branch of every bottleneck, before ``conv1`` ("residual shift"; the
  identity / downsample path sees the unshifted input), then TSN average consensus.

Clips are ``(N, T, 3, H, W)``; ``frames`` is T.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from sdk.errors import ConfigError
from training.models.registry import register_model
from training.models.temporal import TemporalShift
from training.models.tsn import TSN

DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (expansion 4, stride on conv2); ``shift`` (no parameters) runs before ``conv1``."""

    expansion = 4

    def __init__(self, inplanes: int, width: int, stride: int = 1, downsample: nn.Module | None = None,
                 shift: nn.Module | None = None):
        super().__init__()
        out = width * self.expansion
        self.shift = shift
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.shift(x) if self.shift is not None else x
        out = self.relu(self.bn1(self.conv1(out)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def init_weights(model: nn.Module, zero_init_residual: bool) -> None:
    """ResNet initialisation: kaiming (fan_out) convs, unit BN; ``zero_init_residual`` zeroes the last BN of every
    bottleneck so each block starts as its shortcut."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        if zero_init_residual and isinstance(m, Bottleneck):
            nn.init.zeros_(m.bn3.weight)


class ResNet(nn.Module):
    """Image ResNet ``(N, 3, H, W) -> (N, num_classes)``; ``shift_frames > 0`` adds TSM shifts over that many frames."""

    def __init__(self, depth: int = 50, num_classes: int = 1000, *, shift_frames: int = 0, shift_div: int = 8,
                 zero_init_residual: bool = False):
        super().__init__()
        if depth not in DEPTHS:
            raise ConfigError(f"ResNet depth must be one of {sorted(DEPTHS)}, got {depth}")
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = 64
        for i, (blocks, width) in enumerate(zip(DEPTHS[depth], (64, 128, 256, 512), strict=True)):
            stride = 1 if i == 0 else 2
            layers = []
            for b in range(blocks):
                downsample = None
                if b == 0 and (stride != 1 or inplanes != width * 4):
                    downsample = nn.Sequential(nn.Conv2d(inplanes, width * 4, 1, stride=stride, bias=False),
                                               nn.BatchNorm2d(width * 4))
                shift = TemporalShift(inplanes, shift_frames, shift_div) if shift_frames > 0 else None
                layers.append(Bottleneck(inplanes, width, stride if b == 0 else 1, downsample, shift))
                inplanes = width * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.num_features = inplanes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        init_weights(self, zero_init_residual)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(N, num_features)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def load_weights(model: nn.Module, path: str | Path, *, with_classifier: bool = False) -> nn.Module:
    """Load a torchvision-keyed ResNet state dict (bare, ``{'state_dict': ...}`` or ``module.``-prefixed) strictly."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    if not with_classifier:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state and (with_classifier or not k.startswith("fc.")))
    unexpected = sorted(k for k in state if k not in own)
    shape = sorted(k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or shape:
        raise ConfigError(f"{path}: not a matching ResNet state dict: missing {missing[:5]} ({len(missing)}), "
                          f"unexpected {unexpected[:5]} ({len(unexpected)}), shape mismatch {shape[:5]}")
    model.load_state_dict(state, strict=False)
    return model


def _backbone(depth: int, pretrained: bool, weights_path: str | Path | None, **kw) -> ResNet:
    if pretrained and weights_path is None:
        raise ConfigError("no ImageNet ResNet weights exist offline: use pretrained=False, or pass weights_path= "
                          "to a torchvision-keyed ResNet state dict")
    backbone = ResNet(depth, **kw)
    if weights_path is not None:
        load_weights(backbone, weights_path)
    backbone.fc = nn.Identity()
    return backbone


@register_model
def tsn_resnet50(*, num_classes: int, frames: int, pretrained: bool = False, weights_path: str | Path | None = None,
                 dropout: float = 0.5) -> TSN:
    """TSN-ResNet50: per-frame ResNet-50, average consensus; ``weights_path``: torchvision-keyed backbone weights."""
    backbone = _backbone(50, pretrained, weights_path)
    return TSN(backbone, backbone.num_features, num_classes, frames, dropout)


@register_model
def tsm_resnet50(*, num_classes: int, frames: int, pretrained: bool = False, weights_path: str | Path | None = None,
                 dropout: float = 0.5, shift_div: int = 8) -> TSN:
    """TSM-ResNet50: offline bi-directional residual shift (1/shift_div each way) in every bottleneck, then TSN."""
    backbone = _backbone(50, pretrained, weights_path, shift_frames=frames, shift_div=shift_div)
    return TSN(backbone, backbone.num_features, num_classes, frames, dropout)
