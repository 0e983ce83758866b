"""FASTER long-video benchmarks: a time-reversal action hidden in a long video (brief event), or one that persists.

Two regimes, one generator. **Brief event** (presets ``tiny``, ``small``, ``full``), the opposite of FASTER's premise:

A long video is ``segments`` consecutive segments of ``base.frames`` frames each (a segment is exactly one clip of
the base time-reversal preset: same size, fps, scene statistics), rendered as **one continuous scene** by
:func:`training.data.synthetic.render_scene`: one background, one hand-held camera, the same distractors and
photometry from the first frame to the last, no cuts. The labelled action (one of the 16 time-reversal classes)
occupies a contiguous run of ``k ~ U{span}`` segments starting at a uniformly random segment; the main object is
in the scene during that run only (the action's progress runs over it, so a 2-segment action is a 2-clip-long
action). Every other segment is *idle*: the same scene going on without the object -- pixel for pixel the frames
of the idle twin of the scene, which do not depend on the label.

Why this design:

* A model that looks at one random segment sees the action with probability ``E[k] / segments`` (tiny 3/8, small
  3/16, full 1/8) and is at chance otherwise; averaging segment predictions or features dilutes the one informative
  segment with ``segments - k`` uninformative ones; a recurrent aggregator can keep what it saw. The label needs the
  whole video in the sense that no fixed subset of segments holds it.
* Continuity (rather than cut-editing unrelated clips) removes the shortcut "the segment whose scene differs holds
  the action" and is free: the renderer draws a scene of any length.
* The time-reversal property holds for whole videos: a video of class ``b`` is a forward video of class ``a`` with
  its frame order reversed (window mirrored; the window's start is uniform, so its law is unchanged), and every
  nuisance is time-symmetric over the whole scene. An order-invariant aggregator over order-invariant clip features
  is still at pair chance.
* Segment boundaries are exact multiples of ``base.frames``, so the clip models of the base preset see segments
  with the statistics they were trained on (distractors move per frame as in a base clip; camera pan and exposure
  drift span the video instead of each clip).

**Persistent action** (presets ``persistent_tiny``, ``persistent_small``; a config with ``shots``), FASTER's regime
(trimmed Kinetics / UCF-101 videos): the action covers ``k ~ U{span}`` of the ``L`` segments (most of them), played
again in every *shot*: the action segments are cut into shots of ``U{shots}`` segments (the last one shorter when
they do not divide), each shot an independent :func:`~training.data.synthetic.render_scene` -- a new background,
camera path (view), distractors and photometry -- with the action's progress running over the whole shot, so its
speed changes with the shot's length (a 1-segment shot is a base clip's speed, a 3-segment shot a third of it). The
``L - k`` idle segments, if any, are one idle shot (a scene without the main object) at a uniformly random place
between the action shots. Neighbouring segments are redundant (same label, often the same shot): a cheap model on
most of them loses little, which is what FASTER relies on. A reversed-class video is exactly the forward video of
its pair partner reversed (shot order included), so the time-reversal property holds for whole videos here too.

Randomness of a video derives only from ``(seed, split, label, index)`` through ``video_seed``, whose spawn key is
disjoint from the base benchmark's ``clip_seed``: a long video never replays a training clip of the base preset.

CLI::

    python -m training.data.long_video --out DIR --preset tiny|small|full|persistent_tiny|persistent_small --seed S
        [--workers N] [--overwrite]

Layout written (atomically: into a hidden sibling ``.DIR.tmp-*`` directory, then renamed)::

    DIR/videos/{train,val}/{label_name}_{index:06d}.mp4   H.264 (libx264, yuv420p), segments * base.frames frames
    DIR/train.csv, DIR/val.csv                           header ``path,label`` (read_video_csv)
    DIR/labels.txt                                       line i = name of label i (DatasetInfo)
    DIR/meta.json                                        generator, config, seed, classes, pairs, hflip_map, and per
                                                         video which segments hold the action / its motion
    DIR/annotations.npz                                  per split, per video, per frame: SCENE_ANNOTATION_KEYS
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sdk.errors import ConfigError
from sdk.preprocess import Preprocess
from sdk.samplers import Sampler
from training.data import synthetic
from training.data.datasets import ClipDataset, DatasetInfo, VideoRecord
from training.data.synthetic import (
    CLASSES,
    HFLIP_MAP,
    PAIRS,
    SCENE_ANNOTATION_KEYS,
    SPLITS,
    SyntheticConfig,
    render_scene,
)
from training.data.writer import (dataset_output, generator_cli, meta_head, run_jobs,
                                  split_arrays, start, video_relpath, write_split, write_video, x264_needs_plain_c)

__all__ = [
    "GENERATOR_NAME",
    "GENERATOR_VERSION",
    "PRESETS",
    "LongVideoConfig",
    "LongVideoDataset",
    "VideoAnnotation",
    "action_layout",
    "shot_layout",
    "generate",
    "main",
    "render_video",
    "video_seed",
]

GENERATOR_NAME = "training.data.long_video"
GENERATOR_VERSION = "1.0.0"
# First spawn-key word of every long-video seed ("LV"): the base benchmark's clip seeds have 3-word keys, these 4.
_SEED_KEY = 0x4C56


@dataclass(frozen=True)
class LongVideoConfig:
    """Everything that defines a long-video dataset (besides the seed).

    Args:
        name: preset name (recorded in meta.json).
        base: the time-reversal preset (or its name) a segment is a clip of: size, frames per segment, fps, scene
            statistics, encoding. Its own per-class counts are not used.
        segments: segments per video (L).
        span: the action covers ``k ~ U{span[0]..span[1]}`` consecutive segments.
        train_per_class, val_per_class: videos per class and split.
        shots: None for a brief event (one continuous scene, the action a contiguous run of ``span`` segments); a
            ``(low, high)`` range of shot lengths in segments for a persistent action (module docstring).
    """

    name: str
    base: SyntheticConfig
    segments: int
    span: tuple[int, int]
    train_per_class: int
    val_per_class: int
    shots: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.base, str):
            if self.base not in synthetic.PRESETS:
                raise ConfigError(f"unknown base preset {self.base!r}; choose one of {sorted(synthetic.PRESETS)}")
            object.__setattr__(self, "base", synthetic.PRESETS[self.base])
        if not isinstance(self.base, SyntheticConfig):
            raise ConfigError(f"base must be a SyntheticConfig or a preset name, got {type(self.base).__name__}")
        object.__setattr__(self, "span", tuple(int(v) for v in self.span))
        if isinstance(self.segments, bool) or not isinstance(self.segments, int) or self.segments < 1:
            raise ConfigError(f"segments must be an int >= 1, got {self.segments!r}")
        if len(self.span) != 2 or not 1 <= self.span[0] <= self.span[1] <= self.segments:
            raise ConfigError(f"span must be (low, high) with 1 <= low <= high <= segments={self.segments}, "
                              f"got {self.span}")
        if self.train_per_class < 0 or self.val_per_class < 0:
            raise ConfigError("train_per_class / val_per_class must be >= 0")
        if self.shots is not None:
            object.__setattr__(self, "shots", tuple(int(v) for v in self.shots))
            if len(self.shots) != 2 or not 1 <= self.shots[0] <= self.shots[1]:
                raise ConfigError(f"shots must be None or (low, high) with 1 <= low <= high, got {self.shots}")
            if self.base.frames * self.shots[0] < 2:
                raise ConfigError("a shot needs at least 2 frames")

    @property
    def persistent(self) -> bool:
        """True for the persistent-action regime (``shots`` given)."""
        return self.shots is not None

    @property
    def segment_frames(self) -> int:
        return self.base.frames

    @property
    def frames(self) -> int:
        """Frames per video."""
        return self.segments * self.base.frames

    def per_class(self, split: str) -> int:
        return {"train": self.train_per_class, "val": self.val_per_class}[split]

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "base": self.base.to_dict(), "segments": self.segments, "span": list(self.span),
             "train_per_class": self.train_per_class, "val_per_class": self.val_per_class}
        if self.shots is not None:  # brief-event configs keep the meta.json they always had
            d["shots"] = list(self.shots)
        return d


PRESETS: dict[str, LongVideoConfig] = {
    # CI: 48 videos of 4 x 16 frames at 128x128 (3072 frames); a few seconds on 2 cores.
    "tiny": LongVideoConfig(name="tiny", base="tiny", segments=4, span=(1, 2), train_per_class=2, val_per_class=1),
    # CPU experiments: 896 videos of 8 x 32 frames at 128x128 (229k frames, ~160 MB); minutes on 2 cores. 256 val
    # videos, so one video is 0.39 points of top-1.
    "small": LongVideoConfig(name="small", base="small", segments=8, span=(1, 2), train_per_class=40,
                             val_per_class=16),
    # GPU scale: 4800 videos of 16 x 48 frames at 256x256 (3.7M frames, ~3 GB); build it on a many-core machine.
    "full": LongVideoConfig(name="full", base="full", segments=16, span=(1, 3), train_per_class=250,
                            val_per_class=50),
    # Persistent action (FASTER's regime): the action on 3-4 of 4 segments, shots of 1-2 segments; CI.
    "persistent_tiny": LongVideoConfig(name="persistent_tiny", base="tiny", segments=4, span=(3, 4), shots=(1, 2),
                                       train_per_class=2, val_per_class=1),
    # The persistent counterpart of ``small``: the action on 6-8 of 8 segments (7 on average), shots of 1-3.
    "persistent_small": LongVideoConfig(name="persistent_small", base="small", segments=8, span=(6, 8),
                                        shots=(1, 3), train_per_class=40, val_per_class=16),
}


# --------------------------------------------------------------------------------------------------------------------
# one video
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VideoAnnotation:
    """Where the action is in one video. Frame ranges are ``[start, stop)``; segments are indices in ``[0, L)``.

    ``action_*``: the main object is in the scene (the action window); ``motion_*``: its progress changes there
    (the still frames at either end of the window excluded). Idle segments are the ones not in ``action_segments``.
    """

    action_segments: tuple[int, ...]
    action_frames: tuple[int, int]
    motion_segments: tuple[int, ...]
    motion_frames: tuple[int, int]

    def to_dict(self) -> dict[str, list[int]]:
        return {k: list(v) for k, v in dataclasses.asdict(self).items()}


def video_seed(seed: int, split: str, label: int, index: int) -> np.random.SeedSequence:
    """The only source of randomness of one long video: a function of (seed, split, label, index) alone."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    return np.random.SeedSequence(int(seed), spawn_key=(_SEED_KEY, SPLITS.index(split), int(label), int(index)))


def _sub(ss: np.random.SeedSequence, k: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(ss.entropy, spawn_key=tuple(ss.spawn_key) + (k,))


def action_layout(cfg: LongVideoConfig, seed: int | np.random.SeedSequence) -> tuple[int, int]:
    """``(first, count)``: the action covers segments ``first .. first + count - 1`` (uniform count in ``span``,
    uniform first segment; mirrored by time reversal onto the same law)."""
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
    rng = np.random.default_rng(_sub(ss, 0))
    count = int(rng.integers(cfg.span[0], cfg.span[1] + 1))
    first = int(rng.integers(0, cfg.segments - count + 1))
    return first, count


def shot_layout(cfg: LongVideoConfig, seed: int | np.random.SeedSequence) -> list[tuple[int, int, bool]]:
    """Persistent presets: the forward video's shots in order, ``(first segment, segments, idle)`` covering
    ``0 .. L - 1`` (module docstring). A reversed-class video plays them in reverse order."""
    if cfg.shots is None:
        raise ConfigError(f"preset {cfg.name!r} has no shots (a brief-event preset: use action_layout)")
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
    rng = np.random.default_rng(_sub(ss, 0))
    k = int(rng.integers(cfg.span[0], cfg.span[1] + 1))
    lengths: list[int] = []
    while sum(lengths) < k:
        lengths.append(min(int(rng.integers(cfg.shots[0], cfg.shots[1] + 1)), k - sum(lengths)))
    shots = [(n, False) for n in lengths]
    if k < cfg.segments:
        shots.insert(int(rng.integers(0, len(shots) + 1)), (cfg.segments - k, True))
    out, first = [], 0
    for n, idle in shots:
        out.append((first, n, idle))
        first += n
    return out


def _shot_jobs(label: int, ss: np.random.SeedSequence, cfg: LongVideoConfig) -> list[tuple[int, int, bool]]:
    """``(scene seed index, frames, idle)`` per shot in the order they play (reversed for a reversed class)."""
    T = cfg.segment_frames
    shots = [(i, n * T, idle) for i, (_, n, idle) in enumerate(shot_layout(cfg, ss))]
    return shots[::-1] if synthetic.is_reversed_class(label) else shots


def _render_shots(label: int, ss: np.random.SeedSequence, cfg: LongVideoConfig,
                  idle_all: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A persistent video: its shots' scenes (scene seeds ``1, 2, ...`` under ``ss``) concatenated."""
    parts = [render_scene(label, _sub(ss, 1 + i), cfg.base, n, (0, n), idle=idle or idle_all)
             for i, n, idle in _shot_jobs(label, ss, cfg)]
    return (np.concatenate([f for f, _ in parts]),
            {k: np.concatenate([a[k] for _, a in parts]) for k in parts[0][1]})


def _shots_annotation(cfg: LongVideoConfig, label: int, ss: np.random.SeedSequence) -> VideoAnnotation:
    """Persistent videos: the action segments (not contiguous when the idle shot sits between action shots); frame
    ranges span the first to the last action frame; motion = action (the action moves over every action shot)."""
    T, L = cfg.segment_frames, cfg.segments
    segs = sorted(s for first, n, idle in shot_layout(cfg, ss) if not idle for s in range(first, first + n))
    if synthetic.is_reversed_class(label):
        segs = sorted(L - 1 - s for s in segs)
    frames = (segs[0] * T, (segs[-1] + 1) * T)
    return VideoAnnotation(tuple(segs), frames, tuple(segs), frames)


def _window(cfg: LongVideoConfig, ss: np.random.SeedSequence) -> tuple[int, int]:
    first, count = action_layout(cfg, ss)
    return first * cfg.segment_frames, (first + count) * cfg.segment_frames


def _annotation(cfg: LongVideoConfig, window: tuple[int, int], progress: np.ndarray) -> VideoAnnotation:
    T = cfg.segment_frames
    moving = np.flatnonzero(np.diff(progress) != 0)
    motion = (int(moving[0]), int(moving[-1]) + 2) if len(moving) else window
    return VideoAnnotation(
        action_segments=tuple(range(window[0] // T, window[1] // T)),
        action_frames=window,
        motion_segments=tuple(range(motion[0] // T, (motion[1] - 1) // T + 1)),
        motion_frames=motion,
    )


def render_video(label: int, seed: int | np.random.SeedSequence, cfg: LongVideoConfig, *,
                 idle: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray], VideoAnnotation]:
    """Render one long video in memory (no encoding): frames ``(L * T, H, W, 3)`` uint8 RGB, per-frame annotations
    (``SCENE_ANNOTATION_KEYS``) and where the action is. ``idle=True`` renders its idle twin: the same video
    without the main object (the frames of every idle segment of the video are exactly the twin's). Persistent
    presets: the shots of :func:`shot_layout`, each its own scene (module docstring)."""
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
    if cfg.persistent:
        frames, ann = _render_shots(label, ss, cfg, idle_all=idle)
        return frames, ann, _shots_annotation(cfg, label, ss)
    window = _window(cfg, ss)
    frames, ann = render_scene(label, _sub(ss, 1), cfg.base, cfg.frames, window, idle=idle)
    return frames, ann, _annotation(cfg, window, ann["progress"])


# --------------------------------------------------------------------------------------------------------------------
# dataset generation
# --------------------------------------------------------------------------------------------------------------------
def _relpath(split: str, label: int, index: int) -> str:
    return video_relpath(split, CLASSES[label], index)


def _jobs(cfg: LongVideoConfig, seed: int) -> dict[tuple[str, int, int], tuple]:
    """Per video: the scene job of ``synthetic.scene_work`` (what render_video renders, written to its path); for a
    persistent preset the job of :func:`shots_work`."""
    jobs = {}
    for split in SPLITS:
        for label in range(len(CLASSES)):
            for index in range(cfg.per_class(split)):
                ss = video_seed(seed, split, label, index)
                rel = _relpath(split, label, index)
                jobs[(split, label, index)] = ((rel, label, ss, cfg) if cfg.persistent else
                                               (rel, label, _sub(ss, 1), cfg.frames, _window(cfg, ss)))
    return jobs


_SHOTS_ROOT: list[str] = []


def _shots_init(root: str, cfg: SyntheticConfig, seed: int) -> None:
    """Worker set-up of a persistent preset: the base generator's, and where to write."""
    synthetic.worker_init(root, cfg, seed)
    _SHOTS_ROOT[:] = [root]


def shots_work(job: tuple[str, int, np.random.SeedSequence, LongVideoConfig]) -> tuple[str, dict[str, np.ndarray]]:
    """Pool job of a persistent preset: :func:`render_video` written to ``root/rel``; returns ``(rel, annotations)``
    like ``synthetic.scene_work`` (workers import this module, torch included: a few seconds each)."""
    rel, label, ss, cfg = job
    frames, ann = _render_shots(label, ss, cfg)
    write_video(_SHOTS_ROOT[0], rel, frames, cfg.base)
    return rel, ann


def generate(out: str | Path, preset: str | LongVideoConfig = "tiny", seed: int = 0, workers: int | None = None,
             overwrite: bool = False, progress: bool = True) -> Path:
    """Generate a long-video dataset into ``out`` (see the module docstring) and return its path.

    Like :func:`training.data.synthetic.generate`: written into a hidden sibling ``.OUT.tmp-*`` directory that replaces
    ``out`` only once complete (an interrupted run leaves ``out`` untouched); an existing dataset of this generator
    is replaced only with ``overwrite=True``, anything else never; the output does not depend on ``workers``.
    Each video is :func:`render_video` encoded with ``write_mp4``; the workers run ``synthetic.scene_work``.
    """
    cfg, seed, out, workers = start(out, preset, seed, workers, overwrite, presets=PRESETS, cls=LongVideoConfig,
                                    generator=GENERATOR_NAME)
    jobs = _jobs(cfg, seed)
    t0 = time.perf_counter()

    with dataset_output(out) as partial:
        for split in SPLITS:
            (partial / "videos" / split).mkdir(parents=True)
        anns: dict[str, dict[str, np.ndarray]] = {}
        chunk = max(1, min(4, len(jobs) // (workers * 8)))
        work, init = (shots_work, _shots_init) if cfg.persistent else (synthetic.scene_work, synthetic.worker_init)
        for rel, ann in run_jobs(work, list(jobs.values()), workers=workers,
                                 initializer=init, initargs=(str(partial), cfg.base, seed),
                                 chunksize=chunk, desc=f"long_video[{cfg.name}]", unit="video", show=progress):
            anns[rel] = ann

        videos: dict[str, list[dict[str, Any]]] = {}
        arrays: dict[str, np.ndarray] = {}
        for split in SPLITS:
            keys = [k for k in jobs if k[0] == split]
            rels = [jobs[k][0] for k in keys]
            write_split(partial / f"{split}.csv", [(rel, k[1]) for rel, k in zip(rels, keys)])
            videos[split] = [_video_entry(cfg, seed, k, rel, anns[rel]) for rel, k in zip(rels, keys)]
            arrays.update(split_arrays(split, rels, [k[1] for k in keys], [anns[rel] for rel in rels],
                                       SCENE_ANNOTATION_KEYS, cfg.frames))
        (partial / "labels.txt").write_text("".join(c + "\n" for c in CLASSES))
        np.savez_compressed(partial / "annotations.npz", **arrays)
        base = cfg.base
        meta = {
            **meta_head(GENERATOR_NAME, GENERATOR_VERSION, cfg, seed, CLASSES),
            "segments": cfg.segments,
            "segment_frames": cfg.segment_frames,
            "frames": cfg.frames,
            "width": base.width,
            "height": base.height,
            "fps": base.fps,
            "pairs": [list(p) for p in PAIRS],
            "pair_semantics": "[a, b]: every video of b is a freshly rendered video of a (action window mirrored) "
                              "with its frame order reversed",
            "hflip_map": list(HFLIP_MAP),
            "scene": ("shots of independent scenes (new background, view, distractors, photometry); the action plays "
                      "over every action shot, its speed set by the shot's length; idle segments form one shot "
                      "without the main object" if cfg.persistent else
                      "one continuous scene per video (no cuts); the main object is present in the action segments "
                      "only; idle segments are the same scene without it"),
            "counts": {s: len(videos[s]) for s in SPLITS},
            "counts_per_class": {s: cfg.per_class(s) for s in SPLITS},
            "encoder": {"codec": "libx264", "pix_fmt": "yuv420p", "crf": base.crf, "preset": base.x264_preset,
                        "container": "mp4", "threads": 1,
                        "asm": "off" if x264_needs_plain_c(base.width) else "auto"},
            "photos": [p.name for p in synthetic.photo_pool()],
            "annotation_keys": list(SCENE_ANNOTATION_KEYS),
            "seed_derivation": f"np.random.SeedSequence(seed, spawn_key=({_SEED_KEY:#x}, split_id, label, index)); "
                               "split_id: train=0, val=1; child 0: action layout, child 1: scene" +
                               (" (persistent: child 1 + i: scene of forward shot i)" if cfg.persistent else ""),
            "videos": videos,
            "workers": workers,
            "wall_time_s": round(time.perf_counter() - t0, 3),
        }
        (partial / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def _video_entry(cfg: LongVideoConfig, seed: int, key: tuple[str, int, int], rel: str,
                 ann: dict[str, np.ndarray]) -> dict[str, Any]:
    """One video's entry of ``meta.json``: path, label, where the action is (and, persistent, its shots as played:
    ``[first segment, segments, idle]``)."""
    split, label, index = key
    ss = video_seed(seed, split, label, index)
    if not cfg.persistent:
        return {"path": rel, "label": label, **_annotation(cfg, _window(cfg, ss), ann["progress"]).to_dict()}
    played, first = [], 0
    by_index = {i: (n, idle) for i, (_, n, idle) in enumerate(shot_layout(cfg, ss))}
    for i, _, _ in _shot_jobs(label, ss, cfg):
        n, idle = by_index[i]
        played.append([first, n, idle])
        first += n
    return {"path": rel, "label": label, **_shots_annotation(cfg, label, ss).to_dict(), "shots": played}


# --------------------------------------------------------------------------------------------------------------------
# training dataset
# --------------------------------------------------------------------------------------------------------------------
class LongVideoDataset(ClipDataset):
    """Long videos as sequences of clips: items ``(clips, label)`` with ``clips`` ``(L, T, 3, H, W)`` float32
    (``(L, T, H, W, 3)`` for a ``THWC`` preprocess).

    The video is cut into ``segments`` equal segments (boundaries ``floor(i * n / L)``, exact multiples of the
    segment length for this benchmark); ``sampler`` picks the T frames of each segment (random offsets in
    training, the deterministic positions otherwise) and ``preprocess`` turns them into model input -- the same sdk
    objects as :class:`~training.data.datasets.ClipDataset`, of which this is a subclass (records, loaders,
    ``(epoch, index)`` keys and training randomness from ``(seed, epoch, index)`` work the same). Only the sampled
    frames are converted; one decode pass per video. In training one crop box and one flip (with ``hflip_map``)
    apply to the whole video: it is one continuous scene.

    Args:
        segments: clips per video (L).
        segment_frames: when given, every video must have exactly ``segments * segment_frames`` frames
            (:class:`~sdk.errors.ConfigError` otherwise): segments then line up with the annotations.
        annotations: optional per-record :class:`VideoAnnotation` (``from_dir`` reads them from meta.json).
    """

    def __init__(self, records: Sequence[VideoRecord], *, segments: int, sampler: Sampler, preprocess: Preprocess,
                 train: bool, segment_frames: int | None = None, hflip_map: Sequence[int] | None = None,
                 flip_prob: float = 0.5, seed: int = 0, annotations: Sequence[VideoAnnotation] | None = None,
                 template: str = "img_{:05d}.jpg"):
        super().__init__(records, sampler=sampler, preprocess=preprocess, train=train, hflip_map=hflip_map,
                         flip_prob=flip_prob, seed=seed, template=template)
        if isinstance(segments, bool) or not isinstance(segments, (int, np.integer)) or segments < 1:
            raise ConfigError(f"segments must be an int >= 1, got {segments!r}")
        if segment_frames is not None and (not isinstance(segment_frames, (int, np.integer)) or segment_frames < 1):
            raise ConfigError(f"segment_frames must be None or an int >= 1, got {segment_frames!r}")
        if annotations is not None and len(annotations) != len(self.records):
            raise ConfigError(f"{len(annotations)} annotations for {len(self.records)} videos")
        self.segments, self.segment_frames = int(segments), segment_frames
        self.annotations = None if annotations is None else list(annotations)

    @classmethod
    def from_dir(cls, root: str | Path, split: str = "train", *, sampler: Sampler, preprocess: Preprocess,
                 train: bool, hflip: bool = True, **kwargs: Any) -> LongVideoDataset:
        """The ``split`` of a dataset written by :func:`generate`; flips (with the label map) in training unless
        ``hflip=False``. ``kwargs`` go to the constructor (``flip_prob``, ``seed``)."""
        root = Path(root)
        info = DatasetInfo.from_dir(root)
        if info.meta.get("generator") != GENERATOR_NAME:
            raise ConfigError(f"{root} is not a long-video dataset (meta.json generator: "
                              f"{info.meta.get('generator')!r}); generate one with python -m training.data.long_video")
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
        records = info.records(f"{split}.csv")
        by_path = {v["path"]: v for v in info.meta.get("videos", {}).get(split, [])}
        annotations = []
        for r in records:
            v = by_path.get(r.path.relative_to(root).as_posix())
            if v is None:
                raise ConfigError(f"{root}/meta.json has no annotation for {r.path}")
            annotations.append(VideoAnnotation(tuple(v["action_segments"]), tuple(v["action_frames"]),
                                               tuple(v["motion_segments"]), tuple(v["motion_frames"])))
        return cls(records, segments=int(info.meta["segments"]), segment_frames=int(info.meta["segment_frames"]),
                   sampler=sampler, preprocess=preprocess, train=train,
                   hflip_map=info.hflip_map if (train and hflip) else None, annotations=annotations, **kwargs)

    def segment_bounds(self, num_frames: int) -> np.ndarray:
        """``(L + 1,)`` frame boundaries: segment i is ``[b[i], b[i + 1])``."""
        n = int(num_frames)
        if n < self.segments:
            raise ConfigError(f"a video of {n} frames cannot be cut into {self.segments} segments")
        return np.arange(self.segments + 1) * n // self.segments

    def segment_indices(self, num_frames: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """``(L, T)`` frame indices: the sampler's choice inside each segment (random where it allows with ``rng``)."""
        b = self.segment_bounds(num_frames)
        return np.stack([b[i] + self.sampler.indices(b[i + 1] - b[i], rng) for i in range(self.segments)])

    def action_mask(self, index: int) -> np.ndarray:
        """``(L,)`` bool: the segments of video ``index`` that hold the action (needs annotations)."""
        if self.annotations is None:
            raise ConfigError("this dataset has no annotations (build it with LongVideoDataset.from_dir)")
        mask = np.zeros(self.segments, bool)
        mask[list(self.annotations[index].action_segments)] = True
        return mask

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        """``key`` is an index (epoch from :meth:`set_epoch`) or an ``(epoch, index)`` pair from ``EpochSampler``."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        record = self.records[index]
        label = record.label
        rng = np.random.default_rng([self.seed, epoch, index]) if self.train else None
        with record.open(self.template, self.preprocess.conversion) as source:
            n = record.num_frames if record.num_frames is not None else source.num_frames
            if self.segment_frames is not None and n != self.segments * self.segment_frames:
                raise ConfigError(f"{record.path}: {n} frames, expected {self.segments} segments x "
                                  f"{self.segment_frames} frames = {self.segments * self.segment_frames}")
            idx = self.segment_indices(n, rng)
            frames = source.read_indices(idx.reshape(-1))
        clip = self.preprocess(frames) if rng is None else self.preprocess.train(frames, rng)
        clip = clip.reshape(idx.shape + clip.shape[1:])
        if rng is not None and self.hflip_map is not None and rng.random() < self.flip_prob:
            clip = np.ascontiguousarray(np.flip(clip, axis=-1 if self.preprocess.layout == "TCHW" else -2))
            label = self.hflip_map[label]
        return torch.from_numpy(clip), label


# --------------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    return generator_cli(
        argv, prog="python -m training.data.long_video",
        description="Generate the FASTER long-video benchmark: one time-reversal action hidden among idle segments "
                    "of a continuous scene (H.264 mp4 + CSV + meta).",
        presets=PRESETS, generate_fn=generate, example_out="data/long_small",
        describe=lambda cfg, meta: (f"{meta['counts']} videos, {meta['num_classes']} classes, {cfg.segments} "
                                    f"segments x {cfg.segment_frames} frames {meta['width']}x{meta['height']} @ "
                                    f"{meta['fps']} fps"))


if __name__ == "__main__":
    # Run the importable module's main (not this __main__ copy) so worker processes and pickles see one module.
    from training.data.long_video import main as _main

    sys.exit(_main())
