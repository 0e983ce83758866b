"""Classifying videos (:class:`VideoClassifier`) and live streams (:class:`StreamClassifier`) with a loaded bundle.

Both use the bundle's own sampler and preprocessing (``manifest.sampler`` / ``manifest.input``; for a FASTER bundle
each clip model's ``faster.clip_models[role]``), so what runs here is what the model was trained on. The semantics
below are the contract the native C++ core reproduces exactly.

Frames
------
A frame is an ``(H, W, 3)`` RGB array: ``uint8``, or a float array with every value finite and in ``[0, 255]``
(rounded half to even to uint8), or a :class:`sdk.camera.CameraFrame` as a camera delivers it (NV12 / NV21 / I420 /
RGBA / BGRA, strides, rotation), converted only when kept (:meth:`~sdk.camera.CameraFrame.input_crop`). Anything else
(other shapes, dtypes, NaN / inf, out of range) is a :class:`~sdk.errors.FrameError`. ``push`` also takes a zero-argument callable returning such a frame: it is called
only when the sampler keeps the frame, so dropped frames are never converted, resized or even looked at.

Per-frame work of a kept frame: resize the shorter side to ``preprocess.resize`` (bilinear/area, OpenCV semantics),
centre-crop ``size`` x ``size``, then the value steps that are *not* in ``input.in_program`` (``scale``, then
``normalize``), in ``preprocess.layout`` -- i.e. exactly ``Preprocess.__call__`` minus what the program does itself.

Streaming semantics (:class:`StreamClassifier`)
-----------------------------------------------
Frames are numbered ``f = 0, 1, 2, ...`` from construction or the last :meth:`~StreamClassifier.reset`; a frame
that fails validation (an *error event*) gets no number: the next good frame takes it.

**Clip bundle** (one program, mode ``clip``: ``(clip (T, 3, H, W),) -> (logits,)``). The stream is cut into
consecutive windows of ``window`` frames; window ``w`` holds frames ``[w * window, (w + 1) * window)``. In every window
the frames kept are those at positions ``sampler.indices(window)`` (deterministic evaluation mode;
:class:`~sdk.samplers.StreamingSampler`), a position listed twice (window shorter than T) is used twice. At the
window's last frame the clip program runs on the kept frames in order and one :class:`Prediction` is returned; every
other push returns ``None``. So the prediction of window ``w`` equals ``VideoClassifier.classify`` of that window's
``window`` frames.

**The window** is a constructor argument; by default one window spans one training video (:func:`default_window`).
A clip model was trained on whole videos through its sampler, so ``sampler.indices(n)`` of an ``n``-frame video is
what it learned to read: the manifest records the training videos' median length (``manifest.clip``: frames, fps,
seconds; written at export from the checkpoint) and the default window is ``floor(clip.seconds * fps + 0.5)``
frames of a source at ``fps`` frames per second (a 60 fps camera spans the same 2 s as 30 fps training videos),
or ``clip.frames`` when either rate is unknown. A window of another length stretches or squeezes time for the
model (issue 26: on a real 2 s, 54-frame clip, 32-frame windows flipped the label in 3 of 6 windows, 54-frame
windows gave 4 of 4 right). A bundle exported before the manifest recorded its clip (schema < 1.2) falls back to
:data:`DEFAULT_WINDOW` = 32 frames (at least the sampler's span; the length of the synthetic benchmark's videos),
with a warning to pass the window. The native core computes the same default (sdk/native/src/classifier.cpp).

**Stream bundle** (mode ``stream``: ``(frame (1, 3, H, W), *state) -> (logits, features, *new_state)``). Same
windows and kept frames as a clip bundle. The state is zeros at the start of every window; each kept frame (each
copy) runs one step; at the window's last frame the prediction's logits are the mean of the window's step logits --
what the offline causal model computes on those frames (``converters.parity``: mean of per-step logits), so it
equals ``VideoClassifier.classify`` of the window. Resetting the state per window keeps every step in the context
the model was trained in (a clip of T frames starting from zero padding).

**FASTER bundle** (``manifest.faster``). Segment ``i`` holds frames ``[i * S, (i + 1) * S)`` with ``S =
faster.segment_frames`` (``window`` is ignored); its role is ``faster.pattern[i % len(pattern)]`` (``"1:3"``:
expensive, cheap, cheap, cheap). That role's sampler keeps the positions ``role_sampler.indices(S)`` of the segment,
preprocessed with the role's input spec; at the segment's last frame the role's clip program runs on them and returns
``(logits, features)``; the aggregator program takes ``(features, *state)`` and returns ``(logits, *new_state)``;
its logits are the segment's :class:`Prediction` (one per segment). The aggregator state starts at zeros and runs
on across segments until :meth:`~StreamClassifier.reset`. ``VideoClassifier`` on a file of ``n`` frames runs
``n // S`` segments (the incomplete tail is dropped, so a file and its stream give the same numbers) and returns
the last step's prediction; a file shorter than one segment is one segment of all its frames.

**Adaptive FASTER bundle** (``manifest.faster.gate``, schedule ``adaptive``). Every segment is seen by the cheap clip
model, whose program returns ``(logits, features, pooled)``; the gate (:class:`sdk.gate.Gate`, the bundle's declared
rule, threshold ``gate_threshold`` or the bundle's) scores the cheap outputs, and where it fires the expensive clip
program runs on the segment's frames as its own sampler picks them, and its features replace the cheap ones for the
aggregator. A stream therefore keeps (and preprocesses) both models' frames of every segment; the gate resets with
the stream. ``stats.expensive_segments`` / ``stats.segments`` says how often the expensive model ran.

**reset()** forgets everything about the current stream: frame numbering and window / segment counters go back to
0 (a FASTER schedule restarts with ``pattern[0]``), kept frames of an unfinished window are discarded, step and
aggregator state go back to zeros, smoothing forgets its history. Latency statistics are kept
(``stats.reset()`` clears them).

**Timestamps** (optional, seconds): when given to :meth:`~StreamClassifier.push` they must increase strictly; a
frame with a timestamp not after the previous one is an error event (the frame is not used). ``push`` is the
low-level contract and cannot tell a wrong clock from a wrong frame (frames of two sources in one stream, a frame
pushed twice), so it refuses rather than guess. Frames from a decoder go through :meth:`~StreamClassifier.run` /
:func:`drive`, which keep every decodable frame: a source whose timestamps go backwards (B-frames muxed with
decode-order pts, a camera repeating its clock) is re-timed once from that frame on (first timestamp + frame index
x frame duration, see :class:`_Timeline`) with one warning on the ``sdk`` logger, and predicts exactly what the
same frames pushed without timestamps predict. A prediction carries the timestamp of its window's last frame.

**Bad frames**: a kept frame that is not a valid frame (or whose callable raises an :class:`~sdk.errors.SdkError`)
returns a :class:`Prediction` with ``error`` set and no labels; it does not count as a frame (see above), and the
stream goes on. Dropped frames are never inspected.

**Smoothing** (optional, :class:`Smoothing`): ``ema`` blends each prediction's class probabilities with the
previous smoothed ones, ``p = ema * p_prev + (1 - ema) * p_new``; with ``hysteresis`` the reported top label changes
only when another class's smoothed probability exceeds the current label's by more than that margin. ``logits``
stay raw; ``labels`` / ``scores`` / ``probabilities`` are smoothed.

**Threads**: a classifier, its :class:`~sdk.runtime.Model` and the model's runners are not thread-safe. Use one
``sdk.load`` + one classifier per thread; a classifier pushed from a second thread raises
:class:`~sdk.errors.ConfigError`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sdk.camera import CameraFrame
from sdk.errors import BundleError, ConfigError, FrameError, SdkError, TruncatedVideoError
from sdk.gate import Gate
from sdk.manifest import InputSpec, Manifest
from sdk.preprocess import ValueTable
from sdk.runtime import Model
from sdk.samplers import StreamingSampler
from sdk.stats import LatencyStats, StageClock
from sdk.video import FrameSource, StreamCapture, VideoFile, open_source

__all__ = ["DEFAULT_WINDOW", "Prediction", "Smoothing", "StreamClassifier", "VideoClassifier", "WindowChoice",
           "as_frame", "choose_window", "clip_warnings", "default_window", "drive", "known_fps", "opened",
           "source_warnings"]

DEFAULT_WINDOW = 32  # frames: the window of a bundle that does not record its training clip
MAX_WINDOW = 1 << 24  # a default window beyond this comes from a wrong frame rate, not from a training clip
FPS_MISMATCH = 1.5  # a source this many times faster or slower than the training videos gets a warning
LENGTH_MISMATCH = 2.0  # classify warns about a video this many times longer or shorter than a training clip
ASSUMED_FPS = 30.0  # the rate of a repaired timeline when the source states none and showed no positive step
_now = time.perf_counter
log = logging.getLogger("sdk")


# ------------------------------------------------------------------------------------------ windows and the clip
@dataclass(frozen=True)
class WindowChoice:
    """How many frames a stream's windows hold and why (what ``python -m sdk stream`` prints). ``warning``: what the
    user should hear once (a bundle that does not record its training clip), else None."""

    frames: int
    reason: str
    warning: str | None = None


def known_fps(fps: Any) -> float | None:
    """``fps`` as a usable frame rate, or None (unknown: None, 0, negative or not finite, as headers say)."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)):
        return None
    return float(fps) if math.isfinite(fps) and fps > 0 else None


def default_window(manifest: Manifest, fps: float | None = None) -> WindowChoice:
    """The default window of a stream whose source runs at ``fps`` frames per second (None: unknown).

    One window spans one training clip (``manifest.clip``): ``floor(clip.seconds * fps + 0.5)`` frames when both are
    known (a 60 fps camera spans the same seconds as 30 fps training videos), else ``clip.frames``. A bundle that
    does not record its clip (exported before schema 1.2) falls back to ``max(DEFAULT_WINDOW, sampler span)`` and
    says so in ``warning``; a FASTER bundle's window is its segment. The native core applies the same rule
    (``ev::default_window``, sdk/native/src/classifier.cpp; tests/test_clip.py checks that they agree).
    """
    if manifest.faster is not None:
        return WindowChoice(manifest.faster.segment_frames, "FASTER segment")
    clip, fps = manifest.clip, known_fps(fps)
    if clip is None:
        s = manifest.sampler
        frames = max(DEFAULT_WINDOW, (s.frames - 1) * s.stride + 1)
        return WindowChoice(frames, "default: the bundle does not record its training clip", warning=(
            f"bundle {manifest.name!r} does not record the clip length its model was trained on (exported before "
            f"manifest schema 1.2): streaming in windows of {frames} frames, the synthetic benchmark's video "
            "length; pass --window FRAMES (StreamClassifier(window=)) with your training videos' frame count, or "
            "export the bundle again"))
    if clip.seconds is not None and fps is not None:
        frames = math.floor(clip.seconds * fps + 0.5)
        if frames > MAX_WINDOW:
            raise ConfigError(f"a {clip.seconds:g} s training clip at {fps:g} fps is {frames} frames per window: is "
                              "the source's frame rate right? pass the window explicitly")
        return WindowChoice(max(1, frames), f"the training clip's {clip.seconds:.2f} s at the source's {fps:g} fps")
    why = "" if clip.seconds is None else " (the source's frame rate is unknown)"
    return WindowChoice(clip.frames, f"the training clip's {clip.frames} frames{why}")


def choose_window(manifest: Manifest, window: int | None, fps: float | None = None) -> WindowChoice:
    """The window a stream uses: ``window`` when given (clip / stream bundles; FASTER bundles use their segment),
    else :func:`default_window`."""
    if window is None or manifest.faster is not None:
        return default_window(manifest, fps)
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ConfigError(f"window must be a positive number of frames, got {window!r}")
    return WindowChoice(int(window), "given")


def clip_warnings(manifest: Manifest, source: str, fps: float | None, frames: int | None = None) -> list[str]:
    """What a prediction on ``source`` should be read with, compared with the training clip (``manifest.clip``): a
    frame rate more than :data:`FPS_MISMATCH` times off the training videos', and, for a whole video of ``frames``
    frames classified at once (clip / stream bundles), a length more than :data:`LENGTH_MISMATCH` times off one
    training clip (in seconds when both rates are known, else in frames)."""
    clip, fps = manifest.clip, known_fps(fps)
    if clip is None:
        return []
    out = []
    if fps is not None and clip.fps is not None and max(fps / clip.fps, clip.fps / fps) > FPS_MISMATCH:
        out.append(f"{source} runs at {fps:g} fps and the model was trained on {clip.fps:g} fps videos: motion "
                   f"between frames is {max(fps / clip.fps, clip.fps / fps):.1f}x "
                   f"{'smaller' if fps > clip.fps else 'larger'} than in training, expect lower accuracy (re-encode "
                   f"it at {clip.fps:g} fps if the labels look wrong)")
    if frames is not None and manifest.faster is None:
        if fps is not None and clip.seconds is not None:
            ratio, have, want = frames / fps / clip.seconds, f"{frames / fps:.1f} s", f"{clip.seconds:.1f} s"
        else:
            ratio, have, want = frames / clip.frames, f"{frames} frames", f"{clip.frames}-frame"
        if not 1 / LENGTH_MISMATCH <= ratio <= LENGTH_MISMATCH:
            out.append(f"{source} is {have} long and the model was trained on {want} clips: classify samples "
                       f"{manifest.sampler.frames} frames over the whole video as if it were one clip; python -m sdk "
                       "stream classifies it window by window")
    return out


def source_warnings(manifest: Manifest, source: Any, frames: int | None = None) -> list[str]:
    """:func:`clip_warnings` for a source about to be classified (``frames``: as a whole video) or streamed, each
    logged once on the ``sdk`` logger."""
    warnings = clip_warnings(manifest, getattr(source, "source", "the video"), getattr(source, "fps", None), frames)
    for warning in warnings:
        log.warning(warning)
    return warnings


# --------------------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Prediction:
    """One prediction (or, with ``error`` set, one error event).

    Attributes:
        labels, scores, class_ids: the top-k classes, best first (softmax probabilities, smoothed if enabled).
        logits: raw ``(K,)`` logits of the program (never smoothed).
        probabilities: ``(K,)`` softmax of the logits (smoothed if enabled).
        latency_ms: per stage (``decode``, ``sample``, ``preprocess``, ``model``, ``aggregate``) the milliseconds
            spent on the frames of this prediction.
        timestamp: the timestamp of the window's last frame (None when frames came without one).
        frame_index: number of the window's last frame (error events: the number the bad frame did not get).
        window: window / segment index (FASTER: the segment; ``role`` says which clip model saw it).
        error: the :class:`FrameError` / :class:`SdkError` of a bad frame (labels are empty then).
        warnings: what the result should be read with, e.g. a video shorter than its header said (the frames were
            sampled over the frames that exist).
    """

    labels: tuple[str, ...] = ()
    scores: tuple[float, ...] = ()
    class_ids: tuple[int, ...] = ()
    logits: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    timestamp: float | None = None
    frame_index: int = -1
    window: int = -1
    role: str = "model"
    error: SdkError | None = None
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def label(self) -> str | None:
        return self.labels[0] if self.labels else None

    @property
    def score(self) -> float | None:
        return self.scores[0] if self.scores else None

    def __str__(self) -> str:
        where = f"frame {self.frame_index}" + (f" t={self.timestamp:.3f}s" if self.timestamp is not None else "")
        if self.error is not None:
            return f"{where}: error: {self.error}"
        top = ", ".join(f"{lab} {s:.3f}" for lab, s in zip(self.labels, self.scores))
        lat = " ".join(f"{k} {v:.2f}" for k, v in self.latency_ms.items() if v)
        return f"{where} [{self.role} {self.window}]: {top}  (ms: {lat})"


@dataclass(frozen=True)
class Smoothing:
    """Output smoothing of a stream (see the module docstring): EMA weight ``ema`` in [0, 1) and ``hysteresis``
    margin in [0, 1)."""

    ema: float = 0.0
    hysteresis: float = 0.0

    def __post_init__(self) -> None:
        for name in ("ema", "hysteresis"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
                raise ConfigError(f"smoothing {name} must be a number in [0, 1), got {v!r}")


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max()
    e = np.exp(z)
    return (e / e.sum()).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------- frames
def as_frame(frame: Any) -> np.ndarray | CameraFrame:
    """A valid ``(H, W, 3)`` uint8 RGB frame from ``frame`` (see "Frames" in the module docstring), a
    :class:`~sdk.camera.CameraFrame` as it is, or FrameError."""
    if isinstance(frame, CameraFrame):  # validated at construction; converted by the preprocessing
        return frame
    try:
        a = np.asarray(frame)
    except Exception as e:  # ragged lists, exotic objects
        raise FrameError(f"a frame must be an (H, W, 3) array, got {type(frame).__name__}: {e}") from e
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise FrameError(f"a frame must be shaped (H, W, 3) RGB, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a
    if a.dtype.kind not in "fiu" or a.dtype == np.bool_:
        raise FrameError(f"a frame must hold uint8 (or float in [0, 255]) values, got dtype {a.dtype}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise FrameError("the frame has NaN or infinite values")
    lo, hi = a.min(), a.max()
    if lo < 0 or hi > 255:
        raise FrameError(f"frame values must lie in [0, 255], got [{lo}, {hi}]")
    return np.rint(a).astype(np.uint8) if a.dtype.kind == "f" else a.astype(np.uint8)


class _Prep:
    """The runtime's share of one input spec's preprocessing, for one frame -> program layout float32."""

    def __init__(self, spec: InputSpec):
        self.pre = spec.preprocess
        self.scale = "scale" not in spec.in_program
        self.normalize = "normalize" not in spec.in_program
        if self.normalize and not self.scale:
            raise BundleError("input.in_program has 'scale' without 'normalize': the runtime cannot normalise "
                              "before the program scales; re-export the bundle")
        self.mul, self.add = self.pre.value_affine(scale=self.scale, normalize=self.normalize)
        # preallocated: a stream step's input is written in place every frame
        self.values = ValueTable(self.mul, self.add, self.pre.layout, self.pre.size)

    def __call__(self, frame: np.ndarray | CameraFrame, out: np.ndarray | None = None) -> np.ndarray:
        """The program input of one frame, written into ``out`` (program layout, float32) when given."""
        pre = self.pre
        if isinstance(frame, CameraFrame):  # the core writes the float input itself (one pass, no uint8 crop)
            if out is not None and not (out.flags.c_contiguous and out.flags.writeable):
                np.copyto(out, frame.input_values(pre.resize_to, pre.size, self.mul, self.add, pre.layout))
                return out
            return frame.input_values(pre.resize_to, pre.size, self.mul, self.add, pre.layout, out)
        return self.values(pre._centre_crop(pre.resize_short(frame)), out)


def _check_program_input(model: Model, role: str, frames: int | None) -> None:
    spec, prog = model.input_spec(role), model.programs[role]
    size = spec.preprocess.size
    frame_shape = (3, size, size) if spec.preprocess.layout == "TCHW" else (size, size, 3)
    want = (frames, *frame_shape) if prog.mode == "clip" else (1, *frame_shape)
    if tuple(prog.inputs[0].shape) != want:
        raise BundleError(f"program {prog.id!r} takes {prog.inputs[0].shape} but the manifest's sampler and "
                          f"preprocessing give {want}: the bundle is inconsistent; export it again")


# ------------------------------------------------------------------------------------------------------ the engine
class _Engine:
    """Shared by both classifiers: per-role preprocessing, program calls, timing, prediction making."""

    def __init__(self, model: Model, top_k: int, stats_window: int):
        if not isinstance(model, Model):
            raise ConfigError(f"expected a model from sdk.load, got {type(model).__name__}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ConfigError(f"top_k must be a positive integer, got {top_k!r}")
        self.model = model
        self.labels = model.labels
        self.top_k = min(top_k, len(self.labels))
        self.stats = LatencyStats(stats_window)
        self.clock = StageClock(self.stats)
        self.faster = model.manifest.faster
        roles = tuple(self.faster.clip_models) if self.faster is not None else ("model",)
        self.preps = {r: _Prep(model.input_spec(r)) for r in roles if r in model.programs}
        for role in self.preps:
            _check_program_input(model, role, model.sampler(role).frames)
        self.kind = model.kind
        for prep in self.preps.values():  # the first OpenCV call loads the library (~30 ms): not a frame's cost
            side = prep.pre.resize_to + 1
            prep(np.zeros((side, side + 1, 3), np.uint8))


    def prep(self, role: str, frame: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        t0 = _now()
        x = self.preps[role](as_frame(frame), out)
        self.clock.timed("preprocess", t0)
        return x

    def run(self, role: str, inputs: list[np.ndarray], stage: str = "model") -> list[np.ndarray]:
        t0 = _now()
        out = self.model.run(role, inputs)
        self.clock.timed(stage, t0)
        return out

    def clip_logits(self, role: str, frames: list[np.ndarray]) -> np.ndarray:
        return self.run(role, [np.stack(frames)])[0].reshape(-1)

    def step_state(self) -> list[np.ndarray]:
        return self.model.zero_state("model")

    def step(self, x: np.ndarray, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        out = self.run("model", [x[None], *state])
        n_out = len(self.model.programs["model"].outputs)
        return out[0].reshape(-1), out[n_out:]

    def faster_step(self, role: str, frames: list[np.ndarray], state: list[np.ndarray]
                    ) -> tuple[np.ndarray, list[np.ndarray]]:
        features = self.run(role, [np.stack(frames)])[1]
        self.stats.segments += 1
        self.stats.expensive_segments += role == "expensive"
        return self.aggregate(features, state)

    def new_gate(self, threshold: float | None) -> Gate | None:
        """A fresh gate of an adaptive FASTER bundle (None for other bundles; a threshold for them is an error)."""
        rule = None if self.faster is None else self.faster.gate
        if rule is None:
            if threshold is not None:
                raise ConfigError("gate_threshold applies to adaptive FASTER bundles (manifest.faster.gate); this "
                                  "bundle has no gate")
            return None
        return Gate(rule, threshold, self.model.programs["cheap"].outputs[2].shape[-1])

    def gated_step(self, gate: Gate, cheap: list[np.ndarray], expensive: Callable[[], list[np.ndarray]],
                   state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """One segment of an adaptive bundle: the cheap program, the gate on its outputs, the expensive program on
        ``expensive()``'s frames where the gate fires, the aggregator on whichever features ran."""
        logits, features, pooled = self.run("cheap", [np.stack(cheap)])[:3]
        t0 = _now()
        fires = gate.fires(logits, pooled)
        self.clock.timed("aggregate", t0)
        if fires:
            features = self.run("expensive", [np.stack(expensive())])[1]
        self.stats.segments += 1
        self.stats.expensive_segments += fires
        return self.aggregate(features, state)

    def aggregate(self, features: np.ndarray, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        out = self.run("aggregator", [features, *state], stage="aggregate")
        n_out = len(self.model.programs["aggregator"].outputs)
        return out[0].reshape(-1), out[n_out:]

    def predict(self, logits: np.ndarray, probs: np.ndarray, order: np.ndarray | None = None, **kw: Any
                ) -> Prediction:
        if order is None:
            order = np.argsort(-probs, kind="stable")[: self.top_k]
        self.stats.predictions += 1
        return Prediction(labels=tuple(self.labels[i] for i in order), scores=tuple(float(probs[i]) for i in order),
                          class_ids=tuple(int(i) for i in order), logits=logits, probabilities=probs, **kw)


# ------------------------------------------------------------------------------------------------ video classifier
class VideoClassifier:
    """Classify a whole video: a path, a :class:`~sdk.video.FrameSource`, or frames ``(N, H, W, 3)`` / a list.

    Clip and stream bundles sample the bundle's ``sampler.indices(n)`` over the whole video (one window of all its
    frames, the offline evaluation protocol) and decode only those frames (``read_indices``); a stream bundle steps
    through them from zero state and averages the step logits. FASTER bundles: see the module docstring. A video
    file given by path is read with the conversion the model was trained with (:func:`file_conversion`); pass a
    :class:`~sdk.video.VideoFile` to choose another.

    A file whose stream ends before the frame count its header promises (a damaged or badly written container:
    players show the frames that exist) is classified on the ``m`` frames that decoded: the sampling is planned again
    over ``m`` frames, and the prediction's ``warnings`` (and a warning on the ``sdk`` logger) say so. ``strict=True``
    raises the :class:`~sdk.errors.TruncatedVideoError` instead; a file with no decodable frame always raises.

    A video much longer or shorter than the bundle's training clip, or at a frame rate far from the training videos'
    (:func:`clip_warnings`), is classified all the same, with one warning each (logger and ``warnings``): a 30 s
    video is still one sample of ``sampler.frames`` frames, where :class:`StreamClassifier` gives one prediction per
    training-clip-long window.
    """

    def __init__(self, model: Model, *, top_k: int = 5, stats_window: int = 4096, strict: bool = False,
                 gate_threshold: float | None = None):
        if not isinstance(strict, bool):
            raise ConfigError(f"strict must be True or False, got {strict!r}")
        self._engine = _Engine(model, top_k, stats_window)
        self.model = model
        self.strict = strict
        self.gate_threshold = gate_threshold
        self._engine.new_gate(gate_threshold)  # checks the option now, not at the first video

    @property
    def stats(self) -> LatencyStats:
        return self._engine.stats

    def classify(self, video: Any) -> Prediction:
        owned = isinstance(video, (str, os.PathLike))
        source = open_source(video, file_conversion=file_conversion(self.model.manifest)) if owned else video
        try:
            n = self._length(source)
            warnings = source_warnings(self.model.manifest, source, n)
            try:
                prediction = self._classify(source, n)
            except TruncatedVideoError as e:
                if self.strict or e.decoded < 1:
                    raise
                warning = (f"{e.source}: the stream ends after {e.decoded} of the {e.expected} frames its header "
                           f"promises; sampled the {e.decoded} frames that exist")
                log.warning(warning)
                prediction, warnings = self._classify(source, e.decoded), [*warnings, warning]
            return dataclasses.replace(prediction, warnings=tuple(warnings))
        finally:
            if owned:
                source.close()

    def _classify(self, source: Any, n: int) -> Prediction:
        """The prediction of the first ``n`` frames of ``source``."""
        e = self._engine
        if e.kind == "faster":
            return self._classify_faster(source, n)
        indices = e.model.sampler("model").indices(n)
        frames = self._read(source, indices)
        e.stats.frames_seen += n
        e.stats.frames_kept += len(set(indices.tolist()))
        e.stats.frames_dropped += n - len(set(indices.tolist()))
        xs = [e.prep("model", f) for f in frames]
        if e.kind == "clip":
            logits = e.clip_logits("model", xs)
        else:
            state, rows = e.step_state(), []
            for x in xs:
                row, state = e.step(x, state)
                rows.append(row)
            t0 = _now()
            logits = np.mean(rows, axis=0).astype(np.float32)
            e.clock.timed("aggregate", t0)
        t0 = _now()
        probs = _softmax(logits)
        e.clock.timed("aggregate", t0)
        return e.predict(logits, probs, latency_ms=e.clock.take_lap(), frame_index=n - 1, window=0)

    @staticmethod
    def _length(source: Any) -> int:
        if isinstance(source, FrameSource):
            if source.num_frames is None:
                raise ConfigError(f"{source.source} is a live source without a frame count: use sdk.StreamClassifier")
            return int(source.num_frames)
        if isinstance(source, np.ndarray):
            if source.ndim != 4:
                raise FrameError(f"frames must be shaped (N, H, W, 3), got {source.shape}")
            n = len(source)
        elif isinstance(source, (list, tuple)):
            n = len(source)
        else:
            raise ConfigError(f"classify takes a path, a FrameSource or frames, got {type(source).__name__}")
        if n < 1:
            raise FrameError("no frames to classify")
        return n

    def _read(self, source: Any, indices: np.ndarray) -> list[np.ndarray | CameraFrame]:
        e = self._engine
        t0 = _now()
        if isinstance(source, VideoFile):  # its conversion's frames: decoded planes for the fused crop, or RGB
            frames = source.read_model_frames(indices.tolist())
        elif isinstance(source, FrameSource):
            frames = list(source.read_indices(indices.tolist()))
        else:
            frames = [source[int(i)] for i in indices]
        ms = (_now() - t0) * 1e3
        for _ in frames:  # one decode sample per frame returned, as the stats module says
            e.stats.add("decode", ms / len(frames))
        e.clock.lap["decode"] += ms
        return frames

    def _classify_faster(self, source: Any, n: int) -> Prediction:
        e, spec = self._engine, self._engine.faster
        gate = e.new_gate(self.gate_threshold)
        seg = spec.segment_frames
        starts = [0] if n < seg else [i * seg for i in range(n // seg)]
        length = min(n, seg)
        roles = [(spec.role(i),) if gate is None else spec.roles for i in range(len(starts))]
        plan = [{r: start + self.model.sampler(r).indices(length) for r in rs} for start, rs in zip(starts, roles)]
        wanted = np.unique(np.concatenate([idx for p in plan for idx in p.values()]))
        decoded = dict(zip(wanted.tolist(), self._read(source, wanted)))
        e.stats.frames_seen += n
        e.stats.frames_kept += len(wanted)
        e.stats.frames_dropped += n - len(wanted)
        state = self.model.zero_state("aggregator")
        logits = None
        for p in plan:
            xs = {r: (lambda r=r, idx=idx: [e.prep(r, decoded[int(i)]) for i in idx]) for r, idx in p.items()}
            if gate is None:
                (role, frames), = xs.items()
                logits, state = e.faster_step(role, frames(), state)
            else:
                logits, state = e.gated_step(gate, xs["cheap"](), xs["expensive"], state)
        t0 = _now()
        probs = _softmax(logits)
        e.clock.timed("aggregate", t0)
        return e.predict(logits, probs, latency_ms=e.clock.take_lap(), frame_index=n - 1, window=len(plan) - 1,
                         role=next(iter(plan[-1])))


# ----------------------------------------------------------------------------------------------- stream classifier
class StreamClassifier:
    """Live streams, one frame at a time: see "Streaming semantics" in the module docstring.

    Args:
        model: from :func:`sdk.load`.
        window: frames per window for clip / stream bundles; default: one training clip (:func:`default_window`:
            the bundle's training clip in seconds at ``fps``, else in frames; :data:`DEFAULT_WINDOW` for a bundle
            that does not record it, with a warning); ignored by FASTER bundles (their segment length is in the
            manifest). ``window_reason`` says where the window came from.
        fps: the source's frame rate when known (a camera's); :meth:`run` takes it from its source instead when
            the stream has not started.
        top_k: classes per prediction.
        smoothing: optional :class:`Smoothing` of the emitted predictions.
        stats_window: latency samples kept per stage for the percentiles.
        gate_threshold: adaptive FASTER bundles: the gate's threshold (default: the bundle's; ``inf`` never runs
            the expensive model, ``-inf`` always; ``manifest.faster.gate.curve`` lists the training fire rates).
    """

    def __init__(self, model: Model, *, window: int | None = None, fps: float | None = None, top_k: int = 5,
                 smoothing: Smoothing | None = None, stats_window: int = 4096, gate_threshold: float | None = None):
        self._engine = e = _Engine(model, top_k, stats_window)
        self.model = model
        self._gate = e.new_gate(gate_threshold)
        if smoothing is not None and not isinstance(smoothing, Smoothing):
            raise ConfigError(f"smoothing must be an sdk.Smoothing or None, got {type(smoothing).__name__}")
        self.smoothing = smoothing
        self._given = window
        warning = self._use_source(fps, "the source")
        if warning is not None:
            log.warning(warning)
        self._thread: int | None = None
        self.reset()

    def _use_source(self, fps: float | None, source: str) -> str | None:
        """Window and samplers for a source of ``fps`` frames per second, and its :func:`clip_warnings` (logged);
        returns the window's own warning for the caller to give once."""
        choice = choose_window(self.model.manifest, self._given, fps)
        self.fps, self.window, self.window_reason = known_fps(fps), choice.frames, choice.reason
        self._samplers = {r: StreamingSampler(self.model.sampler(r), self.window) for r in self._engine.preps}
        # a stream step consumes its input at once: one buffer per role, written in place (clip windows keep theirs)
        self._step_inputs = ({r: np.empty(self.model.programs[r].inputs[0].shape[1:], np.float32)
                              for r in self._engine.preps} if self._engine.kind == "stream" else {})
        for warning in clip_warnings(self.model.manifest, source, self.fps):
            log.warning(warning)
        return choice.warning

    @property
    def stats(self) -> LatencyStats:
        return self._engine.stats

    def reset(self) -> None:
        """Start a new stream (see the module docstring); latency statistics are kept."""
        self._frames = 0  # frames numbered so far
        self._window_index = 0
        self._buffer: list[np.ndarray] = []
        self._step_logits: list[np.ndarray] = []
        self._state = self._zero_state()
        self._last_ts: float | None = None
        self._smoothed: np.ndarray | None = None
        self._shown: int | None = None
        if self._gate is not None:
            self._gate.reset()
        self._start_window()

    def _zero_state(self) -> list[np.ndarray]:
        kind = self._engine.kind
        if kind == "stream":
            return self.model.zero_state("model")
        if kind == "faster":
            return self.model.zero_state("aggregator")
        return []

    def _start_window(self) -> None:
        e = self._engine
        self._role = e.faster.role(self._window_index) if e.kind == "faster" else "model"
        self._sampler = self._samplers[self._role]
        self._sampler.reset()
        # an adaptive bundle's expensive model may run on any segment: its frames are kept too, just in case
        self._extra = self._samplers["expensive"] if self._gate is not None else None
        if self._extra is not None:
            self._extra.reset()
        self._buffer = []
        self._extra_buffer: list[np.ndarray] = []
        self._step_logits = []
        if e.kind == "stream":
            self._state = self.model.zero_state("model")

    @property
    def role(self) -> str:
        """The clip model that sees the current segment (``"model"`` for clip / stream bundles)."""
        return self._role

    def wants_next(self) -> bool:
        """Whether the next frame will be kept: call it before decoding to skip the work for dropped frames."""
        return any(bool(s._copies[s.position]) for s in (self._sampler, self._extra) if s is not None)

    def push(self, frame: np.ndarray | Callable[[], np.ndarray], timestamp: float | None = None
             ) -> Prediction | None:
        """Offer the next frame (or a callable producing it, called only if kept): a :class:`Prediction` at each
        window end, an error event for a bad frame or a ``timestamp`` not after the previous one, else ``None``
        (see "Timestamps" in the module docstring: :meth:`run` re-times a decoder's broken timestamps instead)."""
        me = threading.get_ident()
        if self._thread is None:
            self._thread = me
        elif self._thread != me:
            raise ConfigError("a StreamClassifier is used from one thread only; create one (and sdk.load one "
                              "model) per thread")
        e = self._engine
        index = self._frames
        if timestamp is not None:
            if (isinstance(timestamp, bool) or not isinstance(timestamp, (int, float, np.floating, np.integer))
                    or not math.isfinite(timestamp)):
                return self._error(FrameError(f"timestamp must be a finite number of seconds, got {timestamp!r}"),
                                   index, None)
            if self._last_ts is not None and timestamp <= self._last_ts:
                return self._error(FrameError(f"timestamps must increase: {timestamp} after {self._last_ts}"),
                                   index, timestamp)
        t0 = _now()
        copies = self._sampler.offer()
        extra = 0 if self._extra is None else self._extra.offer()
        t0 = e.clock.timed("sample", t0)
        if copies or extra:
            try:
                if callable(frame):
                    frame = frame()
                    t0 = e.clock.timed("decode", t0)
                x = e.prep(self._role, frame, self._step_inputs.get(self._role)) if copies else None
                y = e.prep("expensive", frame) if extra else None
            except SdkError as err:
                for s in (self._sampler, self._extra):  # the bad frame does not count: the next one takes its place
                    if s is not None:
                        s.frames_seen -= 1
                return self._error(err, index, timestamp)
            e.stats.frames_kept += 1
            if e.kind == "stream":
                for _ in range(copies):
                    logits, self._state = e.step(x, self._state)
                    self._step_logits.append(logits)
            else:
                self._buffer.extend([x] * copies)
                self._extra_buffer.extend([y] * extra)
        else:
            e.stats.frames_dropped += 1
        e.stats.frames_seen += 1
        self._frames += 1
        if timestamp is not None:
            self._last_ts = float(timestamp)
        if not self._sampler.window_complete:
            return None
        return self._emit(index, None if timestamp is None else float(timestamp))

    def _error(self, err: SdkError, index: int, timestamp: float | None) -> Prediction:
        self._engine.stats.frame_errors += 1
        return Prediction(error=err, frame_index=index, window=self._window_index, role=self._role,
                          timestamp=timestamp)

    def _emit(self, index: int, timestamp: float | None) -> Prediction:
        e = self._engine
        role, window = self._role, self._window_index
        if e.kind == "clip":
            logits = e.clip_logits("model", self._buffer)
            t0 = _now()
        elif e.kind == "stream":
            t0 = _now()
            logits = np.mean(self._step_logits, axis=0).astype(np.float32)
        elif self._gate is not None:
            logits, self._state = e.gated_step(self._gate, self._buffer, lambda: self._extra_buffer, self._state)
            t0 = _now()
        else:
            logits, self._state = e.faster_step(role, self._buffer, self._state)
            t0 = _now()
        probs, order = self._smooth(_softmax(logits))
        e.clock.timed("aggregate", t0)
        self._window_index += 1
        self._start_window()
        return e.predict(logits, probs, order, latency_ms=e.clock.take_lap(), timestamp=timestamp, frame_index=index,
                         window=window, role=role)

    def _smooth(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        s = self.smoothing
        if s is None:
            return probs, None
        if self._smoothed is not None and s.ema > 0:
            probs = (s.ema * self._smoothed + (1.0 - s.ema) * probs).astype(np.float32)
        self._smoothed = probs
        order = np.argsort(-probs, kind="stable")[: self._engine.top_k]
        best = int(order[0])
        if self._shown is not None and best != self._shown and probs[best] - probs[self._shown] <= s.hysteresis:
            order = np.concatenate([[self._shown], order[order != self._shown]])[: self._engine.top_k]
        self._shown = int(order[0])
        return probs, order

    # ---- driving a source -----------------------------------------------------------------------------------
    def run(self, source: Any, *, max_frames: int | None = None) -> Iterator[Prediction]:
        """Stream a path / camera index / URL / :class:`~sdk.video.FrameSource` / iterable of frames through
        :meth:`push`, yielding predictions and error events. Dropped frames are decoded by the codec (inter-frame
        coding needs it) but never converted to RGB, resized or copied. Frame timestamps come from the source
        (seconds); a source whose first timestamp is not after the stream's last one (a second file streamed after
        a first) is shifted to continue the timeline one frame interval later; a source whose timestamps do not
        increase is re-timed once, keeping every frame (:func:`drive`). At the start of a stream (nothing pushed
        since construction or :meth:`reset`) the source's frame rate replaces the constructor's ``fps``: the default
        window spans the training clip's seconds at that rate. A video file given by path is read with the model's
        training conversion (:func:`file_conversion`)."""
        with opened(source, file_conversion(self.model.manifest)) as src:
            fps = getattr(src, "fps", None)
            if self._frames == 0 and known_fps(fps) not in (None, self.fps):
                self._use_source(fps, src.source)
                self._start_window()
            yield from drive(self.push, src, max_frames=max_frames, last_timestamp=lambda: self._last_ts)


def file_conversion(manifest: Manifest) -> str:
    """How a classifier reads a video file it is given by path: the conversion its model was trained with
    (``input.preprocess.conversion``; ``"swscale"`` for bundles that predate the field). A
    :class:`~sdk.video.VideoFile` the caller opened keeps its own."""
    return manifest.input.preprocess.conversion


@contextlib.contextmanager
def opened(source: Any, conversion: str | None = None) -> Iterator[Any]:
    """``source`` opened with :func:`~sdk.video.open_source` when it is a path, camera index or URL (and closed
    after; a video file with ``conversion``), else as it is."""
    owned = isinstance(source, (str, int, os.PathLike)) and not isinstance(source, bool)
    src = open_source(source, file_conversion=conversion) if owned else source
    try:
        yield src
    finally:
        if owned:
            src.close()


def drive(push: Callable[[Any, float | None], Prediction | None], source: Any, *, max_frames: int | None = None,
          last_timestamp: Callable[[], float | None] = lambda: None) -> Iterator[Prediction]:
    """Push a path / camera index / URL / :class:`~sdk.video.FrameSource` / iterable of frames into ``push`` (a
    classifier's), lazily (a frame is converted only when the classifier keeps it), yielding what it returns.

    Every decoded frame is pushed, with a timestamp that increases strictly (:class:`_Timeline`): a source whose
    first timestamp is not after ``last_timestamp()`` (a second file streamed after a first) is shifted to continue
    the timeline one frame interval later, and a source whose timestamps stop increasing (B-frames muxed with
    decode-order pts, a camera repeating its clock) is re-timed from there on, with one warning. Opens and closes
    what it opened."""
    with opened(source) as src:
        timeline = _Timeline(getattr(src, "source", "the frames"), getattr(src, "fps", None), last_timestamp())
        for i, (frame, ts) in enumerate(lazy_frames(src)):
            if max_frames is not None and i >= max_frames:
                break
            out = push(frame, timeline(i, ts))
            if out is not None:
                yield out


class _Timeline:
    """One source's frame timestamps made strictly increasing, frame by frame (a live source cannot be scanned first).

    Timestamps pass through (shifted by a constant when the stream's previous timestamp ``last`` is not before the
    source's first) until one is not after its predecessor; from that frame ``k`` on, frame ``i`` is timed
    ``anchor + (i - k) * step``: ``anchor`` is where the source's first timestamp + frame index x ``step`` puts
    frame ``k``, moved later when needed to stay after the timestamps already passed on. ``step`` is one frame at
    the header's rate, else the median positive step seen so far, else one frame at :data:`ASSUMED_FPS`.
    """

    def __init__(self, source: str, fps: float | None, last: float | None):
        self.source, self.fps, self.last = source, known_fps(fps), last
        self.offset: float | None = None  # set by the first timestamp
        self.first, self.first_index, self.prev = 0.0, 0, -math.inf
        self.steps: deque[float] = deque(maxlen=255)
        self.anchor: float | None = None  # re-timed from frame ``at`` on
        self.at, self.step = 0, 0.0

    def _step(self) -> tuple[float, str]:
        if self.fps is not None:
            return 1.0 / self.fps, f"the header's {self.fps:g} fps"
        if self.steps:
            return float(np.median(self.steps)), "the median step between the earlier frames"
        return 1.0 / ASSUMED_FPS, f"{ASSUMED_FPS:g} fps assumed: the source states no frame rate"

    def __call__(self, index: int, ts: float | None) -> float | None:
        if self.anchor is not None:
            return self.anchor + (index - self.at) * self.step
        if ts is None:
            return None
        if self.offset is None:
            self.offset = 0.0 if self.last is None or ts > self.last else self.last + self._step()[0] - ts
            self.first, self.first_index = ts + self.offset, index
        t = ts + self.offset
        if t > self.prev:
            if self.prev > -math.inf:
                self.steps.append(t - self.prev)
            self.prev = t
            return t
        self.step, how = self._step()
        self.anchor, self.at = max(self.first + (index - self.first_index) * self.step, self.prev + self.step), index
        log.warning(f"{self.source}: frame timestamps go backwards (frame {index} at {ts:.3f} s after "
                    f"{self.prev - self.offset:.3f} s: B-frames muxed with decode-order timestamps?); keeping every "
                    f"frame and timing them from here on as the first timestamp + frame index x "
                    f"{self.step * 1e3:.1f} ms ({how})")
        return self.anchor


def lazy_frames(source: Any) -> Iterator[tuple[Callable[[], np.ndarray] | np.ndarray, float | None]]:
    """``(frame or callable producing it, timestamp in seconds or None)`` for each frame of ``source``, converting a
    frame to RGB only when the callable is called."""
    if isinstance(source, VideoFile):
        container, stream = source._open()
        try:
            for av_frame in source._decode(container, stream):
                ts = float(av_frame.time) if av_frame.time is not None else None
                yield (lambda f=av_frame: source.model_frame(f)), ts
        finally:
            container.close()
    elif isinstance(source, StreamCapture):
        cv2 = source._cv2
        source._rewind()
        while True:
            before = source._read
            source._grab(retrieve=False)  # demux + decode only; a live source that stalls raises DecodeError
            if source._read == before:  # a file ended
                return
            ms = source._cap.get(cv2.CAP_PROP_POS_MSEC)
            ts = ms / 1e3 if ms > 0 else None  # cameras without a clock report 0 (repeats: drive re-times them)

            def convert(cap=source._cap, src=source, at=source._read - 1) -> np.ndarray:
                ok, bgr = cap.retrieve()
                if not ok or bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
                    raise FrameError(f"{src.source}: frame {at} could not be retrieved")
                return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

            yield convert, ts
    elif isinstance(source, (FrameSource, Iterable)):
        yield from ((f, None) for f in source)
    else:
        raise ConfigError(f"cannot stream from {type(source).__name__}: pass a path, camera index, URL, "
                          "FrameSource or iterable of frames")
