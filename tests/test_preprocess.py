"""The one preprocessing spec (sdk.preprocess): exact operations, training crops, serialisation, bad frames."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdk.errors import ConfigError, FrameError
from sdk.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess


def test_eval_transform_shape_and_normalisation():
    spec = Preprocess(size=4, resize=None, layout="TCHW")
    frames = np.full((2, 4, 6, 3), 255, np.uint8)
    out = spec(frames)
    assert out.shape == (2, 3, 4, 4) and out.dtype == np.float32
    expected = (1.0 - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)
    np.testing.assert_allclose(out[0, :, 0, 0], expected, rtol=1e-6)
    assert Preprocess(size=4, resize=None, layout="THWC")(frames).shape == (2, 4, 4, 3)
    assert spec(frames[0]).shape == (3, 4, 4), "a single (H, W, 3) frame gives (C, H, W)"


def test_centre_crop_takes_the_middle_after_resizing_the_shorter_side():
    # A 10x20 frame whose columns encode their x: resize short side 10 -> no-op, centre crop 10 keeps columns 5..14.
    frame = np.repeat(np.arange(20, dtype=np.uint8)[None, :, None], 10, axis=0).repeat(3, axis=2)
    spec = Preprocess(size=10, resize=10, mean=(0, 0, 0), std=(1, 1, 1), scale=1.0, layout="THWC")
    out = spec(frame)
    np.testing.assert_array_equal(out[0, :, 0], np.arange(5, 15))
    # Shorter side 5 -> 10 doubles both sides (aspect kept): 20x40, crop 10x10 at (5, 15).
    assert Preprocess(size=10, resize=10)(frame[::2, ::2]).shape == (3, 10, 10)


@settings(max_examples=60, deadline=None)
@given(st.integers(8, 90), st.integers(8, 90), st.integers(0, 2**31))
def test_training_crop_boxes_lie_inside_the_frame(h: int, w: int, seed: int):
    spec = Preprocess(size=8, resize=None)
    y, x, ch, cw = spec.train_crop_box(h, w, np.random.default_rng(seed))
    assert 0 <= y and 0 <= x and y + ch <= h and x + cw <= w and ch >= 1 and cw >= 1
    scales = [s for s in spec.train_scales]
    assert any(ch == max(1, int(min(h, w) * s)) for s in scales)


def test_training_transform_is_one_box_for_the_whole_clip_and_deterministic():
    rng_frames = np.random.default_rng(0).integers(0, 256, (4, 40, 60, 3), dtype=np.uint8)
    clip = np.repeat(rng_frames[:1], 4, axis=0)  # identical frames -> identical outputs iff one box for all
    spec = Preprocess(size=16, resize=32)
    out = spec.train(clip, np.random.default_rng(5))
    assert out.shape == (4, 3, 16, 16)
    for t in range(1, 4):
        np.testing.assert_array_equal(out[t], out[0])
    np.testing.assert_array_equal(spec.train(rng_frames, np.random.default_rng(5)),
                                  spec.train(rng_frames, np.random.default_rng(5)))


def test_round_trip_through_json():
    spec = Preprocess(size=112, resize=128, interpolation="area", layout="THWC")
    assert Preprocess.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_the_conversion_is_recorded_and_old_specs_read_as_swscale():
    """``conversion`` (how video files' frames became pixels in training) survives JSON; a spec written before the
    field (old checkpoints and bundles) reads as swscale, the only conversion there was; an unknown one names the
    valid ones."""
    camera = Preprocess(size=112, resize=128, conversion="camera")
    assert camera.to_dict()["conversion"] == "camera"
    assert Preprocess.from_dict(json.loads(json.dumps(camera.to_dict()))) == camera
    old = Preprocess(size=112, resize=128).to_dict()
    del old["conversion"]
    assert Preprocess.from_dict(old).conversion == "swscale"
    assert Preprocess.from_dict(old) == Preprocess(size=112, resize=128) != camera
    with pytest.raises(ConfigError, match="unknown conversion 'yuv'; valid: swscale, camera"):
        Preprocess.from_dict({**old, "conversion": "yuv"})


@pytest.mark.parametrize(
    "kwargs",
    [dict(size=0), dict(size=224, resize=200), dict(layout="NCHW"), dict(interpolation="cubic"),
     dict(std=(1, 0, 1)), dict(mean=(0.5,)), dict(train_scales=(1.2,))],
)
def test_invalid_specs_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        Preprocess(**kwargs)
    with pytest.raises(ConfigError, match="unknown preprocess field"):
        Preprocess.from_dict({"sise": 3})


@pytest.mark.parametrize(
    "frame",
    [np.zeros((4, 4), np.uint8), np.zeros((2, 4, 4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
     np.zeros((0, 4, 4, 3), np.uint8), np.zeros((1, 0, 4, 3), np.uint8)],
)
def test_bad_frames_raise_frame_error(frame):
    with pytest.raises(FrameError):
        Preprocess(size=4, resize=None)(frame)


@pytest.mark.parametrize("layout", ["TCHW", "THWC"])
@pytest.mark.parametrize("in_program", [(), ("normalize",), ("scale", "normalize")])
def test_runtime_preprocessing_is_bit_exact_with_the_spec(layout: str, in_program: tuple[str, ...]):
    """The streaming runtime's per-frame path (a lookup table instead of float arithmetic) gives the very same
    float32 values as training's ``Preprocess`` on landscape, portrait (rotated) and odd-sized frames."""
    from sdk.classifier import _Prep
    from sdk.manifest import InputSpec

    pre = Preprocess(size=31, resize=37, layout=layout)
    prep = _Prep(InputSpec(pre, in_program))
    rng = np.random.default_rng(0)
    for h, w in [(37, 37), (61, 97), (97, 61), (240, 321), (45, 1000)]:
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for f in (frame, np.rot90(frame), frame[::-1, ::-1]):
            crop = pre._centre_crop(pre.resize_short(np.ascontiguousarray(f))).astype(np.float32)
            if not in_program:
                want = pre(f)
            else:  # the program normalises (and maybe scales): the runtime hands over [0, 255] or scaled values
                want = crop * (np.float32(1.0) if "scale" in in_program else np.float32(pre.scale))
                want = want.transpose(2, 0, 1) if layout == "TCHW" else want
            got = prep(np.ascontiguousarray(f))
            assert got.dtype == np.float32 and got.shape == want.shape and got.flags.c_contiguous
            np.testing.assert_array_equal(got, want)


# (H, W, resize, size): every centre-crop margin (side - size) odd on at least one side -- a crop shifted by one pixel
# (rounding the half margin up instead of down) moves the square on it. No resize (the short side is already
# ``resize``): odd on both sides, odd on the short side only, odd on the long side only; portrait; a real
# downscale (61 x 97 -> 37 x 59: margins 5 and 27) and an upscale (20 x 33 -> 37 x 61: margins 5 and 29).
ODD_MARGINS = [(37, 64, 37, 30), (31, 56, 31, 28), (30, 57, 30, 30), (57, 30, 30, 27), (61, 97, 37, 32),
               (20, 33, 37, 32)]


def _expected_centre_crop(frame: np.ndarray, resize: int, size: int) -> np.ndarray:
    """The spec's centre crop worked out here: shorter side to ``resize`` with OpenCV (aspect kept, the longer side
    rounded), then rows ``(h - size) // 2`` and columns ``(w - size) // 2`` onward, floor of the half margin."""
    import cv2

    h, w = frame.shape[:2]
    if min(h, w) != resize:
        nh, nw = (resize, round(w * resize / h)) if h <= w else (round(h * resize / w), resize)
        frame = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    h, w = frame.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    assert (h - size) % 2 or (w - size) % 2, "the case gives even margins: it would not see a one-pixel shift"
    return frame[top:top + size, left:left + size]


@pytest.mark.parametrize("h,w,resize,size", ODD_MARGINS)
def test_centre_crop_with_odd_margins_takes_the_floor_of_the_half_margin(h: int, w: int, resize: int, size: int):
    """Every evaluation path (``Preprocess.__call__``, one of ``crops``, the centre of three, the streaming runtime's
    per-frame ``_Prep``) crops at ``floor((side - size) / 2)`` where the margin is odd: compared with numpy slicing of
    the resized frame, the offsets written out here (the other tests' frame sizes all give even margins)."""
    from sdk.classifier import _Prep
    from sdk.manifest import InputSpec

    frame = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    want = _expected_centre_crop(frame, resize, size).astype(np.float32)
    raw = Preprocess(size=size, resize=resize, mean=(0, 0, 0), std=(1, 1, 1), scale=1.0, layout="THWC")
    np.testing.assert_array_equal(raw(frame), want)
    np.testing.assert_array_equal(raw(np.stack([frame, frame]))[1], want)
    np.testing.assert_array_equal(raw.crops(frame, 1), want[None])
    np.testing.assert_array_equal(raw.crops(frame, 3)[1], want)
    np.testing.assert_array_equal(_Prep(InputSpec(raw, ("scale", "normalize")))(frame), want)
    spec = Preprocess(size=size, resize=resize)  # the default normalisation and layout: the same pixels
    np.testing.assert_allclose(spec(frame), spec._normalise(want.astype(np.uint8)[None])[0], rtol=0, atol=0)
