"""Step 1 of an export, the source: the checkpoint read once, and the benchmark clips it is calibrated and checked on.

Clips come out as the runtime feeds the program: resized and cropped, float32 in ``[0, 255]`` (the program
normalises).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from converters.options import ExportOptions
from sdk.errors import ConfigError
from sdk.preprocess import Preprocess
from sdk.samplers import Sampler
from training.checkpoint import (CheckpointMeta, LoadedFaster, faster_from_checkpoint, is_faster, load_checkpoint_model,
                                 model_from_checkpoint, read_checkpoint)

__all__ = ["Source", "clips", "dataset_root", "load_source", "raw_preprocess", "split_location"]


@dataclass
class Source:
    """The model to export and what the bundle says about it."""

    model: nn.Module | None  # fp32 registry model (None for a .pt2 int8 program)
    quantized: nn.Module | None  # int8 PT2E module of the clip model (QAT .pt2)
    meta: CheckpointMeta

    @property
    def labels(self) -> list[str]:
        return list(self.meta.labels)

    @property
    def sampler(self) -> Sampler:
        return self.meta.sampler

    @property
    def preprocess(self) -> Preprocess:
        return self.meta.preprocess


def load_source(path: Path) -> Source | LoadedFaster:
    """The checkpoint, read once (its bytes also give the provenance sha256): a ``.pt`` classifier checkpoint, an int8
    ``.pt2`` program (its JSON sidecar beside it), or a FASTER row checkpoint of ``training.faster``."""
    if path.suffix == ".pt2":
        model, meta = load_checkpoint_model(path, "cpu")
        return Source(None, model, meta)
    ckpt, sha256 = read_checkpoint(path)
    if is_faster(ckpt):
        return faster_from_checkpoint(ckpt, path, sha256)
    meta = CheckpointMeta.from_dict(ckpt, path, sha256)
    return Source(model_from_checkpoint(ckpt, meta).eval(), None, meta)


def raw_preprocess(preprocess: Preprocess) -> Preprocess:
    """The runtime's share of the preprocessing: resize and crop only, values left in [0, 255] (the program
    normalises)."""
    return dataclasses.replace(preprocess, scale=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def clips(root: Path, split: str, source: Source, count: int) -> list[torch.Tensor]:
    """The first ``count`` clips of a split, deterministic sampling and centre crop, float32 in [0, 255] (T, 3, H, W);
    taken evenly over the split so that every class appears."""
    from training.data.datasets import ClipDataset, DatasetInfo

    info = DatasetInfo.from_dir(root)
    if list(info.labels) != source.labels:
        raise ConfigError(f"the dataset {root} has other labels than the checkpoint: pass the benchmark it was "
                          "trained on with --data")
    records = info.records(split)
    picks = np.linspace(0, len(records) - 1, min(count, len(records))).round().astype(int)
    dataset = ClipDataset([records[i] for i in picks], sampler=source.sampler,
                          preprocess=raw_preprocess(source.preprocess), train=False)
    return [torch.as_tensor(dataset[i][0]) for i in range(len(dataset))]


def split_location(root: Path, split: str) -> Path:
    """Where a split name resolves in the dataset (``train.csv`` may be the ``train/`` folder of a class-folder
    dataset): what the exporter's messages name."""
    from training.data.datasets import DatasetInfo

    return DatasetInfo.from_dir(root).split_path(split)


def dataset_root(opts: ExportOptions, source: Source) -> Path:
    from training.data.datasets import DatasetInfo

    root = opts.data or source.meta.dataset.get("root")
    try:
        if root:
            return DatasetInfo.from_dir(root).root
        reason = "the checkpoint names none"
    except ConfigError as e:
        reason = str(e)
    raise ConfigError(f"calibration and parity need the benchmark the model was trained on ({reason}): pass --data "
                      "DIR (python -m benchmarks generate makes one)")
