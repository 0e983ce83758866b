"""Frames of any size through the native core: :class:`NativeStream` (a live stream) and
:class:`NativeVideoClassifier` (one prediction for a whole video), the ``--native`` paths of ``python -m sdk`` and
of the Jetson app.

They run a bundle's ``.pte`` programs on ExecuTorch's C++ runtime (``sdk.native``) with no torch and no Python
ExecuTorch bindings in the process, which is what a device install (``scripts/device_install.sh``) has. The core
does not resize (``sdk/native/README.md``, "Frame contract"), so both ask the core about each frame before touching
it: a frame the sampler drops is passed as ``None`` (a lazy frame is never even converted to RGB), a kept frame is
validated like :func:`sdk.classifier.as_frame` and its shorter side resized with the bundle's own preprocessing
(:meth:`sdk.Preprocess.resize_short`, the role's in a FASTER bundle), as a camera scaler would; the core centre-crops
and the program normalises. On the same frames the predictions equal ``sdk.StreamClassifier`` /
``sdk.VideoClassifier`` on the Python ExecuTorch runtime (tests/test_device_install.py, tests/test_native.py).

Whole-video semantics (:class:`NativeVideoClassifier`), as :class:`sdk.VideoClassifier`:

* clip and stream bundles: one window of all ``n`` frames of the video, so the kept frames are the bundle sampler's
  ``indices(n)`` (the core's streaming sampler keeps exactly those) and the prediction is that window's;
* FASTER bundles: ``n // S`` segments of ``S = faster.segment_frames`` frames, the prediction after the last one
  (the incomplete tail is dropped). A video shorter than one segment, which ``sdk.VideoClassifier`` classifies as
  one short segment re-sampled over its ``n`` frames, cannot be run by the core (its segment length is fixed by
  the manifest): a :class:`~sdk.errors.ConfigError` says so instead of answering something else;
* a file that ends before the frame count its header promises is classified again over the frames that exist,
  with a warning (``strict=True``: :class:`~sdk.errors.TruncatedVideoError`), as ``sdk.VideoClassifier`` does.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self

import numpy as np

from sdk.bundle import Bundle
from sdk.camera import CameraFrame
from sdk.classifier import (Prediction, Smoothing, VideoClassifier, as_frame, choose_window, clip_warnings, drive,
                            file_conversion, known_fps, lazy_frames, opened, source_warnings)
from sdk.errors import ConfigError, FrameError, SdkError, TruncatedVideoError
from sdk.native import NativeStreamClassifier, build
from sdk.stats import LatencyStats, StageClock
from sdk.video import open_source

__all__ = ["NativeStream", "NativeVideoClassifier"]

_now = time.perf_counter
log = logging.getLogger("sdk")


class NativeStream:
    """:class:`sdk.StreamClassifier`'s interface (``push``, ``wants_next``, ``run``, ``reset``, ``stats``) on the
    native core, for frames of any size (see the module docstring).

    Args:
        bundle: a ``.vbundle`` directory or its zip (extracted to a temporary directory while the stream lives).
        window, fps, smoothing, top_k: as :class:`sdk.StreamClassifier`; the default window is the core's own
            (``ev_options.source_fps``: the same rule as :func:`sdk.classifier.default_window`), and :meth:`run`
            opens the core again with the source's frame rate when that changes it at the start of a stream.
        precision: ``fp32`` / ``int8`` / ``fp16`` programs; None = int8 first, as ``sdk.load``.
        verify: run the bundle's golden self-check in the core when opening (BundleError on a mismatch).
        library: ``libedgevideo.so`` or its build directory (default: :func:`sdk.native.build`, cached).
        gate_threshold: adaptive FASTER bundles: as :class:`sdk.StreamClassifier` (the core runs the gate).

    ``stats`` has the app-side resize under ``preprocess`` and the core's whole call on a kept frame (crop, program,
    window end, aggregation) under ``model``; ``segments`` / ``expensive_segments`` are the core's counts.
    """

    backend = "native"

    def __init__(self, bundle: str | Path, *, window: int | None = None, fps: float | None = None,
                 smoothing: Smoothing | None = None, top_k: int = 5, precision: str | None = None,
                 verify: bool = False, library: str | Path | None = None, gate_threshold: float | None = None):
        self._bundle = Bundle(bundle)
        self.classifier: NativeStreamClassifier | None = None
        try:
            m = self._bundle.manifest
            self.manifest = m
            self._preprocess = {"model": m.input.preprocess}
            if m.faster is not None:
                self._preprocess.update({r: c.input.preprocess for r, c in m.faster.clip_models.items()})
            self._window = window
            self._options = {"library": library, "smoothing": smoothing, "precision": precision, "top_k": top_k,
                             "gate_threshold": gate_threshold}
            warning = self._use_source(fps, "the source", verify=verify)
        except BaseException:
            self._bundle.close()
            raise
        if warning is not None:
            log.warning(warning)
        self.kind, self.labels = self.classifier.kind, self.classifier.labels
        self.precision = self.classifier.precision
        self._clock = StageClock(LatencyStats())
        self._fresh = True  # nothing pushed since construction or reset

    def _use_source(self, fps: float | None, source: str, verify: bool = False) -> str | None:
        """(Re)open the core for a source of ``fps`` frames per second and log its ``clip_warnings``; returns the
        window's own warning for the caller to give once."""
        choice = choose_window(self.manifest, self._window, fps)
        if self.classifier is not None:
            self.classifier.close()
        self.fps = known_fps(fps)
        self.classifier = NativeStreamClassifier(self._bundle.root, window=self._window, fps=self.fps, verify=verify,
                                                 **self._options)
        self._counted = (0, 0)  # the core's segment counts already added to stats
        self.window, self.window_reason = self.classifier.window, choice.reason
        for warning in clip_warnings(self.manifest, source, self.fps):
            log.warning(warning)
        return choice.warning

    @property
    def stats(self) -> LatencyStats:
        return self._clock.stats

    @stats.setter
    def stats(self, stats: LatencyStats) -> None:  # NativeVideoClassifier keeps one record over its streams
        self._clock.stats = stats

    def wants_next(self) -> bool:
        """Whether the next frame will be kept: ask before decoding to skip the work for dropped frames."""
        return self.classifier.wants_next()

    def push(self, frame: np.ndarray | Callable[[], np.ndarray] | None, timestamp: float | None = None
             ) -> Prediction | None:
        """Offer the next frame (or a callable producing it, called only if kept): a :class:`Prediction` at each
        window / segment end, an error event for a bad frame, else ``None``."""
        stats = self.stats
        self._fresh = False
        t0 = _now()
        request = self.classifier.next_frame()
        t0 = self._clock.timed("sample", t0)
        resized = None
        if request["copies"]:
            try:
                if callable(frame):
                    frame = frame()
                    t0 = self._clock.timed("decode", t0)
                if frame is None:
                    raise FrameError("the sampler keeps this frame: pass the frame, not None")
                # a camera frame goes to the core as it is (ev_push_image converts, resizes and crops it)
                resized = (frame if isinstance(frame, CameraFrame)
                           else self._preprocess[str(request["role"])].resize_short(as_frame(frame)))
            except SdkError as err:
                stats.frame_errors += 1
                return Prediction(error=err, timestamp=timestamp, role=str(request["role"]))
            t0 = self._clock.timed("preprocess", t0)
        prediction = self.classifier.push(resized, timestamp)
        if resized is not None or prediction is not None:
            self._clock.timed("model", t0)
        if prediction is not None and not prediction.ok:
            stats.frame_errors += 1
            return prediction
        stats.frames_seen += 1
        if resized is not None:
            stats.frames_kept += 1
        else:
            stats.frames_dropped += 1
        if prediction is None:
            return None
        stats.predictions += 1
        counts = self.classifier.segment_counts()
        stats.segments += counts[0] - self._counted[0]
        stats.expensive_segments += counts[1] - self._counted[1]
        self._counted = counts
        return dataclasses.replace(prediction, latency_ms=self._clock.take_lap())

    def run(self, source: Any, *, max_frames: int | None = None) -> Iterator[Prediction]:
        """Stream a path / camera index / URL / :class:`~sdk.video.FrameSource` / iterable of frames through
        :meth:`push` (frames the sampler drops are decoded by the codec but never converted), with the source's
        timestamps (re-timed once where they do not increase: :func:`sdk.classifier.drive`), yielding predictions
        and error events; the source's frame rate as :meth:`sdk.StreamClassifier.run` takes it."""
        with opened(source, file_conversion(self.manifest)) as src:
            fps = getattr(src, "fps", None)
            if self._fresh and known_fps(fps) not in (None, self.fps):
                self._use_source(fps, src.source)
            yield from drive(self.push, src, max_frames=max_frames)

    def reset(self) -> None:
        """Start a new stream (the core's ``ev_reset``); latency statistics are kept."""
        self.classifier.reset()
        self._fresh = True
        self._clock.take_lap()  # a new stream starts a new lap

    def close(self) -> None:
        self.classifier.close()
        self._bundle.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NativeVideoClassifier:
    """:class:`sdk.VideoClassifier` on the native core: ``classify(path | FrameSource | frames) -> Prediction``
    (semantics in the module docstring). Arguments as :class:`NativeStream`; ``strict`` as ``sdk.VideoClassifier``.

    A clip / stream bundle needs a core configured with a window of the video's length: one is kept for the last
    length seen (videos of one length share it), another length opens the bundle in the core again."""

    backend = "native"

    def __init__(self, bundle: str | Path, *, top_k: int = 5, strict: bool = False, precision: str | None = None,
                 verify: bool = False, library: str | Path | None = None, gate_threshold: float | None = None):
        if not isinstance(strict, bool):
            raise ConfigError(f"strict must be True or False, got {strict!r}")
        self.strict = strict
        self._library = Path(library) if library is not None else build()
        self._options = {"top_k": top_k, "precision": precision, "library": self._library,
                         "gate_threshold": gate_threshold}
        # any window: classify opens the core again with a window of the video's length
        self._stream = NativeStream(bundle, window=1, verify=verify, **self._options)
        self._bundle_path = Path(bundle)
        self.manifest, self.kind = self._stream.manifest, self._stream.kind
        self.labels, self.precision = self._stream.labels, self._stream.precision
        self.stats = LatencyStats()

    def classify(self, video: Any) -> Prediction:
        owned = isinstance(video, (str, os.PathLike))
        source = open_source(video, file_conversion=file_conversion(self.manifest)) if owned else video
        try:
            n = VideoClassifier._length(source)  # the same rules (and errors) as the Python classifier
            warnings = source_warnings(self.manifest, source, n)
            prediction, decoded = self._classify(source, n)
            if prediction is not None:
                return dataclasses.replace(prediction, warnings=tuple(warnings))
            error = TruncatedVideoError(getattr(source, "source", "frames"),
                                        f"the stream ends after {decoded} of the {n} frames its header promises",
                                        decoded=decoded, expected=n)
            if self.strict or decoded < 1:
                raise error
            warning = (f"{error.source}: the stream ends after {decoded} of the {n} frames its header promises; "
                       f"sampled the {decoded} frames that exist")
            log.warning(warning)
            prediction, _ = self._classify(source, decoded)
            if prediction is None:  # fewer frames decoded the second time
                raise error
            return dataclasses.replace(prediction, warnings=(*warnings, warning))
        finally:
            if owned:
                source.close()

    def _stream_for(self, n: int) -> NativeStream:
        """A core whose window is the whole video (clip / stream bundles), or the FASTER one, reset."""
        stream = self._stream
        if self.kind != "faster" and stream.window != n:
            stream.close()
            self._stream = stream = NativeStream(self._bundle_path, window=n, **self._options)
        stream.reset()
        stream.stats = self.stats
        return stream

    def _classify(self, source: Any, n: int) -> tuple[Prediction | None, int]:
        """The prediction of the first ``n`` frames of ``source`` (None if fewer decode) and the frames pushed."""
        needed = n
        if self.kind == "faster":
            segment = self.manifest.faster.segment_frames
            if n < segment:
                raise ConfigError(f"the native core runs a FASTER bundle in whole segments of {segment} frames and "
                                  f"this video has {n}: classify it with the Python runtimes (--runtime python), "
                                  "which sample one short segment over its frames")
            needed = n // segment * segment
        stream = self._stream_for(n)
        last, pushed = None, 0
        for frame, _ in lazy_frames(source):
            if pushed == needed:
                break
            out = stream.push(frame)
            pushed += 1
            if out is not None:
                if not out.ok:
                    raise out.error
                last = out
        return (last if pushed == needed else None), pushed

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

