"""Temporal MobileNetV2 for the edge: TAM-MobileNetV2, TSM-MobileNetV2 (offline / online) and a causal TAM variant.

All of them are a 2D MobileNetV2 (torchvision key names, ImageNet init) applied to every frame, with a temporal module
inserted in the residual branch of every InvertedResidual block that has an identity shortcut (10 of the 17 blocks),
average consensus of per-frame features over time, and a dropout + linear head -- the TSN harness
(:mod:`training.models.tsn`) with temporal modelling added.

Placement and initialisation
----------------------------
* **TSM** (as in the TSM paper's MobileNetV2): the shift goes at the start of the residual branch,
  ``x + conv(shift(x))``, on the block input (``position="input"``, channels = block input channels).
* **TAM** (offline, and ``tam_mobilenet_v2_causal_expanded``) goes on the *expanded* activations, right after the
  first 1x1 conv + BN + ReLU6 of the block (``position="expanded"``, channels = 6 x block input channels):
  ``x + project(dw(tam(expand(x))))``. Why: MobileNetV2 block inputs are *linear* bottleneck outputs and are often
  negative; TAM ends in a ReLU, so a TAM on the block input would clip them and change the pretrained function even
  at an "identity" init. The expanded activations are ReLU6 outputs (>= 0), so with the current-frame tap at 1 and
  the other taps at 0 the TAM is **exactly the identity at init**: a fresh TAM-MobileNetV2 computes the same function
  as TSN-MobileNetV2 with the same backbone weights, and ImageNet initialisation is preserved.
* **The streaming causal TAM** (``tam_mobilenet_v2_causal``) goes on the block *input* instead and drops the ReLU: a
  linear depthwise temporal conv over (t-1, t) is the identity at init on signed inputs too, and its streaming state
  is one past block input (C channels) per block instead of two past expanded maps (12 C): at 224 px 0.09 M floats
  for its 7 temporal blocks vs 2.6 M, and a step that costs about what a plain MobileNetV2 frame costs (docs/measurements.md,
  "Streaming that is nearly free").

Streaming (causal models only: ``tam_mobilenet_v2_causal``, ``tsm_mobilenet_v2_online``)
----------------------------------------------------------------------------------------
The clip logits are ``fc(mean_t features_t)`` = ``mean_t fc(features_t)`` (the head is linear), so per-frame logits
are well defined: :meth:`TemporalMobileNetV2.forward_frames` gives them offline, and
``step(frame, *state) -> (logits, features, *new_state)`` gives them one frame at a time; ``initial_state`` returns
zeros (one rank-4 tensor per temporal module, in block order) and :meth:`~TemporalMobileNetV2.state_specs` names and
shapes them (the aggregators of ``training.models.aggregators`` use the same two names).
Streaming a clip through ``step`` from zero state equals the offline model on the same frames (eval mode).

The offline temporal modules are built for clips of exactly ``frames`` frames.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from training.models.mobilenet_v2 import InvertedResidual, MobileNetV2, load_imagenet_weights
from training.models.registry import register_model
from training.models.temporal import TAM, TEMPORAL_MODULES, CausalTAM, TemporalShift
from training.models.tsn import TSN

POSITIONS = ("input", "expanded")


class TemporalInvertedResidual(nn.Module):
    """An :class:`InvertedResidual` with an identity shortcut and a temporal module in its residual branch.

    Re-uses the block's ``conv`` (so the keys stay ``features.{i}.conv.*`` as in torchvision) and adds
    ``features.{i}.temporal.*``. ``position="input"``: ``x + conv(temporal(x))``; ``position="expanded"``:
    ``x + conv[1:](temporal(conv[0](x)))`` (after the expansion 1x1 conv + BN + ReLU6).
    """

    def __init__(self, block: InvertedResidual, temporal: nn.Module, position: str):
        super().__init__()
        if not block.use_res_connect:
            raise ValueError("temporal modules go only into blocks with an identity shortcut")
        if position not in POSITIONS:
            raise ValueError(f"position must be one of {POSITIONS}, got {position!r}")
        if position == "expanded" and len(block.conv) < 4:
            raise ValueError("position='expanded' needs a block with an expansion conv (expand_ratio != 1)")
        self.conv = block.conv
        self.temporal = temporal
        self.position = position
        self.use_res_connect = True
        self.out_channels = block.out_channels

    def _branch(self, x: torch.Tensor, temporal: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        if self.position == "input":
            return self.conv(temporal(x))
        h = temporal(self.conv[0](x))
        for layer in list(self.conv)[1:]:
            h = layer(h)
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self._branch(x, self.temporal)

    def temporal_channels(self) -> int:
        """Channels the temporal module sees."""
        return self.conv[0][0].in_channels if self.position == "input" else self.conv[0][0].out_channels

    def step(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame ``(N, C, H, W)`` through the block with the causal temporal module's streaming form."""
        new_state: list[torch.Tensor] = []

        def temporal(h: torch.Tensor) -> torch.Tensor:
            out, s = self.temporal.step(h, state)
            new_state.append(s)
            return out

        out = x + self._branch(x, temporal)
        return out, new_state[0]


def _conv_out(size: int, conv: nn.Conv2d, dim: int) -> int:
    k, s, p, d = conv.kernel_size[dim], conv.stride[dim], conv.padding[dim], conv.dilation[dim]
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _spatial_after(module: nn.Module, h: int, w: int) -> tuple[int, int]:
    """Spatial size after a chain of convs (every Conv2d of ``module`` in order; MobileNetV2 blocks are chains)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            h, w = _conv_out(h, m, 0), _conv_out(w, m, 1)
    return h, w


def insert_temporal(backbone: MobileNetV2, factory: Callable[[int], nn.Module], position: str,
                    start: int = 0) -> MobileNetV2:
    """Replace every residual InvertedResidual of ``backbone.features[start:]`` by a :class:`TemporalInvertedResidual`.

    ``factory(channels)`` builds the temporal module. Call it *after* loading ImageNet weights (the new
    ``temporal.*`` keys are not in the ImageNet file). ``start > 0`` keeps the first blocks per-frame, so that they can
    be frozen and their output cached (``training.data.feature_cache``).
    """
    for i, layer in enumerate(backbone.features):
        if i >= start and isinstance(layer, InvertedResidual) and layer.use_res_connect:
            channels = layer.conv[0][0].in_channels if position == "input" else layer.conv[0][0].out_channels
            backbone.features[i] = TemporalInvertedResidual(layer, factory(channels), position)
    return backbone


def identity_init_tam(tam: nn.Module) -> nn.Module:
    """Current-frame tap = 1, other taps = 0 (exact identity on non-negative inputs)."""
    if isinstance(tam, TAM):
        taps, current = tam._taps(), tam.kernel // 2
    elif isinstance(tam, CausalTAM):
        taps, current = list(tam.blending_layers), tam.kernel - 1
    else:
        raise TypeError(f"not a TAM: {type(tam).__name__}")
    with torch.no_grad():
        for i, conv in enumerate(taps):
            conv.weight.fill_(1.0 if i == current else 0.0)
    return tam


def is_temporal_block(module: nn.Module) -> bool:
    """A block that mixes frames: it holds a temporal module as ``.temporal`` and has ``step(x, state)`` (e.g.
    :class:`TemporalInvertedResidual`, ``tam_head.TAMBlock``). The streaming harness threads one state through each."""
    return isinstance(getattr(module, "temporal", None), TEMPORAL_MODULES) and hasattr(module, "step")


def temporal_state_specs(features: nn.Sequential, height: int, width: int, batch: int,
                        prefix: str) -> list[tuple[str, tuple[int, int, int, int]]]:
    """``[(f"{prefix}_{i}", shape)]`` of the state of every temporal block in ``features`` on ``height x width``
    input, in ``step`` order."""
    spec, h, w = [], height, width
    for i, layer in enumerate(features):
        if is_temporal_block(layer):
            spec.append((f"{prefix}_{i}", tuple(layer.temporal.state_shape(batch, h, w))))
        h, w = _spatial_after(layer, h, w)
    return spec


class TemporalMobileNetV2(TSN):
    """Clips ``(N, T, 3, H, W)`` -> logits ``(N, num_classes)``; a MobileNetV2 with temporal modules + TSN head."""

    def __init__(self, backbone: MobileNetV2, num_classes: int, frames: int, dropout: float = 0.5):
        backbone.classifier = nn.Identity()
        super().__init__(backbone, backbone.num_features, num_classes, frames, dropout)

    def forward_features(self, clips: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Per-frame pooled features ``(N, T, F)`` (T must equal ``frames``); ``start``: see :meth:`TSN.forward_features`."""
        if clips.shape[1] != self.frames:
            raise ValueError(f"this model was built for clips of {self.frames} frames, got {clips.shape[1]}")
        return super().forward_features(clips, start)

    # ---- streaming -------------------------------------------------------------------------------------------------
    def temporal_blocks(self) -> list[tuple[int, nn.Module]]:
        return [(i, m) for i, m in enumerate(self.backbone.features) if is_temporal_block(m)]

    @property
    def causal(self) -> bool:
        """True when every temporal module has a streaming form (CausalTAM, online TemporalShift)."""
        blocks = self.temporal_blocks()
        return bool(blocks) and all(
            isinstance(b.temporal, CausalTAM) or (isinstance(b.temporal, TemporalShift) and b.temporal.online)
            for _, b in blocks)

    def _require_causal(self) -> None:
        if not self.causal:
            raise RuntimeError("this model looks at future frames (offline TAM / bi-directional shift): "
                               "it cannot stream; "
                               "use tam_mobilenet_v2_causal, tam_head_mobilenet_v2_causal or tsm_mobilenet_v2_online")

    def state_specs(self, height: int, width: int, batch: int = 1) -> list[tuple[str, tuple[int, int, int, int]]]:
        """``[(name, shape)]`` of the streaming state tensors for ``height x width`` frames, in ``step`` order."""
        self._require_causal()
        return temporal_state_specs(self.backbone.features, height, width, batch, "state_features")

    def step(self, frame: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One frame ``(N, 3, H, W)`` -> ``(logits (N, K), features (N, F), *new_state)``."""
        self._require_causal()
        blocks = self.temporal_blocks()
        if len(state) != len(blocks):
            raise ValueError(f"expected {len(blocks)} state tensors, got {len(state)}")
        x, k, new_state = frame, 0, []
        for layer in self.backbone.features:
            if is_temporal_block(layer):
                x, s = layer.step(x, state[k])
                new_state.append(s)
                k += 1
            else:
                x = layer(x)
        features = x.mean((2, 3), keepdim=True).flatten(1)
        return (self.fc(self.dropout(features)), features, *new_state)


def _backbone(pretrained: bool, width_mult: float) -> MobileNetV2:
    backbone = MobileNetV2(width_mult=width_mult)
    if pretrained:
        load_imagenet_weights(backbone)
    return backbone



@register_model
def tam_mobilenet_v2(*, num_classes: int, frames: int, pretrained: bool = True, width_mult: float = 1.0,
                     dropout: float = 0.5, kernel: int = 3, position: str = "expanded",
                     temporal_from: int = 0) -> TemporalMobileNetV2:
    """TAM-MobileNetV2 (offline, TAM over t-1, t, t+1; identity at init on the expanded activations).

    ``position="input"`` puts the TAM on the block input instead (6x fewer channels, but its ReLU clips the linear
    bottleneck at init: not the identity).
    """
    backbone = insert_temporal(_backbone(pretrained, width_mult),
                               lambda c: identity_init_tam(TAM(c, frames, kernel)), position, temporal_from)
    return TemporalMobileNetV2(backbone, num_classes, frames, dropout)


@register_model
def tam_mobilenet_v2_causal(*, num_classes: int, frames: int, pretrained: bool = True, width_mult: float = 1.0,
                            dropout: float = 0.5, kernel: int = 2, temporal_from: int = 7) -> TemporalMobileNetV2:
    """Causal TAM-MobileNetV2 for streaming: a *linear* causal TAM (taps t-1, t for ``kernel=2``) on the input of the
    residual blocks from ``temporal_from`` on (default 7: the 7 blocks at stride 16 and 32).

    Identity at init (no ReLU, so exact on the signed bottleneck too): a fresh model is TSN-MobileNetV2. State: the
    block input of the last ``kernel - 1`` frames, ``(kernel - 1) x C`` per temporal block: 0.09 M floats at 224x224
    (all 10 blocks, ``temporal_from=0``: 0.22 M; the expanded placement, ``tam_mobilenet_v2_causal_expanded``:
    2.6 M). Blocks 0-6 stay per-frame, so ``freeze=7`` trains it on a feature cache. Measured per-frame cost in
    README ("Streaming that is nearly free").
    """
    backbone = insert_temporal(_backbone(pretrained, width_mult),
                               lambda c: identity_init_tam(CausalTAM(c, frames, kernel, activation=False)), "input",
                               temporal_from)
    return TemporalMobileNetV2(backbone, num_classes, frames, dropout)


@register_model
def tam_mobilenet_v2_causal_expanded(*, num_classes: int, frames: int, pretrained: bool = True,
                                     width_mult: float = 1.0, dropout: float = 0.5, kernel: int = 3,
                                     temporal_from: int = 0) -> TemporalMobileNetV2:
    """The first causal TAM-MobileNetV2, kept for comparison: TAM + ReLU over t-2, t-1, t on the 6x *expanded*
    activations. State: 2 x 6 x C per residual block (about 2.6 M floats at 224x224)."""
    backbone = insert_temporal(_backbone(pretrained, width_mult),
                               lambda c: identity_init_tam(CausalTAM(c, frames, kernel)), "expanded", temporal_from)
    return TemporalMobileNetV2(backbone, num_classes, frames, dropout)


@register_model
def tsm_mobilenet_v2(*, num_classes: int, frames: int, pretrained: bool = True, width_mult: float = 1.0,
                     dropout: float = 0.5, fold_div: int = 8, temporal_from: int = 0) -> TemporalMobileNetV2:
    """TSM-MobileNetV2 baseline: bi-directional shift (1/8 from t+1, 1/8 from t-1) at the start of residual branches."""
    backbone = insert_temporal(_backbone(pretrained, width_mult),
                               lambda c: TemporalShift(c, frames, fold_div, online=False), "input", temporal_from)
    return TemporalMobileNetV2(backbone, num_classes, frames, dropout)


@register_model
def tsm_mobilenet_v2_online(*, num_classes: int, frames: int, pretrained: bool = True, width_mult: float = 1.0,
                            dropout: float = 0.5, fold_div: int = 8, temporal_from: int = 0) -> TemporalMobileNetV2:
    """Online TSM-MobileNetV2 baseline: uni-directional shift (1/8 of the channels from t-1); streams with ``step``."""
    backbone = insert_temporal(_backbone(pretrained, width_mult),
                               lambda c: TemporalShift(c, frames, fold_div, online=True), "input", temporal_from)
    return TemporalMobileNetV2(backbone, num_classes, frames, dropout)

