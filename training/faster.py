"""FASTER on the long-video benchmark: ``python -m training.faster --config faster_small data=DIR out=DIR``.

A long video is a sequence of ``L`` segments (clips). An *expensive* clip model (TAM-MobileNetV2, 8 frames, 64 px by
default) runs on one segment in every ``N + 1``, a *cheap* one (a 2D MobileNetV2 on 1 frame at lower resolution, TSN)
on the others; a learned linear projection per clip model maps both into one ``D``-dimensional feature space, and an
aggregator (average, GRU, FAST-GRU; :mod:`training.models.aggregators`) turns the mixed sequence into the video
prediction (Zhu et al., "FASTER Recurrent Networks for Efficient Video Classification", AAAI 2020, arXiv 1906.04226).

The recipe, as a straight line of named steps:

1. **Clip models.** From training checkpoints (``expensive=`` / ``cheap=``, ``python -m training.train`` files: their
   sampler and preprocessing are used) or, when no checkpoint is given, built from ``*_arch`` / ``*_frames`` /
   ``*_size`` (ImageNet-initialised with ``pretrained=true``, random otherwise) and **used as given: nothing is
   fine-tuned here**. Both are frozen (eval mode).
2. **Features, once.** Every segment of every video goes through both clip models (eval-mode long-video datasets, so
   segment ``i`` of video ``j`` is the same frames for both), giving pooled features ``(videos, L, F)`` and per-segment
   logits ``(videos, L, K)``, cached as ``out/features_{expensive,cheap}_{split}.pt`` with a key (SHA-256 of the
   model spec and weights, sampler, preprocessing, dataset files) so that a rerun reuses them and any change recomputes
   them.
3. **Schedules.** ``"1:N"`` marks segments ``0, N+1, 2(N+1), ...`` expensive and the rest cheap (it starts with an
   expensive clip, as a stream does); ``expensive-only`` and ``cheap-only`` are the two
   ends (:func:`training.models.faster.schedule_mask`).
4. **Aggregators**, one per (schedule, aggregator) row, trained on cached features of the train split: features are
   standardised per clip model with train-split statistics (a fixed affine map that folds into the projection at
   export), projected to ``D`` by the clip model's own linear layer, mixed per the schedule, and fed to the aggregator;
   projections + aggregator train jointly with AdamW and cross-entropy on the video label for ``epochs`` epochs.
   Top-1 on the val split.
5. **MACs per video** = ``n_expensive * E + n_cheap * C + A``: ``E`` / ``C`` are one clip of each model
   (:func:`training.macs.count_gmacs`, the whole clip model with its head), ``A`` the projections and ``L`` aggregator
   steps as counted by ``torch.utils.flop_counter`` (matmuls and convs; element-wise gate arithmetic is not counted, so
   the average aggregator costs only its classifier). Every step emits logits, as the streaming step program does.
6. **Adaptive schedule** (``gates=confidence,change,learned``): the cheap model runs on every segment and the
   expensive one only where a gate on the cheap model's outputs fires (:func:`training.models.faster.gate_scores`:
   its confidence, the change of its features since the previous segment, or a tiny learned gate); the aggregator
   takes the expensive features where they ran. One aggregator per aggregator name is trained for *every* pattern
   (each training video draws its own random mask, expensive with probability ``p ~ U(0, 1)``), so one threshold,
   chosen at run time, trades accuracy for compute. The threshold grid is the train split's score quantiles at fire
   rates 0 .. 1; each point is val top-1 against the **average** MACs per val video, ``L * C + n_fired * E + A``
   (the gate's own arithmetic is counted: 3F MACs for the change, F + 2 more for the learned gate). The learned gate
   (logistic regression, :class:`~training.models.faster.LearnedGate`) is fitted on the train split to fire where
   the expensive clip model's probability of the true label beats the cheap one's by more than ``gate_margin``.
7. **Outputs**: ``faster.json`` (config, dataset, per-row top-1 and GMACs, ratios to expensive-only with the same
   aggregator), ``faster_table.md`` (printed), ``accuracy_vs_macs.png`` (one line per aggregator), ``faster_adaptive.png``
   (the adaptive curves, with gates), and one
   checkpoint per row, ``models/{schedule}_{aggregator}.pt`` (projections + aggregator, referring to the clip models'
   checkpoints or to ``clip_{role}.pt`` weights written beside it), which ``python -m converters export``
   turns into a FASTER bundle; with gates, one ``models/adaptive-{gate}_{aggregator}.pt`` per aggregator and gate
   (the random-mask aggregator, the gate's rule with its threshold at ``gate_fire_rate`` and the threshold of every
   fire rate of the curve, and the learned gate's weights: :class:`~training.checkpoint.FasterGateMeta`).

Where we had to choose:

* **Feature maps for the spatial FAST-GRU.** ``fast_gru`` consumes maps: the last MobileNetV2 feature maps of each
  segment, averaged over the clip's frames (the temporal axis is pooled away: the aggregator's state is rank 4, see
  :mod:`training.models.aggregators`), brought to one ``map_size x map_size`` by adaptive average pooling (default: the
  smaller of the two models' maps -- 2x2 for 64 px and 48 px inputs, 1x1 at 32 px, where spatial FAST-GRU equals
  ``fast_gru_pooled``). Its projections are 1x1 convs. Maps are extracted and cached only when ``fast_gru`` is asked
  for, and only MobileNetV2-based clip models (``model.backbone.features``) provide them.
* The clip models are not fine-tuned on segments here; train them with ``python -m training.train`` on the base
  time-reversal preset and pass the checkpoints. Clip-model-alone rows (per-segment softmax averaged over the video)
  are reported only for a checkpoint, whose head is trained; an untrained head's top-1 would mean nothing. Without
  checkpoints the numbers say little about FASTER: an untrained TAM is identity-initialised, i.e. a frame-order
  invariant TSN, so no row can tell the two classes of a time-reversal pair apart (within-pair chance); the table
  then measures how well each aggregator finds the action segment among idle ones, not temporal modelling.
* No augmentation when training the aggregator: features are extracted once, in eval mode.

Deterministic by ``seed`` (model initialisation, shuffling, dropout).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sdk.manifest import ADAPTIVE, CLIP_ROLES
from sdk.errors import ConfigError
from sdk.files import sha256_of
from sdk.preprocess import Preprocess
from sdk.samplers import Sampler
from training.checkpoint import (FasterClipSource, FasterGateMeta, FasterMeta, atomic_save, load_checkpoint_model,
                                 save_faster)
from training.cli import cli_main, parse_config
from training.config import check_choices, option
from training.data.datasets import DatasetInfo
from training.data.long_video import GENERATOR_NAME, LongVideoDataset
from training.models import create, list_models
from training.models.aggregators import create_aggregator, list_aggregators
from training.macs import call_gmacs, count_gmacs
from training.models.faster import (GATES, FasterModel, LearnedGate, backbone_maps, clip_outputs, gate_mask,
                                    gate_scores, parse_schedule, schedule_mask)
from training.progress import progress

__all__ = ["CACHE_VERSION", "ClipFeatures", "ClipModelSpec", "FasterConfig", "adaptive_curve", "extract_features",
           "format_table", "gated_gmacs", "gated_predict", "main", "plot_accuracy_vs_macs", "plot_adaptive",
           "random_masks", "run", "train_gate"]

CACHE_VERSION = 1
SPLITS = ("train", "val")


# --------------------------------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class FasterConfig:
    """Lists (``schedules``, ``aggregators``) are comma-separated strings, as on the command line."""

    data: str = option("", help="a long-video benchmark directory (python -m training.data.long_video)")
    out: str = option("runs/faster", help="output directory (faster.json, faster_table.md, models/)")
    expensive: str = option("", help="checkpoint of training.train for the expensive clip model; none: build "
                                     "--expensive-arch as given (not fine-tuned)")
    expensive_arch: str = option("tam_mobilenet_v2", help="expensive clip model without a checkpoint",
                                 choices=list_models)
    expensive_frames: int = option(8, help="frames per clip of the expensive model")
    expensive_size: int = option(64, help="input side of the expensive model in pixels")
    expensive_width: float = option(1.0, help="MobileNetV2 width multiplier of the expensive model (pretrained "
                                              "weights exist for 1.0 only)")
    cheap: str = option("", help="checkpoint of training.train for the cheap clip model; none: build --cheap-arch")
    cheap_arch: str = option("tsn_mobilenet_v2", help="cheap clip model without a checkpoint", choices=list_models)
    cheap_frames: int = option(1, help="frames per clip of the cheap model")
    cheap_size: int = option(48, help="input side of the cheap model (48 px: its 2x2 maps meet the expensive "
                                      "model's at 64 px for the spatial FAST-GRU)")
    cheap_width: float = option(1.0, help="MobileNetV2 width multiplier of the cheap model")
    pretrained: bool = option(True, help="ImageNet initialisation of the clip models built here (not of "
                                         "checkpoints)")
    schedules: str = option("expensive-only,1:1,1:3,1:7,cheap-only", help="comma-separated schedules: 1:N (one "
                            "expensive clip, then N cheap ones), expensive-only, cheap-only")
    aggregators: str = option("average,gru,fast_gru_pooled,fast_gru", help="aggregators, one table row per "
                              "schedule and aggregator", choices=list_aggregators, many=True)
    map_size: int = option(0, help="fast_gru: side of the common feature map (0: the smaller of the two models' "
                                   "maps)")
    dim: int = option(256, help="D: the common feature space of both clip models")
    dropout: float = option(0.5, help="dropout before the aggregator's classifier")
    epochs: int = option(30, help="aggregator training epochs on the cached features")
    lr: float = option(1e-3, help="AdamW learning rate")
    weight_decay: float = option(0.01, help="AdamW weight decay")
    batch_size: int = option(32, help="videos per batch")
    gates: str = option("", help="adaptive schedule: comma-separated gates to measure (confidence, change, "
                               "learned); empty: fixed schedules only")
    gate_fire_rate: float = option(0.25, help="adaptive checkpoints: their threshold is the train split's score "
                                              "quantile at which this fraction of segments fires (one of the "
                                              "curve's fire rates)")
    gate_margin: float = option(0.1, help="learned gate: fire where the expensive model's probability of the true "
                                          "label beats the cheap one's by more than this")
    seed: int = option(0, help="seed of initialisation, shuffling and dropout")
    device: str = option("cpu", help="cpu, cuda, cuda:1, ...")
    workers: int = option(0, help="decode workers for feature extraction")

    def __post_init__(self) -> None:
        if not self.data:
            raise ConfigError("give the long-video benchmark: data=DIR (python -m training.data.long_video --out DIR)")
        check_choices(self)
        for key in ("expensive_frames", "expensive_size", "cheap_frames", "cheap_size", "dim", "epochs",
                    "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.lr <= 0 or self.weight_decay < 0 or not 0 <= self.dropout < 1 or self.workers < 0 or self.map_size < 0:
            raise ConfigError("need lr > 0, weight_decay >= 0, 0 <= dropout < 1, workers >= 0, map_size >= 0")
        _ = self.schedule_list, self.aggregator_list, self.gate_list  # validate now, before any work
        if self.gate_fire_rate not in FIRE_RATES:
            rates = [round(r, 4) for r in FIRE_RATES]
            raise ConfigError(f"gate_fire_rate must be one of the curve's fire rates {rates}, got {self.gate_fire_rate}")

    @property
    def schedule_list(self) -> list[str]:
        names = [parse_schedule(s)[0] for s in _split(self.schedules, "schedules")]
        if len(set(names)) != len(names):
            raise ConfigError(f"schedules has duplicates: {self.schedules!r}")
        return names

    @property
    def aggregator_list(self) -> list[str]:
        names = _split(self.aggregators, "aggregators")  # each one of list_aggregators(): check_choices
        if len(set(names)) != len(names):
            raise ConfigError(f"aggregators has duplicates: {self.aggregators!r}")
        return names

    @property
    def gate_list(self) -> list[str]:
        names = [s.strip() for s in self.gates.split(",") if s.strip()]
        bad = [n for n in names if n not in GATES]
        if bad or len(set(names)) != len(names):
            raise ConfigError(f"gates must be distinct names among {GATES}, got {self.gates!r}")
        return names

    def spec(self, role: str) -> ClipModelSpec:
        return ClipModelSpec(role=role, checkpoint=getattr(self, role), arch=getattr(self, f"{role}_arch"),
                             frames=getattr(self, f"{role}_frames"), size=getattr(self, f"{role}_size"),
                             width=getattr(self, f"{role}_width"), pretrained=self.pretrained, seed=self.seed)


def _split(value: str, key: str) -> list[str]:
    items = [s.strip() for s in value.split(",") if s.strip()]
    if not items:
        raise ConfigError(f"{key} is empty; give a comma-separated list")
    return items


# --------------------------------------------------------------------------------------------------------------------
# clip models and their features
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClipModelSpec:
    role: str
    checkpoint: str
    arch: str
    frames: int
    size: int
    width: float
    pretrained: bool
    seed: int


@dataclass
class ClipModel:
    spec: ClipModelSpec
    model: nn.Module
    sampler: Sampler
    preprocess: Preprocess
    input_frames: int
    size: int
    gmacs: float
    trained_head: bool
    identity: dict[str, Any]  # what the features depend on (hashed into the cache key)
    map_hw: tuple[int, int] | None  # its last feature map's (H, W); None: the model exposes no maps


def _weights_sha256(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def build_clip_model(spec: ClipModelSpec, labels: Sequence[str], device: torch.device) -> ClipModel:
    """The frozen clip model of ``spec``: loaded from its checkpoint, or built (seeded) and used as given."""
    if spec.checkpoint:
        model, meta = load_checkpoint_model(spec.checkpoint, device)
        if list(meta.labels) != list(labels):
            raise ConfigError(f"the {spec.role} checkpoint {spec.checkpoint} was trained on other labels than the "
                              "long-video benchmark's")
        sampler, preprocess = meta.sampler, meta.preprocess
        identity = {"checkpoint_sha256": meta.sha256, "arch": meta.config.get("arch")}
        trained = True
    else:
        torch.manual_seed(spec.seed + (0 if spec.role == "expensive" else 1))
        kwargs: dict[str, Any] = {"pretrained": spec.pretrained}
        if spec.width != 1.0:
            kwargs["width_mult"] = spec.width
        try:
            model = create(spec.arch, num_classes=len(labels), frames=spec.frames, **kwargs).to(device)
        except TypeError as e:
            raise ConfigError(f"{spec.arch} does not take {sorted(kwargs)}: {e}") from e
        frames = getattr(model, "input_frames", spec.frames)
        sampler = Sampler("uniform_segments", frames)
        preprocess = Preprocess(size=spec.size, resize=spec.size)  # the whole (square) frame: no crop
        identity = {"arch": spec.arch, "frames": spec.frames, "width": spec.width, "pretrained": spec.pretrained,
                    "seed": spec.seed, "weights_sha256": _weights_sha256(model)}
        trained = False
    model.eval().requires_grad_(False)
    input_frames = sampler.frames
    size = preprocess.size
    gmacs = count_gmacs(model, torch.zeros(1, input_frames, 3, size, size, device=device))
    identity.update(sampler=sampler.to_dict(), preprocess=preprocess.to_dict())
    features = backbone_maps(model)
    map_hw = None
    if features is not None:
        with torch.no_grad():
            map_hw = tuple(features(torch.zeros(input_frames, 3, size, size, device=device)).shape[-2:])
    return ClipModel(spec, model, sampler, preprocess, input_frames, size, gmacs, trained, identity, map_hw)


@dataclass
class ClipFeatures:
    """Cached per-segment outputs of one clip model on one split."""

    features: torch.Tensor  # (videos, L, F) float32, pooled pre-logits
    logits: torch.Tensor  # (videos, L, K) float32
    maps: torch.Tensor | None  # (videos, L, F, S, S) float32, frame-averaged maps pooled to S x S (fast_gru only)
    labels: torch.Tensor  # (videos,) int64
    paths: list[str]
    key: str
    cached: bool  # True when read from the cache rather than computed


def _dataset_identity(root: Path, split: str) -> dict[str, Any]:
    meta = json.loads((root / "meta.json").read_text())
    return {"split_csv_sha256": sha256_of(root / f"{split}.csv"), "labels_sha256": sha256_of(root / "labels.txt"),
            "generator_version": meta.get("generator_version", meta.get("version")), "seed": meta.get("seed"),
            "preset": meta.get("preset"), "segments": meta.get("segments")}


def _cache_key(clip: ClipModel, root: Path, split: str) -> str:
    payload = {"version": CACHE_VERSION, "model": clip.identity, "dataset": _dataset_identity(root, split)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@torch.no_grad()
def extract_features(clip: ClipModel, root: Path, split: str, cache: Path, device: torch.device,
                     workers: int = 0, map_size: int | None = None) -> ClipFeatures:
    """Features of every segment of every ``split`` video (and ``map_size x map_size`` maps when given); read from
    ``cache`` when its key matches and it holds the maps asked for, else computed and written."""
    key = _cache_key(clip, root, split)
    if cache.is_file():
        try:
            data = torch.load(cache, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError):  # truncated/foreign: recompute
            data = {}
        if isinstance(data, dict) and data.get("key") == key and map_size in (None, data.get("map_size")):
            return ClipFeatures(data["features"], data["logits"], data.get("maps"), data["labels"],
                                list(data["paths"]), key, True)
    dataset = LongVideoDataset.from_dir(root, split, sampler=clip.sampler, preprocess=clip.preprocess, train=False)
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, shuffle=False, num_workers=workers)

    if map_size and backbone_maps(clip.model) is None:
        raise ConfigError(f"fast_gru needs feature maps, and {clip.spec.role} model {clip.identity.get('arch')} has "
                          "no backbone.features (MobileNetV2-based TSN/TAM models have)")
    feats, logits, maps, labels = [], [], [], []
    for clips, label in progress(loader, desc=f"{clip.spec.role} features ({split})", unit="video", leave=False):
        f, lg, m = clip_outputs(clip.model, clips[0].to(device), map_size)  # the segments (L, T, C, H, W) are the batch
        feats.append(f.float().cpu())
        logits.append(lg.float().cpu())
        if m is not None:
            maps.append(m.float().cpu())
        labels.append(label)
    out = ClipFeatures(torch.stack(feats), torch.stack(logits), torch.stack(maps) if maps else None,
                       torch.cat(labels).long(), [r.path.relative_to(root).as_posix() for r in dataset.records], key,
                       False)
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_save({"key": key, "features": out.features, "logits": out.logits, "maps": out.maps, "map_size": map_size,
                 "labels": out.labels, "paths": out.paths}, cache)
    return out


# --------------------------------------------------------------------------------------------------------------------
# training the projections + aggregator
# --------------------------------------------------------------------------------------------------------------------
def _stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std over videos, segments (and positions): ``(F,)``, or ``(F, 1, 1)`` for maps."""
    flat = features.flatten(0, 1).transpose(0, 1).flatten(1)  # (F, everything else)
    shape = (-1,) + (1,) * (features.ndim - 3)
    return flat.mean(1).view(shape), flat.std(1, unbiased=False).clamp_min(1e-5).view(shape)


def aggregator_gmacs(model: FasterModel, mask: torch.Tensor) -> dict[str, float]:
    """GMACs of the projections and of ``L`` aggregator steps for one video under ``mask`` (eval mode)."""
    was_training = model.training
    model.eval()
    p = model.project_expensive.weight
    hw = model.aggregator.feature_shape(1)[2:]
    fe = torch.zeros(1, model.in_features("expensive"), *hw, dtype=p.dtype, device=p.device)
    fc = torch.zeros(1, model.in_features("cheap"), *hw, dtype=p.dtype, device=p.device)
    proj_e = call_gmacs(lambda x: model.project("expensive", x), fe)
    proj_c = call_gmacs(lambda x: model.project("cheap", x), fc)
    agg = model.aggregator
    step = call_gmacs(agg.step, *agg.example_inputs(1))
    model.train(was_training)
    n_e = int(mask.sum())
    n_c = mask.numel() - n_e
    return {"projection_expensive": proj_e, "projection_cheap": proj_c, "step": step,
            "per_video": n_e * proj_e + n_c * proj_c + mask.numel() * step}


def _inputs(f: ClipFeatures, spatial: bool) -> torch.Tensor:
    if spatial and f.maps is None:
        raise ConfigError("a spatial aggregator needs feature maps: extract them with map_size")
    return f.maps if spatial else f.features


def random_masks(videos: int, segments: int, gen: torch.Generator) -> torch.Tensor:
    """``(videos, segments)`` bool: each video its own pattern, expensive with a probability ``p ~ U(0, 1)`` of its
    own -- what an aggregator of the adaptive schedule trains on, so that it serves any threshold."""
    p = torch.rand(videos, 1, generator=gen)
    return torch.rand(videos, segments, generator=gen) < p


def train_row(name: str, mask: torch.Tensor | None, feats: dict[str, dict[str, ClipFeatures]], num_classes: int,
              cfg: FasterConfig, device: torch.device, map_size: int | None = None) -> tuple[FasterModel, float, float]:
    """Train projections + aggregator ``name`` under ``mask`` (None: :func:`random_masks`, the adaptive schedule's
    aggregator); returns the model, final train loss and val top-1 (val under ``mask``; None: expensive-only)."""
    torch.manual_seed(cfg.seed)
    kwargs: dict[str, Any] = {"feature_size": (map_size, map_size)} if name == "fast_gru" else {}
    aggregator = create_aggregator(name, in_channels=cfg.dim, num_classes=num_classes, dropout=cfg.dropout, **kwargs)
    spatial = aggregator.spatial
    tr_e, tr_c = feats["expensive"]["train"], feats["cheap"]["train"]
    x_e, x_c = _inputs(tr_e, spatial).to(device), _inputs(tr_c, spatial).to(device)
    model = FasterModel(aggregator, _stats(x_e), _stats(x_c), cfg.dim).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    segments = x_e.shape[1]
    adaptive = mask is None
    mask = schedule_mask("expensive-only", segments).to(device) if adaptive else mask.to(device)
    y = tr_e.labels.to(device)
    n = y.numel()
    loss_value = float("nan")
    for _ in range(cfg.epochs):
        model.train()
        order = torch.randperm(n, generator=gen).to(device)
        total, seen = 0.0, 0
        for start in range(0, n, cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            if idx.numel() < 2 and n >= 2:  # a lone last sample sits this epoch out: BatchNorm needs two
                continue
            m = random_masks(idx.numel(), segments, gen).to(device) if adaptive else mask
            loss = F.cross_entropy(model(x_e[idx], x_c[idx], m), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, seen = total + float(loss.detach()) * idx.numel(), seen + idx.numel()
        loss_value = total / max(seen, 1)
    va_e, va_c = feats["expensive"]["val"], feats["cheap"]["val"]
    model.eval()
    with torch.no_grad():
        pred = model(_inputs(va_e, spatial).to(device), _inputs(va_c, spatial).to(device), mask).argmax(1).cpu()
    return model, loss_value, float((pred == va_e.labels).float().mean())


# --------------------------------------------------------------------------------------------------------------------
# the adaptive schedule
# --------------------------------------------------------------------------------------------------------------------
def train_gate(cheap: ClipFeatures, expensive: ClipFeatures, margin: float, seed: int,
               epochs: int = 200) -> LearnedGate:
    """The learned gate (:class:`~training.models.faster.LearnedGate`) fitted by full-batch AdamW on every segment of
    the train split: target 1 where ``p_expensive(y) - p_cheap(y) > margin``, classes weighted to balance."""
    torch.manual_seed(seed)
    y = cheap.labels.view(-1, 1, 1).expand(-1, cheap.logits.shape[1], 1)
    gain = expensive.logits.softmax(-1).gather(-1, y) - cheap.logits.softmax(-1).gather(-1, y)
    target = (gain.squeeze(-1) > margin).float().flatten()
    gate = LearnedGate(*_stats(cheap.features))
    confidence = (1 - cheap.logits.softmax(-1).amax(-1)).flatten()
    change = gate_scores("change", cheap.features, cheap.logits).flatten()
    x = cheap.features.flatten(0, 1)
    pos = float(target.mean().clamp(1e-3, 1 - 1e-3))
    weight = torch.where(target > 0, 0.5 / pos, 0.5 / (1 - pos))
    opt = torch.optim.AdamW(gate.parameters(), lr=1e-2, weight_decay=1e-2)
    for _ in range(epochs):
        loss = F.binary_cross_entropy_with_logits(gate(x, confidence, change), target, weight=weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return gate.eval().requires_grad_(False)


def gated_predict(model: FasterModel, expensive: torch.Tensor, cheap: torch.Tensor, scores: torch.Tensor,
                  threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The adaptive schedule on cached inputs: ``(logits (B, K), mask (B, L))`` with the expensive features where
    :func:`~training.models.faster.gate_mask` fires, the cheap ones elsewhere."""
    mask = gate_mask(scores, threshold)
    with torch.no_grad():
        return model(expensive, cheap, mask), mask


def gated_gmacs(mask: torch.Tensor, expensive_gmacs: float, cheap_gmacs: float, agg: dict[str, float],
                gate_gmacs: float = 0.0) -> float:
    """Average GMACs per video of the adaptive schedule under per-video masks ``(V, L)``: the cheap model, the gate
    and the aggregator step on every segment, the expensive model and its projection where the mask fires."""
    segments = mask.shape[-1]
    fired = float(mask.float().sum(-1).mean())
    return (segments * (cheap_gmacs + agg["projection_cheap"] + agg["step"] + gate_gmacs)
            + fired * (expensive_gmacs + agg["projection_expensive"]))


def _fire_rate_thresholds(scores: torch.Tensor, rates: Sequence[float]) -> list[float]:
    """Thresholds at which a fraction ``rate`` of ``scores`` fires: +inf for 0, -inf for 1, quantiles between."""
    flat = scores.flatten().double()
    return [float("inf") if r <= 0 else float("-inf") if r >= 1 else float(torch.quantile(flat, 1 - r))
            for r in rates]


FIRE_RATES = (0.0, 1 / 32, 1 / 16, 1 / 8, 3 / 16, 1 / 4, 5 / 16, 3 / 8, 7 / 16, 1 / 2, 5 / 8, 3 / 4, 1.0)


def adaptive_curve(model: FasterModel, feats: dict[str, dict[str, ClipFeatures]], kind: str, gate: LearnedGate | None,
                   spatial: bool, gmacs: dict[str, float], agg: dict[str, float]) -> list[dict[str, Any]]:
    """Val top-1 and average GMACs per video of the adaptive schedule at the thresholds of :data:`FIRE_RATES`
    (quantiles of the train split's scores of gate ``kind``)."""
    tr, va = feats["cheap"]["train"], feats["cheap"]["val"]
    thresholds = _fire_rate_thresholds(gate_scores(kind, tr.features, tr.logits, gate), FIRE_RATES)
    scores = gate_scores(kind, va.features, va.logits, gate)
    feature_dim = va.features.shape[-1]
    gate_gmacs = {"confidence": 0.0, "change": 3 * feature_dim, "learned": 4 * feature_dim + 2}[kind] / 1e9
    x_e, x_c = _inputs(feats["expensive"]["val"], spatial), _inputs(va, spatial)
    model.eval()
    points = []
    for rate, threshold in zip(FIRE_RATES, thresholds):
        logits, mask = gated_predict(model, x_e, x_c, scores, threshold)
        points.append({"train_fire_rate": rate, "threshold": threshold, "val_fire_rate": float(mask.float().mean()),
                       "top1": float((logits.argmax(1) == va.labels).float().mean()),
                       "gmacs_per_video": gated_gmacs(mask, gmacs["expensive"], gmacs["cheap"], agg, gate_gmacs)})
    return points


def _adaptive(feats: dict[str, dict[str, ClipFeatures]], cfg: FasterConfig, gates: Sequence[str], rows: list[dict],
              num_classes: int, gmacs: dict[str, float], device: torch.device, map_size: int | None,
              row_meta: Callable[..., FasterMeta], models: Path) -> dict[str, Any]:
    """Per aggregator: one random-mask aggregator, its curve for every gate, and the operating points against the
    fixed expensive-only row of the same aggregator (98.5 % of its top-1 at the fewest average MACs). Each
    (aggregator, gate) is saved as ``models/adaptive-{gate}_{aggregator}.pt``, its threshold at
    ``cfg.gate_fire_rate``."""
    gate = (train_gate(feats["cheap"]["train"], feats["expensive"]["train"], cfg.gate_margin, cfg.seed)
            if "learned" in gates else None)
    out: dict[str, Any] = {"fire_rates": list(FIRE_RATES), "aggregators": {}}
    for name in cfg.aggregator_list:
        model, loss, top1_all = train_row(name, None, feats, num_classes, cfg, device, map_size)
        segments = feats["cheap"]["val"].features.shape[1]
        agg = aggregator_gmacs(model, schedule_mask("expensive-only", segments))
        base = [r for r in rows if r["aggregator"] == name and r["schedule"] == "expensive-only"]
        base_top1 = base[0]["top1"] if base else None
        base_gmacs = segments * (gmacs["expensive"] + agg["projection_expensive"] + agg["step"])
        curves = {}
        for kind in gates:
            points = adaptive_curve(model, feats, kind, gate if kind == "learned" else None, model.spatial, gmacs,
                                    agg)
            for pt in points:
                pt["macs_ratio"] = pt["gmacs_per_video"] / base_gmacs
                pt["top1_ratio"] = pt["top1"] / base_top1 if base_top1 else None
            ok = [pt for pt in points if pt["top1_ratio"] is not None and pt["top1_ratio"] >= 0.985]
            at = next(pt for pt in points if pt["train_fire_rate"] == cfg.gate_fire_rate)
            rule = FasterGateMeta(kind, at["threshold"], cfg.gate_fire_rate,
                              tuple((pt["train_fire_rate"], pt["threshold"]) for pt in points))
            metrics = {k: at[k] for k in ("top1", "gmacs_per_video", "val_fire_rate")}
            ckpt = save_faster(models / f"adaptive-{kind}_{name}.pt", model,
                               row_meta(ADAPTIVE, name, model, metrics, rule), gate if kind == "learned" else None)
            curves[kind] = {"points": points, "best_at_98_5": min(ok, key=lambda p: p["gmacs_per_video"]) if ok
                            else None, "checkpoint": str(ckpt)}
            best = curves[kind]["best_at_98_5"]
            print(f"adaptive {name:>16} {kind:>10}: " + ", ".join(f"{p['top1']:.3f}@{p['macs_ratio']:.2f}x"
                                                                   for p in points)
                  + (f"; >=98.5 %: {best['macs_ratio']:.3f}x" if best else "; never >= 98.5 %"), flush=True)
        out["aggregators"][name] = {"train_loss": loss, "val_top1_all_expensive": top1_all,
                                    "expensive_only_top1": base_top1, "expensive_only_gmacs": base_gmacs,
                                    "curves": curves}
    return out


def plot_adaptive(report: dict[str, Any], png: str | Path) -> Path:
    """Top-1 against average GMACs per video of the adaptive schedule, one panel per aggregator, one line per gate;
    the fixed schedules of the same aggregator as grey squares; the 98.5 % of expensive-only line dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    adaptive = report["adaptive"]["aggregators"]
    fig, axes = plt.subplots(1, len(adaptive), figsize=(4.2 * len(adaptive), 3.8), squeeze=False, sharey=True)
    ds = report["dataset"]
    for ax, (name, a) in zip(axes[0], adaptive.items()):
        for kind, c in a["curves"].items():
            pts = sorted((p["gmacs_per_video"], p["top1"]) for p in c["points"])
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=f"adaptive: {kind}")
        fixed = sorted((r["gmacs_per_video"], r["top1"], r["schedule"]) for r in report["rows"]
                       if r["aggregator"] == name)
        ax.scatter([f[0] for f in fixed], [f[1] for f in fixed], marker="s", color="grey", label="fixed 1:N", zorder=3)
        for x, y, sched in fixed:
            ax.annotate(sched, (x, y), textcoords="offset points", xytext=(3, -9), fontsize=6, color="grey")
        if a["expensive_only_top1"]:
            ax.axhline(0.985 * a["expensive_only_top1"], ls="--", color="k", lw=0.8, label="98.5 % of expensive-only")
        ax.set_title(f"{name} ({ds['preset']})", fontsize=9)
        ax.set_xlabel("average GMACs per video")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("val top-1")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return Path(png)


# --------------------------------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------------------------------
def save_clip_model(clip: ClipModel, out: Path) -> FasterClipSource:
    """How a FASTER checkpoint finds this clip model: its training checkpoint (path + sha256), or, for a model built
    here, its weights written to ``out/clip_{role}.pt`` (rebuilt with ``arch`` / ``frames`` / ``width``)."""
    common = dict(sampler=clip.sampler, preprocess=clip.preprocess, gmacs_per_clip=clip.gmacs,
                  arch=clip.identity.get("arch"))
    if clip.spec.checkpoint:
        return FasterClipSource(**common, sha256=clip.identity["checkpoint_sha256"],
                                checkpoint=Path(clip.spec.checkpoint).absolute())
    path = out / f"clip_{clip.spec.role}.pt"
    atomic_save({"model": clip.model.state_dict()}, path)
    return FasterClipSource(**common, sha256=sha256_of(path), weights=path.absolute(), frames=clip.spec.frames,
                            width=clip.spec.width)


def _check_data(root: Path) -> DatasetInfo:
    if not root.is_dir():
        raise ConfigError(f"long-video benchmark {root} does not exist; generate one with "
                          "python -m training.data.long_video --out DIR --preset small")
    info = DatasetInfo.from_dir(root)
    if info.meta.get("generator") != GENERATOR_NAME:
        raise ConfigError(f"{root} is not a long-video benchmark (meta.json generator: {info.meta.get('generator')!r})")
    for split in SPLITS:
        if not (root / f"{split}.csv").is_file():
            raise ConfigError(f"{root}/{split}.csv is missing")
    return info


def _map_size(cfg: FasterConfig, clips: dict[str, ClipModel]) -> int:
    """The common map side for fast_gru: ``cfg.map_size``, or the smaller of the two models' maps."""
    for c in clips.values():
        if c.map_hw is None:
            raise ConfigError(f"fast_gru needs feature maps, and the {c.spec.role} model has no backbone.features "
                              "(MobileNetV2-based TSN/TAM models have); drop fast_gru from aggregators")
    smallest = min(min(c.map_hw) for c in clips.values())
    if cfg.map_size > smallest:
        raise ConfigError(f"map_size={cfg.map_size} is larger than the smaller feature map ({smallest}x{smallest}); "
                          "raise the clip models' sizes or lower map_size")
    return cfg.map_size or smallest


def run(cfg: FasterConfig) -> dict[str, Any]:
    """The whole recipe (module docstring); writes the outputs into ``cfg.out`` and returns the JSON report."""
    recipe = _FasterRun(cfg)
    recipe.build_clip_models()
    recipe.extract_features()
    recipe.train_fixed_rows()
    recipe.measure_clip_models_alone()
    report = recipe.report(recipe.adaptive())
    _write_outputs(report, recipe.out)
    return report


class _FasterRun:
    """One run of :func:`run` as named steps, each keeping on ``self`` what later ones need. The steps run in this
    order, which fixes the consumption of the random generators (clip models built here, aggregators, gate)."""

    def __init__(self, cfg: FasterConfig):
        """Check the benchmark, create ``out`` and write ``config.json``."""
        self.t0 = time.perf_counter()
        self.cfg = cfg
        self.root, self.out = Path(cfg.data).absolute(), Path(cfg.out)
        self.info = _check_data(self.root)
        self.device = torch.device(cfg.device)
        self.segments = int(self.info.meta["segments"])
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))

    def build_clip_models(self) -> None:
        """The expensive and cheap clip models, and fast_gru's common map side."""
        self.clips = {role: build_clip_model(self.cfg.spec(role), self.info.labels, self.device)
                      for role in CLIP_ROLES}
        self.map_size = _map_size(self.cfg, self.clips) if "fast_gru" in self.cfg.aggregator_list else None

    def extract_features(self) -> None:
        """Both models' features of every split (cached in ``out``), the clip models' files and the dataset entry."""
        out, info = self.out, self.info
        self.feats = {role: {split: extract_features(self.clips[role], self.root, split,
                                                     out / f"features_{role}_{split}.pt", self.device,
                                                     self.cfg.workers, self.map_size) for split in SPLITS}
                      for role in CLIP_ROLES}
        for split in SPLITS:
            if self.feats["expensive"][split].paths != self.feats["cheap"][split].paths:
                raise ConfigError(f"the two models' {split} features cover different videos; delete "
                                  f"{out}/features_*.pt")
        self.clip_files = {role: save_clip_model(c, out) for role, c in self.clips.items()}
        self.dataset = {"root": str(self.root), "preset": info.meta.get("preset"), "seed": info.meta.get("seed"),
                        "segments": self.segments, "classes": len(info.labels),
                        "videos": {s: len(self.feats["expensive"][s].labels) for s in SPLITS}}

    def row_meta(self, schedule: str, name: str, model: FasterModel, metrics: dict[str, Any],
                 gate: FasterGateMeta | None = None) -> FasterMeta:
        """What a row's checkpoint says about its schedule, aggregator, clip models and data."""
        cfg = self.cfg
        return FasterMeta(labels=tuple(self.info.labels), schedule=schedule, aggregator=name, dim=cfg.dim,
                          dropout=cfg.dropout, map_size=self.map_size, feature_size=model.aggregator.feature_size,
                          segments=self.segments, segment_frames=int(self.info.meta["segment_frames"]),
                          clip_models=self.clip_files, config=dataclasses.asdict(cfg), metrics=metrics,
                          dataset=self.dataset, gate=gate)

    def train_fixed_rows(self) -> None:
        """One aggregator per (schedule, aggregator), saved to ``models/``; then each row's ratios to expensive-only
        with the same aggregator (its MACs follow from the formula even when it is not a row)."""
        self.rows = [self._train_row(schedule, name)
                     for schedule in self.cfg.schedule_list for name in self.cfg.aggregator_list]
        e_gmacs = self.clips["expensive"].gmacs
        for row in self.rows:
            same = [r for r in self.rows if r["aggregator"] == row["aggregator"] and r["schedule"] == "expensive-only"]
            agg = row["aggregator_gmacs"]
            base_gmacs = self.segments * (e_gmacs + agg["projection_expensive"] + agg["step"])
            row["macs_ratio"] = row["gmacs_per_video"] / base_gmacs
            row["top1_ratio"] = row["top1"] / same[0]["top1"] if same and same[0]["top1"] > 0 else None

    def _train_row(self, schedule: str, name: str) -> dict[str, Any]:
        segments = self.segments
        mask = schedule_mask(schedule, segments)
        n_e = int(mask.sum())
        model, loss, top1 = train_row(name, mask, self.feats, len(self.info.labels), self.cfg, self.device,
                                      self.map_size)
        agg = aggregator_gmacs(model, mask)
        gmacs = n_e * self.clips["expensive"].gmacs + (segments - n_e) * self.clips["cheap"].gmacs + agg["per_video"]
        ckpt = save_faster(self.out / "models" / f"{schedule.replace(':', '-')}_{name}.pt", model,
                           self.row_meta(schedule, name, model, {"top1": top1, "gmacs_per_video": gmacs}))
        print(f"{schedule:>14} {name:>16}: top-1 {top1:.3f}, {gmacs:.4f} GMACs/video", flush=True)
        return {"schedule": schedule, "aggregator": name, "expensive_clips": n_e, "cheap_clips": segments - n_e,
                "top1": top1, "train_loss": loss, "gmacs_per_video": gmacs,
                "aggregator_gmacs_per_video": agg["per_video"], "aggregator_gmacs": agg, "checkpoint": str(ckpt)}

    def adaptive(self) -> dict[str, Any] | None:
        """With gates: the adaptive schedule's curves and checkpoints (:func:`_adaptive`)."""
        if not self.cfg.gate_list:
            return None
        gmacs = {role: self.clips[role].gmacs for role in ("expensive", "cheap")}
        return _adaptive(self.feats, self.cfg, self.cfg.gate_list, self.rows, len(self.info.labels), gmacs,
                         self.device, self.map_size, self.row_meta, self.out / "models")

    def measure_clip_models_alone(self) -> None:
        """Each clip model on its own (mean of its segments' softmax); top-1 only for a trained head."""
        self.clip_alone: dict[str, dict[str, Any]] = {}
        for role in CLIP_ROLES:
            gmacs = self.segments * self.clips[role].gmacs
            if self.clips[role].trained_head:
                va = self.feats[role]["val"]
                pred = va.logits.softmax(-1).mean(1).argmax(1)
                self.clip_alone[role] = {"top1": float((pred == va.labels).float().mean()), "gmacs_per_video": gmacs}
            else:
                self.clip_alone[role] = {"top1": None, "gmacs_per_video": gmacs,
                                         "note": "not from a checkpoint: its classifier is untrained"}

    def report(self, adaptive: dict[str, Any] | None) -> dict[str, Any]:
        """The JSON report: config, data, clip models, rows, the adaptive schedule and the run's seconds."""
        feats = self.feats
        return {
            "config": dataclasses.asdict(self.cfg),
            "map_size": self.map_size,
            "dataset": self.dataset,
            "clip_models": {role: {"checkpoint": c.spec.checkpoint or None, "arch": c.identity.get("arch"),
                                   "fine_tuned_here": False, "trained_head": c.trained_head,
                                   "input_frames": c.input_frames, "size": c.size, "gmacs_per_clip": c.gmacs,
                                   "map_hw": c.map_hw,
                                   "feature_dim": int(feats[role]["train"].features.shape[-1]),
                                   "sampler": c.sampler.to_dict(), "preprocess": c.preprocess.to_dict(),
                                   "features_cached": {s: feats[role][s].cached for s in SPLITS}}
                            for role, c in self.clips.items()},
            "clip_model_alone": self.clip_alone,
            "rows": self.rows,
            "adaptive": adaptive,
            "seconds": time.perf_counter() - self.t0,
        }


def _write_outputs(report: dict[str, Any], out: Path) -> None:
    """``faster.json``, ``faster_table.md``, ``accuracy_vs_macs.png`` and, with gates, ``faster_adaptive.png``."""
    (out / "faster.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "faster_table.md").write_text(format_table(report) + "\n")
    plot_accuracy_vs_macs(report["rows"], out / "accuracy_vs_macs.png")
    if report["adaptive"]:
        plot_adaptive(report, out / "faster_adaptive.png")


def format_table(report: dict[str, Any]) -> str:
    """Markdown: one row per (schedule, aggregator), then the clip models alone."""
    ds = report["dataset"]
    title = (f"FASTER on long-video `{ds['preset']}` (seed {ds['seed']}, L={ds['segments']} segments, "
             f"{ds['videos']['train']} train / {ds['videos']['val']} val videos)")
    lines = [title, "",
             "| schedule | aggregator | expensive clips | top-1 | GMACs/video | MACs vs expensive-only |",
             "|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['schedule']} | {r['aggregator']} | {r['expensive_clips']}/{ds['segments']} | "
                     f"{r['top1']:.3f} | {r['gmacs_per_video']:.4f} | {r['macs_ratio']:.3f}x |")
    for role, c in report["clip_model_alone"].items():
        top1 = "n/a (untrained head)" if c["top1"] is None else f"{c['top1']:.3f}"
        lines.append(f"| {role} clip model alone | mean of segment softmax | - | {top1} | "
                     f"{c['gmacs_per_video']:.4f} | - |")
    if report.get("adaptive"):
        lines += ["", "Adaptive schedule (cheap model on every segment, expensive where the gate fires; one "
                      "aggregator per row trained on random masks; ratios to the fixed expensive-only row):", "",
                  "| aggregator | gate | all expensive (random-mask aggregator) | best top-1 at <= 0.6x MACs | "
                  "fewest MACs at >= 98.5 % of expensive-only |", "|---|---|---|---|---|"]
        for name, a in report["adaptive"]["aggregators"].items():
            for kind, c in a["curves"].items():
                under = [p for p in c["points"] if p["macs_ratio"] <= 0.6]
                at = max(under, key=lambda p: p["top1"]) if under else None
                best = c["best_at_98_5"]
                lines.append(f"| {name} | {kind} | {a['val_top1_all_expensive']:.3f} | "
                             + (f"{at['top1']:.3f} at {at['macs_ratio']:.3f}x (fires {at['val_fire_rate']:.2f})"
                                if at else "-") + " | "
                             + (f"{best['top1']:.3f} at {best['macs_ratio']:.3f}x (fires {best['val_fire_rate']:.2f})"
                                if best else "not reached") + " |")
    return "\n".join(lines)


def plot_accuracy_vs_macs(rows: Sequence[dict[str, Any]], png: str | Path) -> Path:
    """Top-1 against GMACs per video, one line per aggregator, points labelled by schedule; headless."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in dict.fromkeys(r["aggregator"] for r in rows):
        pts = sorted((r["gmacs_per_video"], r["top1"], r["schedule"]) for r in rows if r["aggregator"] == name)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        for x, y, s in pts:
            ax.annotate(s, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.set_xlabel("GMACs per video")
    ax.set_ylabel("val top-1")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return Path(png)


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    cfg, _ = parse_config(FasterConfig, argv, prog="python -m training.faster", description=__doc__.splitlines()[0],
                          example="python -m training.faster --config faster_small data=data/long_small "
                                  "out=runs/faster expensive=runs/teacher/best.pt")
    report = run(cfg)
    print(format_table(report))
    cached = {r: c["features_cached"] for r, c in report["clip_models"].items()}
    print(f"\nfeatures cached: {cached}; outputs in {cfg.out}; {report['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
