"""Big-little MobileNetV2 with TAM (``bl_mobilenet_v2_tam``): the bLVNet-TAM principle on a MobileNetV2.

Input: clips of **2T** frames ``(N, 2T, 3, H, W)`` where ``T`` is the builder's ``frames`` argument (``model.frames``;
``model.input_frames == 2T``). As in :mod:`training.models.blvnet`, with 0-based indices the odd frames
``1, 3, 5, ...`` go to the big branch and the even frames ``0, 2, 4, ...`` to the little branch; pair ``t`` is
(little frame ``2t``, big frame ``2t + 1``).

* **Big branch**: a full-width MobileNetV2 (ImageNet-initialisable, torchvision keys under ``big.features.*``) on the
  big frames downsampled 2x (2x2 average pool; frame sides must be multiples of 32), i.e. at half resolution. Its residual blocks carry a TAM
  (kernel 3, offline: t-1, t, t+1 over the T big frames) placed on the expanded activations and initialised to the
  identity, exactly as in :mod:`training.models.tam_mobilenet` -- so every TAM after a merge point operates on the
  *merged* big features.
* **Little branch**: a thin MobileNetV2 (``width_mult=alpha``, default 0.5) at full resolution with fewer blocks
  (each stage's repeats ``n -> max(1, n - beta)``, default ``beta=1``), covering the stages up to the 96-channel
  stage (output stride 16); randomly initialised. No temporal modules.
* **Merges** after the 24-, 32- and 96-channel stages: the little branch is at twice the big branch's resolution there,
  so its output is 2x2 average pooled to the big resolution, projected to the big channels with a 1x1
  conv + BN, and added to the big features. The merge BN's scale starts at **zero**, so at initialisation the model is
  exactly TAM-MobileNetV2 on the half-resolution big frames (ImageNet init preserved; the little branch is learned in).
* The last stages (160, 320 channels, 1x1 conv to 1280) run on the merged big features only (T frames); head =
  average consensus of per-frame pooled features over the T big frames + dropout + linear (as TSN).

``bl_mobilenet_v2_tam_causal`` is the same with CausalTAM (big frames t-2, t-1, t) and a streaming form whose step
consumes one frame pair -- input frames ``2t`` (little) and ``2t + 1`` (big) concatenated on channels, ``(N, 6, H, W)``
-- and returns the per-pair logits; the mean of those over the T pairs equals the offline clip logits.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.models.mobilenet_v2 import (INVERTED_RESIDUAL_SETTING, ConvBNReLU6, InvertedResidual, MobileNetV2,
                                          load_imagenet_weights, make_divisible)
from training.models.registry import register_model
from training.models.tam_mobilenet import (TemporalInvertedResidual, identity_init_tam, insert_temporal,
                                          temporal_state_specs)
from training.models.temporal import TAM, CausalTAM
from training.models.tsn import ConsensusHead

# Merge after these entries of INVERTED_RESIDUAL_SETTING (the 24-, 32- and 96-channel stages: output strides 4, 8, 16).
MERGE_AFTER_SETTINGS = (1, 2, 4)


def _setting_end_indices(repeats: list[int]) -> dict[int, int]:
    """``{setting index: index in features of its last block}`` for a features list ``[stem, blocks...]``."""
    ends, idx = {}, 0
    for s, n in enumerate(repeats):
        idx += n
        ends[s] = idx
    return ends


class BigLittleMobileNetV2(ConsensusHead):
    """Clips ``(N, 2T, 3, H, W)`` -> logits ``(N, num_classes)``; see the module docstring."""

    def __init__(self, big: MobileNetV2, num_classes: int, frames: int, alpha: float = 0.5, beta: int = 1,
                 dropout: float = 0.5):
        super().__init__()
        self.frames = frames
        self.input_frames = 2 * frames
        self.num_features = big.num_features
        big.classifier = nn.Identity()
        self.big = big

        # little branch: thin, fewer blocks, stops after the last merged stage
        cin = make_divisible(32 * alpha)
        layers: list[nn.Module] = [ConvBNReLU6(3, cin, stride=2)]
        repeats, little_channels = [], {}
        for s, (t, c, n, stride) in enumerate(INVERTED_RESIDUAL_SETTING[:max(MERGE_AFTER_SETTINGS) + 1]):
            cout = make_divisible(c * alpha)
            reps = max(1, n - beta)
            for i in range(reps):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, t))
                cin = cout
            repeats.append(reps)
            little_channels[s] = cout
        self.little = nn.Sequential(*layers)
        for m in self.little.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

        little_ends = _setting_end_indices(repeats)
        big_ends = _setting_end_indices([n for _, _, n, _ in INVERTED_RESIDUAL_SETTING])
        self._little_taps = [little_ends[s] for s in MERGE_AFTER_SETTINGS]
        self._big_taps = [big_ends[s] for s in MERGE_AFTER_SETTINGS]
        big_channels = {s: big.features[big_ends[s]].out_channels for s in MERGE_AFTER_SETTINGS}
        self.merges = nn.ModuleList()
        for s in MERGE_AFTER_SETTINGS:
            proj = nn.Sequential(nn.Conv2d(little_channels[s], big_channels[s], 1, bias=False),
                                 nn.BatchNorm2d(big_channels[s]))
            nn.init.kaiming_normal_(proj[0].weight, mode="fan_out")
            nn.init.zeros_(proj[1].weight)
            self.merges.append(proj)

        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes)

    def split(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, 2T, 3, H, W)`` -> big frames ``(N*T, 3, ceil(H/2), ceil(W/2))``, little frames ``(N*T, 3, H, W)``."""
        if clips.shape[1] != self.input_frames:
            raise ValueError(f"bl_mobilenet_v2_tam built with frames={self.frames} takes 2*frames = "
                             f"{self.input_frames} input frames, got {clips.shape[1]}")
        if clips.shape[-2] % 32 or clips.shape[-1] % 32:
            raise ValueError(f"bl_mobilenet_v2_tam needs frame sides that are a multiple of 32 (the branches merge at "
                             f"matching resolutions), got {tuple(clips.shape[-2:])}")
        # Frames 2t and 2t+1 side by side on channels: contiguous slices, no strided gather (it stays off XNNPACK).
        pairs = clips.reshape(-1, 6, clips.shape[-2], clips.shape[-1])
        return F.avg_pool2d(pairs[:, 3:], 2), pairs[:, :3]

    def _run(self, xb: torch.Tensor, xl: torch.Tensor,
             state: tuple[torch.Tensor, ...] | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Both branches on stacked frames; with ``state`` the temporal blocks use their streaming ``step``."""
        little_out = []
        for i, layer in enumerate(self.little):
            xl = layer(xl)
            if i in self._little_taps:
                little_out.append(xl)
        k, j, new_state = 0, 0, []
        for i, layer in enumerate(self.big.features):
            if state is not None and isinstance(layer, TemporalInvertedResidual):
                xb, s = layer.step(xb, state[j])
                new_state.append(s)
                j += 1
            else:
                xb = layer(xb)
            if i in self._big_taps:
                xb = xb + self.merges[k](F.avg_pool2d(little_out[k], 2))
                k += 1
        return xb.mean((2, 3), keepdim=True).flatten(1), new_state

    def forward_features(self, clips: torch.Tensor) -> torch.Tensor:
        """Per-(big-)frame pooled features ``(N, T, F)``."""
        xb, xl = self.split(clips)
        return self._run(xb, xl)[0].unflatten(0, (clips.shape[0], self.frames))

    # ---- streaming (causal variant only) -------------------------------------------------------------------------
    @property
    def causal(self) -> bool:
        blocks = [m for m in self.big.features if isinstance(m, TemporalInvertedResidual)]
        return bool(blocks) and all(isinstance(b.temporal, CausalTAM) for b in blocks)

    def _require_causal(self) -> None:
        if not self.causal:
            raise RuntimeError("bl_mobilenet_v2_tam uses future frames and cannot stream: "
                               "use bl_mobilenet_v2_tam_causal")

    def state_specs(self, height: int, width: int, batch: int = 1) -> list[tuple[str, tuple[int, int, int, int]]]:
        """``[(name, shape)]`` of the streaming state for ``height x width`` frames (the big branch sees half of it)."""
        self._require_causal()
        return temporal_state_specs(self.big.features, height // 2, width // 2, batch, "state_big_features")

    def step(self, pair: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One **frame pair** ``(N, 6, H, W)`` = little frame (channels 0-2) and big frame (3-5), i.e. input frames
        ``2t`` and ``2t + 1`` concatenated on channels (rank 4 at the program boundary) ->
        ``(logits (N, K), features (N, F), *new_state)``."""
        self._require_causal()
        if pair.shape[1] != 6:
            raise ValueError("step takes a big + little frame pair concatenated on channels (N, 6, H, W), "
                             f"got {tuple(pair.shape)}")
        features, new_state = self._run(F.avg_pool2d(pair[:, 3:], 2), pair[:, :3], tuple(state))
        return (self.fc(self.dropout(features)), features, *new_state)



@register_model
def bl_mobilenet_v2_tam(*, num_classes: int, frames: int, pretrained: bool = True, alpha: float = 0.5, beta: int = 1,
                        dropout: float = 0.5, kernel: int = 3) -> BigLittleMobileNetV2:
    """Big-little MobileNetV2 with TAM; ``frames`` = T, the input has **2T** frames.

    ``pretrained`` loads ImageNet weights into the big branch (the little branch and merges start random / zero).
    """
    big = MobileNetV2()
    if pretrained:
        load_imagenet_weights(big)
    insert_temporal(big, lambda c: identity_init_tam(TAM(c, frames, kernel)), "expanded")
    return BigLittleMobileNetV2(big, num_classes, frames, alpha, beta, dropout)


@register_model
def bl_mobilenet_v2_tam_causal(*, num_classes: int, frames: int, pretrained: bool = True, alpha: float = 0.5,
                               beta: int = 1, dropout: float = 0.5, kernel: int = 3) -> BigLittleMobileNetV2:
    """Causal big-little MobileNetV2 (CausalTAM over big frames t-2, t-1, t); streams one frame pair per ``step``."""
    big = MobileNetV2()
    if pretrained:
        load_imagenet_weights(big)
    insert_temporal(big, lambda c: identity_init_tam(CausalTAM(c, frames, kernel)), "expanded")
    return BigLittleMobileNetV2(big, num_classes, frames, alpha, beta, dropout)
