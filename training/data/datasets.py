"""Video datasets for training: a CSV of video files, frame folders in the TSN/bLVNet list format, or a folder of
class folders of videos (``train/<label>/*.mp4``), all read into the same :class:`VideoRecord` lists.

Frame choice and preprocessing are not implemented here: they are ``sdk.samplers.Sampler`` and
``sdk.preprocess.Preprocess``, the same objects the device runs. Only the sampled frames are decoded.
Randomness (sampler offsets, crops, flips) derives from ``(seed, epoch, index)``, so an epoch is reproducible whatever
the number of DataLoader workers.
"""
from __future__ import annotations

import csv
import json
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import distributed as dist
from torch.utils.data import DataLoader, Dataset

from sdk.errors import ConfigError
from sdk.preprocess import Preprocess
from sdk.samplers import Sampler
from sdk.video import FrameFolder, VideoFile, probe

__all__ = [
    "VIDEO_SUFFIXES", "VideoRecord", "DatasetInfo", "clip_profile", "is_video_name", "read_class_folders",
    "read_video_csv", "read_frame_list", "read_records", "split_folders", "ClipDataset", "EpochSampler", "make_loader",
]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")  # compared case-insensitively
PROFILE_VIDEOS = 512  # videos whose headers give a split's clip profile (spread over larger splits)


@dataclass(frozen=True)
class VideoRecord:
    """One labelled video: a file, or a folder of frames with its frame count (list format)."""

    path: Path
    label: int
    num_frames: int | None = None

    def open(self, template: str, conversion: str = "swscale") -> FrameFolder | VideoFile:
        """Its frames: a :class:`FrameFolder` (file names ``template``) or a :class:`VideoFile` whose frames become
        pixels by ``conversion`` (``Preprocess.conversion``); one decoding thread (loaders run in parallel)."""
        if self.num_frames is not None:
            return FrameFolder(self.path, template=template)
        return VideoFile(self.path, threads=1, conversion=conversion)


@dataclass
class DatasetInfo:
    """What a dataset directory says about itself: labels, and for the time-reversal benchmark its pairs and flip map.

    Two layouts (docs/training.md, "Dataset layouts"): split files (``train.csv``, TSN frame lists) beside
    ``labels.txt``, or a folder per split holding a folder per class (``train/<label>/*.mp4``), where ``labels.txt``
    is optional. :meth:`records` resolves a split name in either layout: every tool reads splits through it.
    """

    root: Path
    labels: list[str]
    pairs: list[tuple[int, int]] = field(default_factory=list)
    hflip_map: list[int] | None = None
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_dir(cls, root: str | Path) -> "DatasetInfo":
        """Labels from ``labels.txt`` (its order) or else the sorted class folder names of every split folder; and
        ``meta.json`` (optional: ``pairs``, ``hflip_map``, by label name or index, checked against the labels)."""
        root = Path(root)
        if not root.is_dir():
            raise ConfigError(f"dataset directory {root} does not exist: pass a folder of split files beside labels.txt, "
                              "or of train/<label>/ video folders")
        labels_file = root / "labels.txt"
        if labels_file.is_file():
            labels = [line.strip() for line in labels_file.read_text().splitlines() if line.strip()]
        else:
            labels = sorted({c.name for folder in split_folders(root) for c in _class_dirs(folder)})
        if not labels:
            raise ConfigError(f"{root} is not a dataset directory: it has no labels.txt and no split folders of class "
                              "folders (ROOT/train/<label>/*.mp4); see docs/training.md, 'Dataset layouts'")
        repeated = sorted({name for name in labels if labels.count(name) > 1})
        if repeated:
            raise ConfigError(f"{labels_file}: labels {', '.join(repeated)} appear more than once; keep one line each")
        meta = json.loads((root / "meta.json").read_text()) if (root / "meta.json").is_file() else {}
        where, index = root / "meta.json", {name: i for i, name in enumerate(labels)}
        pairs = _read_pairs(meta.get("pairs", []), index, where)
        hflip = None if meta.get("hflip_map") is None else _read_hflip_map(meta["hflip_map"], index, where)
        return cls(root, labels, pairs, hflip, meta)

    def split_path(self, split: str) -> Path:
        """Where ``split`` is: the file or folder ``ROOT/split`` when it exists, else the folder of class folders
        ``ROOT/<split without its suffix>`` (so the default ``train.csv`` also finds ``train/``)."""
        path = self.root / split
        if path.exists():
            return path
        folder = path.with_suffix("")
        if path.suffix and folder.is_dir():
            return folder
        raise ConfigError(f"split {split!r} not found in {self.root}: neither {path.name} nor {folder.name}/ exists "
                          f"(splits there: {', '.join(self.splits()) or 'none'})")

    def records(self, split: str) -> list[VideoRecord]:
        """The videos of ``split`` (resolved by :meth:`split_path`): a CSV, a frame list, or a folder of class
        folders."""
        path = self.split_path(split)
        return read_class_folders(path, self.labels) if path.is_dir() else read_records(path, self.labels)

    def splits(self) -> list[str]:
        """The splits found in the directory: its ``.csv`` files, or else its split folders (frame lists are not
        recognisable by name: pass them explicitly)."""
        files = sorted(p.name for p in self.root.glob("*.csv") if p.is_file())
        return files or [folder.name for folder in split_folders(self.root)]

    def checkpoint_entry(self, split: str) -> dict:
        """What a checkpoint records about the dataset it was trained on (``CheckpointMeta.dataset``), with the clip
        profile of ``split`` (the training split): what the runtime should expect of a video."""
        return {"root": str(self.root), "preset": self.meta.get("preset"), "seed": self.meta.get("seed"),
                "split": split, "clip": clip_profile(self.records(split))}


def _label_of(value: object, index: dict[str, int], where: Path) -> int:
    """A label named in meta.json: its name or its index."""
    if isinstance(value, str) and value in index:
        return index[value]
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(index):
        return value
    raise ConfigError(f"{where}: {value!r} is neither a label name nor an index in [0, {len(index)})")


def _read_pairs(raw: Sequence, index: dict[str, int], where: Path) -> list[tuple[int, int]]:
    """Reversal pairs: two different labels each, and a label in at most one pair (the within-pair metric maps each
    label to one partner)."""
    pairs, seen = [], set()
    for pair in raw:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ConfigError(f"{where}: pair {pair!r} must name two labels, e.g. [\"opening\", \"closing\"]")
        a, b = (_label_of(v, index, where) for v in pair)
        if a == b:
            raise ConfigError(f"{where}: pair {list(pair)} must name two different labels")
        if seen & {a, b}:
            raise ConfigError(f"{where}: label {sorted(seen & {a, b})[0]} is in two pairs; each label may have one "
                              "partner")
        seen |= {a, b}
        pairs.append((a, b))
    return pairs


def _read_hflip_map(raw: Sequence | dict, index: dict[str, int], where: Path) -> list[int]:
    """The label of each label's mirror image: a list over all labels, or a mapping of the labels that change
    (``{"moving_left": "moving_right"}``: the reverse direction is implied, the rest map to themselves)."""
    labels = list(index)
    if isinstance(raw, dict):
        flip = list(range(len(labels)))
        given = {_label_of(k, index, where): _label_of(v, index, where) for k, v in raw.items()}
        for a, b in given.items():
            flip[a] = b
            flip[b] = given.get(b, a)
    else:
        flip = [_label_of(v, index, where) for v in raw]
        if sorted(flip) != list(range(len(labels))):
            raise ConfigError(f"{where}: hflip_map must be a permutation of the {len(labels)} labels")
    bad = next((i for i in range(len(labels)) if flip[flip[i]] != i), None)
    if bad is not None:
        raise ConfigError(f"{where}: hflip_map flips {labels[bad]!r} to {labels[flip[bad]]!r} but not back; a flip "
                          "map must swap labels in pairs (or map a label to itself)")
    return flip


def clip_profile(records: Sequence[VideoRecord]) -> dict:
    """Median frame count, fps and duration of ``records`` from their headers (no decoding), measured on at most
    :data:`PROFILE_VIDEOS` of them spread over the list; ``fps`` and ``seconds`` are None for frame folders.
    ``videos``: how many were measured."""
    picks = np.linspace(0, len(records) - 1, min(len(records), PROFILE_VIDEOS)).round().astype(int) if records else []
    frames, fps, seconds = [], [], []
    for i in picks:
        record = records[i]
        if record.num_frames is not None:
            frames.append(record.num_frames)
            continue
        info = probe(record.path)
        frames.append(info.num_frames)
        if info.fps:
            fps.append(info.fps)
        if info.duration_s is not None:
            seconds.append(info.duration_s)
    return {"frames": round(statistics.median(frames)) if frames else 0,
            "fps": float(statistics.median(fps)) if fps else None,
            "seconds": float(statistics.median(seconds)) if seconds else None, "videos": len(picks)}


def is_video_name(name: str) -> bool:
    """A visible file with one of :data:`VIDEO_SUFFIXES` (any case)."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in VIDEO_SUFFIXES


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(Path(e.path) for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def split_folders(root: Path) -> list[Path]:
    """The folders of ``root`` laid out as ``<split>/<label>/<video>``: at least one class folder holds a video."""
    def holds_videos(folder: Path) -> bool:
        return any(e.is_file() and is_video_name(e.name) for e in os.scandir(folder))

    return [d for d in _class_dirs(root) if any(holds_videos(c) for c in _class_dirs(d))]


def read_class_folders(folder: str | Path, labels: Sequence[str]) -> list[VideoRecord]:
    """A split stored as ``folder/<label>/<video>`` (video suffixes of :data:`VIDEO_SUFFIXES`, hidden files
    skipped), in sorted order; a class folder that is not a label is an error, not a silently dropped class."""
    folder = Path(folder)
    index = {name: i for i, name in enumerate(labels)}
    records = []
    for class_dir in _class_dirs(folder):
        if class_dir.name not in index:
            raise ConfigError(f"{class_dir}: class folder {class_dir.name!r} is not one of the labels; add it to "
                              f"{folder.parent}/labels.txt or remove the folder")
        entries = sorted(os.scandir(class_dir), key=lambda e: e.name)
        records += [VideoRecord(Path(e.path), index[class_dir.name]) for e in entries
                    if e.is_file() and is_video_name(e.name)]
    return records


def _label(value: str, index: dict[str, int] | None, where: str) -> int:
    """A label column: an index, or a name of ``index`` (label name -> index)."""
    if value.strip().lstrip("-").isdigit():
        label = int(value)
    elif index is not None and value.strip() in index:
        label = index[value.strip()]
    else:
        raise ConfigError(f"{where}: label {value!r} is neither an index nor a known label name")
    if index is not None and not 0 <= label < len(index):
        raise ConfigError(f"{where}: label {label} outside [0, {len(index)})")
    return label


def _index(labels: Sequence[str] | None) -> dict[str, int] | None:
    return None if labels is None else {name: i for i, name in enumerate(labels)}


def read_video_csv(csv_path: str | Path, labels: Sequence[str] | None = None, root: str | Path | None = None) -> list[VideoRecord]:
    """Rows ``path,label`` after a header; paths relative to ``root`` (default: the CSV's folder); labels index or name."""
    csv_path = Path(csv_path)
    base = Path(root) if root is not None else csv_path.parent
    index = _index(labels)
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"path", "label"} <= set(reader.fieldnames):
            raise ConfigError(f"{csv_path}: expected a header with columns 'path,label', got {reader.fieldnames}")
        return [VideoRecord(base / row["path"], _label(row["label"], index, f"{csv_path}:{i + 2}"))
                for i, row in enumerate(reader)]


def read_frame_list(list_path: str | Path, root: str | Path, labels: Sequence[str] | None = None) -> list[VideoRecord]:
    """TSN/bLVNet list format: one ``folder num_frames label`` per line (folders relative to ``root``)."""
    records, index = [], _index(labels)
    for i, line in enumerate(Path(list_path).read_text().splitlines()):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or not parts[1].isdigit():
            raise ConfigError(f"{list_path}:{i + 1}: expected 'path num_frames label', got {line!r}")
        records.append(VideoRecord(Path(root) / parts[0], _label(parts[2], index, f"{list_path}:{i + 1}"), int(parts[1])))
    return records


def read_records(path: str | Path, labels: Sequence[str] | None = None, root: str | Path | None = None) -> list[VideoRecord]:
    """A split file by its suffix: ``.csv`` -> :func:`read_video_csv`, anything else -> :func:`read_frame_list`
    (frame folders relative to ``root``, default the list's folder)."""
    path = Path(path)
    if path.suffix == ".csv":
        return read_video_csv(path, labels, root)
    return read_frame_list(path, root if root is not None else path.parent, labels)


class ClipDataset(Dataset):
    """Sampled, preprocessed clips ``(T, 3, H, W)`` float32 (or ``(V, T, 3, H, W)`` for several views) + label.

    Args:
        records: videos (files) or frame folders (records with ``num_frames``, read with ``template``).
        sampler: which frames; in training it gets a generator (random offsets), otherwise it is deterministic.
        preprocess: the spec; training uses its multi-scale crop, evaluation its centre crop.
        train: training-time randomness (offsets, crops, flips) on or off.
        spatial_augment: in training, the multi-scale crop (True) or the evaluation centre crop (False: what a model
            trained on a feature cache saw, so fine-tuning it -- QAT -- keeps its input distribution); temporal
            offsets and flips stay random either way.
        hflip_map: label after a horizontal flip (e.g. moving_left -> moving_right); None disables flipping, since
            flipping without it would teach wrong labels on direction-sensitive classes.
        num_clips: evaluation views along time (``Sampler.multi_view``); ignored in training.
        num_crops: evaluation views in space (``Preprocess.crops``: 1 or 3); ignored in training. The
            ``V = num_clips * num_crops`` views are clip-major (the crops of clip 0 first).
        subset: see-very-little distillation (training only): a student sampler (``Sampler(kind, k, of=T)``) whose k
            frames are taken from the T frames ``sampler`` gave the teacher -- one decode, the same crop and flip.
            Items are then ``(clip, student_clip, positions, label)`` with ``student_clip = clip[positions]``.
    """

    def __init__(self, records: Sequence[VideoRecord], *, sampler: Sampler, preprocess: Preprocess, train: bool,
                 hflip_map: Sequence[int] | None = None, flip_prob: float = 0.5, num_clips: int = 1,
                 num_crops: int = 1, subset: Sampler | None = None, seed: int = 0, template: str = "img_{:05d}.jpg",
                 spatial_augment: bool = True):
        if not records:
            raise ConfigError("the dataset has no videos")
        self.records = list(records)
        self.sampler, self.preprocess, self.train = sampler, preprocess, train
        self.hflip_map = None if hflip_map is None else list(hflip_map)
        self.flip_prob, self.num_clips, self.seed, self.template = flip_prob, num_clips, seed, template
        self.num_crops, self.subset, self.spatial_augment = num_crops, subset, spatial_augment
        if subset is not None and subset.of != sampler.frames:
            raise ConfigError(f"the student's sampler must pick from the teacher's {sampler.frames} frames "
                              f"(of={sampler.frames}), got of={subset.of}")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Epoch of plain integer keys (a loader from :func:`make_loader` passes the epoch in each key instead)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple:
        """``key`` is an index (epoch from :meth:`set_epoch`) or an ``(epoch, index)`` pair from :class:`EpochSampler`."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        record = self.records[index]
        label = record.label
        with record.open(self.template, self.preprocess.conversion) as source:
            n = record.num_frames if record.num_frames is not None else source.num_frames
            if not self.train:
                views = self.sampler.multi_view(n, self.num_clips)
                frames = source.read_indices(views.reshape(-1))
                clips = np.concatenate([self.preprocess.crops(f, self.num_crops)
                                        for f in frames.reshape(views.shape + frames.shape[1:])])
                clip = clips[0] if len(clips) == 1 else clips
                return torch.from_numpy(clip), label
            rng = np.random.default_rng([self.seed, epoch, index])
            frames = source.read_indices(self.sampler.indices(n, rng))
        clip = self.preprocess.train(frames, rng) if self.spatial_augment else self.preprocess(frames)
        if self.hflip_map is not None and rng.random() < self.flip_prob:
            clip = np.ascontiguousarray(clip[..., ::-1] if self.preprocess.layout == "TCHW" else clip[:, :, ::-1])
            label = self.hflip_map[label] if label >= 0 else label  # < 0: unlabelled, stays so
        if self.subset is not None:
            positions = self.subset.grid_positions(len(clip), rng)
            return torch.from_numpy(clip), torch.from_numpy(clip[positions]), torch.from_numpy(positions), label
        return torch.from_numpy(clip), label


class EpochSampler(torch.utils.data.Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` keys: the order is a function of ``(seed, epoch)`` only (resumable), and persistent
    DataLoader workers learn the epoch from the key instead of from a dataset copy that ``set_epoch`` cannot reach.

    Under torchrun each rank takes its strided share. ``pad`` (training) repeats the first indices so that every rank
    has the same number of batches, like ``DistributedSampler``; evaluation passes ``pad=False`` to see each clip once.
    ``set_epoch(e, start=s)`` skips the first ``s`` keys of this rank's share: a run resumed mid-epoch goes on with
    exactly the clips it had not seen yet.
    """

    def __init__(self, size: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1,
                 pad: bool = True):
        self.size, self.shuffle, self.seed, self.rank, self.world_size = size, shuffle, seed, rank, world_size
        self.pad = pad
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def _share(self) -> list[int]:
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        else:
            order = list(range(self.size))
        if self.pad:
            order += order[: math.ceil(self.size / self.world_size) * self.world_size - self.size]
        return order[self.rank::self.world_size]

    def __len__(self) -> int:
        if self.pad:
            return math.ceil(self.size / self.world_size) - self.start
        return len(range(self.rank, self.size, self.world_size)) - self.start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(self.epoch, i) for i in self._share()[self.start:]])


def _worker_init(_: int) -> None:
    """One thread per worker for OpenCV and torch: the parallelism is the workers themselves."""
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity: ``taskset``, a container's cpuset), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity API (macOS)
        return os.cpu_count() or 1


def fit_workers(requested: int) -> int:
    """``requested`` DataLoader workers, at most one per usable core and none on a single core, where a worker
    process only adds a hand-over per batch (and torch warns that it exceeds the suggested maximum)."""
    cores = usable_cores()
    return 0 if cores == 1 else min(requested, cores)


def make_loader(dataset: ClipDataset, *, batch_size: int, workers: int, shuffle: bool, drop_last: bool = False,
                distributed: bool = False, pad: bool = True, pin_memory: bool = False, seed: int = 0) -> DataLoader:
    """A DataLoader whose persistent workers decode and preprocess in parallel; call ``loader.sampler.set_epoch(e)``.
    ``workers`` is an upper bound (:func:`fit_workers`): the batches are the same whatever the count.

    Workers start with ``forkserver``, not ``fork``: a process forked after OpenCV has started its thread pool
    deadlocks in the child (seen here with ``cv2.setNumThreads``), and the parent often has used OpenCV already.
    """
    workers = fit_workers(workers)
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=seed, rank=rank, world_size=world, pad=pad)
    # Its own generator: creating an epoch's iterator draws a base seed, and drawing it from torch's global generator
    # would shift the dropout stream -- a run resumed mid-epoch would then diverge from an uninterrupted one.
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=drop_last,
                      generator=torch.Generator().manual_seed(seed), pin_memory=pin_memory, worker_init_fn=_worker_init if workers > 0 else None,
                      persistent_workers=workers > 0, multiprocessing_context="forkserver" if workers > 0 else None)
