"""Camera frames as cameras deliver them: :class:`CameraFrame` (NV12 / NV21 / I420 / RGBA / BGRA / RGB, row strides,
rotation), pushed to :class:`sdk.StreamClassifier` and to the native core (``ev_push_image``) without the app
converting them to RGB first.

:meth:`CameraFrame.to_rgb` is the reference both follow: BT.601 colour conversion in 16.16 fixed point (the
coefficients rounded, the result rounded half up and clipped to [0, 255]; full range: JFIF, what Android cameras and
iOS ``420f`` deliver; video range 16-235: iOS ``420v``), chroma shared by each 2x2 block, then the rotation that makes
the image upright. OpenCV's ``COLOR_YUV2RGB_NV12`` / ``I420`` (video range) agree with it within one step. The Python runtime then
preprocesses the RGB frame as any other (``sdk.preprocess``); the native core does conversion, rotation, resize and
crop in one pass over the crop's pixels only, within one uint8 step of this (tests/test_camera.py).

Formats (``planes`` in order; ``strides``: bytes per row of each plane, None = packed):

==========  ===========================================  ===========================================
format      planes                                       delivered by
==========  ===========================================  ===========================================
``rgb``     one ``(H, W*3)`` plane: R, G, B              decoders, OpenCV after cvtColor
``rgba``    one ``(H, W*4)`` plane: R, G, B, A           Android ``Bitmap`` (ARGB_8888 in memory)
``bgra``    one ``(H, W*4)`` plane: B, G, R, A           iOS ``kCVPixelFormatType_32BGRA``
``nv12``    Y ``(H, W)``, interleaved U, V ``(H/2, W)``  iOS ``420f`` / ``420v``
``nv21``    Y ``(H, W)``, interleaved V, U ``(H/2, W)``  Android ``NV21``; ``YUV_420_888`` with pixel stride 2
``i420``    Y ``(H, W)``, U ``(H/2, W/2)``, V            Android ``YUV_420_888`` with pixel stride 1
==========  ===========================================  ===========================================
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdk.errors import FrameError

__all__ = ["FORMATS", "CameraFrame"]

FORMATS = ("rgb", "rgba", "bgra", "nv12", "nv21", "i420")
# BT.601 YUV -> RGB in 16.16 fixed point: (y scale, y offset, V->R, U->G, V->G, U->B), i.e. round(65536 x) of
# full range R = Y + 1.402 V, G = Y - 0.344136 U - 0.714136 V, B = Y + 1.772 U (U, V centred on 128) and of video
# range (Y - 16) x 1.164383 with 1.596027, 0.391762, 0.812968, 2.017232. The native core uses the same integers.
_BT601_FULL = (65536, 0, 91881, 22554, 46802, 116130)
_BT601_VIDEO = (76309, 16, 104597, 25675, 53279, 132201)
_YUV = ("nv12", "nv21", "i420")


@dataclass(frozen=True)
class CameraFrame:
    """One camera image: ``planes`` (uint8 arrays, 1-D buffers or 2-D ``(rows, bytes)``), ``width`` x ``height``
    as stored, ``format`` (:data:`FORMATS`), ``strides`` (bytes per row of each plane; None = packed),
    ``rotation`` (clockwise degrees that make it upright: 0, 90, 180, 270), ``full_range`` (YUV only)."""

    planes: tuple[np.ndarray, ...]
    width: int
    height: int
    format: str = "nv12"
    strides: tuple[int, ...] | None = None
    rotation: int = 0
    full_range: bool = True

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise FrameError(f"unknown camera format {self.format!r}; valid: {', '.join(FORMATS)}")
        if (isinstance(self.width, bool) or isinstance(self.height, bool) or not isinstance(self.width, int)
                or not isinstance(self.height, int) or self.width < 1 or self.height < 1):
            raise FrameError(f"image size must be positive integers, got {self.width!r}x{self.height!r}")
        if self.format in _YUV and (self.width % 2 or self.height % 2):
            raise FrameError(f"a 4:2:0 image has an even width and height, got {self.width}x{self.height}")
        if self.rotation not in (0, 90, 180, 270):
            raise FrameError(f"rotation must be 0, 90, 180 or 270 degrees, got {self.rotation!r}")
        planes = tuple(np.ascontiguousarray(p).reshape(-1) for p in self.planes)
        if len(planes) != len(self.row_bytes) or any(p.dtype != np.uint8 for p in planes):
            raise FrameError(f"a {self.format} image has {len(self.row_bytes)} uint8 plane(s), got "
                             f"{[getattr(p, 'dtype', type(p)).__str__() for p in self.planes]}")
        strides = self.strides or self.row_bytes
        if len(strides) != len(planes) or any(s < r for s, r in zip(strides, self.row_bytes)):
            raise FrameError(f"strides {self.strides} must give each plane at least its row bytes {self.row_bytes}")
        for k, (p, s, r, rows) in enumerate(zip(planes, strides, self.row_bytes, self.plane_rows)):
            if p.size < s * (rows - 1) + r:
                raise FrameError(f"plane {k} holds {p.size} bytes, a {rows}-row plane of stride {s} needs "
                                 f"{s * (rows - 1) + r}")
        object.__setattr__(self, "planes", planes)
        object.__setattr__(self, "strides", tuple(int(s) for s in strides))

    @property
    def row_bytes(self) -> tuple[int, ...]:
        w = self.width
        return {"rgb": (3 * w,), "rgba": (4 * w,), "bgra": (4 * w,), "nv12": (w, w), "nv21": (w, w),
                "i420": (w, w // 2, w // 2)}[self.format]

    @property
    def plane_rows(self) -> tuple[int, ...]:
        h = self.height
        return (h,) if self.format not in _YUV else (h, h // 2) if self.format != "i420" else (h, h // 2, h // 2)

    def _plane(self, k: int) -> np.ndarray:
        """Plane ``k`` as ``(rows, row bytes)``, strides dropped."""
        rows, stride, used = self.plane_rows[k], self.strides[k], self.row_bytes[k]
        return np.lib.stride_tricks.as_strided(self.planes[k], (rows, used), (stride, 1), writeable=False)

    def to_rgb(self) -> np.ndarray:
        """The upright ``(H, W, 3)`` uint8 RGB image (see the module docstring for the arithmetic)."""
        if self.format in ("rgb", "rgba", "bgra"):
            px = self._plane(0).reshape(self.height, self.width, len(self.format))
            rgb = px[..., [2, 1, 0]] if self.format == "bgra" else px[..., :3]
        else:
            if self.format == "i420":
                u, v = self._plane(1), self._plane(2)
            else:
                c = self._plane(1).reshape(self.height // 2, self.width // 2, 2)
                u, v = (c[..., 0], c[..., 1]) if self.format == "nv12" else (c[..., 1], c[..., 0])
            y_mul, y_off, rv, gu, gv, bu = _BT601_FULL if self.full_range else _BT601_VIDEO
            u, v = u.astype(np.int32) - 128, v.astype(np.int32) - 128
            # the chroma terms at half resolution, then each shared by its 2x2 block (int32 cannot overflow:
            # |terms| < 2^25)
            terms = np.stack([rv * v, -(gu * u) - gv * v, bu * u], axis=-1)
            terms = np.repeat(np.repeat(terms, 2, axis=0), 2, axis=1)
            luma = (self._plane(0).astype(np.int32) - y_off) * y_mul + 32768
            rgb = np.clip((luma[..., None] + terms) >> 16, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.rot90(rgb, k=-(self.rotation // 90)))

    def input_crop(self, short_side: int, size: int, out: np.ndarray | None = None) -> np.ndarray:
        """The ``(size, size, 3)`` uint8 model input crop of this frame: ``sdk.preprocess``'s shorter-side resize to
        ``short_side`` and centre crop of :meth:`to_rgb`'s image. Computed by the native core's one-pass path
        (``ev_image_to_input``, bit-identical on the tested formats, sizes and rotations: tests/test_camera.py)
        when its build is cached (``python -m sdk.native build``), written into ``out`` (a C-contiguous
        ``(size, size, 3)`` uint8 array) when given; else in numpy and OpenCV -- same pixels, slower
        (docs/measurements.md, "Camera frames"), a view of a new array."""
        lib = _native_library()
        if lib is not None:
            from sdk.native import image_to_input

            return image_to_input(lib, self, short_side, size, out)
        from sdk.preprocess import Preprocess

        pre = Preprocess(size=size, resize=short_side)
        return pre._centre_crop(pre.resize_short(self.to_rgb()))

    def input_values(self, short_side: int, size: int, mul: np.ndarray, add: np.ndarray, layout: str = "TCHW",
                     out: np.ndarray | None = None) -> np.ndarray:
        """:meth:`input_crop` as a program's float32 input: per channel ``v * mul + add`` (float32, as
        ``Preprocess.value_affine``), ``(3, size, size)`` for ``layout`` TCHW, ``(size, size, 3)`` for THWC, written
        into ``out`` (that shape, C-contiguous float32) when given. The native core does it in one pass
        (``ev_image_to_values``, bit-identical: tests/test_camera.py); without its build, :meth:`input_crop` through
        :class:`sdk.preprocess.ValueTable`."""
        lib = _native_library()
        if lib is not None:
            from sdk.native import image_to_values

            return image_to_values(lib, self, short_side, size, mul, add, layout, out)
        from sdk.preprocess import ValueTable

        return ValueTable(mul, add, layout, size)(self.input_crop(short_side, size), out)

    @classmethod
    def from_rgb(cls, rgb: np.ndarray, format: str = "nv12", *, full_range: bool = True, rotation: int = 0,
                 padding: int = 0) -> CameraFrame:
        """An image of ``format`` encoding the ``(H, W, 3)`` uint8 ``rgb`` (BT.601, 2x2 chroma averaged), each row
        followed by ``padding`` bytes (strides wider than the rows, as camera buffers often are): for tests and for
        feeding recorded video through the camera path. ``rotation`` is stored as given (the pixels are not
        rotated)."""
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise FrameError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
        h, w = rgb.shape[:2]
        if format in ("rgb", "rgba", "bgra"):
            px = rgb if format == "rgb" else np.concatenate([rgb[..., ::-1] if format == "bgra" else rgb,
                                                             np.full((h, w, 1), 255, np.uint8)], axis=-1)
            planes = [px.reshape(h, -1)]
        elif format in _YUV:
            f = rgb.astype(np.float64)
            r, g, b = f[..., 0], f[..., 1], f[..., 2]
            y = 0.299 * r + 0.587 * g + 0.114 * b
            u, v = (b - y) / 1.772, (r - y) / 1.402
            if not full_range:
                y, u, v = 16.0 + y * 219.0 / 255.0, u * 224.0 / 255.0, v * 224.0 / 255.0

            def half(c: np.ndarray) -> np.ndarray:
                return c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

            def q(c: np.ndarray) -> np.ndarray:
                return np.clip(np.floor(c + 0.5), 0, 255).astype(np.uint8)

            yq, uq, vq = q(y), q(half(u) + 128.0), q(half(v) + 128.0)
            if format == "i420":
                planes = [yq, uq, vq]
            else:
                pair = (uq, vq) if format == "nv12" else (vq, uq)
                planes = [yq, np.stack(pair, axis=-1).reshape(h // 2, w)]
        else:
            raise FrameError(f"unknown camera format {format!r}; valid: {', '.join(FORMATS)}")
        if padding:
            planes = [np.pad(p, ((0, 0), (0, padding)), constant_values=77) for p in planes]
        return cls(tuple(planes), w, h, format, tuple(p.shape[1] for p in planes), rotation, full_range)


_NATIVE: list = []  # [library or None], once per process


def _native_library():
    """The native core's library when a build for these sources is cached (never builds), else None."""
    if not _NATIVE:
        lib = None
        try:
            from sdk.native import cached_build, load_library

            build = cached_build()
            lib = load_library(build) if build is not None else None
        except Exception:  # noqa: BLE001 - any failure to load the optional core means: the numpy path
            lib = None
        _NATIVE.append(lib)
    return _NATIVE[0]
