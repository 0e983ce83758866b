"""Frame sources (sdk.video): exact random access, typed errors on every kind of bad input, no hangs."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import av
import cv2

from sdk.errors import BackendUnavailableError, ConfigError, DecodeError, FrameError, SdkError  # noqa: E402
from sdk.video import FrameFolder, StreamCapture, VideoFile, open_source, probe  # noqa: E402

W, H, N = 64, 48, 60
TRIM = 5  # frames the edit list of the "trimmed" fixture hides
BITS = 6  # frame number as 6 black/white 8x8 blocks on the top row: survives H.264, catches any index mistake


def frame_image(i: int, rng: np.random.Generator) -> np.ndarray:
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)  # noise: large frames, so a 50% cut lands among frames
    img[:8] = 0
    for b in range(BITS):
        if i >> b & 1:
            img[:8, 8 * b : 8 * b + 8] = 255
    return img


def frame_number(rgb: np.ndarray) -> int:
    return sum(1 << b for b in range(BITS) if rgb[:8, 8 * b + 2 : 8 * b + 6].mean() > 128)


def encode(path: Path, *, gop: int | None = None, vfr: bool = False, faststart: bool = False) -> Path:
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        if gop:
            s.codec_context.gop_size = gop
        if vfr:
            s.codec_context.time_base = Fraction(1, 1000)
        pts = 0
        for i in range(N):
            f = av.VideoFrame.from_ndarray(frame_image(i, rng), format="rgb24")
            if vfr:  # 20 ms and 50 ms steps: the frame rate is not constant
                f.pts, f.time_base = pts, Fraction(1, 1000)
                pts += 20 if i % 3 else 50
            c.mux(s.encode(f))
        c.mux(s.encode())
    return path


def trim(src: Path, dst: Path, frames: int) -> Path:
    """Remux with the first ``frames`` frames before time 0: an edit list, as editors / ``ffmpeg -ss -c copy`` write."""
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        si = i.streams.video[0]
        so = o.add_stream_from_template(si)
        shift = round(frames / (si.average_rate * si.time_base))
        for p in i.demux(si):
            if p.dts is not None:
                p.pts, p.dts, p.stream = p.pts - shift, p.dts - shift, so
                o.mux(p)
    return dst


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    out = {
        "gop10": encode(d / "gop10.mp4", gop=10),
        "default": encode(d / "default.mp4"),
        "faststart": encode(d / "faststart.mp4", gop=10, faststart=True),
        "mkv": encode(d / "gop10.mkv", gop=10),  # no per-frame index: seeks by pts alone
        "vfr": encode(d / "vfr.mp4", gop=10, vfr=True),
    }
    out["trimmed"] = trim(out["gop10"], d / "trimmed.mp4", TRIM)
    return out


@pytest.fixture(scope="module")
def reference(videos) -> dict[str, np.ndarray]:
    """Every frame, decoded by plain PyAV on one thread (independent of the code under test)."""
    ref = {}
    for name, path in videos.items():
        with av.open(str(path)) as c:
            c.streams.video[0].thread_count = 1
            ref[name] = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    return ref


def test_fixture_frames_carry_their_number(reference):
    for name, frames in reference.items():
        first = TRIM if name == "trimmed" else 0
        assert [frame_number(f) for f in frames] == list(range(first, N))


ALL = ["gop10", "default", "faststart", "mkv", "vfr", "trimmed"]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("threads", [0, 1])
def test_sequential_frames(videos, reference, name, threads):
    with VideoFile(videos[name], threads=threads) as v:
        assert v.num_frames == len(reference[name]) and v.source == str(videos[name])
        frames = list(v)
    assert all(f.shape == (H, W, 3) and f.dtype == np.uint8 and f.flags.c_contiguous for f in frames)
    # Frame threading (threads=0) is bit-exact for H.264.
    np.testing.assert_array_equal(np.stack(frames), reference[name])


def test_probe(videos):
    info = probe(videos["gop10"])
    assert (info.num_frames, info.width, info.height, info.codec) == (N, W, H, "h264")
    assert info.fps == 30.0 and info.duration_s == pytest.approx(N / 30, abs=0.05)
    assert probe(videos["mkv"]).num_frames == N  # MKV has no frame count in its header: counted by demuxing


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(ALL), seek_gap=st.sampled_from([None, 1, 4]), data=st.data())
def test_read_indices_equals_sequential(videos, reference, name, seek_gap, data):
    index = st.integers(0, len(reference[name]) - 1)
    requests = data.draw(st.lists(st.lists(index, min_size=1, max_size=10), min_size=1, max_size=3), "requests")
    # Several requests on one source: the decoder's position carries over (forward, backward, repeated).
    with VideoFile(videos[name], seek_gap=seek_gap) as v:
        for idx in requests:
            out = v.read_indices(idx)
            assert out.shape == (len(idx), H, W, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
            np.testing.assert_array_equal(out, reference[name][idx])


def test_read_indices_decodes_only_what_is_needed(videos, monkeypatch):
    import sdk.video

    converted = []
    to_rgb = sdk.video._to_rgb
    monkeypatch.setattr(sdk.video, "_to_rgb", lambda f, *a: converted.append(f) or to_rgb(f, *a))
    with VideoFile(videos["default"]) as v:  # one keyframe: sequential, stops at the last index
        v.read_indices([5, 2, 5])
        assert v.frames_decoded == 6 and len(converted) == 2
    with VideoFile(videos["gop10"]) as v:  # seeks to the keyframe at or before a far target
        k = max(i for i in v._keyframes if i <= 55)
        assert k > 40
        v.read_indices([55])
        assert v.frames_decoded == 55 - k + 1 < 56
        before = v.frames_decoded
        v.read_indices([3])  # backward: seek (or restart) instead of failing
        assert v.frames_decoded - before <= 4


def test_seeking_falls_back_when_timestamps_do_not_count_frames(videos, reference):
    with VideoFile(videos["vfr"], seek_gap=1) as v:
        assert not v._seek_ok  # the duration does not match the frame count at the nominal rate
        # Force seeking by pts at the nominal rate: seeks land off target, that is detected, the request is redone.
        v._seek_ok, (v._ticks_num, v._ticks_den) = True, (v._time_base * v._rate).as_integer_ratio()
        for idx in ([40], [7, 59, 20]):  # [40] first: a seek before any frame could reveal the rate is wrong
            np.testing.assert_array_equal(v.read_indices(idx), reference["vfr"][idx])
            assert not v._seek_ok


@pytest.mark.parametrize("bad", [[N], [-1], [], [1.5], "ab"])
def test_read_indices_rejects_bad_indices(videos, bad):
    with VideoFile(videos["gop10"]) as v, pytest.raises(ConfigError):
        v.read_indices(bad)


def test_closed_source(videos):
    v = VideoFile(videos["gop10"])
    v.close()
    v.close()  # idempotent
    with pytest.raises(ConfigError, match="close"):
        v.read_indices([0])


# -------------------------------------------------------------------------------------------------------- errors
@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, videos) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    files = {"missing": d / "missing.mp4"}
    (files.setdefault("empty", d / "empty.mp4")).write_bytes(b"")
    (files.setdefault("random", d / "random.mp4")).write_bytes(np.random.default_rng(1).bytes(20000))
    (files.setdefault("text", d / "notes.txt")).write_text("not a video\n" * 200)
    for name in ("default", "faststart"):  # moov at the end / at the front
        data = videos[name].read_bytes()
        (files.setdefault(f"cut_{name}", d / f"cut_{name}.mp4")).write_bytes(data[: len(data) // 2])
    files["audio"] = d / "audio.m4a"
    with av.open(str(files["audio"]), "w") as c:
        s = c.add_stream("aac", rate=16000)
        for _ in range(8):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate = 16000
            c.mux(s.encode(f))
        c.mux(s.encode())
    return files


def decode_all(path: Path) -> None:
    with VideoFile(path) as v:
        for _ in v:
            pass


@pytest.mark.parametrize("name", ["missing", "empty", "random", "text", "cut_default", "cut_faststart", "audio"])
def test_bad_files_raise_decode_error(bad_files, name):
    path = bad_files[name]
    with pytest.raises(DecodeError) as e:
        decode_all(path)
    assert str(path) in str(e.value) and isinstance(e.value, SdkError)
    with pytest.raises(DecodeError):
        with open_source(path) as s:
            s.read_indices([s.num_frames - 1])


def test_truncated_file_says_how_much_decoded(bad_files):
    with VideoFile(bad_files["cut_faststart"]) as v:
        assert v.num_frames == N  # the header (at the front) is intact
        with pytest.raises(DecodeError, match=rf"decoded (\d+) of {N} frames"):
            v.read_indices([N - 1])
        with pytest.raises(DecodeError, match=rf"decoded (\d+) of {N} frames"):
            list(v)


# ----------------------------------------------------------------------------------------------- OpenCV sources
def test_stream_capture_on_a_file_matches_pyav(videos, reference):
    with StreamCapture(str(videos["gop10"])) as s:
        assert s.num_frames == N and s.fps == 30.0
        frames = np.stack(list(s))
        # OpenCV and PyAV bundle the same FFmpeg H.264 decoder and yuv->rgb conversion: the frames are identical.
        np.testing.assert_array_equal(frames, reference["gop10"])
        idx = [33, 2, 33, 59]
        np.testing.assert_array_equal(s.read_indices(idx), reference["gop10"][idx])
        np.testing.assert_array_equal(np.stack(list(s)), reference["gop10"])  # iterating again restarts


def test_stream_capture_failures_are_fast_and_typed(bad_files):
    t = time.monotonic()
    with pytest.raises(DecodeError, match="99"):
        StreamCapture(99)
    with pytest.raises(DecodeError, match="camera"):
        open_source("99")  # a digit string is a camera index
    with pytest.raises(DecodeError, match="127.0.0.1"):
        StreamCapture("rtsp://127.0.0.1:9/none", open_timeout_s=2.0)
    with pytest.raises(DecodeError, match="missing"):
        StreamCapture(str(bad_files["missing"]))
    assert time.monotonic() - t < 10
    with pytest.raises(ConfigError):
        StreamCapture(0, open_timeout_s=0)


# ---------------------------------------------------------------------------------------------- image folders
def test_frame_folder_template_and_natural_order(tmp_path, reference):
    frames = reference["gop10"][:12]
    tsn, plain = tmp_path / "tsn", tmp_path / "plain"
    tsn.mkdir()
    plain.mkdir()
    for i, f in enumerate(frames):
        bgr = cv2.cvtColor(f, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(tsn / f"img_{i + 1:05d}.png"), bgr)  # 1-based, as TSN / bLVNet extract frames
        cv2.imwrite(str(plain / f"frame_{i}.png"), bgr)  # frame_10 must come after frame_9
    (plain / "notes.txt").write_text("ignored")
    with FrameFolder(tsn, template="img_{:05d}.png", fps=30) as s:
        assert s.num_frames == 12 and s.fps == 30
        np.testing.assert_array_equal(s.read_indices([11, 0, 11]), frames[[11, 0, 11]])
    with open_source(plain) as s:
        assert isinstance(s, FrameFolder) and s.num_frames == 12
        got = list(s)
        assert all(f.flags.c_contiguous and f.dtype == np.uint8 for f in got)
        np.testing.assert_array_equal(np.stack(got), frames)  # png is lossless


def test_frame_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DecodeError, match="empty"):
        FrameFolder(empty)
    with pytest.raises(DecodeError, match="img_00001.jpg"):
        FrameFolder(empty, template="img_{:05d}.jpg")
    with pytest.raises(ConfigError):
        FrameFolder(empty, template="img.jpg")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    cv2.imwrite(str(corrupt / "img_00001.jpg"), np.zeros((8, 8, 3), np.uint8))
    (corrupt / "img_00002.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with FrameFolder(corrupt) as s:
        assert s.read_indices([0]).shape == (1, 8, 8, 3)
        with pytest.raises(DecodeError, match="img_00002.jpg"):
            s.read_indices([1])
    cv2.imwrite(str(corrupt / "img_00002.jpg"), np.zeros((16, 8, 3), np.uint8))
    with FrameFolder(corrupt) as s, pytest.raises(FrameError, match="sizes"):
        s.read_indices([0, 1])


def test_open_source_dispatch(videos, tmp_path):
    with open_source(videos["gop10"]) as s:
        assert isinstance(s, VideoFile)
    with open_source(str(videos["gop10"]), threads=1) as s:
        assert isinstance(s, VideoFile)


# ------------------------------------------------------------------------------------------------- lazy imports
def _python(code: str) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)


def test_import_needs_neither_av_nor_cv2(videos):
    code = f"""
import sys
import sdk.video
assert "av" not in sys.modules and "cv2" not in sys.modules, "av/cv2 imported at module level"
sys.modules["av"] = None
sys.modules["cv2"] = None
from sdk.errors import BackendUnavailableError
for make in (lambda: sdk.video.VideoFile({str(videos["gop10"])!r}), lambda: sdk.video.StreamCapture(0)):
    try:
        make()
    except BackendUnavailableError as e:
        assert "pip install" in str(e), e
    else:
        raise SystemExit("no BackendUnavailableError")
print("ok")
"""
    r = _python(code)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr
    assert issubclass(BackendUnavailableError, ImportError)


@pytest.mark.parametrize("degrees", [90, -90, 180])
def test_display_rotation_is_applied_like_opencv(tmp_path, degrees):
    """Phone videos are stored landscape with a display rotation: both decoders must give the same upright frames."""
    path = tmp_path / f"rot{degrees}.mp4"
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:8, :16] = 255  # a corner marker makes every orientation distinct
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=15)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.set_display_rotation(degrees)
        for _ in range(3):
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with VideoFile(path) as v:
        upright = v.read_indices([0])[0]
        assert (v.width, v.height) == (64, 48)  # stored size
    with VideoFile(path, autorotate=False) as v:
        stored = next(iter(v))
    assert stored.shape == (48, 64, 3) and upright.shape == ((64, 48, 3) if degrees % 180 else (48, 64, 3))
    with StreamCapture(str(path)) as s:
        np.testing.assert_array_equal(upright, next(iter(s)))
