"""The one implementation of frame sampling, shared by training, export and the on-device runtime.

A :class:`Sampler` maps a video length to the frame indices a model sees. Training calls it with a random generator
(random offsets / starts), evaluation and the device call it without one (deterministic centre positions), and
:class:`StreamingSampler` makes the same choice one arriving frame at a time, so that a live stream drops the frames
the model does not need *before* any decoding or resizing work.

Kinds (``Sampler.kind``):

- ``uniform_segments`` -- TSN: split the video into ``frames`` equal segments (boundaries ``floor(i * n / frames)``), one
  frame per segment (random offset in training, the segment centre otherwise).
- ``dense`` -- ``frames`` consecutive frames ``stride`` apart (random start in training, centred otherwise).
- the see-very-little family, a student seeing ``frames`` = k of a grid of N positions: ``uniform_k``, ``random_k``,
  ``first_k``, ``middle_k``, ``last_k``, ``first_middle_last_k``. The grid is the teacher's view, ``uniform_segments``
  with ``of`` = N frames (the student sees a subset of the frames the teacher saw), or every frame of the video when
  ``of`` is None.

Videos shorter than asked (policy): sampling never fails on a non-empty video and always returns exactly ``frames``
indices. When there are fewer frames (or grid positions) than requested, frames repeat -- each output takes the nearest
frame in time of an evenly spread position -- and the indices stay non-decreasing. ``dense`` clips longer than the
video are centred on it and padded by repeating its first and last frames. A video with no frames raises
:class:`~sdk.errors.ConfigError`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

from sdk._spec import spec_from_dict
from sdk.errors import ConfigError

__all__ = ["Sampler", "StreamingSampler", "SAMPLER_KINDS", "SEE_VERY_LITTLE_KINDS"]

SEE_VERY_LITTLE_KINDS = ("uniform_k", "random_k", "first_k", "middle_k", "last_k", "first_middle_last_k")
SAMPLER_KINDS = ("uniform_segments", "dense") + SEE_VERY_LITTLE_KINDS


def _segment_picks(count: int, length: int, where: float | np.ndarray = 0.5) -> np.ndarray:
    """One position per segment when ``[0, length)`` is cut into ``count`` integer segments, at fraction ``where``.

    Segment boundaries are ``floor(i * length / count)``, so with ``length >= count`` every segment holds at least one
    position and the picks are distinct. With fewer positions than picks, positions repeat (the short-video policy):
    pick i takes ``floor((i + 0.5) * length / count)``.
    """
    if length < count:
        return np.floor((np.arange(count) + 0.5) * (length / count)).astype(np.int64)
    bounds = np.arange(count + 1) * length // count
    return bounds[:-1] + np.floor(np.asarray(where) * np.diff(bounds)).astype(np.int64)


@dataclass(frozen=True)
class Sampler:
    """Which frames of a video a model sees. Serialisable (:meth:`to_dict`) so a bundle manifest can carry it.

    Args:
        kind: one of :data:`SAMPLER_KINDS`.
        frames: how many frames the model sees (T for a teacher, k for a see-very-little student).
        stride: gap between frames of a ``dense`` clip.
        of: see-very-little only: size N of the teacher's uniform grid the k frames are picked from; None = every frame.
        seed: fixes ``random_k`` positions when no generator is given (evaluation, export, streaming).
    """

    kind: str = "uniform_segments"
    frames: int = 8
    stride: int = 1
    of: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in SAMPLER_KINDS:
            raise ConfigError(f"unknown sampler kind {self.kind!r}; valid kinds: {', '.join(SAMPLER_KINDS)}")
        if not isinstance(self.frames, (int, np.integer)) or self.frames < 1:
            raise ConfigError(f"sampler frames must be a positive integer, got {self.frames!r}")
        if not isinstance(self.stride, (int, np.integer)) or self.stride < 1:
            raise ConfigError(f"sampler stride must be a positive integer, got {self.stride!r}")
        if self.stride != 1 and self.kind != "dense":
            raise ConfigError(f"stride applies to the 'dense' sampler only, not {self.kind!r}")
        if self.of is not None:
            if self.kind not in SEE_VERY_LITTLE_KINDS:
                raise ConfigError(f"'of' applies to the see-very-little samplers ({', '.join(SEE_VERY_LITTLE_KINDS)})")
            if not isinstance(self.of, (int, np.integer)) or self.of < self.frames:
                raise ConfigError(f"a student's {self.frames} frames cannot be picked from a teacher's clip of "
                                  f"{self.of!r} frames ('of' must be an integer >= frames): give the student at most "
                                  f"{self.of!r} frames, or a teacher that sees more")

    # ------------------------------------------------------------------ offline
    def indices(self, num_frames: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Frame indices (int64, non-decreasing, each in ``[0, num_frames)``, exactly ``self.frames`` of them).

        With ``rng`` (training) the choice is random where the kind allows it; without, it is deterministic.
        """
        n = int(num_frames)
        if n < 1:
            raise ConfigError(f"cannot sample frames from a video with {num_frames} frames")
        if self.kind == "uniform_segments":
            return _segment_picks(self.frames, n, 0.5 if rng is None else rng.random(self.frames))
        if self.kind == "dense":
            span = (self.frames - 1) * self.stride + 1
            lo, hi = min(0, n - span), max(0, n - span)  # start range; negative starts centre a too-long clip
            start = (lo + hi) // 2 if rng is None else int(rng.integers(lo, hi + 1))
            return np.clip(start + self.stride * np.arange(self.frames), 0, n - 1).astype(np.int64)
        grid = np.arange(n) if self.of is None else Sampler("uniform_segments", self.of).indices(n, rng)
        return grid[self.grid_positions(len(grid), rng)]

    def grid_positions(self, g: int, rng: np.random.Generator | None) -> np.ndarray:
        """Positions of the k see-very-little frames in a grid of ``g`` (sorted; repeats only when g < k).

        Distillation uses it directly: the student's frames are these positions of the clip the teacher was given.
        """
        if self.kind not in SEE_VERY_LITTLE_KINDS:
            raise ConfigError(f"grid positions are defined for the see-very-little samplers, not {self.kind!r}")
        k = self.frames
        if g < k or self.kind == "uniform_k":
            return _segment_picks(k, g)
        if self.kind == "random_k":
            gen = rng if rng is not None else np.random.default_rng(self.seed)
            return np.sort(gen.choice(g, size=k, replace=False)).astype(np.int64)
        if self.kind == "first_k":
            return np.arange(k, dtype=np.int64)
        if self.kind == "last_k":
            return np.arange(g - k, g, dtype=np.int64)
        if self.kind == "middle_k":
            return np.arange(k, dtype=np.int64) + (g - k) // 2
        # first_middle_last_k: three blocks, the first takes the remainder; the middle block is centred but kept
        # between the others so that positions stay distinct whenever g >= k.
        n_mid = n_last = k // 3
        n_first = k - n_mid - n_last
        mid = min(max((g - n_mid) // 2, n_first), g - n_last - n_mid)
        return np.concatenate([np.arange(n_first), mid + np.arange(n_mid), np.arange(g - n_last, g)]).astype(np.int64)

    def multi_view(self, num_frames: int, num_clips: int) -> np.ndarray:
        """``(num_clips, frames)`` indices for multi-clip evaluation, deterministic and evenly spread over the video.

        ``uniform_segments`` shifts every segment's pick by ``(c + 0.5) / num_clips``; ``dense`` spreads the clip starts;
        see-very-little samplers select from the shifted teacher grids.
        """
        if num_clips < 1:
            raise ConfigError(f"num_clips must be >= 1, got {num_clips}")
        if num_clips == 1:
            return self.indices(num_frames)[None]
        n = int(num_frames)
        if n < 1:
            raise ConfigError(f"cannot sample frames from a video with {num_frames} frames")
        shifts = (np.arange(num_clips) + 0.5) / num_clips
        if self.kind == "uniform_segments":
            return np.stack([_segment_picks(self.frames, n, s) for s in shifts])
        if self.kind == "dense":
            span = (self.frames - 1) * self.stride + 1
            if n <= span:
                return np.repeat(self.indices(n)[None], num_clips, axis=0)
            starts = np.floor(shifts * (n - span + 1)).astype(np.int64)
            return starts[:, None] + self.stride * np.arange(self.frames)[None]
        views = []
        for s in shifts:
            grid = np.arange(n) if self.of is None else _segment_picks(self.of, n, s)
            views.append(grid[self.grid_positions(len(grid), None)])
        return np.stack(views)

    # ------------------------------------------------------------------ streaming
    def stream(self, window: int) -> "StreamingSampler":
        """A per-frame keep/drop decider over consecutive windows of ``window`` frames (see :class:`StreamingSampler`)."""
        return StreamingSampler(self, window)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> "Sampler":
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError` (a manifest typo must not pass silently)."""
        return spec_from_dict(cls, spec, "sampler")


class StreamingSampler:
    """Keep/drop decisions for frames that arrive one at a time, equal to the offline :class:`Sampler`.

    The stream is cut into consecutive windows of ``window`` frames (for a file of known length, one window of the whole
    file). For each window it keeps exactly the frames ``sampler.indices(window)`` picks (evaluation mode: deterministic),
    so ``offer`` can be called *before* a frame is decoded or resized, and the model's input equals the offline clip.

    ``offer()`` returns how many times the arriving frame appears in the window's sample: 0 = drop it, 1 = keep it,
    more only when the window is shorter than the sample (see the short-video policy in the module docstring).
    """

    def __init__(self, sampler: Sampler, window: int):
        if not isinstance(window, (int, np.integer)) or window < 1:
            raise ConfigError(f"streaming window must be a positive number of frames, got {window!r}")
        self.sampler = sampler
        self.window = int(window)
        # The kept positions are the same in every window (no generator in evaluation mode): count them once.
        self._copies = np.bincount(sampler.indices(self.window), minlength=self.window)
        self.reset()

    def reset(self) -> None:
        """Start a new stream: the next offered frame is position 0 of window 0."""
        self.frames_seen = 0

    @property
    def position(self) -> int:
        """Position of the next frame inside its window."""
        return self.frames_seen % self.window

    @property
    def window_index(self) -> int:
        """Index of the window the next frame belongs to."""
        return self.frames_seen // self.window

    def offer(self) -> int:
        """Decide on the next arriving frame: how many copies of it the model needs (0 = drop before decoding)."""
        copies = int(self._copies[self.position])
        self.frames_seen += 1
        return copies

    @property
    def window_complete(self) -> bool:
        """True right after the last frame of a window was offered (the window's sample is complete)."""
        return self.frames_seen > 0 and self.frames_seen % self.window == 0
