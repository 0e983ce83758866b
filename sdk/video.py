"""Frame sources: video files (PyAV), cameras and network streams (OpenCV), folders of images.

Every source yields ``(H, W, 3)`` uint8 RGB C-contiguous frames, and every failure to open or decode is a
:class:`~sdk.errors.DecodeError` naming the source, so an app never sees a raw PyAV/OpenCV exception. ``av`` and
``cv2`` are imported only when a source needs them (``import sdk`` must work with numpy alone).

Random access (:meth:`FrameSource.read_indices`) is what the samplers use: a see-very-little model needs 8 frames of
300, so :class:`VideoFile` converts only those to RGB, stops after the last one and seeks over whole GOPs, and
checks that a seek landed where the timestamps say (else it falls back to sequential decoding: correctness first).
"""
from __future__ import annotations

import abc
import bisect
import operator
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from sdk.camera import CameraFrame
from sdk.errors import BackendUnavailableError, ConfigError, DecodeError, FrameError, TruncatedVideoError
from sdk.preprocess import CONVERSIONS

__all__ = ["CONVERSIONS", "FrameSource", "VideoFile", "StreamCapture", "FrameFolder", "VideoInfo", "camera_frame",
           "open_source", "probe"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# Seeking discards the frames in flight in the decoder and restarts at a keyframe: only worth it when it skips at
# least this many decodes.
_MIN_SEEK_SKIP = 8
# CONVERSIONS (defined beside the Preprocess spec, which records a model's): how VideoFile turns a decoded frame into
# pixels: libswscale's rgb24 (the default, what models trained before the choice saw), or
# the decoded planes read as an sdk.CameraFrame (BT.601 16.16 fixed point: the camera path's reference, which the
# streaming runtimes convert, resize and crop in one pass).
# PyAV pixel formats whose planes a CameraFrame reads as they are, and the colour matrices its BT.601 arithmetic is
# right for (AVColorSpace: unspecified, BT.470BG, SMPTE 170M).
_CAMERA_FORMATS = {"yuv420p": "i420", "yuvj420p": "i420", "nv12": "nv12", "nv21": "nv21", "rgb24": "rgb",
                   "rgba": "rgba", "bgra": "bgra"}
_BT601_COLORSPACES = (2, 5, 6)
_AVCOL_RANGE_JPEG = 2


def _import_av() -> Any:
    try:
        import av
    except ImportError as e:
        raise BackendUnavailableError(
            "video files need PyAV: pip install av==18.1.0 (or pip install 'edgevideo[runtime]')"
        ) from e
    return av


def _import_cv2() -> Any:
    try:
        import cv2
    except ImportError as e:
        raise BackendUnavailableError(
            "cameras, streams and image folders need OpenCV: pip install opencv-python-headless==5.0.0.93 "
            "(or pip install 'edgevideo[runtime]')"
        ) from e
    return cv2


def _check_file(source: str) -> None:
    """Fail early with a clear reason: FFmpeg's messages for these cases are cryptic or (empty file) misleading."""
    if not os.path.exists(source):
        raise DecodeError(source, "no such file")
    if os.path.isdir(source):
        raise DecodeError(source, "is a directory, not a video file (use FrameFolder for a folder of images)")
    if os.path.getsize(source) == 0:
        raise DecodeError(source, "empty file (0 bytes)")


class FrameSource(abc.ABC):
    """A sequence of RGB frames; a context manager that releases its decoder on exit."""

    source: str
    num_frames: int | None
    fps: float | None

    @abc.abstractmethod
    def __iter__(self) -> Iterator[np.ndarray]:
        """Frames in order, each ``(H, W, 3)`` uint8 RGB, C-contiguous."""

    @abc.abstractmethod
    def read_indices(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at ``indices`` (0-based, any order, repeats allowed) as ``(k, H, W, 3)`` uint8 RGB, in that order."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the decoder / device. Idempotent."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r}, num_frames={self.num_frames}, fps={self.fps})"

    def _check_indices(self, indices: Sequence[int]) -> list[int]:
        """Indices as Python ints, validated against ``num_frames`` (no negative indexing: it hides sampler bugs)."""
        if self.num_frames is None:
            raise ConfigError(
                f"{self.source}: a live source has no frame count, so it cannot be read by index; iterate over it "
                "and sample with sdk.StreamingSampler instead"
            )
        try:
            out = [operator.index(i) for i in indices]
        except TypeError as e:
            raise ConfigError(f"{self.source}: frame indices must be integers, got {indices!r}") from e
        if not out:
            raise ConfigError(f"{self.source}: no frame indices given (ask for at least one)")
        bad = [i for i in out if not 0 <= i < self.num_frames]
        if bad:
            raise ConfigError(
                f"{self.source}: frame indices {bad[:5]} out of range: valid are 0..{self.num_frames - 1} "
                f"({self.num_frames} frames)"
            )
        return out


def _gather(indices: list[int], frames: dict[int, np.ndarray], source: str) -> np.ndarray:
    """Stack the decoded frames in the order asked for (repeats share one decode)."""
    shapes = {f.shape for f in frames.values()}
    if len(shapes) > 1:
        raise FrameError(f"{source}: frames have different sizes {sorted(shapes)}; cannot stack them")
    return np.stack([frames[i] for i in indices])


# --------------------------------------------------------------------------------------------------------- PyAV files
@dataclass(frozen=True)
class VideoInfo:
    """What the container header says about the first video stream (``num_frames`` counted by demuxing if absent)."""

    num_frames: int
    fps: float | None
    width: int
    height: int
    codec: str
    duration_s: float | None


class _SeekMismatch(Exception):
    """A seek did not land where the timestamps said: redo the request by sequential decoding."""


class VideoFile(FrameSource):
    """A video file decoded with PyAV (FFmpeg).

    ``threads=0`` lets FFmpeg choose (frame + slice threading, bit-exact for H.264); ``threads=1`` decodes on the
    calling thread only. ``seek_gap``: :meth:`read_indices` seeks when the next wanted frame is more than this many
    frames ahead (and, where the container indexes every frame, a keyframe lies in between). ``None`` (automatic):
    with such an index, seek whenever that skips at least 8 decodes; without, beyond two keyframe intervals.
    ``frames_decoded`` counts the frames :meth:`read_indices` decoded: its cost, for tests and benchmarks.
    ``autorotate`` (default) returns frames upright when the file carries a display rotation (phone videos);
    ``width`` / ``height`` are the stored (coded) size, before that rotation.
    ``conversion`` (:data:`CONVERSIONS`) says how a decoded frame becomes pixels: ``"swscale"`` (default) is
    libswscale's RGB; ``"camera"`` reads the decoded planes as an :class:`sdk.CameraFrame` (:func:`camera_frame`), so
    that streaming hands them to the fused convert + resize + crop (no full-size RGB frame) and training, reading RGB
    frames through the same reference, sees the same pixels. Models trained on one should be run on the same one.
    """

    def __init__(self, path: str | os.PathLike, *, threads: int = 0, seek_gap: int | None = None,
                 autorotate: bool = True, conversion: str = "swscale"):
        self.source = os.fsdecode(os.fspath(path))
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise ConfigError(f"threads must be an int >= 0 (0 = FFmpeg's choice), got {threads!r}")
        if conversion not in CONVERSIONS:
            raise ConfigError(f"unknown conversion {conversion!r}; valid: {', '.join(CONVERSIONS)}")
        self.conversion = conversion
        if seek_gap is not None and (isinstance(seek_gap, bool) or not isinstance(seek_gap, int) or seek_gap < 1):
            raise ConfigError(f"seek_gap must be None (automatic) or an int >= 1, got {seek_gap!r}")
        self._av = _import_av()
        self._threads = threads
        self._seek_gap = seek_gap
        self._autorotate = autorotate
        _check_file(self.source)
        self._container, self._stream = self._open()
        self.frames_decoded = 0
        try:
            self._read_header()
        except BaseException:
            self.close()
            raise

    # -- opening ----------------------------------------------------------------------------------------------------
    def _open(self) -> tuple[Any, Any]:
        av = self._av
        try:
            container = av.open(self.source, "r")
        except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
            raise DecodeError(self.source, f"not a readable video container ({e})") from e
        try:
            if container.format.name == "tty":  # FFmpeg renders .txt/.nfo files as ANSI-art "video"
                raise DecodeError(self.source, "a text file, not a video")
            if not container.streams.video:
                kinds = sorted({s.type for s in container.streams}) or ["none"]
                raise DecodeError(self.source, f"no video stream (streams: {', '.join(kinds)})")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = self._threads
        except BaseException:
            container.close()
            raise
        return container, stream

    def _read_header(self) -> None:
        s = self._stream
        average = s.average_rate or s.guessed_rate
        self.fps = float(average) if average else None
        # The rate every timestamp is a multiple of (FFmpeg's r_frame_rate): equals the average at constant rate.
        base = s.base_rate or average
        self._rate: Fraction | None = Fraction(base) if base else None
        self._time_base: Fraction | None = Fraction(s.time_base) if s.time_base else None
        cc = s.codec_context
        self.width, self.height, self.codec = cc.width, cc.height, cc.name

        entries = s.index_entries
        n_entries = len(entries)
        keyframes, discards = [], 0
        for i, e in enumerate(entries):
            discards += e.is_discard
            if e.is_keyframe:
                keyframes.append(i)
        if s.frames > 0:
            # An edit list (a trimmed MP4) marks samples before its start "discard": decoded, never output.
            self.num_frames = s.frames - (discards if n_entries == s.frames else 0)
            self._from_header = True
        else:
            self.num_frames = self._count_packets()
            self._from_header = False
        if self.num_frames <= 0:
            raise DecodeError(self.source, "the video stream has no frames")

        # One index entry per frame and none to discard (MP4/MOV): entry i is frame i, keyframe positions are exact.
        exact = n_entries == self.num_frames and not discards and bool(keyframes) and keyframes[0] == 0
        self._keyframes = keyframes if exact else None
        gop = self.num_frames / len(keyframes) if keyframes else self.num_frames
        self._auto_gap = max(2 * round(gop), _MIN_SEEK_SKIP)

        if s.duration is not None and self._time_base is not None:
            self.duration_s: float | None = float(s.duration * self._time_base)
        elif self._container.duration is not None:
            self.duration_s = self._container.duration / 1_000_000
        else:
            self.duration_s = self.num_frames / self.fps if self.fps else None
        # Seeking maps pts to frame index as (pts - start_time) * time_base * rate: only at constant frame rate (the
        # base rate is the average, and the duration holds the frame count to half a frame) with timestamps present.
        self._start_pts = s.start_time
        cfr = (
            self._rate is not None
            and self._time_base is not None
            and self._start_pts is not None
            and self.duration_s is not None
            and abs(self.fps - float(self._rate)) <= 1e-3 * self.fps
            and abs(self.duration_s * float(self._rate) - self.num_frames) <= 0.5
        )
        self._seek_ok = bool(cfr)
        if cfr:  # frames per pts tick as an integer ratio: the per-frame check stays in integer arithmetic
            self._ticks_num, self._ticks_den = (self._time_base * self._rate).as_integer_ratio()
        self._reset_cursor()

    def _count_packets(self) -> int:
        """Frame count without decoding, for containers whose header lacks it (MKV/WebM)."""
        av = self._av
        container, stream = self._open()
        try:
            return sum(1 for p in container.demux(stream) if p.size > 0)
        except (av.FFmpegError, OSError) as e:
            raise DecodeError(self.source, f"cannot read packets ({e})") from e
        finally:
            container.close()

    @property
    def info(self) -> VideoInfo:
        return VideoInfo(self.num_frames, self.fps, self.width, self.height, self.codec, self.duration_s)

    # -- decoding ---------------------------------------------------------------------------------------------------
    @staticmethod
    def _decode(container: Any, stream: Any) -> Iterator[Any]:
        for packet in container.demux(stream):
            yield from packet.decode()

    def _truncated(self, decoded: int, detail: str = "") -> TruncatedVideoError:
        count = "the header's count" if self._from_header else "packets in the file"
        reason = f"truncated or corrupt: decoded {decoded} of {self.num_frames} frames ({count})"
        return TruncatedVideoError(self.source, reason + (f": {detail}" if detail else ""), decoded=decoded,
                                   expected=self.num_frames)

    def __iter__(self) -> Iterator[np.ndarray]:
        """Decode every frame in order on a decoder of its own (``read_indices`` may be used meanwhile)."""
        av = self._av
        container, stream = self._open()
        n = 0
        try:
            frames = self._decode(container, stream)
            while True:
                try:
                    frame = next(frames, None)
                except (av.FFmpegError, OSError) as e:
                    raise self._truncated(n, str(e)) from e
                if frame is None:
                    break
                yield self.to_rgb(frame)
                n += 1
            if n < self.num_frames:
                raise self._truncated(n)
        finally:
            container.close()

    def _reset_cursor(self) -> None:
        self._frames = self._decode(self._container, self._stream)
        self._pos: int | None = -1  # index of the last frame decoded; None right after a seek until a frame arrives
        self._seeked = False  # a seek happened since the decoder last started from frame 0

    def _restart(self) -> None:
        """Back to frame 0 by reopening: always exact, whatever the container's seeking does."""
        self._frames.close()
        self._container.close()
        self._container, self._stream = self._open()
        self._reset_cursor()

    def _pts_index(self, frame: Any) -> int | None:
        if frame.pts is None or not self._seek_ok:
            return None
        x = (frame.pts - self._start_pts) * self._ticks_num  # frame index times _ticks_den
        i = (2 * x + self._ticks_den) // (2 * self._ticks_den)
        return i if 4 * abs(x - i * self._ticks_den) <= self._ticks_den else None  # within 1/4 frame of an index

    def _next_frame(self, expect: int | None) -> Any:
        """The next decoded frame; sets ``_pos`` to its index. ``expect``: the keyframe index a seek aimed at."""
        av = self._av
        try:
            frame = next(self._frames, None)
        except (av.FFmpegError, OSError) as e:
            if self._seeked:
                raise _SeekMismatch from e  # let sequential decoding say how far the file really decodes
            raise self._truncated(self._pos + 1, str(e)) from e
        if frame is None:
            if self._seeked:
                raise _SeekMismatch
            raise self._truncated(self._pos + 1)
        self.frames_decoded += 1
        at = self._pts_index(frame)
        if self._pos is None:  # first frame after a seek: a keyframe at a plausible index, or frame 0 (a seek to the
            # start decodes exactly what opening does, even when a trimmed file starts mid-GOP)
            if at is None or not (frame.key_frame or at == 0) or (expect is not None and at != expect):
                raise _SeekMismatch
            self._pos = at
        else:
            self._pos += 1
            if self._seek_ok and at != self._pos:
                if self._seeked:
                    raise _SeekMismatch
                self._seek_ok = False  # timestamps do not count frames: never seek in this file
        return frame

    def _seek_plan(self, target: int) -> tuple[bool, int | None]:
        """Whether to seek before decoding up to ``target``, and the keyframe index aimed at (None: unknown)."""
        pos = self._pos
        if not self._seek_ok:
            return False, None
        if self._keyframes is not None:
            k = self._keyframes[bisect.bisect_right(self._keyframes, target) - 1]
            if target <= pos:
                return True, k
            if self._seek_gap is None:
                return k - (pos + 1) >= _MIN_SEEK_SKIP, k
            return target - pos > self._seek_gap and k > pos + 1, k
        gap = self._auto_gap if self._seek_gap is None else self._seek_gap
        return target <= pos or target - pos > gap, None

    def _seek(self, target: int, keyframe: int | None) -> None:
        self._frames.close()
        # Half a frame past the frame's pts (robust to pts rounded to coarse time bases, e.g. MKV's ms); backward=True
        # lands on the keyframe at or before it.
        at = Fraction(target if keyframe is None else keyframe) + Fraction(1, 2)
        ts = self._start_pts + int(at / (self._time_base * self._rate))
        try:
            self._container.seek(ts, backward=True, any_frame=False, stream=self._stream)
        except (self._av.FFmpegError, OSError) as e:
            raise _SeekMismatch from e
        self._frames = self._decode(self._container, self._stream)
        self._pos = None
        self._seeked = True

    def _read_sorted(self, wanted: list[int], convert: Callable[[Any], Any]) -> dict[int, Any]:
        out: dict[int, Any] = {}
        for t in wanted:
            seek, keyframe = self._seek_plan(t)
            if seek:
                self._seek(t, keyframe)
            elif t <= self._pos:
                self._restart()
            frame = None
            expect = keyframe if seek else None
            while self._pos is None or self._pos < t:
                frame = self._next_frame(expect)
                if self._pos > t:  # a seek landed past the target
                    raise _SeekMismatch
            out[t] = convert(frame)
        return out

    def read_indices(self, indices: Sequence[int]) -> np.ndarray:
        """Decode up to the last index asked for, converting only the frames asked for; seek over whole GOPs.

        Bit-identical to the same frames of sequential decoding: if a seek lands anywhere the timestamps do not
        predict, the request is redone sequentially and this file is never seeked again.
        """
        idx, frames = self._read(indices, self.to_rgb)
        return _gather(idx, frames, self.source)

    def read_model_frames(self, indices: Sequence[int]) -> list[np.ndarray | CameraFrame]:
        """The frames at ``indices`` (as :meth:`read_indices` reads them) as :meth:`model_frame` gives them, in the
        order asked for: ``VideoClassifier`` reads a file's sampled frames so, and with the ``"camera"`` conversion
        preprocesses their planes with the fused crop instead of converting whole frames. Same pixels."""
        idx, frames = self._read(indices, self.model_frame)
        return [frames[i] for i in idx]

    def _read(self, indices: Sequence[int], convert: Callable[[Any], Any]) -> tuple[list[int], dict[int, Any]]:
        idx = self._check_indices(indices)
        wanted = sorted(set(idx))
        if self._container is None:
            raise ConfigError(f"{self.source}: read_indices after close()")
        if self._pos is None:  # a previous call was interrupted right after a seek
            self._restart()
        try:
            frames = self._read_sorted(wanted, convert)
        except _SeekMismatch:
            self._seek_ok = False
            self._restart()
            frames = self._read_sorted(wanted, convert)
        return idx, frames

    def to_rgb(self, frame: Any) -> np.ndarray:
        """A decoded PyAV frame as the ``(H, W, 3)`` uint8 RGB frame this file yields, upright."""
        if self.conversion == "camera":
            return camera_frame(frame, self._autorotate).to_rgb()
        return _to_rgb(frame, self._autorotate)

    def model_frame(self, frame: Any) -> np.ndarray | CameraFrame:
        """A decoded PyAV frame as a classifier should take it: its planes as a :class:`sdk.CameraFrame` with the
        ``"camera"`` conversion (the runtimes convert only the crop's pixels), else :meth:`to_rgb`. Same pixels."""
        return camera_frame(frame, self._autorotate) if self.conversion == "camera" else self.to_rgb(frame)

    def close(self) -> None:
        if getattr(self, "_container", None) is not None:
            if hasattr(self, "_frames"):
                self._frames.close()
            self._container.close()
            self._container = None


def _to_rgb(frame: Any, autorotate: bool = True) -> np.ndarray:
    """RGB copy of a decoded frame, upright. One swscale thread: PyAV's default (automatic threads) sets up a thread
    pool per frame and made decoding 2-4x slower at 224p and 720p; the pixels are identical. The copy drops row padding.

    ``autorotate`` applies the display rotation phones record (a portrait video is stored landscape + "rotate 90"),
    as OpenCV does by default, so both decoders give the same upright frames.
    """
    rgb = frame.to_ndarray(format="rgb24", threads=1)
    turns = round(frame.rotation / 90) % 4 if autorotate else 0  # counter-clockwise quarter turns
    return np.ascontiguousarray(np.rot90(rgb, turns) if turns else rgb)


def camera_frame(frame: Any, autorotate: bool = True) -> CameraFrame:
    """A decoded PyAV frame as an :class:`sdk.CameraFrame` with the rotation that makes it upright: its own planes,
    not copied, when the CameraFrame reads them as they are (4:2:0 / NV12 / NV21 of even size with a BT.601 or
    unspecified matrix, RGB / RGBA / BGRA; the range from the frame); any other frame (4:2:2, 10-bit, odd sizes,
    BT.709...) as libswscale's RGB, whose colour conversion the CameraFrame arithmetic would get wrong."""
    turns = round(frame.rotation / 90) % 4 if autorotate else 0  # counter-clockwise, as _to_rgb applies them
    rotation = (-90 * turns) % 360  # CameraFrame's: clockwise
    fmt = _CAMERA_FORMATS.get(frame.format.name)
    if fmt in ("i420", "nv12", "nv21") and (frame.width % 2 or frame.height % 2
                                             or frame.colorspace not in _BT601_COLORSPACES):
        fmt = None
    if fmt is None:
        rgb = frame.to_ndarray(format="rgb24", threads=1)
        return CameraFrame((rgb,), frame.width, frame.height, "rgb", None, rotation)
    full = frame.format.name == "yuvj420p" or frame.color_range == _AVCOL_RANGE_JPEG
    return CameraFrame(tuple(np.frombuffer(p, np.uint8) for p in frame.planes), frame.width, frame.height, fmt,
                       tuple(p.line_size for p in frame.planes), rotation, full)


def probe(path: str | os.PathLike) -> VideoInfo:
    """Header facts of a video file without decoding a frame (frame count by demuxing when the header lacks it)."""
    with VideoFile(path) as v:
        return v.info


# ------------------------------------------------------------------------------------------------- OpenCV streams
class StreamCapture(FrameSource):
    """A camera (index), a network stream (rtsp://, http(s)://...) or any file OpenCV opens, read with OpenCV.

    Live sources (cameras, URLs) have ``num_frames = None``: iterate over them; a read that fails or times out
    raises :class:`DecodeError` (a live source has no normal end: the app should reconnect). Files end quietly at
    their last frame.
    """

    def __init__(self, source: int | str, *, open_timeout_s: float = 10.0, read_timeout_s: float = 10.0):
        self._cv2 = _import_cv2()
        if isinstance(source, bool):
            raise ConfigError(f"source must be a camera index, URL or path, got {source!r}")
        if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
            self._target: int | str = int(source)
            self._live = True
        else:
            self._target = os.fsdecode(os.fspath(source))
            is_url = bool(_URL_RE.match(self._target))
            self._live = is_url and not self._target.startswith("file://")
            if not is_url:
                _check_file(self._target)
        self.source = str(self._target)
        for name, value in (("open_timeout_s", open_timeout_s), ("read_timeout_s", read_timeout_s)):
            if not value > 0:
                raise ConfigError(f"{name} must be > 0 seconds, got {value!r}")
        self._timeouts = (open_timeout_s, read_timeout_s)
        self._cap = self._open()
        cv2 = self._cv2
        count = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.num_frames = int(count) if not self._live and count > 0 else None
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps > 0 else None
        self._read = 0  # frames read from the current capture

    def _open(self) -> Any:
        cv2 = self._cv2
        params: list[int] = []
        props = ("CAP_PROP_OPEN_TIMEOUT_MSEC", "CAP_PROP_READ_TIMEOUT_MSEC")
        for prop, seconds in zip(props, self._timeouts, strict=True):
            if hasattr(cv2, prop):  # OpenCV >= 4.5.2; honoured by the FFmpeg backend (files, network streams)
                params += [getattr(cv2, prop), int(seconds * 1000)]
        try:
            cap = cv2.VideoCapture(self._target, cv2.CAP_ANY, params)
        except cv2.error as e:
            raise DecodeError(self.source, f"OpenCV cannot open it ({e})") from e
        if not cap.isOpened():
            cap.release()
            what = "no such camera, or it is busy / not permitted" if isinstance(self._target, int) else (
                "OpenCV cannot open it (unreachable, unsupported or not a video)")
            raise DecodeError(self.source, what)
        return cap

    def _grab(self, retrieve: bool) -> np.ndarray | None:
        """Next frame (RGB) or None at the end; ``retrieve=False`` decodes without converting."""
        cv2 = self._cv2
        try:
            ok = self._cap.grab()
            bgr = self._cap.retrieve()[1] if ok and retrieve else None
        except cv2.error as e:
            raise DecodeError(self.source, f"reading frame {self._read} failed ({e})") from e
        if not ok or (retrieve and bgr is None):
            if self._live:
                raise DecodeError(
                    self.source,
                    f"no frame within {self._timeouts[1]} s after {self._read} frames (disconnected or stalled)",
                )
            return None
        self._read += 1
        if not retrieve:
            return None
        if bgr.ndim != 3 or bgr.shape[2] != 3:
            raise FrameError(f"{self.source}: frame {self._read - 1} has shape {bgr.shape}, expected (H, W, 3)")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _rewind(self) -> None:
        """Files restart from frame 0 by reopening (OpenCV's frame seeking is approximate for some codecs)."""
        if not self._live and self._read:
            self._cap.release()
            self._cap = self._open()
            self._read = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        self._rewind()
        while (frame := self._grab(retrieve=True)) is not None:
            yield frame
        if self._read == 0:
            raise DecodeError(self.source, "no frame could be decoded")

    def read_indices(self, indices: Sequence[int]) -> np.ndarray:
        """Files only: sequential decode up to the last index, converting only the frames asked for."""
        idx = self._check_indices(indices)
        wanted = set(idx)
        self._rewind()
        frames: dict[int, np.ndarray] = {}
        last = max(wanted)
        while self._read <= last:
            i = self._read
            frame = self._grab(retrieve=i in wanted)
            if i == self._read:  # nothing was read: the file ended early
                raise TruncatedVideoError(self.source, f"truncated: decoded {i} of {self.num_frames} frames",
                                          decoded=i, expected=self.num_frames)
            if frame is not None:
                frames[i] = frame
        return _gather(idx, frames, self.source)

    def close(self) -> None:
        if getattr(self, "_cap", None) is not None:
            self._cap.release()
            self._cap = None


# --------------------------------------------------------------------------------------------------- image folders
def _natural_key(name: str) -> tuple:
    """``img_2.jpg`` before ``img_10.jpg``: digit runs compare as numbers."""
    return tuple(int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)), name


class FrameFolder(FrameSource):
    """A folder of extracted frames (jpg/png/bmp), as TSN / bLVNet-style datasets store videos.

    ``template`` (e.g. ``"img_{:05d}.jpg"``) names frame i (0-based) as ``template.format(i + 1)``, the 1-based
    convention of those datasets; frames count up from 1 until the first missing file. Without a template every
    image file is a frame, in natural order of names.
    """

    def __init__(self, path: str | os.PathLike, *, template: str | None = None, fps: float | None = None):
        self.source = os.fsdecode(os.fspath(path))
        self._cv2 = _import_cv2()
        self.fps = fps
        if not os.path.isdir(self.source):
            raise DecodeError(self.source, "no such folder" if not os.path.exists(self.source) else "not a folder")
        try:
            names = set(os.listdir(self.source))
        except OSError as e:
            raise DecodeError(self.source, f"cannot list the folder ({e})") from e
        if template is not None:
            try:
                first = template.format(1)
            except (IndexError, KeyError, ValueError) as e:
                raise ConfigError(f"template must format one integer, like 'img_{{:05d}}.jpg'; got {template!r}") from e
            if template.format(2) == first:
                raise ConfigError(f"template must contain a number field like {{:05d}}; got {template!r}")
            files = []
            name = first
            while name in names:
                files.append(name)
                name = template.format(len(files) + 1)
            if not files:
                raise DecodeError(self.source, f"no frame named {first!r} (template {template!r})")
        else:
            files = sorted((n for n in names if n.lower().endswith(IMAGE_EXTENSIONS)), key=_natural_key)
            if not files:
                raise DecodeError(self.source, f"no image files ({', '.join(IMAGE_EXTENSIONS)})")
        self._files = [os.path.join(self.source, n) for n in files]
        self.num_frames = len(self._files)

    def _load(self, i: int) -> np.ndarray:
        cv2 = self._cv2
        path = self._files[i]
        try:
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        except cv2.error as e:
            raise DecodeError(self.source, f"frame {i} ({os.path.basename(path)}): {e}") from e
        if bgr is None:
            raise DecodeError(self.source, f"frame {i} ({os.path.basename(path)}) is unreadable or not an image")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(self.num_frames):
            yield self._load(i)

    def read_indices(self, indices: Sequence[int]) -> np.ndarray:
        idx = self._check_indices(indices)
        return _gather(idx, {i: self._load(i) for i in set(idx)}, self.source)

    def close(self) -> None:
        """Nothing is held open between reads."""


def open_source(source: int | str | os.PathLike, *, file_conversion: str | None = None, **kw: Any) -> FrameSource:
    """Camera index / digit string / URL -> StreamCapture, folder -> FrameFolder, anything else -> VideoFile.

    ``kw`` goes to the chosen class (``threads=`` for files, ``template=`` for folders, timeouts for streams).
    ``file_conversion`` is the ``conversion`` of a video file and ignored for the other sources (cameras and URLs are
    OpenCV's RGB, folders images): what a classifier passes from its bundle's ``Preprocess.conversion``.
    """
    if isinstance(source, int) and not isinstance(source, bool):
        return StreamCapture(source, **kw)
    if isinstance(source, str) and (source.isdigit() or _URL_RE.match(source)):
        return StreamCapture(source, **kw)
    text = os.fsdecode(os.fspath(source))
    if os.path.isdir(text):
        return FrameFolder(text, **kw)
    if file_conversion is not None:
        kw.setdefault("conversion", file_conversion)
    return VideoFile(text, **kw)
