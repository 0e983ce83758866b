"""The native C++ core (``sdk/native``: C++17 on ExecuTorch's C++ runtime) from Python: build it, and drive it
through its C API with ``ctypes``.

The core is what phones embed (JNI, Swift); this module exists so that the same core can be tested against the
Python sdk on this machine and used by the Jetson app without the Python ExecuTorch bindings (which import torch).
Importing it needs numpy only; :func:`build` needs CMake >= 3.19, a C++17 compiler and the ``executorch`` wheel
(its headers, shared libraries and CMake package -- found without importing it).

:class:`NativeStreamClassifier` mirrors :class:`sdk.StreamClassifier` (same windows, kept frames, state, FASTER
schedule and adaptive gate, smoothing; it returns :class:`sdk.classifier.Prediction`), with one difference in what a frame is: the
native core does not resize. A kept frame's shorter side must already be the bundle's ``preprocess.resize`` (or
``size`` when there is none; :attr:`NativeStreamClassifier.short_side`); the core centre-crops it exactly as
``sdk.preprocess`` does. On those frames ``sdk.StreamClassifier`` does not resize either, so both see the same
pixels. A frame of any other size is an error event, like any bad frame.
"""
from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import math
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Self

import numpy as np

from sdk.backends import quiet_native_logs
from sdk.errors import BackendUnavailableError, BundleError, ConfigError, FrameError, SdkError
from sdk.files import atomic_dir

__all__ = ["PIXEL_FORMATS", "SOURCE_DIR", "NativeError", "NativeStreamClassifier", "build", "cached_build",
           "default_window", "executorch_prefix", "image_to_input", "image_to_values", "load_library",
           "source_hash"]

SOURCE_DIR = Path(__file__).resolve().parent
_SOURCES = ("CMakeLists.txt", "include", "src", "tools")

# ev_status codes (include/edgevideo.h)
EV_OK, EV_ERR_INVALID_ARGUMENT, EV_ERR_IO, EV_ERR_BAD_BUNDLE, EV_ERR_HASH_MISMATCH = 0, 1, 2, 3, 4
EV_ERR_UNSUPPORTED, EV_ERR_BAD_FRAME, EV_ERR_RUNTIME, EV_ERR_GOLDEN_MISMATCH, EV_ERR_INTERNAL = 5, 6, 7, 8, 9
C_ROLES = ("model", "expensive", "cheap")  # the C API's role field: 0, 1, 2 (include/edgevideo.h)


class NativeError(SdkError):
    """A failure the native core reported: ``status`` is its ev_status code, ``status_name`` e.g. EV_ERR_IO."""

    def __init__(self, status: int, status_name: str, message: str):
        super().__init__(f"{status_name}: {message}")
        self.status, self.status_name = status, status_name


def _typed(status: int, name: str, message: str) -> SdkError:
    """The sdk error type for an ev_status (also a :class:`NativeError` carrying the code)."""
    base = {EV_ERR_IO: BundleError, EV_ERR_BAD_BUNDLE: BundleError, EV_ERR_HASH_MISMATCH: BundleError,
            EV_ERR_GOLDEN_MISMATCH: BundleError, EV_ERR_UNSUPPORTED: BackendUnavailableError,
            EV_ERR_BAD_FRAME: FrameError, EV_ERR_INVALID_ARGUMENT: ConfigError}.get(status)
    if base is None:
        return NativeError(status, name, message)
    cls = type(f"Native{base.__name__}", (NativeError, base), {})
    return cls(status, name, message)


# ------------------------------------------------------------------------------------------------------------ build
def executorch_prefix() -> Path:
    """The installed executorch wheel's directory (``include/``, ``lib/``, ``share/cmake``), found without importing
    it (the Python package imports torch)."""
    spec = importlib.util.find_spec("executorch")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailableError("the native core builds against the executorch wheel's C++ runtime: pip "
                                      "install --no-deps executorch==1.5.1 (its headers and libraries; without "
                                      "--no-deps pip also installs torch), or scripts/device_install.sh VENV "
                                      "--native")
    root = Path(next(iter(spec.submodule_search_locations)))
    if not (root / "share" / "cmake" / "executorch-config.cmake").is_file():
        raise BackendUnavailableError(f"{root} has no share/cmake/executorch-config.cmake: an executorch wheel "
                                      "without its C++ package")
    return root


def source_hash(asan: bool = False, executorch: Path | None = None, toolchain: Path | None = None) -> str:
    """sha256 over the native sources, build flags, the executorch package used and the CMake toolchain file of a
    cross build: the key of a cached build."""
    h = hashlib.sha256(f"asan={asan}\n".encode())
    for name in _SOURCES:
        p = SOURCE_DIR / name
        if not p.exists():
            raise BackendUnavailableError(f"the native core's sources are not installed ({p} is missing): install "
                                          "edgevideo from a checkout, or from a wheel built with sdk/native's "
                                          "package data")
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            h.update(f.relative_to(SOURCE_DIR).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    if toolchain is not None:
        h.update(b"toolchain\0" + Path(toolchain).read_bytes() + b"\0")
    h.update(str(executorch or executorch_prefix()).encode())
    return h.hexdigest()[:16]


def build(cache_dir: str | Path | None = None, *, asan: bool = False, jobs: int = 2, verbose: bool = False,
          executorch: str | Path | None = None, toolchain: str | Path | None = None) -> Path:
    """Configure and build the core (Release; ``asan``: AddressSanitizer + UBSan) into
    ``cache_dir/<source hash>`` unless that build exists; returns the directory holding ``libedgevideo.so`` and
    ``edgevideo_cli``. Default ``cache_dir``: ``$EDGEVIDEO_NATIVE_CACHE`` or ``~/.cache/edgevideo/native``.

    A cross build names the CMake ``toolchain`` file (``sdk/native/cmake/aarch64-linux-gnu.cmake``) and the
    ``executorch`` package root of the target's wheel, unpacked (``include/``, ``lib/``, ``share/cmake``);
    by default the installed wheel's (:func:`executorch_prefix`). ``scripts/arm64_check.sh`` does both."""
    cmake = shutil.which("cmake")
    if cmake is None:
        raise BackendUnavailableError("building the native core needs cmake >= 3.19 (apt install cmake, or pip "
                                      "install cmake)")
    prefix = Path(executorch).resolve() if executorch is not None else executorch_prefix()
    if not (prefix / "share" / "cmake" / "executorch-config.cmake").is_file():
        raise BackendUnavailableError(f"{prefix} has no share/cmake/executorch-config.cmake: not an executorch "
                                      "package root")
    toolchain = Path(toolchain).resolve() if toolchain is not None else None
    out = _build_dir(cache_dir, asan, prefix, toolchain)
    if _complete(out):
        return out
    with atomic_dir(out, replace=False) as work:  # a build that finished first (another process) is kept
        # executorch_DIR, not a prefix path: a cross toolchain confines package searches to the target's sysroot
        configure = [cmake, "-S", str(SOURCE_DIR), "-B", str(work),
                     f"-Dexecutorch_DIR={prefix / 'share' / 'cmake'}",
                     "-DCMAKE_BUILD_TYPE=" + ("RelWithDebInfo" if asan else "Release"),
                     f"-DEV_ASAN={'ON' if asan else 'OFF'}"]
        if toolchain is not None:
            configure.append(f"-DCMAKE_TOOLCHAIN_FILE={toolchain}")
        if shutil.which("ninja"):
            configure += ["-G", "Ninja"]
        for cmd in (configure, [cmake, "--build", str(work), "-j", str(jobs)]):
            proc = subprocess.run(cmd, check=False, capture_output=not verbose, text=True)
            if proc.returncode != 0:
                raise BackendUnavailableError(f"building the native core failed ({' '.join(cmd[:2])} ...):\n"
                                              f"{(proc.stdout or '')[-3000:]}{(proc.stderr or '')[-3000:]}")
        (work / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
    return out


def cached_build(cache_dir: str | Path | None = None) -> Path | None:
    """The directory of a finished :func:`build` of the current sources for this host (default options), or None
    when there is none yet -- found without building anything, in milliseconds (what ``python -m sdk classify``
    checks to run a ``.pte`` bundle on the core instead of importing torch)."""
    try:
        out = _build_dir(cache_dir, False, executorch_prefix(), None)
    except BackendUnavailableError:  # no executorch wheel, or the sources are not installed
        return None
    return out if _complete(out) else None


def _build_dir(cache_dir: str | Path | None, asan: bool, prefix: Path, toolchain: Path | None) -> Path:
    cache = Path(cache_dir or os.environ.get("EDGEVIDEO_NATIVE_CACHE") or Path.home() / ".cache/edgevideo/native")
    target = f"{toolchain.stem}-" if toolchain is not None else ""
    return cache / f"{'asan-' if asan else ''}{target}{source_hash(asan, prefix, toolchain)}"


def _complete(out: Path) -> bool:
    return (out / "libedgevideo.so").is_file() and (out / "edgevideo_cli").is_file() and (out / ".complete").is_file()


# ---------------------------------------------------------------------------------------------------------- binding
class _Options(ctypes.Structure):
    _fields_ = [("precision", ctypes.c_char_p), ("window", ctypes.c_int32), ("ema", ctypes.c_double),
                ("hysteresis", ctypes.c_double), ("smoothing", ctypes.c_int32), ("verify_golden", ctypes.c_int32),
                ("source_fps", ctypes.c_double)]


class _Image(ctypes.Structure):
    _fields_ = [("planes", ctypes.c_void_p * 3), ("strides", ctypes.c_int32 * 3), ("width", ctypes.c_int32),
                ("height", ctypes.c_int32), ("format", ctypes.c_int32), ("rotation", ctypes.c_int32),
                ("full_range", ctypes.c_int32)]


PIXEL_FORMATS = ("rgb", "rgba", "bgra", "nv12", "nv21", "i420")  # ev_pixel_format's order (include/edgevideo.h)


def _image(frame: Any) -> _Image:
    """The C API's ev_image of a :class:`sdk.camera.CameraFrame` (pointers into its planes: keep it alive)."""
    im = _Image()
    for k, (plane, stride) in enumerate(zip(frame.planes, frame.strides)):
        im.planes[k], im.strides[k] = plane.ctypes.data, stride
    im.width, im.height, im.format = frame.width, frame.height, PIXEL_FORMATS.index(frame.format)
    im.rotation, im.full_range = frame.rotation, int(bool(frame.full_range))
    return im


def image_to_input(lib: ctypes.CDLL, frame: Any, short_side: int, size: int, out: np.ndarray | None = None
                   ) -> np.ndarray:
    """The ``(size, size, 3)`` uint8 crop the core feeds a role of ``short_side`` for a camera frame
    (``ev_image_to_input``), written into ``out`` when given: what tests compare with ``sdk.preprocess`` on
    ``frame.to_rgb()``."""
    if out is None:
        out = np.empty((size, size, 3), np.uint8)
    elif out.shape != (size, size, 3) or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous ({size}, {size}, 3) uint8 array, got {out.shape} {out.dtype}")
    im = _image(frame)
    _check(lib, lib.ev_image_to_input(ctypes.byref(im), short_side, size, out.ctypes.data))
    return out


LAYOUTS = ("TCHW", "THWC")  # ev_layout's order: planar CHW 0, packed HWC 1


def image_to_values(lib: ctypes.CDLL, frame: Any, short_side: int, size: int, mul: np.ndarray, add: np.ndarray,
                    layout: str = "TCHW", out: np.ndarray | None = None) -> np.ndarray:
    """The same crop as the program's float32 input (``ev_image_to_values``): per channel ``v * mul + add`` in
    float32, ``(3, size, size)`` for ``layout`` TCHW or ``(size, size, 3)`` for THWC, written into ``out`` (a
    C-contiguous float32 array of that shape) when given."""
    shape = (3, size, size) if layout == "TCHW" else (size, size, 3)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if out is None:
        out = np.empty(shape, np.float32)
    elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"out must be a writeable C-contiguous {shape} float32 array, got {out.shape} {out.dtype}")
    mul, add = np.ascontiguousarray(mul, np.float32), np.ascontiguousarray(add, np.float32)
    if mul.shape != (3,) or add.shape != (3,):
        raise ValueError(f"mul and add are 3 values each, got shapes {mul.shape} and {add.shape}")
    im = _image(frame)
    _check(lib, lib.ev_image_to_values(ctypes.byref(im), short_side, size, mul.ctypes.data, add.ctypes.data,
                                       LAYOUTS.index(layout), out.ctypes.data))
    return out


class _Request(ctypes.Structure):
    _fields_ = [("copies", ctypes.c_int32), ("size", ctypes.c_int32), ("short_side", ctypes.c_int32),
                ("window", ctypes.c_int32), ("role", ctypes.c_int32)]


class _Prediction(ctypes.Structure):
    _fields_ = [("ready", ctypes.c_int32), ("top1", ctypes.c_int32), ("score", ctypes.c_float),
                ("window", ctypes.c_int32), ("role", ctypes.c_int32), ("frame_index", ctypes.c_int64),
                ("timestamp", ctypes.c_double)]


_LIBS: dict[str, ctypes.CDLL] = {}


def load_library(path: str | Path) -> ctypes.CDLL:
    """``libedgevideo.so`` (or the directory :func:`build` returned) with its C API's signatures declared."""
    path = Path(path)
    if path.is_dir():
        path = path / "libedgevideo.so"
    key = str(path.resolve())
    if key in _LIBS:
        return _LIBS[key]
    try:
        lib = ctypes.CDLL(key)
    except OSError as e:
        raise BackendUnavailableError(f"cannot load the native core {path}: {e}") from e
    P, S = ctypes.c_void_p, ctypes.c_int
    sig = {
        "ev_options_default": (None, [ctypes.POINTER(_Options)]),
        "ev_create": (S, [ctypes.c_char_p, ctypes.POINTER(_Options), ctypes.POINTER(P)]),
        "ev_push_frame": (S, [P, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int32, ctypes.c_int32, ctypes.c_double,
                              ctypes.POINTER(_Prediction)]),
        "ev_push_image": (S, [P, ctypes.POINTER(_Image), ctypes.c_double, ctypes.POINTER(_Prediction)]),
        "ev_image_to_input": (S, [ctypes.POINTER(_Image), ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p]),
        "ev_image_to_values": (S, [ctypes.POINTER(_Image), ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p,
                                   ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p]),
        "ev_next_frame": (S, [P, ctypes.POINTER(_Request)]),
        "ev_reset": (S, [P]),
        "ev_destroy": (None, [P]),
        "ev_last_logits": (S, [P, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t]),
        "ev_last_probabilities": (S, [P, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t]),
        "ev_num_classes": (ctypes.c_int32, [P]),
        "ev_label": (ctypes.c_char_p, [P, ctypes.c_int32]),
        "ev_bundle_kind": (ctypes.c_char_p, [P]),
        "ev_precision": (ctypes.c_char_p, [P]),
        "ev_window": (ctypes.c_int32, [P]),
        "ev_set_gate_threshold": (S, [P, ctypes.c_double]),
        "ev_segment_counts": (S, [P, ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_int64)]),
        "ev_self_check": (S, [P, ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_int32)]),
        "ev_last_error": (ctypes.c_char_p, []),
        "ev_status_name": (ctypes.c_char_p, [S]),
        "ev_sha256_path": (S, [ctypes.c_char_p, ctypes.c_char_p]),
        "ev_sampler_copies": (S, [ctypes.c_char_p, ctypes.c_int32, ctypes.POINTER(ctypes.c_int32)]),
        "ev_default_window": (S, [ctypes.c_char_p, ctypes.c_double, ctypes.POINTER(ctypes.c_int32)]),
    }
    for name, (res, args) in sig.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    _LIBS[key] = lib
    return lib


def _check(lib: ctypes.CDLL, status: int) -> None:
    if status != EV_OK:
        raise _typed(status, lib.ev_status_name(status).decode(), lib.ev_last_error().decode(errors="replace"))


def sha256_path(lib: ctypes.CDLL, path: str | Path) -> str:
    """The native sha256 of a file or directory (as ``sdk.files.sha256_of``)."""
    out = ctypes.create_string_buffer(65)
    _check(lib, lib.ev_sha256_path(os.fsencode(path), out))
    return out.value.decode()


def sampler_copies(lib: ctypes.CDLL, sampler: dict[str, Any], window: int) -> np.ndarray:
    """The native StreamingSampler's copies per window position for a manifest sampler object."""
    import json

    out = (ctypes.c_int32 * window)()
    _check(lib, lib.ev_sampler_copies(json.dumps(sampler).encode(), window, out))
    return np.frombuffer(out, np.int32).astype(np.int64)


def default_window(lib: ctypes.CDLL, manifest: dict[str, Any], fps: float | None) -> int:
    """The core's default window (``ev_default_window``) for a manifest object and a source frame rate (None:
    unknown): :func:`sdk.classifier.default_window`'s rule, written again in C++."""
    import json

    out = ctypes.c_int32()
    _check(lib, lib.ev_default_window(json.dumps(manifest).encode(), 0.0 if fps is None else fps, ctypes.byref(out)))
    return out.value


class NativeStreamClassifier:
    """:class:`sdk.StreamClassifier` on the native core (see the module docstring for the frame contract).

    Args:
        bundle: a ``.vbundle`` directory (the core does not read zips).
        library: ``libedgevideo.so`` or its build directory (default: :func:`build`).
        window, smoothing: as ``sdk.StreamClassifier`` (``smoothing`` an :class:`sdk.Smoothing` or None).
        fps: the source's frame rate (None: unknown): the core's default window spans the bundle's training clip
            at that rate (``ev_options.source_fps``).
        precision: ``fp32`` / ``int8`` / ``fp16``; None = int8 first, as ``sdk.load``.
        verify: run the golden self-check when opening (BundleError on a mismatch).
        top_k: classes per prediction.
        gate_threshold: adaptive FASTER bundles: the gate's threshold (``ev_set_gate_threshold``; None: the
            bundle's, ``inf``: never the expensive model, ``-inf``: always); a ConfigError for other bundles.
    """

    def __init__(self, bundle: str | Path, *, library: str | Path | None = None, window: int | None = None,
                 fps: float | None = None, smoothing: Any = None, precision: str | None = None, verify: bool = False,
                 top_k: int = 5, gate_threshold: float | None = None):
        number = isinstance(gate_threshold, (int, float)) and not isinstance(gate_threshold, bool)
        if gate_threshold is not None and (not number or math.isnan(gate_threshold)):
            raise ConfigError(f"gate_threshold must be a number (inf: never run the expensive model, -inf: always), "
                              f"got {gate_threshold!r}")
        self._lib = lib = load_library(library if library is not None else build())
        opts = _Options()
        lib.ev_options_default(ctypes.byref(opts))
        if window is not None:
            if isinstance(window, bool) or not isinstance(window, int) or window < 1:
                raise ConfigError(f"window must be a positive number of frames, got {window!r}")
            opts.window = window
        if fps is not None:
            if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps < 0:
                raise ConfigError(f"fps must be a frame rate >= 0 (0 or None: unknown), got {fps!r}")
            opts.source_fps = fps
        if smoothing is not None:
            opts.smoothing, opts.ema, opts.hysteresis = 1, float(smoothing.ema), float(smoothing.hysteresis)
        self._precision = None if precision is None else precision.encode()
        opts.precision = self._precision
        opts.verify_golden = int(bool(verify))
        handle = ctypes.c_void_p()
        with quiet_native_logs():  # ExecuTorch's CPU probing, as in the Python runner
            status = lib.ev_create(os.fsencode(str(bundle)), ctypes.byref(opts), ctypes.byref(handle))
        _check(lib, status)
        self._h = handle
        if gate_threshold is not None:
            _check(lib, lib.ev_set_gate_threshold(handle, float(gate_threshold)))
        self.kind = lib.ev_bundle_kind(handle).decode()
        self.precision = lib.ev_precision(handle).decode()
        self.window = int(lib.ev_window(handle))
        self.labels = tuple(lib.ev_label(handle, i).decode() for i in range(lib.ev_num_classes(handle)))
        self.top_k = min(top_k, len(self.labels))
        self._k = len(self.labels)

    # ---- the stream ------------------------------------------------------------------------------------------
    def next_frame(self) -> dict[str, int | str]:
        """What the next frame must be: ``copies`` (0 = dropped, pass None), ``size``, ``short_side``, ``window``,
        ``role``."""
        r = _Request()
        _check(self._lib, self._lib.ev_next_frame(self._handle(), ctypes.byref(r)))
        return {"copies": r.copies, "size": r.size, "short_side": r.short_side, "window": r.window,
                "role": C_ROLES[r.role]}

    def wants_next(self) -> bool:
        return bool(self.next_frame()["copies"])

    @property
    def short_side(self) -> int:
        return int(self.next_frame()["short_side"])

    def push(self, frame: Any, timestamp: float | None = None):
        """Offer the next frame -- ``(H, W, 3)`` uint8 RGB at :attr:`short_side`, a :class:`sdk.camera.CameraFrame`
        of any size (converted, rotated, resized and cropped by the core: ``ev_push_image``), or None for a frame
        the sampler drops: an ``sdk.Prediction`` at a window end, an error event (``Prediction.error``) for a bad
        frame, else None."""
        from sdk.camera import CameraFrame
        from sdk.classifier import Prediction

        lib, h = self._lib, self._handle()
        data, length, width, height = None, 0, 0, 0
        p = _Prediction()
        ts = math.nan if timestamp is None else float(timestamp)
        if isinstance(frame, CameraFrame):
            im = _image(frame)
            return self._result(lib.ev_push_image(h, ctypes.byref(im), ts, ctypes.byref(p)), p, timestamp)
        if frame is not None:
            a = np.asarray(frame)
            if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
                return Prediction(error=FrameError(f"a native frame is (H, W, 3) uint8 RGB, got {a.dtype} {a.shape}"))
            a = np.ascontiguousarray(a)
            data, length, height, width = a.ctypes.data, a.nbytes, a.shape[0], a.shape[1]
        return self._result(lib.ev_push_frame(h, data, length, width, height, ts, ctypes.byref(p)), p, timestamp)

    def _result(self, status: int, p: _Prediction, timestamp: float | None):
        """The Prediction (or error event, or None) of a push that returned ``status`` and filled ``p``."""
        from sdk.classifier import Prediction

        lib, h = self._lib, self._handle()
        if status != EV_OK:
            err = _typed(status, lib.ev_status_name(status).decode(), lib.ev_last_error().decode(errors="replace"))
            if status != EV_ERR_BAD_FRAME:
                raise err
            return Prediction(error=err, timestamp=timestamp)
        if not p.ready:
            return None
        logits = np.zeros(self._k, np.float32)
        probs = np.zeros(self._k, np.float32)
        _check(lib, lib.ev_last_logits(h, logits.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), self._k))
        _check(lib, lib.ev_last_probabilities(h, probs.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), self._k))
        rest = [int(i) for i in np.argsort(-probs, kind="stable") if i != p.top1]
        order = [int(p.top1), *rest][: self.top_k]
        return Prediction(labels=tuple(self.labels[i] for i in order), scores=tuple(float(probs[i]) for i in order),
                          class_ids=tuple(order), logits=logits, probabilities=probs,
                          timestamp=None if math.isnan(p.timestamp) else p.timestamp, frame_index=int(p.frame_index),
                          window=int(p.window), role=C_ROLES[p.role])

    def reset(self) -> None:
        _check(self._lib, self._lib.ev_reset(self._handle()))

    def segment_counts(self) -> tuple[int, int]:
        """FASTER segments classified since opening (resets keep counting) and how many the expensive model saw."""
        segments, expensive = ctypes.c_int64(), ctypes.c_int64()
        _check(self._lib, self._lib.ev_segment_counts(self._handle(), ctypes.byref(segments), ctypes.byref(expensive)))
        return segments.value, expensive.value

    def self_check(self) -> tuple[float, int]:
        """Golden self-check: ``(max abs diff, program outputs compared)``; BundleError beyond the tolerance."""
        diff, n = ctypes.c_double(), ctypes.c_int32()
        _check(self._lib, self._lib.ev_self_check(self._handle(), ctypes.byref(diff), ctypes.byref(n)))
        return diff.value, n.value

    # ---- lifetime --------------------------------------------------------------------------------------------
    def _handle(self) -> ctypes.c_void_p:
        if self._h is None:
            raise ConfigError("this NativeStreamClassifier is closed")
        return self._h

    def close(self) -> None:
        if getattr(self, "_h", None) is not None:
            self._lib.ev_destroy(self._h)
            self._h = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
