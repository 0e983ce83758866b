"""Feature cache: a frozen backbone prefix run once per frame, stored on disk, read by many epochs of training.

Transfer learning's cheap path on a CPU (DESIGN.md, "Learning on a CPU"): the first blocks of an ImageNet MobileNetV2
are frozen, so their output for a given frame never changes. :func:`build_cache` decodes every frame of every video
of a split once, preprocesses it with the evaluation transform of ``sdk.preprocess`` (resize + centre crop +
normalise: what the device does), runs the frozen prefix, and stores the activations (float16 by default) in one
memory-mapped array. Training, distillation and evaluation then read clips from it with :class:`CachedClipDataset`:
any sampler's frame indices are rows of the cache, so the teacher (N frames), the student (k of those N) and the
TSN/TSM baselines share one cache, and the model runs from the first trainable block on
(``model.forward_features(cached, start=prefix)``).

A cache is keyed by everything that determines its content -- the split file and each video's size and mtime, the
dataset's ``meta.json``, the preprocessing, the prefix (architecture, depth, a hash of its weights and BN statistics),
the dtype and the views -- hashed into its directory name, so a changed dataset, preprocessing or prefix never reuses
a stale cache: it builds a new one. It is written into a temporary directory and renamed into place, so a killed build
leaves no half cache under a valid key.

Augmentation: random temporal offsets come for free (every frame is cached); spatial crops cannot be cached, but with
``hflip=True`` a second, horizontally flipped view is stored and training picks it with probability 1/2, mapping the
label through the dataset's ``hflip_map`` (moving_left <-> moving_right).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from sdk.errors import ConfigError
from sdk.files import atomic_dir, atomic_path
from sdk.preprocess import Preprocess
from sdk.samplers import Sampler
from sdk.video import FrameFolder, VideoFile
from training.data.datasets import VideoRecord
from training.progress import progress

__all__ = ["CACHE_VERSION", "CachedClipDataset", "FeatureCache", "build_cache", "cache_key", "prefix_digest", "weights_digest"]

CACHE_VERSION = 1
DTYPES = {"float16": np.float16, "float32": np.float32}
PRECISIONS = ("fp32", "bf16")  # compute of the prefix while building (bf16: autocast, ~2.3x faster with AMX)


def weights_digest(module: nn.Module) -> str:
    """sha256 over a module's parameters and buffers (names, shapes, dtypes, values): BN statistics included."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{t.numel()}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _dataset_fingerprint(records: Sequence[VideoRecord], split_file: Path) -> str:
    """What the split holds: its file, the dataset's meta.json, and each video's path, size and mtime."""
    h = hashlib.sha256(split_file.read_bytes())
    meta = split_file.parent / "meta.json"
    if meta.is_file():
        h.update(meta.read_bytes())
    for r in records:
        st = r.path.stat()
        h.update(f"{r.path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{r.label}|{r.num_frames}".encode())
    return h.hexdigest()


def prefix_digest(prefix: nn.Module) -> dict[str, str]:
    """The prefix's identity: its structure (``repr``: module types, strides, groups, activations) and its weights."""
    return {"structure": hashlib.sha256(repr(prefix).encode()).hexdigest(), "weights": weights_digest(prefix)}


def cache_key(records: Sequence[VideoRecord], split_file: str | Path, preprocess: Preprocess, prefix: nn.Module,
              dtype: str = "float16", hflip: bool = False, precision: str = "fp32") -> dict[str, Any]:
    """The cache's identity; its sha256 names the cache directory."""
    if dtype not in DTYPES:
        raise ConfigError(f"cache dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if precision not in PRECISIONS:
        raise ConfigError(f"cache precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return {"version": CACHE_VERSION, "dataset": _dataset_fingerprint(records, Path(split_file)),
            "split": Path(split_file).name, "preprocess": preprocess.to_dict(), "prefix": prefix_digest(prefix),
            "precision": precision, "dtype": dtype, "views": ["centre", "hflip"] if hflip else ["centre"]}


def _key_hash(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


@dataclass
class FeatureCache:
    """An opened cache: ``features[view, row]`` is the prefix output ``(C, h, w)`` of one frame; video ``i`` holds
    rows ``offsets[i] : offsets[i] + num_frames[i]``."""

    path: Path
    key: dict[str, Any]
    features: np.ndarray  # (views, total frames, C, h, w), memory-mapped
    offsets: np.ndarray
    num_frames: np.ndarray
    labels: np.ndarray

    @classmethod
    def open(cls, path: str | Path) -> "FeatureCache":
        path = Path(path)
        index_file = path / "index.json"
        if not index_file.is_file():
            raise ConfigError(f"{path} is not a feature cache (no index.json)")
        index = json.loads(index_file.read_text())
        features = np.load(path / "features.npy", mmap_mode="r")
        if list(features.shape) != index["shape"]:
            raise ConfigError(f"{path}/features.npy is shaped {features.shape}, its index says {index['shape']}: "
                              "delete the directory to rebuild it")
        return cls(path, index["key"], features, np.asarray(index["offsets"]), np.asarray(index["num_frames"]),
                   np.asarray(index["labels"]))

    @property
    def views(self) -> int:
        return self.features.shape[0]

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        return tuple(self.features.shape[2:])

    def __len__(self) -> int:
        return len(self.offsets)

    def frames(self, video: int, indices: np.ndarray, view: int = 0) -> np.ndarray:
        """``(len(indices), C, h, w)`` float32 activations of frames ``indices`` of video ``video``."""
        return np.asarray(self.features[view, self.offsets[video] + np.asarray(indices)], dtype=np.float32)


class _DecodedVideos(Dataset):
    """Every frame of a video, preprocessed for evaluation (and flipped when asked): ``(V, T, 3, H, W)`` float32."""

    def __init__(self, records: Sequence[VideoRecord], preprocess: Preprocess, hflip: bool, template: str):
        self.records, self.preprocess, self.hflip, self.template = list(records), preprocess, hflip, template

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> torch.Tensor:
        r = self.records[i]
        source = FrameFolder(r.path, template=self.template) if r.num_frames is not None else VideoFile(r.path, threads=1)
        with source:
            n = r.num_frames if r.num_frames is not None else source.num_frames
            clip = self.preprocess(source.read_indices(np.arange(n)))
        views = [clip, np.ascontiguousarray(clip[..., ::-1])] if self.hflip else [clip]
        return torch.from_numpy(np.stack(views))


def build_cache(records: Sequence[VideoRecord], split_file: str | Path, preprocess: Preprocess, prefix: nn.Module,
                root: str | Path, *, dtype: str = "float16", hflip: bool = False, precision: str = "fp32",
                device: str | torch.device = "cpu", workers: int = 2, batch_frames: int = 256,
                template: str = "img_{:05d}.jpg", desc: str = "cache") -> FeatureCache:
    """Open the cache of ``prefix`` over ``records`` under ``root``, building it first when no cache has this key.

    ``prefix`` maps ``(B, 3, H, W)`` normalised frames to ``(B, C, h, w)`` and must be per-frame (no temporal
    module); it is run in eval mode without gradients.
    """
    if preprocess.layout != "TCHW":
        raise ConfigError("the feature cache needs the TCHW layout (the layout torch models take)")
    key = cache_key(records, split_file, preprocess, prefix, dtype, hflip, precision)
    path = Path(root) / f"{Path(split_file).stem}-{_key_hash(key)}"
    if (path / "index.json").is_file():
        cache = FeatureCache.open(path)
        if cache.key == key:
            return cache
        raise ConfigError(f"{path} holds another cache than its name says: delete it to rebuild")
    device = torch.device(device)
    modes = [(m, m.training) for m in prefix.modules()]  # restored per module: a Sequential slice has its own flag
    prefix.eval().to(device, memory_format=torch.channels_last)
    loader = torch.utils.data.DataLoader(
        _DecodedVideos(records, preprocess, hflip, template), batch_size=None, num_workers=workers,
        multiprocessing_context="forkserver" if workers > 0 else None,
        worker_init_fn=_one_thread if workers > 0 else None)
    try:
        with atomic_dir(path, replace=False) as tmp:  # another process that finished the same cache first wins
            features, offsets, counts, row = None, [], [], 0
            total = None
            for i, views in enumerate(progress(loader, desc=desc, unit="video")):
                v, t = views.shape[:2]
                bf16 = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
                with torch.no_grad(), bf16:
                    flat = views.flatten(0, 1).to(device).contiguous(memory_format=torch.channels_last)
                    out = torch.cat([prefix(flat[j:j + batch_frames]) for j in range(0, len(flat), batch_frames)])
                out = out.float().cpu().unflatten(0, (v, t)).numpy()
                if features is None:  # the first video gives the activation shape; every video's frames counted
                    total = sum(_frame_count(r) for r in records)
                    features = np.lib.format.open_memmap(tmp / "features.npy", mode="w+", dtype=DTYPES[dtype],
                                                         shape=(v, total, *out.shape[2:]))
                if row + t > total:
                    raise ConfigError(f"{records[i].path} decoded to more frames than its header said")
                features[:, row:row + t] = out
                offsets.append(row)
                counts.append(t)
                row += t
            features.flush()
            shape = [features.shape[0], row, *features.shape[2:]]
            del features
            if row != total:  # a container that over-reported its frame count: keep only the decoded rows
                arr = np.load(tmp / "features.npy", mmap_mode="r")[:, :row]
                with atomic_path(tmp / "features.npy") as trimmed:
                    np.save(trimmed, np.ascontiguousarray(arr))
                del arr
            index = {"key": key, "shape": shape, "offsets": offsets, "num_frames": counts,
                     "labels": [r.label for r in records], "paths": [str(r.path) for r in records]}
            (tmp / "index.json").write_text(json.dumps(index))
    finally:
        for m, mode in modes:
            m.training = mode
    return FeatureCache.open(path)


def _frame_count(record: VideoRecord) -> int:
    if record.num_frames is not None:
        return record.num_frames
    with VideoFile(record.path, threads=1) as v:
        return v.num_frames


def _one_thread(_: int) -> None:
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


class CachedClipDataset(Dataset):
    """:class:`~training.data.datasets.ClipDataset`'s contract over a :class:`FeatureCache`: items are
    ``(features (T, C, h, w), label)`` -- ``(V, T, C, h, w)`` for several evaluation clips -- or, with ``subset``,
    ``(clip, student_clip, positions, label)`` for see-very-little distillation (the student's k frames are
    positions of the teacher's N cached frames). Keys are indices or ``(epoch, index)`` pairs (:class:`EpochSampler`);
    training randomness derives from ``(seed, epoch, index)`` as in ``ClipDataset``.
    """

    def __init__(self, cache: FeatureCache, *, sampler: Sampler, train: bool, hflip_map: Sequence[int] | None = None,
                 flip_prob: float = 0.5, num_clips: int = 1, subset: Sampler | None = None, seed: int = 0):
        if len(cache) == 0:
            raise ConfigError("the feature cache holds no videos")
        if subset is not None and subset.of != sampler.frames:
            raise ConfigError(f"the student's sampler must pick from the teacher's {sampler.frames} frames "
                              f"(of={sampler.frames}), got of={subset.of}")
        self.cache, self.sampler, self.train, self.subset, self.seed = cache, sampler, train, subset, seed
        self.num_clips, self.flip_prob = num_clips, flip_prob
        self.hflip_map = list(hflip_map) if hflip_map is not None and cache.views > 1 else None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        n, label = int(self.cache.num_frames[index]), int(self.cache.labels[index])
        if not self.train:
            views = self.sampler.multi_view(n, self.num_clips)
            clips = np.stack([self.cache.frames(index, v) for v in views])
            return torch.from_numpy(clips[0] if len(clips) == 1 else clips), label
        rng = np.random.default_rng([self.seed, epoch, index])
        indices = self.sampler.indices(n, rng)
        view = 0
        if self.hflip_map is not None and rng.random() < self.flip_prob:
            view, label = 1, self.hflip_map[label]
        clip = self.cache.frames(index, indices, view)
        if self.subset is not None:
            positions = self.subset.grid_positions(len(clip), rng)
            return torch.from_numpy(clip), torch.from_numpy(clip[positions]), torch.from_numpy(positions), label
        return torch.from_numpy(clip), label
