"""The one preprocessing spec: what turns decoded RGB frames into model input, in training and on the device.

:class:`Preprocess` is a small frozen, JSON-serialisable object that the bundle manifest carries. The operations are
defined precisely so that a device integration can reproduce them without Python:

1. resize so that the shorter side is ``resize`` pixels (aspect ratio kept; bilinear or area interpolation with
   OpenCV semantics: pixel centres at +0.5);
2. crop a ``size`` x ``size`` square: centred for evaluation (offset ``floor((side - size) / 2)``; offline evaluation
   may also take TSN's three crops, :meth:`Preprocess.crops`: offsets ``0``, the centre and ``side - size`` along the
   longer side, the width for square frames), or -- training only -- TSN's multi-scale crop
   (:meth:`Preprocess.train`): a random crop whose sides are ``base * scale`` for scales in ``train_scales`` (aspect
   distortion limited by ``max_distort``), at one of five fixed positions (corners, centre), resized to ``size`` x
   ``size``;
3. ``value * scale`` then per-channel ``(value - mean) / std`` in float32, RGB order;
4. layout ``TCHW`` or ``THWC`` for a clip (``CHW`` / ``HWC`` per frame).

``conversion`` records how the model's training read video files (:data:`sdk.video.CONVERSIONS`): ``"swscale"``
(libswscale's RGB of the whole frame, then the steps above) or ``"camera"`` (the decoded planes through the camera
path's BT.601 fixed-point conversion, :mod:`sdk.camera`: the pixels a device's camera frames give). The runtime reads a
video file with the same one unless told otherwise, so a model trained with ``"camera"`` sees, from files and on the
device alike, the pixels it was trained on.

Horizontal flips are not here: they change the label on direction-sensitive classes, so the training data pipeline
applies them together with its label-swap map.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np

from sdk._spec import spec_from_dict
from sdk.errors import BackendUnavailableError, ConfigError, FrameError

__all__ = ["Preprocess", "ValueTable", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LAYOUTS = ("TCHW", "THWC")
CROP_COUNTS = (1, 3)
INTERPOLATIONS = ("bilinear", "area")
CONVERSIONS = ("swscale", "camera")  # how video files' frames become pixels; sdk.video.CONVERSIONS is this tuple


def _cv2():
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - depends on the install
        raise BackendUnavailableError(
            "preprocessing needs OpenCV: pip install 'edgevideo[runtime]' (or opencv-python-headless)"
        ) from e
    return cv2


@dataclass(frozen=True)
class Preprocess:
    """Resize, crop, normalise and lay out frames. See the module docstring for the exact operations.

    Args:
        size: side of the square model input.
        resize: shorter side after resizing, before cropping (e.g. 256 for a 224 crop); None = ``size``.
        mean, std: per-channel normalisation (RGB) applied after ``scale``.
        scale: multiplies the uint8 values first (1/255 maps them to [0, 1]).
        layout: ``TCHW`` (PyTorch) or ``THWC``.
        interpolation: ``bilinear`` or ``area`` (OpenCV INTER_LINEAR / INTER_AREA).
        train_scales, max_distort: TSN multi-scale crop parameters (training only).
        conversion: how video files' decoded frames become RGB pixels (``sdk.video.VideoFile``'s ``conversion``):
            ``swscale`` (libswscale) or ``camera`` (the camera frames' BT.601 fixed-point path, bit-identical to what
            a device's camera frames give). Specs written before the field read as ``swscale``.
    """

    size: int = 224
    resize: int | None = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    scale: float = 1.0 / 255.0
    layout: str = "TCHW"
    interpolation: str = "bilinear"
    train_scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)
    max_distort: int = 1
    conversion: str = "swscale"

    def __post_init__(self) -> None:
        # Normalise lists (from JSON) to tuples so that equality and hashing work after a round trip.
        for name in ("mean", "std", "train_scales"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        if not isinstance(self.size, (int, np.integer)) or self.size < 1:
            raise ConfigError(f"preprocess size must be a positive integer, got {self.size!r}")
        if self.resize is not None and (not isinstance(self.resize, (int, np.integer)) or self.resize < self.size):
            raise ConfigError(f"preprocess resize must be None or an integer >= size={self.size}, got {self.resize!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ConfigError(f"mean and std need 3 values each and std > 0, got mean={self.mean} std={self.std}")
        if self.layout not in LAYOUTS:
            raise ConfigError(f"unknown layout {self.layout!r}; valid: {', '.join(LAYOUTS)}")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(f"unknown interpolation {self.interpolation!r}; valid: {', '.join(INTERPOLATIONS)}")
        if self.conversion not in CONVERSIONS:
            raise ConfigError(f"unknown conversion {self.conversion!r}; valid: {', '.join(CONVERSIONS)}")
        if not self.train_scales or any(not 0 < s <= 1 for s in self.train_scales) or self.max_distort < 0:
            raise ConfigError(f"train_scales must be in (0, 1] and max_distort >= 0, got {self.train_scales}, {self.max_distort}")

    @property
    def resize_to(self) -> int:
        return self.size if self.resize is None else int(self.resize)

    # ------------------------------------------------------------------ evaluation / device path
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """Evaluation transform: ``(T, H, W, 3)`` or ``(H, W, 3)`` uint8 RGB -> float32 in ``layout`` (T kept if given)."""
        clip, single = self._check(frames)
        out = np.stack([self._centre_crop(self.resize_short(f)) for f in clip])
        out = self._normalise(out)
        return out[0] if single else out

    def crops(self, frames: np.ndarray, num_crops: int = 1) -> np.ndarray:
        """Evaluation views ``(num_crops, T, ...)`` in ``layout`` (``(num_crops, ...)`` for one ``(H, W, 3)`` frame).

        One crop is exactly :meth:`__call__`. Three crops (TSN/TSM's offline protocol) see the parts of a wide frame
        that the centre crop cuts off: after the shorter-side resize, ``size`` squares at the start, centre and end
        of the longer side (the width when the frame is square), centred on the shorter one.
        """
        if num_crops not in CROP_COUNTS:
            raise ConfigError(f"num_crops must be one of {', '.join(map(str, CROP_COUNTS))}, got {num_crops!r}")
        clip, single = self._check(frames)
        resized = np.stack([self.resize_short(f) for f in clip])
        h, w = resized.shape[1:3]
        centre = ((h - self.size) // 2, (w - self.size) // 2)
        if num_crops == 1:
            offsets = [centre]
        elif h > w:
            offsets = [(0, centre[1]), centre, (h - self.size, centre[1])]
        else:
            offsets = [(centre[0], 0), centre, (centre[0], w - self.size)]
        out = np.stack([self._normalise(resized[:, y:y + self.size, x:x + self.size]) for y, x in offsets])
        return out[:, 0] if single else out

    # ------------------------------------------------------------------ training path
    def train(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Training transform: one multi-scale crop box drawn from ``rng`` and applied to every frame of the clip."""
        clip, single = self._check(frames)
        resized = [self.resize_short(f) for f in clip]
        y, x, ch, cw = self.train_crop_box(resized[0].shape[0], resized[0].shape[1], rng)
        cv2 = _cv2()
        out = np.stack([cv2.resize(f[y:y + ch, x:x + cw], (self.size, self.size), interpolation=self._cv_interp(cv2))
                        for f in resized])
        out = self._normalise(out)
        return out[0] if single else out

    def train_crop_box(self, height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """TSN multi-scale crop: ``(y, x, crop_h, crop_w)`` inside a ``height`` x ``width`` frame."""
        base = min(height, width)
        sides = [max(1, int(base * s)) for s in self.train_scales]
        pairs = [(h, w) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= self.max_distort]
        ch, cw = pairs[int(rng.integers(len(pairs)))]
        dy, dx = (height - ch) // 4, (width - cw) // 4
        offsets = [(0, 0), (0, 4 * dx), (4 * dy, 0), (4 * dy, 4 * dx), (2 * dy, 2 * dx)]
        y, x = offsets[int(rng.integers(len(offsets)))]
        return y, x, ch, cw

    # ------------------------------------------------------------------ pieces
    def _check(self, frames: np.ndarray) -> tuple[np.ndarray, bool]:
        a = np.asarray(frames)
        single = a.ndim == 3
        clip = a[None] if single else a
        if clip.ndim != 4 or clip.shape[-1] != 3 or clip.shape[0] < 1 or min(clip.shape[1:3]) < 1:
            raise FrameError(f"expected RGB frames shaped (T, H, W, 3) or (H, W, 3), got shape {a.shape}")
        if clip.dtype != np.uint8:
            raise FrameError(f"expected uint8 frames, got dtype {clip.dtype}")
        return clip, single

    def _cv_interp(self, cv2) -> int:
        return cv2.INTER_AREA if self.interpolation == "area" else cv2.INTER_LINEAR

    def resize_short(self, frame: np.ndarray) -> np.ndarray:
        """One ``(H, W, 3)`` frame with its shorter side resized to ``resize_to`` (unchanged if it already is): the
        part of preprocessing a camera pipeline feeding the native core does (the core centre-crops)."""
        h, w = frame.shape[:2]
        short = self.resize_to
        if min(h, w) == short:
            return frame
        if h <= w:
            nh, nw = short, max(short, round(w * short / h))
        else:
            nh, nw = max(short, round(h * short / w)), short
        cv2 = _cv2()
        return cv2.resize(np.ascontiguousarray(frame), (nw, nh), interpolation=self._cv_interp(cv2))

    def _centre_crop(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        y, x = (h - self.size) // 2, (w - self.size) // 2
        return frame[y:y + self.size, x:x + self.size]

    def value_affine(self, *, scale: bool = True, normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """float32 per-channel ``(mul, add)`` such that ``x * mul + add`` is ``x * scale`` then ``(x - mean) / std``
        (each step only when asked): the one definition of the folded value steps, which training's data, the runtime
        and the exported programs all apply, so that they agree to the bit."""
        s = self.scale if scale else 1.0
        if not normalize:
            return np.full(3, s, np.float32), np.zeros(3, np.float32)
        std, mean = np.asarray(self.std, np.float32), np.asarray(self.mean, np.float32)
        return (s / std).astype(np.float32), (-mean / std).astype(np.float32)

    def _normalise(self, clip: np.ndarray) -> np.ndarray:
        """uint8 ``(T, H, W, 3)`` -> float32 in ``layout`` (:meth:`value_affine`, one multiply-add)."""
        mul, add = self.value_affine()
        out = clip.astype(np.float32) * mul + add
        if self.layout == "TCHW":
            out = out.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(out)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for name in ("mean", "std", "train_scales"):
            d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> "Preprocess":
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        return spec_from_dict(cls, spec, "preprocess")


class ValueTable:
    """A uint8 ``(size, size, 3)`` crop -> the program's float32 input in ``layout``: per channel ``v * mul + add``
    (float32, :meth:`Preprocess.value_affine`) through a 256-entry table, bit-exact with the arithmetic and one pass
    over the crop instead of three (0.15 vs 0.54 ms for a 224 px crop). The native core's ``ev_image_to_values``
    computes the same values (tests/test_camera.py)."""

    def __init__(self, mul: np.ndarray, add: np.ndarray, layout: str, size: int):
        mul, add = np.asarray(mul, np.float32), np.asarray(add, np.float32)
        self.table = np.ascontiguousarray((np.arange(256, dtype=np.float32)[:, None] * mul + add).reshape(256, 1, 3))
        self.layout = layout
        self._scratch = np.empty((size, size, 3), np.float32)  # TCHW: the packed values before the transpose

    def __call__(self, crop: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The values of ``crop``, written into ``out`` (the program's layout, float32) when given."""
        cv2 = _cv2()
        if out is None:
            x = cv2.LUT(crop, self.table)
            return np.ascontiguousarray(x.transpose(2, 0, 1) if self.layout == "TCHW" else x)
        if self.layout == "TCHW":
            np.copyto(out, cv2.LUT(crop, self.table, dst=self._scratch).transpose(2, 0, 1))
        else:
            cv2.LUT(crop, self.table, dst=out)
        return out
