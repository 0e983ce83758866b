"""bLVNet-TAM (Fan et al., NeurIPS 2019): big-little ResNet-50/101 with temporal aggregation modules.

Faithful re-implementation of IBM/bLVNet-TAM (``core/models/blvnet_tam_backbone.py`` / ``blvnet_tam.py``); parameter and
buffer names and shapes equal the official model's so its checkpoints load (:func:`load_official_checkpoint`).

Input convention: clips ``(N, 2T, 3, H, W)`` -> logits ``(N, num_classes)``. ``frames`` is **T, the number of big
frames** (an "8x2" model has ``frames=8`` and sees 16 frames). With 0-based frame indices, the odd frames (1, 3, ...) go
through the big branch (full width, half resolution), the even frames (0, 2, ...) through the little branch (width /
alpha, fewer blocks, full resolution); big frame ``2j+1`` is merged with little frame ``2j``, and the merged result is
duplicated back to frames ``2j`` and ``2j+1`` for the next stage's TAM. ``layer4`` runs on the T merged frames only, the
head averages the per-frame logits over those T frames.

Everything is written with reshape / slice / cat on rank-4 tensors (the TAMs use rank-3 reshapes): no fancy indexing,
no in-place writes, so the model exports with ``torch.export``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sdk.errors import ConfigError
from training.models import resnet
from training.models.registry import register_model
from training.models.temporal import TAM, temporal_mean

DEPTHS = {50: (3, 4, 6, 3), 101: (4, 8, 18, 3), 152: (5, 12, 30, 3)}


class Bottleneck(resnet.Bottleneck):
    """The official bLVNet bottleneck: the torchvision layers (same keys), with ``planes`` the *output* width.

    With ``tam`` the block aggregates time before ``conv1``; as in the official code the shortcut then takes the
    TAM output when there is a ``downsample`` and the raw input when there is not. ``last_relu=False`` ends the big
    path of a bLModule without ReLU (upstream).
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 last_relu: bool = True, tam: nn.Module | None = None):
        super().__init__(inplanes, planes // self.expansion, stride, downsample)
        self.last_relu = last_relu
        self.tam = tam

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        if self.tam is not None:
            x = self.tam(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        out = out + residual
        return self.relu(out) if self.last_relu else out


class PaddedAvgPool(nn.Module):
    """``AvgPool2d(3, 2, padding=1)`` (zeros counted, as PyTorch's default) written as a depthwise 3x3 convolution with
    fixed weights 1/9: the same average, and XNNPACK runs it in fp32 and int8 (it rejects pooling whose padding counts
    in the average, and an int8 zero ``F.pad`` lowered but failed to load: ``StaticConstantPad ...
    invalid_parameter``, executorch 1.5.1). The weights are a non-persistent buffer: checkpoints are unchanged."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("weight", torch.full((channels, 1, 3, 3), 1 / 9), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, stride=2, padding=1, groups=x.shape[1])


def _downsample(inplanes: int, planes: int, stride: int) -> nn.Sequential | None:
    """Official shortcut: ``AvgPool2d(3, 2, 1)`` when strided, then 1x1 conv + BN when the width changes."""
    layers: list[nn.Module] = []
    if stride != 1:
        layers.append(PaddedAvgPool(inplanes))
    if inplanes != planes:
        layers += [nn.Conv2d(inplanes, planes, 1, bias=False), nn.BatchNorm2d(planes)]
    return nn.Sequential(*layers) if layers else None


def _make_layer(inplanes: int, planes: int, blocks: int, stride: int = 1, last_relu: bool = True,
                tam_frames: int = 0, blending_frames: int = 3) -> nn.Sequential:
    """A stage of ``blocks`` bottlenecks; ``last_relu`` applies to the last one only when ``blocks > 1`` (as upstream);
    ``tam_frames > 0`` gives every block a TAM over that many frames (layer4)."""
    def tam(ch: int) -> TAM | None:
        return TAM(ch, tam_frames, blending_frames) if tam_frames > 0 else None

    layers = [Bottleneck(inplanes, planes, stride, _downsample(inplanes, planes, stride), tam=tam(inplanes))]
    for i in range(1, blocks):
        layers.append(Bottleneck(planes, planes, last_relu=last_relu if i == blocks - 1 else True, tam=tam(planes)))
    return nn.Sequential(*layers)


def _split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N*2T, C, H, W)`` -> (little = even frames, big = odd frames), each ``(N*T, C, H, W)``."""
    nt, c, h, w = x.shape
    pairs = x.reshape(nt // 2, 2 * c, h, w)
    return pairs[:, :c], pairs[:, c:]


def _duplicate(x: torch.Tensor) -> torch.Tensor:
    """``(N*T, C, H, W)`` -> ``(N*2T, C, H, W)`` with frames ``2j`` and ``2j+1`` both equal to ``x[j]``."""
    n, c, h, w = x.shape
    # ``x + 0``: XNNPACK rejects a cat of a tensor with itself (executorch 1.5.1); a second node keeps it delegated.
    return torch.cat([x, x + 0], dim=1).reshape(2 * n, c, h, w)


def upsample_nearest(x: torch.Tensor, size: torch.Size, ones: torch.Tensor) -> torch.Tensor:
    """Nearest upsampling to ``size``; an exact 2x is a depthwise stride-2 transposed conv with the unit 2x2 kernels
    ``ones`` ``(C, 1, 2, 2)`` (identical values, and delegated by XNNPACK, which has no nearest resize), anything else
    ``F.interpolate``."""
    n, c, h, w = x.shape
    if tuple(size) == (2 * h, 2 * w):
        return F.conv_transpose2d(x, ones, stride=2, groups=c)
    return F.interpolate(x, size=size, mode="nearest")


class BLModule(nn.Module):
    """One big-little stage (official ``bLModule``): TAM over the 2T frames, big path on odd frames (``blocks - 1``
    blocks, first strided), little path on even frames (width / alpha, ``max(1, blocks // beta - 1)`` blocks),
    1x1 expansion of the little path, nearest upsample of big to little's size, add, ReLU, one fusion block with the
    stage stride, duplicated back to 2T frames."""

    def __init__(self, in_channels: int, out_channels: int, blocks: int, alpha: int, beta: int, stride: int,
                 num_frames: int, blending_frames: int = 3):
        super().__init__()
        self.relu = nn.ReLU(inplace=True)
        self.big = _make_layer(in_channels, out_channels, blocks - 1, 2, last_relu=False)
        self.little = _make_layer(in_channels, out_channels // alpha, max(1, blocks // beta - 1))
        self.little_e = nn.Sequential(nn.Conv2d(out_channels // alpha, out_channels, 1, bias=False),
                                      nn.BatchNorm2d(out_channels))
        self.fusion = _make_layer(out_channels, out_channels, 1, stride=stride)
        self.tam = TAM(in_channels, num_frames, blending_frames)
        # A constant of upsample_nearest, not a parameter: kept out of the state_dict (official keys unchanged).
        self.register_buffer("upsample_ones", torch.ones(out_channels, 1, 2, 2), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        little, big = _split(self.tam(x))
        big = self.big(big)
        little = self.little_e(self.little(little))
        big = upsample_nearest(big, little.shape[2:], self.upsample_ones)
        return _duplicate(self.fusion(self.relu(big + little)))


class BLResNetTAMBackbone(nn.Module):
    """bLResNet with TAMs (official ``bLVNet_TAM_BACKBONE`` without its ``fc``): ``(N*2T, 3, H, W)`` ->
    pooled features of the T big frames ``(N*T, 2048)``."""

    def __init__(self, depth: int = 50, alpha: int = 2, beta: int = 4, frames: int = 8, blending_frames: int = 3):
        super().__init__()
        if depth not in DEPTHS:
            raise ConfigError(f"bLResNet depth must be one of {sorted(DEPTHS)}, got {depth}")
        layers = DEPTHS[depth]
        num_frames = 2 * frames
        ch = [64, 128, 256, 512]
        e = Bottleneck.expansion
        self.conv1 = nn.Conv2d(3, ch[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(ch[0])
        self.relu = nn.ReLU(inplace=True)
        self.b_conv0 = nn.Conv2d(ch[0], ch[0], 3, stride=2, padding=1, bias=False)
        self.bn_b0 = nn.BatchNorm2d(ch[0])
        self.l_conv0 = nn.Conv2d(ch[0], ch[0] // alpha, 3, stride=1, padding=1, bias=False)
        self.bn_l0 = nn.BatchNorm2d(ch[0] // alpha)
        self.l_conv1 = nn.Conv2d(ch[0] // alpha, ch[0] // alpha, 3, stride=2, padding=1, bias=False)
        self.bn_l1 = nn.BatchNorm2d(ch[0] // alpha)
        self.l_conv2 = nn.Conv2d(ch[0] // alpha, ch[0], 1, bias=False)
        self.bn_l2 = nn.BatchNorm2d(ch[0])
        self.bl_init = nn.Conv2d(ch[0], ch[0], 1, bias=False)
        self.bn_bl_init = nn.BatchNorm2d(ch[0])
        self.tam = TAM(ch[0], num_frames, blending_frames)
        self.layer1 = BLModule(ch[0], ch[0] * e, layers[0], alpha, beta, 2, num_frames, blending_frames)
        self.layer2 = BLModule(ch[0] * e, ch[1] * e, layers[1], alpha, beta, 2, num_frames, blending_frames)
        self.layer3 = BLModule(ch[1] * e, ch[2] * e, layers[2], alpha, beta, 1, num_frames, blending_frames)
        self.layer4 = _make_layer(ch[2] * e, ch[3] * e, layers[3], stride=2, tam_frames=frames,
                                  blending_frames=blending_frames)
        self.gappool = nn.AdaptiveAvgPool2d(1)
        self.num_features = ch[3] * e
        resnet.init_weights(self, zero_init_residual=True)  # official: zero-init last BN of each block

    def _layer0(self, x: torch.Tensor) -> torch.Tensor:
        little, big = _split(self.tam(x))
        big = self.bn_b0(self.b_conv0(big))
        little = self.relu(self.bn_l0(self.l_conv0(little)))
        little = self.relu(self.bn_l1(self.l_conv1(little)))
        little = self.bn_l2(self.l_conv2(little))
        x = self.relu(big + little)
        return _duplicate(self.relu(self.bn_bl_init(self.bl_init(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self._layer0(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.layer4(_split(x)[1])
        return self.gappool(x).flatten(1)


class BLVNetTAM(nn.Module):
    """bLVNet-TAM video classifier: clips ``(N, 2T, 3, H, W)`` -> logits ``(N, num_classes)``; ``frames`` = T.

    Official wrapper layout: ``baseline_model`` (the backbone) and ``new_fc`` (the classifier, ``N(0, 0.001)`` init);
    the head is dropout, the classifier per big frame, then the mean over the T frames.
    """

    def __init__(self, num_classes: int, frames: int, depth: int = 50, alpha: int = 2, beta: int = 4,
                 blending_frames: int = 3, dropout: float = 0.5):
        super().__init__()
        if frames < 1:
            raise ConfigError(f"frames (big frames T; the clip has 2T) must be >= 1, got {frames}")
        self.frames, self.depth, self.alpha, self.beta = frames, depth, alpha, beta
        self.input_frames = 2 * frames  # what the sampler must deliver per clip
        self.baseline_model = BLResNetTAMBackbone(depth, alpha, beta, frames, blending_frames)
        self.num_features = self.baseline_model.num_features
        self.dropout = nn.Dropout(dropout)
        self.new_fc = nn.Linear(self.num_features, num_classes)
        nn.init.normal_(self.new_fc.weight, 0, 0.001)
        nn.init.zeros_(self.new_fc.bias)

    def forward_features(self, clips: torch.Tensor) -> torch.Tensor:
        """Per-big-frame pooled features ``(N, T, num_features)``."""
        n, t2, c, h, w = clips.shape
        if t2 != 2 * self.frames:
            raise ConfigError(f"bLVNet-TAM with frames={self.frames} expects clips of {2 * self.frames} frames "
                              f"(2T), got {t2}")
        feats = self.baseline_model(clips.reshape(n * t2, c, h, w))
        return feats.reshape(n, self.frames, self.num_features)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Classifier per frame then the mean over time (``pre_logits``: the mean feature, before the classifier)."""
        if pre_logits:
            return temporal_mean(features)
        return temporal_mean(self.new_fc(self.dropout(features)))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(clips))


# ----------------------------------------------------------------------------------------------- official checkpoints
@dataclass
class LoadReport:
    """What :func:`load_official_checkpoint` did: keys loaded, and the mismatches (empty when strict loading passed)."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatch: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatch)

    def describe(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"missing {len(self.missing)}: {', '.join(self.missing[:8])}")
        if self.unexpected:
            parts.append(f"unexpected {len(self.unexpected)}: {', '.join(self.unexpected[:8])}")
        if self.shape_mismatch:
            items = list(self.shape_mismatch.items())[:8]
            parts.append(f"shape mismatch {len(self.shape_mismatch)}: "
                         + ", ".join(f"{k} checkpoint {list(a)} vs model {list(b)}" for k, (a, b) in items))
        return "; ".join(parts) or "all keys match"


def normalise_official_state(state: Mapping) -> dict[str, torch.Tensor]:
    """Unwrap ``{'state_dict': ...}``, strip ``module.`` prefixes, and map a dropout-0 official head
    (``baseline_model.fc.*``) onto ``new_fc.*``."""
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ConfigError(f"not a state dict: {type(state).__name__}")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        while key.startswith("module."):
            key = key[len("module."):]
        if key.startswith("baseline_model.fc."):
            key = "new_fc." + key[len("baseline_model.fc."):]
        out[key] = value
    return out


def _read_state(path_or_state: str | Path | Mapping, what: str) -> dict[str, torch.Tensor]:
    """A state dict from a file (read with ``weights_only=True``: no code runs) or as given, normalised."""
    if isinstance(path_or_state, (str, Path)):
        try:
            path_or_state = torch.load(path_or_state, map_location="cpu", weights_only=True)
        except FileNotFoundError as exc:
            raise ConfigError(f"{what} not found: {path_or_state}") from exc
    return normalise_official_state(path_or_state)


def _compare(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor],
             absent: Callable[[str], bool] = lambda key: False) -> LoadReport:
    """Keys of ``own`` missing from ``state``, keys of ``state`` that ``own`` lacks, and shape mismatches; ``absent``
    keys must not be in ``state`` (and are not missed)."""
    report = LoadReport(missing=sorted(k for k in own if k not in state and not absent(k)),
                        unexpected=sorted(k for k in state if k not in own or absent(k)))
    for key, value in state.items():
        if key in own and tuple(value.shape) != tuple(own[key].shape):
            report.shape_mismatch[key] = (tuple(value.shape), tuple(own[key].shape))
    return report


def load_official_checkpoint(model: BLVNetTAM, path_or_state: str | Path | Mapping, *, strict: bool = True
                             ) -> LoadReport:
    """Load an official IBM/bLVNet-TAM checkpoint (file path or already-loaded dict) into ``model``.

    Accepts a bare state dict, ``{'state_dict': ...}`` and ``module.``-prefixed keys (DataParallel). Files are read
    with ``weights_only=True`` (no code runs). With ``strict`` any missing / unexpected / wrongly shaped key raises
    :class:`sdk.errors.ConfigError` naming the keys and nothing is loaded; with ``strict=False`` the matching keys are
    loaded and the report lists the rest.
    """
    state = _read_state(path_or_state, "checkpoint")
    own = model.state_dict()
    report = _compare(own, state)
    if strict and not report.ok:
        raise ConfigError(f"checkpoint does not match {type(model).__name__}: {report.describe()}")
    loadable = {k: v for k, v in state.items() if k in own and k not in report.shape_mismatch}
    model.load_state_dict(loadable, strict=False)
    report.loaded = sorted(loadable)
    return report


def _is_new_in_video_net(key: str) -> bool:
    """Parameters a video bLVNet-TAM has and an ImageNet bLResNet lacks: every TAM and the video classifier."""
    return key.startswith("new_fc.") or "tam" in key.split(".")


def load_imagenet_blresnet(model: BLVNetTAM, path_or_state: str | Path | Mapping) -> LoadReport:
    """Start ``model``'s backbone from an ImageNet bLResNet checkpoint of IBM/BigLittleNet (e.g.
    ``ImageNet-bLResNet-50-a2-b4.pth.tar``), the paper's initialisation.

    The ImageNet network has the backbone's key names without the ``baseline_model.`` prefix, no TAMs, and a 1000-way
    ``fc``: its keys are prefixed, its ``fc`` dropped, and every backbone parameter that is not a TAM must be present
    with the same shape -- anything else (a ResNeXt file, other ``alpha``/``beta``, another depth) raises
    :class:`sdk.errors.ConfigError` naming the keys, and nothing is loaded. The TAMs and ``new_fc`` keep their
    initialisation. (The official bLVNet-TAM code's RGB path builds an empty state dict here and so loads none of
    these weights; this function loads them.)
    """
    state = {f"baseline_model.{k}": v for k, v in _read_state(path_or_state, "ImageNet bLResNet checkpoint").items()
             if not k.startswith("fc.")}
    report = _compare(model.state_dict(), state, absent=_is_new_in_video_net)
    if not report.ok:
        raise ConfigError(f"not an ImageNet bLResNet-{model.depth} (a{model.alpha}-b{model.beta}) checkpoint: "
                          f"{report.describe()}")
    model.load_state_dict(state, strict=False)
    report.loaded = sorted(state)
    return report


# --------------------------------------------------------------------------------------------------------- registry
def _build(depth: int, num_classes: int, frames: int, pretrained: bool, weights_path, imagenet_weights,
           **kw) -> BLVNetTAM:
    if pretrained and weights_path is None and imagenet_weights is None:
        raise ConfigError("no bLVNet-TAM weights exist offline: use pretrained=False, or pass weights_path= to an "
                          "official IBM/bLVNet-TAM checkpoint or imagenet_weights= to an ImageNet bLResNet one")
    if weights_path is not None and imagenet_weights is not None:
        raise ConfigError("weights_path (a whole bLVNet-TAM) and imagenet_weights (its backbone) exclude each other")
    model = BLVNetTAM(num_classes, frames, depth=depth, **kw)
    if weights_path is not None:
        load_official_checkpoint(model, weights_path)
    if imagenet_weights is not None:
        load_imagenet_blresnet(model, imagenet_weights)
    return model


@register_model
def blvnet_tam_r50(*, num_classes: int, frames: int, pretrained: bool = False, weights_path: str | Path | None = None,
                   imagenet_weights: str | Path | None = None, alpha: int = 2, beta: int = 4,
                   blending_frames: int = 3, dropout: float = 0.5) -> BLVNetTAM:
    """bLVNet-TAM on bLResNet-50; ``frames`` = T big frames (clips of 2T frames). ``weights_path``: a whole official
    bLVNet-TAM checkpoint; ``imagenet_weights``: an ImageNet bLResNet-50-a2-b4 backbone (:func:`load_imagenet_blresnet`)."""
    return _build(50, num_classes, frames, pretrained, weights_path, imagenet_weights, alpha=alpha, beta=beta,
                  blending_frames=blending_frames, dropout=dropout)


@register_model
def blvnet_tam_r101(*, num_classes: int, frames: int, pretrained: bool = False, weights_path: str | Path | None = None,
                    imagenet_weights: str | Path | None = None, alpha: int = 2, beta: int = 4,
                    blending_frames: int = 3, dropout: float = 0.5) -> BLVNetTAM:
    """bLVNet-TAM on bLResNet-101; ``frames`` = T big frames (clips of 2T frames). ``weights_path``: a whole official
    bLVNet-TAM checkpoint; ``imagenet_weights``: an ImageNet bLResNet-101-a2-b4 backbone."""
    return _build(101, num_classes, frames, pretrained, weights_path, imagenet_weights, alpha=alpha, beta=beta,
                  blending_frames=blending_frames, dropout=dropout)
