"""The FASTER network: what ``python -m training.faster`` trains and the converters export.

A FASTER video model is two frozen clip models (an *expensive* and a *cheap* one), each followed by a fixed
standardisation and a learned projection into one feature space, and an aggregator (:mod:`training.models.aggregators`)
over the mixed sequence. A schedule ``1:N`` says which segments the expensive model sees. The recipe
(:mod:`training.faster`) trains it; this module is the library both the recipe and :mod:`converters` build on. It
only builds modules: the checkpoint format (``FasterMeta``, ``load_faster``) lives in :mod:`training.checkpoint`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sdk.errors import ConfigError
from sdk.gate import FIRST_CHANGE
from sdk.manifest import CLIP_ROLES, GATES
from training.models.aggregators import Aggregator

__all__ = ["GATES", "FasterModel", "LearnedGate", "backbone_maps", "clip_outputs", "feature_change", "gate_mask",
           "gate_scores", "parse_schedule", "schedule_mask"]

_ALIASES = {"expensive-only": "expensive-only", "expensive": "expensive-only", "cheap-only": "cheap-only",
            "cheap": "cheap-only"}


def parse_schedule(text: str) -> tuple[str, int | None]:
    """``(canonical name, N)``: ``"1:N"`` (N >= 1) -> N; ``expensive-only`` -> 0; ``cheap-only`` -> None."""
    s = str(text).strip().lower()
    if s in _ALIASES:
        name = _ALIASES[s]
        return name, (0 if name == "expensive-only" else None)
    head, sep, tail = s.partition(":")
    if sep and head == "1" and tail.isdigit() and int(tail) >= 1:
        return f"1:{int(tail)}", int(tail)
    raise ConfigError(f"bad schedule {text!r}: use '1:N' (one expensive clip then N cheap ones, N >= 1), "
                      "'expensive-only' or 'cheap-only'")


def schedule_mask(schedule: str, segments: int) -> torch.Tensor:
    """``(segments,)`` bool: True where the expensive model runs. ``1:N`` -> segments ``i`` with ``i % (N+1) == 0``."""
    if segments < 1:
        raise ConfigError(f"segments must be >= 1, got {segments}")
    _, n = parse_schedule(schedule)
    if n is None:
        return torch.zeros(segments, dtype=torch.bool)
    return torch.arange(segments) % (n + 1) == 0


# --------------------------------------------------------------------------------------------------------------------
# the adaptive schedule: the cheap model on every segment, the expensive one where a gate fires
# --------------------------------------------------------------------------------------------------------------------


def feature_change(features: torch.Tensor) -> torch.Tensor:
    """``(..., L)``: cosine distance between the cheap features of segment ``t`` and ``t - 1`` (``(..., L, F)`` in);
    the first segment scores :data:`FIRST_CHANGE`. Causal: a stream needs the previous segment's features only."""
    prev = features[..., :-1, :]
    dist = 1 - F.cosine_similarity(features[..., 1:, :], prev, dim=-1, eps=1e-8)
    first = torch.full_like(dist[..., :1], FIRST_CHANGE)
    return torch.cat([first, dist], -1)


class LearnedGate(nn.Module):
    """A tiny learned gate: logistic regression on the cheap model's standardised features of one segment, its
    confidence (1 - max softmax) and the feature change; ``F + 2`` weights. Trained to fire where the expensive model
    is more sure of the true label than the cheap one (``training.faster``)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())
        self.linear = nn.Linear(mean.shape[0] + 2, 1)

    def forward(self, features: torch.Tensor, confidence: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
        """Gate logits ``(...)`` from features ``(..., F)``, confidence and change ``(...)``."""
        x = torch.cat([(features - self.mean) / self.std, confidence.unsqueeze(-1), change.unsqueeze(-1)], -1)
        return self.linear(x).squeeze(-1)


def gate_scores(kind: str, features: torch.Tensor, logits: torch.Tensor,
                gate: LearnedGate | None = None) -> torch.Tensor:
    """``(..., L)`` scores of the cheap model's outputs (features ``(..., L, F)``, logits ``(..., L, K)``); the
    expensive model runs where the score exceeds the threshold (:func:`gate_mask`). ``confidence``: 1 - max softmax
    (unsure -> look closer); ``change``: :func:`feature_change` (something happened); ``learned``: the
    :class:`LearnedGate`'s probability."""
    if kind not in GATES:
        raise ConfigError(f"unknown gate {kind!r}; choose one of {GATES}")
    confidence = 1 - logits.softmax(-1).amax(-1)
    if kind == "confidence":
        return confidence
    change = feature_change(features)
    if kind == "change":
        return change
    if gate is None:
        raise ConfigError("the learned gate needs its trained LearnedGate")
    return torch.sigmoid(gate(features, confidence, change))


def gate_mask(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Where the expensive model runs: ``scores > threshold`` (``inf``: never, ``-inf``: always)."""
    return scores > threshold


def backbone_maps(model: nn.Module) -> nn.Module | None:
    """``model.backbone.features`` (MobileNetV2-based TSN / TAM models), the per-frame feature maps; else None."""
    return getattr(getattr(model, "backbone", None), "features", None)


def clip_outputs(model: nn.Module, clips: torch.Tensor, map_size: int | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(features (N, F), logits (N, K), maps (N, F, S, S) or None)`` of a clip model on normalised clips
    ``(N, T, C, H, W)``: what the aggregator consumes (pooled pre-logits, or the last feature maps averaged over the
    clip's frames and pooled to ``map_size``). Feature extraction and the exported FASTER clip programs both call it.
    """
    per_frame_maps = backbone_maps(model) if map_size else None
    if per_frame_maps is None:
        f = model.forward_features(clips)
        maps = None
    else:  # one backbone pass: per-frame maps, whose spatial mean is exactly forward_features
        n, t = clips.shape[:2]
        fm = per_frame_maps(clips.flatten(0, 1))  # (N*T, F, h, w)
        # Written with rank-4 ops only (4-D mean over H, W with keepdim; channel slices; avg_pool2d) so that the
        # exported FASTER clip programs stay inside the XNNPACK delegate.
        f = fm.mean((2, 3), keepdim=True).flatten(1).unflatten(0, (n, t))  # (N, T, F)
        if t == 1:
            frame_mean = fm
        else:
            c = fm.shape[1]
            per_frame = fm.reshape(n, t * c, *fm.shape[2:])
            frame_mean = per_frame[:, :c]
            for i in range(1, t):
                frame_mean = frame_mean + per_frame[:, i * c:(i + 1) * c]
            frame_mean = frame_mean / t
        maps = _pool_to(frame_mean, map_size)
    return model.forward_head(f, pre_logits=True), model.forward_head(f), maps


def _pool_to(maps: torch.Tensor, size: int) -> torch.Tensor:
    """Average-pool ``(N, C, h, w)`` maps to ``size x size``: nothing to do, an ``avg_pool2d`` when the sides divide,
    else adaptive pooling (not delegated by XNNPACK; the export reports it)."""
    h, w = maps.shape[-2:]
    if (h, w) == (size, size):
        return maps
    if h % size == 0 and w % size == 0:
        return F.avg_pool2d(maps, (h // size, w // size))
    return F.adaptive_avg_pool2d(maps, size)


class FasterModel(nn.Module):
    """Both models' cached features ``(B, L, F_e)``, ``(B, L, F_c)`` + a schedule mask ``(L,)`` (or one per video,
    ``(B, L)``: the adaptive schedule) -> logits ``(B, K)`` (maps ``(B, L, F, S, S)`` for a spatial aggregator).

    Each clip model's features are standardised per channel (fixed train-split ``mean`` / ``std`` buffers) and
    projected to ``D`` by its own linear layer (1x1 conv on maps); segment ``i`` takes the expensive projection where
    ``mask[i]``, the cheap one otherwise.
    """

    def __init__(self, aggregator: Aggregator, expensive_stats: tuple[torch.Tensor, torch.Tensor],
                 cheap_stats: tuple[torch.Tensor, torch.Tensor], dim: int):
        super().__init__()
        self.spatial = aggregator.spatial
        layer = (lambda c: nn.Conv2d(c, dim, 1)) if self.spatial else (lambda c: nn.Linear(c, dim))
        self.project_expensive = layer(expensive_stats[0].shape[0])
        self.project_cheap = layer(cheap_stats[0].shape[0])
        for role, (mean, std) in zip(CLIP_ROLES, (expensive_stats, cheap_stats)):
            self.register_buffer(f"{role}_mean", mean.clone())
            self.register_buffer(f"{role}_std", std.clone())
        self.aggregator = aggregator

    def in_features(self, role: str) -> int:
        return int(getattr(self, f"{role}_mean").shape[0])

    def project(self, role: str, features: torch.Tensor) -> torch.Tensor:
        mean, std = getattr(self, f"{role}_mean"), getattr(self, f"{role}_std")
        return getattr(self, f"project_{role}")((features - mean) / std)

    def forward(self, expensive: torch.Tensor, cheap: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, steps = expensive.shape[:2]
        e = self.project("expensive", expensive.flatten(0, 1)).unflatten(0, (b, steps))
        c = self.project("cheap", cheap.flatten(0, 1)).unflatten(0, (b, steps))
        rows = mask.shape[0] if mask.ndim == 2 else 1
        return self.aggregator(torch.where(mask.view(rows, steps, *[1] * (e.ndim - 2)), e, c))
