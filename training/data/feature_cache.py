"""Feature cache: a frozen backbone prefix run once per frame, stored on disk, read by many epochs of training.

Transfer learning's cheap path on a CPU (docs/design.md, "Learning on a CPU"): the first blocks of an ImageNet MobileNetV2
are frozen, so their output for a given frame never changes. :func:`build_cache` decodes every frame of every video
of a split once, preprocesses it with the evaluation transform of ``sdk.preprocess`` (resize + centre crop +
normalise: what the device does), runs the frozen prefix, and stores the activations (float16 by default) as one
memory-mapped array per video. Training, distillation and evaluation then read clips from it with
:class:`CachedClipDataset`: any sampler's frame indices are rows of a video's array, so the teacher (N frames), the
student (k of those N) and the TSN/TSM baselines share one cache, and the model runs from the first trainable block
on (``model.forward_features(cached, start=prefix)``).

Layout: ``CACHE_DIR/<store>/videos/<ab>/<video>.npy``. A store is named by a hash of everything that determines its
content except the video -- the preprocessing, the prefix (architecture, depth, a hash of its weights and BN
statistics), the compute precision, the dtype and the views -- and holds that key in ``key.json``; a video file is
named by a hash of the video's resolved path, size and mtime (frame folders: also their frame count and file name
template). A split is the list of its videos' files, so splits that share videos (``val.csv`` and a subset of it, two
datasets pointing at the same files) compute them once, a changed video or prefix is never served stale, and nothing
is written into the dataset (``CACHE_DIR`` defaults to :func:`default_cache_dir`: a read-only or shared dataset
works). Each video's array is written to a temporary file and renamed into place, so a killed build leaves only
complete videos, and the next build computes just the rest.

Augmentation: random temporal offsets come for free (every frame is cached); spatial crops cannot be cached, but with
``hflip=True`` a second, horizontally flipped view is stored and training picks it with probability 1/2, mapping the
label through the dataset's ``hflip_map`` (moving_left <-> moving_right).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from sdk.errors import ConfigError
from sdk.files import atomic_path
from sdk.preprocess import Preprocess
from sdk.samplers import Sampler

from training.data.datasets import VideoRecord, fit_workers
from training.progress import progress

__all__ = ["CACHE_ENV", "CACHE_VERSION", "CachedClipDataset", "FeatureCache", "build_cache", "cache_key",
           "default_cache_dir", "prefix_digest", "video_key", "weights_digest"]

CACHE_VERSION = 2  # 2: one array per video, in a cache directory outside the dataset
CACHE_ENV = "EDGEVIDEO_FEATURE_CACHE"
DTYPES = {"float16": np.float16, "float32": np.float32}
PRECISIONS = ("fp32", "bf16")  # compute of the prefix while building (bf16: autocast, ~2.3x faster with AMX)


def default_cache_dir() -> Path:
    """``$EDGEVIDEO_FEATURE_CACHE``, else ``~/.cache/edgevideo/features``: outside any dataset, shared by all runs."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "edgevideo" / "features")


def weights_digest(module: nn.Module) -> str:
    """sha256 over a module's parameters and buffers (names, shapes, dtypes, values): BN statistics included."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{t.numel()}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def prefix_digest(prefix: nn.Module) -> dict[str, str]:
    """The prefix's identity: its structure (``repr``: module types, strides, groups, activations) and its weights."""
    return {"structure": hashlib.sha256(repr(prefix).encode()).hexdigest(), "weights": weights_digest(prefix)}


def cache_key(preprocess: Preprocess, prefix: nn.Module, dtype: str = "float16", hflip: bool = False,
              precision: str = "fp32") -> dict[str, Any]:
    """A store's identity (everything but the video); its sha256 names the store directory."""
    if dtype not in DTYPES:
        raise ConfigError(f"cache dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if precision not in PRECISIONS:
        raise ConfigError(f"cache precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return {"version": CACHE_VERSION, "preprocess": preprocess.to_dict(), "prefix": prefix_digest(prefix),
            "precision": precision, "dtype": dtype, "views": ["centre", "hflip"] if hflip else ["centre"]}


def video_key(record: VideoRecord, template: str) -> str:
    """A video's identity in a store: its resolved path, size and mtime (a frame folder's also its frame count and
    frame file names), so a rewritten video gets a new entry."""
    st = record.path.stat()
    ident = [str(record.path.resolve()), st.st_size, st.st_mtime_ns]
    if record.num_frames is not None:
        ident += [record.num_frames, template]
    return _hash(ident)


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:20]


@dataclass
class FeatureCache:
    """A split's view of a store: video ``i`` is the memory-mapped array ``files[i]``, ``(views, frames, C, h, w)``:
    the prefix output of each of its frames."""

    path: Path  # the store
    key: dict[str, Any]
    files: list[Path]
    labels: np.ndarray

    @property
    def views(self) -> int:
        return len(self.key["views"])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(DTYPES[self.key["dtype"]])

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        return tuple(self.video(0).shape[2:])

    def __len__(self) -> int:
        return len(self.files)

    def video(self, i: int) -> np.ndarray:
        """Video ``i``'s activations, memory-mapped (opened per call: a split may hold more videos than a process
        may keep files open)."""
        return np.load(self.files[i], mmap_mode="r")


def _open_store(path: Path, key: dict[str, Any]) -> None:
    """Create the store ``path`` for ``key``, or check that the existing one is for ``key``."""
    key_file = path / "key.json"
    if key_file.is_file():
        if json.loads(key_file.read_text()) != key:
            raise ConfigError(f"{path} holds another cache than its name says: delete it to rebuild")
        return
    path.mkdir(parents=True, exist_ok=True)
    with atomic_path(key_file) as tmp:
        tmp.write_text(json.dumps(key, indent=1))


class _DecodedVideos(Dataset):
    """Every frame of a video, preprocessed for evaluation (and flipped when asked): ``(V, T, 3, H, W)`` float32."""

    def __init__(self, records: Sequence[VideoRecord], preprocess: Preprocess, hflip: bool, template: str):
        self.records, self.preprocess, self.hflip, self.template = list(records), preprocess, hflip, template

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> torch.Tensor:
        r = self.records[i]
        with r.open(self.template, self.preprocess.conversion) as source:
            n = r.num_frames if r.num_frames is not None else source.num_frames
            clip = self.preprocess(source.read_indices(np.arange(n)))
        views = [clip, np.ascontiguousarray(clip[..., ::-1])] if self.hflip else [clip]
        return torch.from_numpy(np.stack(views))


def build_cache(records: Sequence[VideoRecord], preprocess: Preprocess, prefix: nn.Module, root: str | Path, *,
                dtype: str = "float16", hflip: bool = False, precision: str = "fp32",
                device: str | torch.device = "cpu", workers: int = 2, batch_frames: int = 256,
                template: str = "img_{:05d}.jpg", desc: str = "cache") -> FeatureCache:
    """The cache of ``prefix`` over ``records`` in the cache directory ``root``, computing the videos it lacks.

    ``prefix`` maps ``(B, 3, H, W)`` normalised frames to ``(B, C, h, w)`` and must be per-frame (no temporal
    module); it is run in eval mode without gradients.
    """
    if preprocess.layout != "TCHW":
        raise ConfigError("the feature cache needs the TCHW layout (the layout torch models take)")
    key = cache_key(preprocess, prefix, dtype, hflip, precision)
    store = Path(root) / _hash(key)
    _open_store(store, key)
    files = [store / "videos" / k[:2] / f"{k}.npy" for k in (video_key(r, template) for r in records)]
    todo = [i for i, f in enumerate(files) if not f.is_file()]
    if todo:
        _compute(prefix, [records[i] for i in todo], [files[i] for i in todo], preprocess, hflip, template,
                 dtype=dtype, precision=precision, device=torch.device(device), workers=workers,
                 batch_frames=batch_frames, desc=desc)
    return FeatureCache(store, key, files, np.asarray([r.label for r in records], dtype=np.int64))


def _compute(prefix: nn.Module, records: list[VideoRecord], files: list[Path], preprocess: Preprocess, hflip: bool,
             template: str, *, dtype: str, precision: str, device: torch.device, workers: int, batch_frames: int,
             desc: str) -> None:
    """Run ``prefix`` over every frame of ``records`` and write each video's array to its file."""
    modes = [(m, m.training) for m in prefix.modules()]  # restored per module: a Sequential slice has its own flag
    prefix.eval().to(device, memory_format=torch.channels_last)
    workers = fit_workers(workers)
    loader = torch.utils.data.DataLoader(
        _DecodedVideos(records, preprocess, hflip, template), batch_size=None, num_workers=workers,
        multiprocessing_context="forkserver" if workers > 0 else None,
        worker_init_fn=_one_thread if workers > 0 else None)
    try:
        for file, views in zip(files, progress(loader, desc=desc, unit="video")):
            bf16 = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
            with torch.no_grad(), bf16:
                flat = views.flatten(0, 1).to(device).contiguous(memory_format=torch.channels_last)
                out = torch.cat([prefix(flat[j:j + batch_frames]) for j in range(0, len(flat), batch_frames)])
            out = out.float().cpu().unflatten(0, views.shape[:2]).numpy().astype(DTYPES[dtype])
            file.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(file) as tmp:  # another process writing the same video writes the same array
                np.save(tmp, out)
    finally:
        for m, mode in modes:
            m.training = mode


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
        video, label = self.cache.video(index), int(self.cache.labels[index])
        n = video.shape[1]
        if not self.train:
            views = self.sampler.multi_view(n, self.num_clips)
            clips = np.stack([np.asarray(video[0, v], dtype=np.float32) for v in views])
            return torch.from_numpy(clips[0] if len(clips) == 1 else clips), label
        rng = np.random.default_rng([self.seed, epoch, index])
        indices = self.sampler.indices(n, rng)
        view = 0
        if self.hflip_map is not None and rng.random() < self.flip_prob:
            view, label = 1, self.hflip_map[label] if label >= 0 else label  # < 0: unlabelled, stays so
        clip = np.asarray(video[view, indices], dtype=np.float32)
        if self.subset is not None:
            positions = self.subset.grid_positions(len(clip), rng)
            return torch.from_numpy(clip), torch.from_numpy(clip[positions]), torch.from_numpy(positions), label
        return torch.from_numpy(clip), label
