"""Camera frames as cameras deliver them (``sdk.CameraFrame``: NV12 / NV21 / I420 / RGBA / BGRA / RGB, row strides,
rotation, full or video range), in the Python runtime and in the native core's one-pass conversion + resize + crop.

* The reference (``CameraFrame.to_rgb``) agrees with an independent implementation: OpenCV's YUV -> RGB for video
  range NV12 / I420 and the float BT.601 / JFIF formulas for full range, within one step; rotation equals
  ``cv2.rotate``; strides wider than the rows change nothing.
* The core's crop (``ev_image_to_input``) is within one uint8 step of ``sdk.preprocess`` on the reference's RGB
  frame, for every format, rotation and range, on sizes whose crop margins are odd, a frame already at the short
  side, and an upscale.
* The core's float input (``ev_image_to_values``: crop, value table and layout in one pass) is bit-identical to
  the path it replaced in ``_Prep`` (``ev_image_to_input``'s crop, the float32 table through ``cv2.LUT``, the
  transpose), for every format, rotation, range, layout, padded strides, odd margins, up / down / no resize.
* A stream fed camera frames predicts what it predicts on their RGB frames (Python: exactly; native vs Python:
  same windows and top-1, logits within the pixel step's effect).
"""
from __future__ import annotations

import ctypes
import hashlib

import cv2
import numpy as np
import pytest

import sdk
from sdk.camera import FORMATS, CameraFrame
from sdk.classifier import StreamClassifier
from sdk.errors import FrameError
from sdk.native import (EV_ERR_BAD_FRAME, EV_ERR_INVALID_ARGUMENT, _Image, build, image_to_input, image_to_values,
                        load_library)
from sdk.native.stream import NativeStream
from sdk.preprocess import Preprocess
from test_native_bundles import video

ROTATIONS = (0, 90, 180, 270)


def smooth_image(height: int, width: int, seed: int) -> np.ndarray:
    """A natural-looking image (smooth gradients and edges), not noise: chroma subsampling stays meaningful."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def lib():
    return load_library(build())


def test_reference_agrees_with_opencv_and_the_float_formulas():
    rgb = smooth_image(64, 96, seed=1)
    for fmt, code in (("nv12", cv2.COLOR_YUV2RGB_NV12), ("i420", cv2.COLOR_YUV2RGB_I420)):
        frame = CameraFrame.from_rgb(rgb, fmt, full_range=False)
        opencv = cv2.cvtColor(np.concatenate(frame.planes).reshape(96, 96), code)
        assert np.abs(opencv.astype(int) - frame.to_rgb().astype(int)).max() <= 1, fmt
    frame = CameraFrame.from_rgb(rgb, "nv21", full_range=True)
    y = frame.planes[0].reshape(64, 96).astype(np.float64)
    vu = frame.planes[1].reshape(32, 48, 2).astype(np.float64) - 128
    v, u = (np.repeat(np.repeat(vu[..., i], 2, 0), 2, 1) for i in (0, 1))
    jfif = np.stack([y + 1.402 * v, y - 0.344136 * u - 0.714136 * v, y + 1.772 * u], -1)
    assert np.abs(np.clip(np.floor(jfif + 0.5), 0, 255) - frame.to_rgb()).max() <= 1
    for colour in ((100, 128, 128), (200, 30, 60), (10, 220, 90)):  # encoding round trip where chroma is flat
        flat = np.empty((8, 8, 3), np.uint8)
        flat[:] = colour
        for fmt in ("nv12", "i420"):
            for full_range in (True, False):
                back = CameraFrame.from_rgb(flat, fmt, full_range=full_range).to_rgb()
                assert np.abs(back.astype(int) - flat).max() <= 2, (colour, fmt, full_range)


@pytest.mark.parametrize("fmt", FORMATS)
def test_rotation_and_strides(fmt: str):
    rgb = smooth_image(48, 80, seed=2)
    upright = CameraFrame.from_rgb(rgb, fmt).to_rgb()
    for rotation, code in ((90, cv2.ROTATE_90_CLOCKWISE), (180, cv2.ROTATE_180),
                           (270, cv2.ROTATE_90_COUNTERCLOCKWISE)):
        rotated = CameraFrame.from_rgb(rgb, fmt, rotation=rotation, padding=5).to_rgb()
        assert np.array_equal(rotated, cv2.rotate(upright, code)), rotation


# (height, width, short side, crop): margins that are odd after the resize (196 -> 193 wide: (193 - 112) / 2 = 40.5)
# and without one (171 wide at the short side: RGB formats only, 4:2:0 sizes are even), even margins, portrait, and
# an upscale
SIZES = [(130, 196, 128, 112), (128, 171, 128, 112), (128, 170, 128, 112), (360, 640, 128, 112),
         (272, 200, 128, 112), (64, 90, 128, 112)]


@pytest.mark.parametrize("height, width, short, crop", SIZES)
def test_native_crop_is_within_one_step_of_sdk_preprocess(lib, height: int, width: int, short: int, crop: int):
    rgb = smooth_image(height, width, seed=height + width)
    pre = Preprocess(size=crop, resize=short)
    for fmt in [f for f in FORMATS if not (width % 2 and f in ("nv12", "nv21", "i420"))]:
        for rotation in ROTATIONS:
            for full_range in (True, False):
                frame = CameraFrame.from_rgb(rgb, fmt, full_range=full_range, rotation=rotation, padding=3)
                want = pre._centre_crop(pre.resize_short(frame.to_rgb())).astype(int)
                got = image_to_input(lib, frame, short, crop).astype(int)
                where = f"{fmt} rot {rotation} full {full_range}"
                assert np.abs(got - want).max() <= 1, where
                assert (got == want).mean() > 0.99, where  # OpenCV's own arithmetic: equal but for rounding ties


def test_native_crop_bytes_are_pinned(lib):
    """The core's crop, byte for byte, on random planes (no colour structure: every byte matters) for every format,
    rotation and range, row strides wider than the rows, a downscale with odd crop margins, no resize, an upscale:
    the SHA-256 of all the crops is the scalar kernel's (before the vectorised one, issue 29). The test above allows
    OpenCV's rounding ties; this one catches any change of the core's own arithmetic (a rounding, a tap, a channel)."""
    digest = hashlib.sha256()
    for frame in random_frames(130, 98, seed=29):
        for short, crop in ((64, 57), (98, 97), (150, 131)):
            digest.update(image_to_input(lib, frame, short, crop).tobytes())
    assert digest.hexdigest() == "964126f1ab5ed917fb87830c5c74639b30bbe109a8bb427878f3c8cd84f01866"


def random_frames(width: int, height: int, seed: int):
    """Camera frames of random planes (every byte matters) with row strides 7 bytes wider than the rows, for every
    format, rotation and range."""
    rng = np.random.default_rng(seed)
    for fmt in FORMATS:
        row_bytes = {"rgb": (3 * width,), "rgba": (4 * width,), "bgra": (4 * width,), "nv12": (width, width),
                     "nv21": (width, width), "i420": (width, width // 2, width // 2)}[fmt]
        plane_rows = (height,) + (height // 2,) * (len(row_bytes) - 1)
        strides = tuple(r + 7 for r in row_bytes)
        planes = tuple(rng.integers(0, 256, s * r, dtype=np.uint8) for s, r in zip(strides, plane_rows))
        for rotation in ROTATIONS:
            for full_range in (True, False):
                yield CameraFrame(planes, width, height, fmt, strides, rotation, full_range)


def lut_path(crop: np.ndarray, mul: np.ndarray, add: np.ndarray, layout: str) -> np.ndarray:
    """What ``_Prep`` did with the uint8 crop before ``ev_image_to_values``: the float32 table, then the layout."""
    table = (np.arange(256, dtype=np.float32)[:, None] * mul + add).reshape(256, 1, 3)
    x = cv2.LUT(crop, np.ascontiguousarray(table, np.float32))
    return np.ascontiguousarray(x.transpose(2, 0, 1) if layout == "TCHW" else x)


# (mul, add): sdk's default (1/255 then ImageNet mean / std), scale only, and values whose table is not monotone
AFFINES = [Preprocess().value_affine(), Preprocess().value_affine(normalize=False),
           (np.array([-0.75, 3.1e-3, 1e5], np.float32), np.array([7.5, -0.3, -2.5e6], np.float32))]


def test_native_values_are_the_crop_through_the_table_bit_for_bit(lib):
    """ev_image_to_values == ev_image_to_input + the float32 table + the layout, to the bit (array_equal on
    float32), for every format, rotation, range, padded strides, odd crop margins, a downscale, no resize and an
    upscale, both layouts, three value affines; ``out`` is written whole."""
    checked = 0
    for frame in random_frames(130, 98, seed=30):
        for short, crop in ((64, 57), (98, 97), (150, 131)):
            uint8 = image_to_input(lib, frame, short, crop)
            for mul, add in AFFINES:
                for layout in ("TCHW", "THWC"):
                    want = lut_path(uint8, mul, add, layout)
                    assert np.array_equal(want, (uint8.astype(np.float32) * mul + add).transpose(
                        *((2, 0, 1) if layout == "TCHW" else (0, 1, 2))))  # the table is the arithmetic
                    out = np.full(want.shape, np.nan, np.float32)
                    got = image_to_values(lib, frame, short, crop, mul, add, layout, out)
                    where = f"{frame.format} rot {frame.rotation} full {frame.full_range} {short}/{crop} {layout}"
                    assert got is out and got.dtype == np.float32, where
                    assert np.array_equal(got, want), where
                    checked += 1
    assert checked == 6 * 4 * 2 * 3 * 3 * 2


@pytest.mark.parametrize("path", ["native", "numpy"])
@pytest.mark.parametrize("layout", ["TCHW", "THWC"])
def test_prep_of_camera_frames_is_unchanged(monkeypatch, path: str, layout: str):
    """``_Prep`` on a camera frame (``CameraFrame.input_values``: the core's one pass, or the numpy fallback) gives
    what it gave with ``input_crop`` + table + transpose, into a given ``out`` and into a new array, and what it
    gives on the frame's RGB image (the frame's shorter side at the resize: the resize is the identity there)."""
    import types

    import sdk.camera
    from sdk.classifier import _Prep

    monkeypatch.setattr(sdk.camera, "_NATIVE", [load_library(build())] if path == "native" else [None])
    for pre in (Preprocess(size=112, resize=128, layout=layout), Preprocess(size=57, resize=64, layout=layout)):
        for in_program in ((), ("scale", "normalize"), ("normalize",)):
            prep = _Prep(types.SimpleNamespace(preprocess=pre, in_program=in_program))
            for k, frame in enumerate(random_frames(150, 128, seed=31)):
                if k % 5:  # a sample of the 48 frames per combination
                    continue
                want = lut_path(frame.input_crop(pre.resize_to, pre.size), prep.mul, prep.add, layout)
                out = np.full(want.shape, np.nan, np.float32)
                assert prep(frame, out) is out and np.array_equal(out, want), (frame.format, frame.rotation)
                assert np.array_equal(prep(frame), want)
                buffer = np.full((2, *want.shape), np.nan, np.float32)  # a slot of a bigger buffer, as a clip's
                assert prep(frame, buffer[1]) is not None and np.array_equal(buffer[1], want)
                transposed = np.full(want.shape[::-1], np.nan, np.float32).T  # not C-contiguous: copied into
                assert np.array_equal(prep(frame, transposed), want)
    rgb = smooth_image(128, 150, seed=4)
    pre = Preprocess(size=112, resize=128, layout=layout)
    prep = _Prep(types.SimpleNamespace(preprocess=pre, in_program=()))
    assert np.array_equal(prep(CameraFrame.from_rgb(rgb, "rgb")), prep(rgb))


def test_native_values_reject_bad_arguments(lib):
    frame = CameraFrame.from_rgb(smooth_image(40, 40, seed=3), "nv12")
    mul, add = AFFINES[0]
    im = _Image()
    for k, plane in enumerate(frame.planes):
        im.planes[k], im.strides[k] = plane.ctypes.data, frame.strides[k]
    im.width, im.height, im.format, im.full_range = 40, 40, 3, 1
    out = np.zeros((3, 32, 32), np.float32)
    for args, message in (((36, 32, mul.ctypes.data, add.ctypes.data, 2), b"layout must be 0"),
                          ((36, 32, None, add.ctypes.data, 0), b"mul is NULL"),
                          ((36, 32, mul.ctypes.data, None, 1), b"add is NULL"),
                          ((30, 32, mul.ctypes.data, add.ctypes.data, 0), b"need 1 <= size <= short_side")):
        assert lib.ev_image_to_values(ctypes.byref(im), *args, out.ctypes.data) == EV_ERR_INVALID_ARGUMENT, message
        assert message in lib.ev_last_error()
    assert lib.ev_image_to_values(ctypes.byref(im), 36, 32, mul.ctypes.data, add.ctypes.data, 0, None) \
        == EV_ERR_INVALID_ARGUMENT
    im.strides[0] = 20
    assert lib.ev_image_to_values(ctypes.byref(im), 36, 32, mul.ctypes.data, add.ctypes.data, 0,
                                  out.ctypes.data) == EV_ERR_BAD_FRAME
    assert b"stride" in lib.ev_last_error()
    with pytest.raises(ValueError, match="out must be"):
        image_to_values(lib, frame, 36, 32, mul, add, "TCHW", np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="layout"):
        image_to_values(lib, frame, 36, 32, mul, add, "CHW")


@pytest.mark.parametrize("path", ["native", "numpy"])
def test_python_stream_of_camera_frames_equals_its_rgb_frames(native_bundles, monkeypatch, path: str):
    """The Python runtime crops a camera frame with the core's one-pass path when the core is built, else in numpy
    and OpenCV: either way its predictions are those of the frame's RGB image, to the bit."""
    import sdk.camera

    monkeypatch.setattr(sdk.camera, "_NATIVE", [load_library(build())] if path == "native" else [None])
    frames = video(24, seed=5)
    cams = [CameraFrame.from_rgb(np.ascontiguousarray(f[:, :46]), "nv12", rotation=90) for f in frames]
    with sdk.load(native_bundles["stream"], backend="executorch", precision="fp32") as model:
        on_cams, on_rgb = StreamClassifier(model, window=8), StreamClassifier(model, window=8)
        on_cams = [p for p in (on_cams.push(c) for c in cams) if p is not None]
        on_rgb = [p for p in (on_rgb.push(c.to_rgb()) for c in cams) if p is not None]
    assert len(on_cams) == 3 and all(p.ok for p in on_cams)
    for a, b in zip(on_cams, on_rgb, strict=True):
        assert a.labels == b.labels and np.array_equal(a.logits, b.logits)


@pytest.mark.parametrize("fmt", ["nv21", "i420", "bgra"])
def test_native_stream_of_camera_frames_predicts_as_python(native_bundles, fmt: str):
    frames = video(32, seed=6)
    cams = [CameraFrame.from_rgb(np.ascontiguousarray(np.repeat(np.repeat(f, 2, 0), 2, 1)), fmt, rotation=180)
            for f in frames]  # 72x96: resized to the bundle's short side 36 by both runtimes
    with sdk.load(native_bundles["clip"], backend="executorch", precision="fp32") as model:
        clf = StreamClassifier(model, window=8)
        python = [p for p in (clf.push(c) for c in cams) if p is not None]
    with NativeStream(native_bundles["clip"], window=8, precision="fp32") as nat:
        native = [p for p in (nat.push(c) for c in cams) if p is not None]
        assert nat.stats.frames_kept > 0 and nat.stats.frame_errors == 0
    assert len(native) == len(python) == 4
    moved = max(float(np.abs(python[0].logits - p.logits).max()) for p in python[1:])
    for a, b in zip(native, python, strict=True):
        assert a.ok and a.class_ids[0] == b.class_ids[0] and a.frame_index == b.frame_index
        assert float(np.abs(a.logits - b.logits).max()) <= 0.05 * moved  # one pixel step, not another input


def test_bad_camera_frames_are_typed_errors(lib):
    y = np.zeros(6 * 8, np.uint8)
    with pytest.raises(FrameError, match="even width and height"):
        CameraFrame((y, y), 8, 5, "nv12")
    with pytest.raises(FrameError, match="strides"):
        CameraFrame((y, y), 8, 6, "nv12", strides=(4, 8))
    with pytest.raises(FrameError, match="plane 1 holds 10 bytes"):
        CameraFrame((y, y[:10]), 8, 6, "nv12")
    with pytest.raises(FrameError, match="rotation"):
        CameraFrame((y, y), 8, 6, "nv12", rotation=45)
    with pytest.raises(FrameError, match="unknown camera format"):
        CameraFrame((y,), 8, 6, "yuyv")
    # the C API checks what a JNI or Swift caller could get wrong: a stride shorter than the rows, a NULL plane
    rgb = smooth_image(40, 40, seed=3)
    for broken in ("stride", "plane", "format"):
        frame = CameraFrame.from_rgb(rgb, "nv12")
        im = _Image()
        for k, plane in enumerate(frame.planes):
            im.planes[k], im.strides[k] = plane.ctypes.data, frame.strides[k]
        im.width, im.height, im.format, im.full_range = 40, 40, 3, 1
        if broken == "stride":
            im.strides[0] = 20
        elif broken == "plane":
            im.planes[1] = None
        else:
            im.format = 9
        out = np.zeros((32, 32, 3), np.uint8)
        status = lib.ev_image_to_input(ctypes.byref(im), 36, 32, out.ctypes.data)
        assert status == EV_ERR_BAD_FRAME, broken
        assert {"stride": b"stride", "plane": b"NULL", "format": b"unknown pixel format"}[broken] in lib.ev_last_error()
