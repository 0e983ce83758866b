"""Big-little TAM-head MobileNetV2 (``bl_tam_head_mobilenet_v2``): bLVNet-TAM's big-little idea on the CPU-trainable
TAM-head model (:mod:`training.models.tam_head`).

Input: clips of **2T** frames ``(N, 2T, 3, H, W)``; pair ``t`` is (little frame ``2t``, big frame ``2t + 1``), as in
:mod:`training.models.blvnet`.

* **Big branch**: the ImageNet MobileNetV2 trunk ``features[:7]`` (stride 8, 32 channels) on the big frame
  downsampled 2x (2x2 average pool), i.e. at half resolution.
* **Little branch**: a thin copy of the same trunk (``alpha`` of the channels, ``beta`` fewer blocks per stage) on
  the little frame at full resolution. ``little_init="imagenet"`` fills it from the ImageNet trunk, keeping each
  layer's channels with the largest filter norms (:func:`thin_imagenet_trunk`); ``"random"`` leaves it random.
* **Merge**: the little output (at twice the big resolution) is 2x2 average pooled, projected to the big channels
  (1x1 conv + BN whose scale starts at zero: the model starts as the TAM head on the half-resolution big frames) and
  added to the big output.
* **Head**: the TAM head of :func:`~training.models.tam_head.tam_head_mobilenet_v2` over the T merged pairs, average
  consensus, dropout, linear.

Why this layout: the trunks are per-frame and frozen, so both run once per video frame into the feature cache
(:mod:`training.data.feature_cache`). ``backbone.features[0]`` (:class:`BigLittleTrunk`) is that per-frame prefix: it
returns both branches' outputs for *every* frame, the little one folded to the big resolution with
``pixel_unshuffle`` (exact); the merge (``features[1]``) then takes the big channels of frame ``2t + 1`` and the little
channels of frame ``2t``, so any sampled frame can serve as either. The model itself (``forward`` from frames, MACs,
export) runs each trunk only on its own frames. What the structure does not allow: training the little trunk on the
cache (it is frozen like the big one; with ``little_init="imagenet"`` its BN statistics should be re-measured on the
data, ``prefix_bn=recalibrate`` in :class:`training.train.TrainConfig`, since thinning changes every layer's input).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.models.mobilenet_v2 import (INVERTED_RESIDUAL_SETTING, ConvBNReLU6, InvertedResidual, MobileNetV2,
                                          load_imagenet_weights, make_divisible)
from training.models.registry import register_model
from training.models.tam_head import _trunk_and_head
from training.models.tsn import ConsensusHead

__all__ = ["BigLittleTAMHead", "BigLittleTrunk", "bl_tam_head_mobilenet_v2", "thin_imagenet_trunk"]

TRUNK_SETTINGS = 3  # features[:7] = stem + INVERTED_RESIDUAL_SETTING[0:3] (1 + 2 + 3 blocks)


def _little_trunk(alpha: float, beta: int) -> nn.Sequential:
    """Stem + the first :data:`TRUNK_SETTINGS` stages at ``alpha`` width with ``max(1, n - beta)`` blocks each."""
    cin = make_divisible(32 * alpha)
    layers: list[nn.Module] = [ConvBNReLU6(3, cin, stride=2)]
    for t, c, n, stride in INVERTED_RESIDUAL_SETTING[:TRUNK_SETTINGS]:
        cout = make_divisible(c * alpha)
        for i in range(max(1, n - beta)):
            layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, t))
            cin = cout
    little = nn.Sequential(*layers)
    little.out_channels = cin
    for m in little.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
    return little


def _strongest(weight: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (sorted) of the ``k`` output filters of ``weight`` with the largest L1 norms."""
    return weight.abs().flatten(1).sum(1).topk(k).indices.sort().values


def _copy_conv_bn(dst: nn.Sequential, src: nn.Sequential, out_idx: torch.Tensor, in_idx: torch.Tensor | None) -> None:
    """``dst = src`` restricted to output channels ``out_idx`` (and input channels ``in_idx`` unless depthwise)."""
    w = src[0].weight[out_idx]
    dst[0].weight.copy_(w if in_idx is None else w[:, in_idx])
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst[1], name).copy_(getattr(src[1], name)[out_idx])


@torch.no_grad()
def thin_imagenet_trunk(little: nn.Sequential, full: nn.Sequential) -> None:
    """Fill the thin trunk ``little`` from the ImageNet trunk ``full`` (both stem + inverted residual blocks).

    Each stage's first blocks map to the full stage's first blocks (the dropped ones are residual: skipping them keeps
    the stream). Channels: a layer keeps the outputs whose filters (restricted to the kept inputs) have the largest L1
    norms; a residual block keeps its stage's stream channels; depthwise convs follow their input. BN statistics are
    copied for the kept channels and are no longer exact (each output lost part of its inputs): re-measure them.
    """
    full_blocks, little_blocks = list(full), list(little)
    stem_out = little_blocks[0][0].out_channels
    keep = _strongest(full_blocks[0][0].weight, stem_out)
    _copy_conv_bn(little_blocks[0], full_blocks[0], keep, None)
    f = l = 1
    for _, _, n, _ in INVERTED_RESIDUAL_SETTING[:TRUNK_SETTINGS]:
        reps = _stage_reps(little_blocks, l)
        for i in range(reps):
            keep = _thin_block(little_blocks[l + i], full_blocks[f + i], keep)
        l, f = l + reps, f + n


def _stage_reps(blocks: list[nn.Module], start: int) -> int:
    """Number of blocks of the stage starting at ``blocks[start]`` (the first one changes the channels/stride, the
    following ones are residual)."""
    count = 1
    while start + count < len(blocks) and blocks[start + count].use_res_connect:
        count += 1
    return count


def _thin_block(dst: InvertedResidual, src: InvertedResidual, in_idx: torch.Tensor) -> torch.Tensor:
    """Copy ``src`` into the thinner ``dst`` given the kept input channels; returns the kept output channels."""
    layers, src_layers = list(dst.conv), list(src.conv)
    if len(layers) == 4:  # expand 1x1, depthwise, project, BN
        hidden = _strongest(src_layers[0][0].weight[:, in_idx], layers[0][0].out_channels)
        _copy_conv_bn(layers[0], src_layers[0], hidden, in_idx)
        layers, src_layers = layers[1:], src_layers[1:]
    else:
        hidden = in_idx
    _copy_conv_bn(layers[0], src_layers[0], hidden, None)
    project = src_layers[1].weight[:, hidden]
    out = in_idx if dst.use_res_connect else _strongest(project, layers[1].out_channels)
    layers[1].weight.copy_(project[out])
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(layers[2], name).copy_(getattr(src_layers[2], name)[out])
    return out


class BigLittleTrunk(nn.Module):
    """The per-frame prefix: a frame ``(M, 3, H, W)`` -> ``(M, C_big + 4 C_little, H/16, W/16)``, the big trunk on
    the frame at half resolution and the little trunk at full resolution folded 2x2 into channels. Only the feature
    cache runs it on every frame; the model runs each trunk on its own frames (:meth:`BigLittleTAMHead.trunks`)."""

    def __init__(self, big: nn.Sequential, little: nn.Sequential):
        super().__init__()
        self.big, self.little = big, little
        self.big_channels, self.little_channels = big[-1].out_channels, little.out_channels
        self.out_channels = self.big_channels + 4 * self.little_channels

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.big(F.avg_pool2d(frames, 2)), F.pixel_unshuffle(self.little(frames), 2)], 1)


class PairMerge(nn.Module):
    """Big output of frame ``2t + 1`` + projected, pooled little output of frame ``2t``: ``(N*2T, C_packed, h, w)``
    packed frames -> ``(N*T, C_big, h, w)`` merged pairs."""

    def __init__(self, trunk: BigLittleTrunk):
        super().__init__()
        self.big_channels = trunk.big_channels
        self.project = nn.Sequential(nn.Conv2d(trunk.little_channels, trunk.big_channels, 1, bias=False),
                                     nn.BatchNorm2d(trunk.big_channels))
        nn.init.kaiming_normal_(self.project[0].weight, mode="fan_out")
        nn.init.zeros_(self.project[1].weight)

    def merge(self, big: torch.Tensor, little: torch.Tensor) -> torch.Tensor:
        return big + self.project(F.avg_pool2d(little, 2))

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        pairs = packed.unflatten(0, (-1, 2))  # the inverse of BigLittleTrunk's packing, big from 2t+1, little from 2t
        c = self.big_channels
        return self.merge(pairs[:, 1, :c], F.pixel_shuffle(pairs[:, 0, c:], 2))


class BigLittleTAMHead(ConsensusHead):
    """Clips ``(N, 2T, 3, H, W)`` -> logits; see the module docstring. ``backbone.features`` = [trunk, merge, head...]
    so that ``freeze=1`` freezes (and caches) exactly the two trunks."""

    def __init__(self, backbone: MobileNetV2, num_classes: int, frames: int, dropout: float):
        super().__init__()
        self.frames, self.input_frames = frames, 2 * frames
        self.num_features = backbone.num_features
        backbone.classifier = nn.Identity()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes)

    def trunks(self, clips: torch.Tensor) -> torch.Tensor:
        """Clips ``(N, 2T, 3, H, W)`` -> merged pairs ``(N*T, C_big, h, w)``, each trunk on its own frames."""
        if clips.shape[1] != self.input_frames:
            raise ValueError(f"bl_tam_head_mobilenet_v2 built with frames={self.frames} takes 2*frames = "
                             f"{self.input_frames} input frames, got {clips.shape[1]}")
        if clips.shape[-2] % 16 or clips.shape[-1] % 16:
            raise ValueError("bl_tam_head_mobilenet_v2 needs frame sides that are a multiple of 16 (the branches "
                             f"merge at matching resolutions), got {tuple(clips.shape[-2:])}")
        trunk, merge = self.backbone.features[0], self.backbone.features[1]
        # frames 2t and 2t+1 side by side on channels: contiguous slices, no strided gather
        pairs = clips.reshape(-1, 6, clips.shape[-2], clips.shape[-1])
        return merge.merge(trunk.big(F.avg_pool2d(pairs[:, 3:], 2)), trunk.little(pairs[:, :3]))

    def forward_features(self, clips: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Per-pair pooled features ``(N, T, F)``; ``start=1``: ``clips`` are cached trunk outputs ``(N, 2T, C, h, w)``."""
        n = clips.shape[0]
        if start == 0:
            x = self.trunks(clips)
        elif start == 1:
            x = self.backbone.features[1](clips.flatten(0, 1))
        else:
            raise ValueError(f"bl_tam_head_mobilenet_v2 runs from block 0 (frames) or 1 (cached trunks), not {start}")
        x = self.backbone.features[2:](x)
        return x.mean((2, 3), keepdim=True).flatten(1).unflatten(0, (n, self.frames))


@register_model
def bl_tam_head_mobilenet_v2(*, num_classes: int, frames: int, pretrained: bool = True, alpha: float = 0.5,
                             beta: int = 1, little_init: str = "imagenet", features: int = 256,
                             dropout: float = 0.2, kernel: int = 3) -> BigLittleTAMHead:
    """Big-little TAM head; ``frames`` = T pairs, the input has **2T** frames. ``pretrained`` loads the ImageNet
    trunk into the big branch (and, with ``little_init="imagenet"``, its thinned copy into the little one)."""
    if little_init not in ("imagenet", "random"):
        raise ValueError(f"little_init must be 'imagenet' or 'random', got {little_init!r}")
    backbone = _trunk_and_head(pretrained, frames, 7, features, kernel)
    big = nn.Sequential(*backbone.features[:7])
    little = _little_trunk(alpha, beta)
    if pretrained and little_init == "imagenet":
        thin_imagenet_trunk(little, big)
    trunk = BigLittleTrunk(big, little)
    backbone.features = nn.Sequential(trunk, PairMerge(trunk), *backbone.features[7:])
    return BigLittleTAMHead(backbone, num_classes, frames, dropout)
