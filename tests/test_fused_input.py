"""Decoded video frames to model input in one step (``VideoFile(conversion="camera")``): the decoded planes go to the
camera path's fused convert + resize + crop (the native core's when built), and training reads the same pixels.

* Training's reading (``read_indices`` -> ``sdk.preprocess``, what ``training.data`` does) equals the streaming
  runtime's program input (``model_frame`` -> the runtime's preprocessing into its preallocated buffer) bit for bit:
  every pixel format a decoder gives (the CameraFrame's own and the swscale fallback), padded rows, crops whose margins
  are odd (a centre crop shifted by one pixel fails), an upscale, rotated frames; with the core and without.
* The camera conversion agrees with libswscale's (the default ``conversion``) within a few steps on the same frames:
  an error that training and device would share (U and V swapped, the range, the strides, the rotation's direction)
  fails here.
"""
from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

import sdk.camera
from sdk.camera import CameraFrame
from sdk.classifier import _Prep
from sdk.errors import ConfigError
from sdk.manifest import InputSpec
from sdk.native import build, load_library
from sdk.preprocess import Preprocess
from sdk.video import VideoFile, camera_frame

H, W = 66, 98
FRAMES = 3
# (short side, crop): margins odd on both sides (66 -> 41: 9; 98 -> 61: 29), odd on the short side only, even,
# and an upscale
CROPS = [(41, 32), (40, 33), (40, 32), (128, 112)]
# name -> (codec, container, pixel format, colour range): what decoders hand over, including what the CameraFrame
# cannot read as it is (4:2:2, 10 bit, odd sizes: libswscale's RGB then)
SOURCES = {
    "h264": ("libx264", "mp4", "yuv420p", None),  # decoder rows padded: strides wider than the width
    "yuv420p": ("rawvideo", "nut", "yuv420p", None),
    "yuv420p_full": ("libx264", "mp4", "yuv420p", 2),  # AVCOL_RANGE_JPEG: the H.264 stream says so
    "nv12": ("rawvideo", "nut", "nv12", None),
    "nv21": ("rawvideo", "nut", "nv21", None),
    "rgb24": ("rawvideo", "nut", "rgb24", None),
    "rgba": ("rawvideo", "nut", "rgba", None),
    "bgra": ("rawvideo", "nut", "bgra", None),
    "yuv422p": ("rawvideo", "nut", "yuv422p", None),
    "yuv420p10le": ("rawvideo", "nut", "yuv420p10le", None),
    "odd_size": ("rawvideo", "nut", "yuv420p", None),
}


def smooth_image(height: int, width: int, seed: int) -> np.ndarray:
    """Saturated colours with smooth edges: chroma matters, and subsampling it stays meaningful."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def write(path: Path, codec: str, pix_fmt: str, colour_range: int | None, height: int, width: int) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=15)
        s.width, s.height, s.pix_fmt = width, height, pix_fmt
        if colour_range is not None:
            s.codec_context.color_range = colour_range
        for i in range(FRAMES):
            frame = av.VideoFrame.from_ndarray(smooth_image(height, width, seed=i), format="rgb24")
            if colour_range is not None:
                frame.color_range = colour_range
            c.mux(s.encode(frame))
        c.mux(s.encode())
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("fused")
    return {name: write(d / f"{name}.{container}", codec, pix_fmt, colour_range, H + (name == "odd_size"),
                        W + (name == "odd_size"))
            for name, (codec, container, pix_fmt, colour_range) in SOURCES.items()}


class Rotated:
    """A decoded frame as a phone video's would come: carrying a display rotation (counter-clockwise degrees)."""

    def __init__(self, frame: av.VideoFrame, rotation: int):
        self._frame, self.rotation = frame, rotation

    def __getattr__(self, name: str):
        return getattr(self._frame, name)


def decoded(path: Path, rotation: int) -> list:
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
    return [Rotated(f, rotation) if rotation else f for f in frames]


@pytest.fixture(params=["native", "numpy"])
def crop_path(request, monkeypatch) -> str:
    """The runtime's crop of a camera frame: the core's one-pass path, or the numpy reference when it is not built."""
    monkeypatch.setattr(sdk.camera, "_NATIVE", [load_library(build())] if request.param == "native" else [None])
    return request.param


def test_decoded_planes_are_read_in_place(sources):
    """No RGB frame on the fused path: a 4:2:0 frame's planes are the decoder's own buffers."""
    for name, fmt in (("h264", "i420"), ("nv12", "nv12"), ("nv21", "nv21"), ("yuv420p_full", "i420")):
        (frame, *_), = [decoded(sources[name], 0)]
        cam = camera_frame(frame)
        assert cam.format == fmt and cam.full_range == (name == "yuv420p_full"), name
        assert all(np.shares_memory(p, np.frombuffer(q, np.uint8)) for p, q in zip(cam.planes, frame.planes)), name
    assert camera_frame(decoded(sources["h264"], 0)[0]).strides[0] > W  # the decoder pads its rows
    for name in ("yuv422p", "yuv420p10le", "odd_size"):
        assert camera_frame(decoded(sources[name], 0)[0]).format == "rgb", name


@pytest.mark.parametrize("name", SOURCES)
@pytest.mark.parametrize("rotation", [0, 90, 270])
def test_training_reads_what_the_runtime_feeds_the_model(sources, crop_path, name: str, rotation: int):
    video = VideoFile(sources[name], conversion="camera")
    frames = decoded(sources[name], rotation)
    training = np.stack([video.to_rgb(f) for f in frames])  # what read_indices returns, rotation applied
    if not rotation:
        assert np.array_equal(training, video.read_indices(range(FRAMES)))
    for short, size in CROPS:
        pre = Preprocess(size=size, resize=short)
        prep = _Prep(InputSpec(pre, in_program=()))
        buffer = np.empty((3, size, size), np.float32)
        for k, f in enumerate(frames):
            want = pre(training[k])
            got = prep(video.model_frame(f), buffer)
            assert got is buffer
            assert np.array_equal(got, want), (short, size, k)
            assert np.array_equal(prep(video.model_frame(f)), want), (short, size, k)


def swscale_rgb(frame: av.VideoFrame, rotation: int) -> np.ndarray:
    """libswscale's RGB of ``frame``, turned ``rotation`` degrees counter-clockwise (a display rotation undone). NV12 /
    NV21 go through its exact repacking to I420 first: its direct conversion of them interpolates the chroma."""
    if frame.format.name in ("nv12", "nv21"):
        frame = frame.reformat(format="yuv420p")
    return np.rot90(frame.to_ndarray(format="rgb24"), rotation // 90)


@pytest.mark.parametrize("name", SOURCES)
@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_camera_conversion_agrees_with_libswscale(sources, name: str, rotation: int):
    camera = VideoFile(sources[name], conversion="camera")
    for f in decoded(sources[name], rotation):
        want, got = swscale_rgb(f._frame if rotation else f, rotation).astype(int), camera.to_rgb(f).astype(int)
        assert want.shape == got.shape
        diff = np.abs(want - got)
        assert diff.mean() < 1.5 and np.percentile(diff, 99) <= 6, (name, rotation, diff.mean(), diff.max())


def test_model_frame_keeps_the_default_conversion(sources):
    """The default stays libswscale's RGB: models trained on it see the pixels they were trained on."""
    frame = decoded(sources["h264"], 0)[0]
    video = VideoFile(sources["h264"])
    assert video.conversion == "swscale"
    got = video.model_frame(frame)
    assert not isinstance(got, CameraFrame)
    assert np.array_equal(got, frame.to_ndarray(format="rgb24"))


def test_unknown_conversion_is_a_config_error(sources):
    with pytest.raises(ConfigError, match="unknown conversion 'yuv'; valid: swscale, camera"):
        VideoFile(sources["h264"], conversion="yuv")


@pytest.mark.parametrize("conversion", ["swscale", "camera"])
def test_model_frames_are_read_indices_in_the_order_asked(sources, conversion: str):
    """What VideoClassifier reads from a file: the sampled frames as the conversion hands them to the runtime (decoded
    planes with "camera"), in the order asked for, repeats included: the pixels of read_indices."""
    video = VideoFile(sources["h264"], conversion=conversion)
    indices = [2, 0, 2, 1]
    got = video.read_model_frames(indices)
    assert all(isinstance(f, CameraFrame) == (conversion == "camera") for f in got)
    rgb = [f.to_rgb() if isinstance(f, CameraFrame) else f for f in got]
    assert np.array_equal(np.stack(rgb), VideoFile(sources["h264"], conversion=conversion).read_indices(indices))


def test_cli_reads_video_files_with_the_conversion_asked(sources, native_bundles, capsys):
    """``python -m sdk classify --conversion camera``: the prediction of the camera conversion's pixels, in the Python
    runtime and the core alike; without it, libswscale's (the logits differ: the pixels do)."""
    import sdk
    from sdk.__main__ import main as sdk_main
    from sdk.classifier import VideoClassifier

    path, bundle = str(sources["h264"]), str(native_bundles["clip"])
    # the premise, on pixels: libswscale's output depends on the CPU's SIMD paths, ours does not, and they differ
    rgb = {c: VideoFile(path, conversion=c).read_indices([0, 1, 2]) for c in ("swscale", "camera")}
    assert not np.array_equal(rgb["swscale"], rgb["camera"])
    # fp32: an int8 program's input quantisation can swallow a one-step pixel difference (it did on CI's CPU)
    model = sdk.load(bundle, backend="executorch", precision="fp32")
    want = {c: VideoClassifier(model).classify(VideoFile(path, conversion=c)).logits for c in ("swscale", "camera")}
    assert not np.array_equal(want["swscale"], want["camera"])
    for runtime in ("python", "native"):
        for conversion in ("swscale", "camera"):
            assert sdk_main(["classify", path, "--bundle", bundle, "--runtime", runtime, "--conversion", conversion,
                             "--precision", "fp32", "--json"]) == 0
            got = np.asarray(json.loads(capsys.readouterr().out)["logits"], np.float32)
            np.testing.assert_allclose(got, want[conversion], rtol=0, atol=1e-5, err_msg=f"{runtime} {conversion}")


@pytest.fixture(scope="module")
def camera_run(tiny_benchmark, tmp_path_factory) -> dict[str, Path]:
    """A 1-epoch training run with ``conversion=camera`` (frozen trunk, feature cache) and its fp32 ONNX bundle."""
    from converters.export import export_bundle
    from converters.options import ExportOptions
    from training.train import TrainConfig, train

    root = tmp_path_factory.mktemp("camera_run")
    cfg = TrainConfig(data=str(tiny_benchmark), out=str(root / "run"), arch="tam_head_mobilenet_v2", frames=4,
                      size=48, resize=56, freeze=7, epochs=1, batch_size=8, workers=0, pretrained=False,
                      cache_dir=str(root / "cache"), conversion="camera")
    train(cfg)
    bundle = root / "camera.vbundle"
    export_bundle(ExportOptions(root / "run" / "best.pt", bundle, formats=["onnx"], parity_clips=2, golden_clips=1))
    return {"checkpoint": root / "run" / "best.pt", "bundle": bundle, "cache": root / "cache"}


def test_training_records_the_conversion_and_the_bundle_carries_it(camera_run):
    """``conversion=camera``: best.pt's preprocessing says so, its feature stores are keyed by it, and the exported
    bundle's manifest has it (schema-valid) and its inspect page names it."""
    import jsonschema

    from sdk.bundle import Bundle
    from sdk.describe import describe
    from sdk.manifest import SCHEMA_FILE
    from training.checkpoint import load_checkpoint

    assert Preprocess.from_dict(load_checkpoint(camera_run["checkpoint"])["preprocess"]).conversion == "camera"
    keys = [json.loads(k.read_text()) for k in camera_run["cache"].glob("*/key.json")]
    assert keys and all(k["preprocess"]["conversion"] == "camera" for k in keys)
    manifest = json.loads((camera_run["bundle"] / "manifest.json").read_text())
    assert manifest["input"]["preprocess"]["conversion"] == "camera"
    jsonschema.validate(manifest, json.loads(SCHEMA_FILE.read_text()))
    with Bundle(camera_run["bundle"]) as b:
        assert "video files read with the camera conversion" in describe(b)


def test_the_runtime_reads_files_with_the_bundles_conversion(camera_run, tiny_benchmark, capsys):
    """A bundle trained on camera pixels: ``python -m sdk classify`` without ``--conversion``, ``VideoClassifier``
    and ``StreamClassifier`` given a path, all read the file with the camera conversion (the logits of an explicit
    ``VideoFile(conversion="camera")``, not swscale's); ``--conversion swscale`` still overrides it."""
    import sdk
    from sdk.__main__ import main as sdk_main
    from sdk.classifier import StreamClassifier, VideoClassifier
    from training.data.datasets import read_records

    path, bundle = str(read_records(tiny_benchmark / "val.csv")[0].path), str(camera_run["bundle"])
    # the premise: the two conversions' pixels differ on this video, and so do the logits
    rgb = {c: VideoFile(path, conversion=c).read_indices([0, 1, 2]) for c in ("swscale", "camera")}
    assert not np.array_equal(rgb["swscale"], rgb["camera"])
    with sdk.load(bundle, backend="onnx") as model:
        want = {c: VideoClassifier(model).classify(VideoFile(path, conversion=c)).logits for c in ("swscale", "camera")}
        assert not np.array_equal(want["swscale"], want["camera"])
        np.testing.assert_array_equal(VideoClassifier(model).classify(path).logits, want["camera"])
        streamed = [p.logits for p in StreamClassifier(model, window=8).run(path) if p.error is None]
        explicit = [p.logits for p in StreamClassifier(model, window=8).run(VideoFile(path, conversion="camera"))
                    if p.error is None]
        assert streamed and all(np.array_equal(a, b) for a, b in zip(streamed, explicit, strict=True))
    for flags, conversion in (([], "camera"), (["--conversion", "swscale"], "swscale")):
        assert sdk_main(["classify", path, "--bundle", bundle, "--runtime", "python", "--backend", "onnx", "--json",
                         *flags]) == 0
        got = np.asarray(json.loads(capsys.readouterr().out)["logits"], np.float32)
        # exactly: the same program on the same input (JSON carries float32 logits exactly); an untrained model's
        # logits of the two conversions may differ by less than any tolerance would tell apart
        np.testing.assert_array_equal(got, want[conversion], err_msg=" ".join(flags) or "default")
