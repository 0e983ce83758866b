"""Partial fine-tuning: a frozen backbone prefix (no gradient, BN statistics kept), optionally run once per frame
into a feature cache (:mod:`training.data.feature_cache`) so that the rest of the network trains for many epochs.

The model itself never changes: the checkpoint, QAT, the converters and the sdk see the whole network (frozen prefix
+ trained suffix). Only the training and validation inputs differ -- cached prefix activations instead of frames --
and :class:`FromBlock` runs the model from the first trainable block on.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from sdk.errors import ConfigError
from sdk.preprocess import Preprocess
from sdk.samplers import Sampler
from training.data.datasets import ClipDataset, DatasetInfo, VideoRecord
from training.data.feature_cache import FeatureCache, build_cache, default_cache_dir
from training.models.temporal import TEMPORAL_MODULES

__all__ = ["FromBlock", "cache_split", "freeze_prefix", "frozen_prefix", "remeasure_prefix_bn", "set_training_frozen"]


def frozen_prefix(model: nn.Module, blocks: int) -> nn.Sequential:
    """``model.backbone.features[:blocks]``, checked to exist."""
    features = getattr(getattr(model, "backbone", None), "features", None)
    if not isinstance(features, nn.Sequential):
        raise ConfigError(f"{type(model).__name__} has no backbone.features blocks to freeze: use freeze=0")
    if not 0 < blocks < len(features):
        raise ConfigError(f"freeze must be in [1, {len(features) - 1}] for {type(model).__name__}, got {blocks}")
    return features[:blocks]


def freeze_prefix(model: nn.Module, blocks: int, *, per_frame: bool = False) -> nn.Sequential:
    """Stop gradients into ``backbone.features[:blocks]`` and return them; ``per_frame`` (a feature cache) also
    requires that none of them mixes frames. Their BN layers must stay in eval mode: :func:`set_training_frozen`."""
    prefix = frozen_prefix(model, blocks)
    if per_frame:
        temporal = [name for name, m in prefix.named_modules() if isinstance(m, TEMPORAL_MODULES)]
        if temporal:
            raise ConfigError(f"the frozen blocks hold temporal modules ({', '.join(temporal[:3])}): their output "
                              "depends on other frames and cannot be cached per frame; freeze fewer blocks or build "
                              "the model with temporal modules after them (e.g. temporal_from=freeze)")
    prefix.requires_grad_(False)
    return prefix


def set_training_frozen(model: nn.Module, mode: bool, blocks: int) -> None:
    """``model.train(mode)`` with the first ``blocks`` backbone blocks kept in eval mode (BN statistics fixed)."""
    model.train(mode)
    if blocks:
        frozen_prefix(_unwrap(model), blocks).eval()


def _unwrap(module: nn.Module) -> nn.Module:
    inner = getattr(module, "module", module)  # DistributedDataParallel
    return inner.model if isinstance(inner, FromBlock) else inner


@torch.no_grad()
def remeasure_prefix_bn(model: nn.Module, blocks: int, info: DatasetInfo, split: str, preprocess: Preprocess,
                        sampler: Sampler, *, videos: int = 64, batch_frames: int = 128,
                        template: str = "img_{:05d}.jpg") -> None:
    """Replace the BN statistics of ``backbone.features[:blocks]`` by their averages over the first ``videos``
    videos of ``split`` (``sampler``'s frames, centre crops): for a prefix whose weights were edited (e.g. a thinned
    ImageNet trunk) the stored statistics no longer describe its activations. Deterministic, so a resumed run
    measures the same values (and finds the same feature cache)."""
    prefix = frozen_prefix(model, blocks)
    records = info.records(split)[:videos]
    data = ClipDataset(records, sampler=sampler, preprocess=preprocess, train=False, template=template)
    frames = torch.cat([data[i][0] for i in range(len(data))])
    norms = [m for m in prefix.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
    prefix.train()
    for start in range(0, len(frames), batch_frames):
        prefix(frames[start:start + batch_frames])
    prefix.eval()
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


class FromBlock(nn.Module):
    """``model`` run from ``backbone.features[start]`` on: inputs are cached prefix activations ``(N, T, C, h, w)``
    (or multi-view ``(N*V, T, C, h, w)``). Shares ``model``'s parameters; what ``best.pt`` holds is ``model``."""

    def __init__(self, model: nn.Module, start: int):
        super().__init__()
        self.model, self.start = model, start

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(clips, self.start))


def cache_split(model: nn.Module, blocks: int, info: DatasetInfo, split: str, preprocess: Preprocess, *,
                train: bool, hflip: bool, cache_dir: str | Path = "", precision: str = "fp32",
                device: torch.device | str = "cpu", workers: int = 2, template: str = "img_{:05d}.jpg",
                records: Sequence[VideoRecord] | None = None) -> FeatureCache:
    """The feature cache of ``model``'s frozen prefix over ``split`` (or over ``records``, e.g. unlabelled videos,
    cached exactly as a split of the same kind would be), under ``cache_dir`` (default:
    :func:`~training.data.feature_cache.default_cache_dir`; videos already cached for this prefix and preprocessing are
    reused). Training splits are float16 and store a flipped view too when ``hflip``; evaluation splits are computed
    and stored in fp32, so that metrics on the cache are the model's metrics on decoded frames."""
    prefix = frozen_prefix(model, blocks)
    kwargs: dict[str, Any] = dict(hflip=train and hflip, precision=precision if train else "fp32",
                                  dtype="float16" if train else "float32", device=device,
                                  workers=workers, template=template, desc=f"cache {Path(split).stem}")
    records = info.records(split) if records is None else records
    return build_cache(records, preprocess, prefix, Path(cache_dir) if cache_dir else default_cache_dir(), **kwargs)
