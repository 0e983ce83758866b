"""Real files with broken timestamps (issue 26): an H.264 High-profile clip with B-frames whose decoded frames carry
pts that go backwards is streamed with every frame kept -- ``sdk.StreamClassifier.run`` / ``sdk.classifier.drive``
(PyAV and OpenCV sources), the native core's ``NativeStream``, ``python -m sdk stream`` (``--native`` too) and the
Jetson app -- with one warning instead of one error per frame, and the same predictions as the same frames pushed
without timestamps.

The clip is made here: libx264 (``profile=high``, 2 B-frames between references, fixed GOP structure) encodes 90
frames, and the packets are remuxed into Matroska with the presentation stamps handed out in decode order (pts :=
the sorted pts, in the order the packets arrive), as a muxer that writes decode-order stamps does. Decoding it gives
frame times 0, 0.067, 0.1, 0.033, ... (30 of 89 steps go backwards); the fixture asserts that first, so no test can
pass on a clip that is not broken.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

import executorch  # noqa: F401  (the core links its C++ runtime; a missing wheel fails, never skips)

import sdk
from apps.jetson.app import run as jetson_run
from sdk.__main__ import main as sdk_main
from sdk.classifier import StreamClassifier, _Timeline
from sdk.native.stream import NativeStream
from test_native import native_dir  # noqa: F401  (the session build of the core)
from test_native_bundles import video

N, FPS, WINDOW = 90, 30, 8
BROKEN = "frame timestamps go backwards"


def scrambled_h264(path: Path, frames: np.ndarray, fps: int) -> Path:
    """``frames`` as H.264 High profile with B-frames in ``path`` (.mkv), each packet stamped with the presentation
    time of its position in decode order: decoded frames come out in display order carrying those stamps."""
    import av

    encoded = path.with_name(path.stem + "-encoded.mp4")
    with av.open(str(encoded), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={
            "profile": "high", "x264-params": "bframes=2:b-adapt=0:scenecut=0"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))
    with av.open(str(encoded)) as src, av.open(str(path), "w") as out:
        s = src.streams.video[0]
        remuxed = out.add_stream_from_template(s)
        packets = [p for p in src.demux(s) if p.dts is not None]  # the last, empty packet flushes
        for packet, pts in zip(packets, sorted(p.pts for p in packets)):
            packet.pts = packet.dts = pts
            packet.stream = remuxed
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """The scrambled file and its decoded frames; asserts it is High profile, has B-frames, and decodes all ``N``
    frames with timestamps that go backwards."""
    import av

    path = scrambled_h264(tmp_path_factory.mktemp("scrambled") / "camera.mkv", video(N, seed=5), FPS)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        decoded = list(c.decode(s))
        assert s.codec_context.name == "h264" and s.codec_context.profile == "High"
    times = np.array([f.time for f in decoded])
    types = {av.video.frame.PictureType(f.pict_type).name for f in decoded}
    assert len(decoded) == N and types >= {"I", "P", "B"}, types
    assert (np.diff(times) <= 0).sum() >= 20, times[:12]  # 30 of the 89 steps go backwards
    assert np.all(np.diff(np.sort(times)) > 0)  # ... a regular timeline, handed out in the wrong order
    frames = np.stack([f.to_ndarray(format="rgb24") for f in decoded])
    return path, frames


def broken_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sdk" and BROKEN in r.getMessage()]


def _reference(push, frames: np.ndarray) -> list:
    """The predictions of ``frames`` pushed one by one without timestamps."""
    return [p for p in (push(f) for f in frames) if p is not None]


def _assert_same(got: list, want: list, atol: float = 0.0) -> None:
    assert [p.frame_index for p in got] == [p.frame_index for p in want] == [WINDOW * (i + 1) - 1
                                                                             for i in range(N // WINDOW)]
    for a, b in zip(got, want):
        assert a.ok and a.class_ids == b.class_ids
        np.testing.assert_allclose(a.logits, b.logits, rtol=0, atol=atol)
    times = [p.timestamp for p in got]
    assert all(t is not None for t in times) and np.all(np.diff(times) > 0)


@pytest.fixture(scope="module")
def model(native_bundles):
    with sdk.load(native_bundles["clip"], backend="executorch", precision="fp32") as m:
        yield m


def test_push_refuses_the_raw_timestamps(clip, model) -> None:
    """The documented contract of ``push``: a timestamp not after the previous one is an error event. On this clip's
    own timestamps a third of the frames would be lost that way -- what ``run`` must not do."""
    import av

    path, frames = clip
    with av.open(str(path)) as c:
        times = [f.time for f in c.decode(c.streams.video[0])]
    clf = StreamClassifier(model, window=WINDOW)
    errors = [p for p in (clf.push(f, t) for f, t in zip(frames, times)) if p is not None and not p.ok]
    assert len(errors) == int((np.diff(np.maximum.accumulate(times)) <= 0).sum()) >= 20
    assert all("timestamps must increase" in str(p.error) for p in errors)


@pytest.mark.parametrize("reader", ["pyav", "opencv"])
def test_python_stream_keeps_every_frame(clip, model, reader, caplog) -> None:
    path, frames = clip
    if reader == "opencv":  # the camera / RTSP reader: its own decoder, its own RGB conversion
        with sdk.StreamCapture(str(path)) as cap:
            frames = np.stack(list(cap))
    clf = StreamClassifier(model, window=WINDOW)
    with caplog.at_level(logging.WARNING, logger="sdk"):
        if reader == "pyav":
            preds = list(clf.run(path))
        else:
            with sdk.StreamCapture(str(path)) as cap:
                preds = list(clf.run(cap))
    assert clf.stats.frames_seen == N and clf.stats.frame_errors == 0 and all(p.ok for p in preds)
    _assert_same(preds, _reference(StreamClassifier(model, window=WINDOW).push, frames))
    warned = broken_warnings(caplog)
    assert len(warned) == 1 and "camera.mkv" in warned[0] and "33.3 ms (the header's 30 fps)" in warned[0]


def test_native_stream_keeps_every_frame(clip, native_bundles, native_dir, caplog) -> None:
    path, frames = clip
    options = {"window": WINDOW, "precision": "fp32", "library": native_dir}
    with NativeStream(native_bundles["clip"], **options) as nat, caplog.at_level(logging.WARNING, logger="sdk"):
        preds = list(nat.run(path))
        assert nat.stats.frames_seen == N and nat.stats.frame_errors == 0
    with NativeStream(native_bundles["clip"], **options) as ref:
        _assert_same(preds, _reference(ref.push, frames))
    assert len(broken_warnings(caplog)) == 1


@pytest.mark.parametrize("native", [False, True])
def test_cli_stream_prints_no_error_lines(clip, native_bundles, native_dir, native, capsys, caplog) -> None:
    path, _ = clip
    args = ["stream", str(path), "--bundle", str(native_bundles["clip"]), "--window", str(WINDOW), "--precision",
            "fp32"] + (["--native", "--library", str(native_dir)] if native else [])
    with caplog.at_level(logging.WARNING, logger="sdk"):
        assert sdk_main(args) == 0
    out = capsys.readouterr().out
    assert "error" not in out and out.count("[model ") == N // WINDOW and f"{N} frames in" in out
    assert len(broken_warnings(caplog)) == 1


@pytest.mark.parametrize("native", [False, True])
def test_jetson_app_keeps_every_frame(clip, native_bundles, native_dir, native, tmp_path, capsys) -> None:
    path, _ = clip
    summary = jetson_run(native_bundles["clip"], str(path), out=tmp_path / "a.mp4", headless=True, window=WINDOW,
                         backend="executorch", native=native, library=native_dir if native else None, quiet=True)
    assert summary["frames"] == N and summary["predictions"] == N // WINDOW
    assert "bad frame" not in capsys.readouterr().err


def test_timeline_repair(caplog) -> None:
    """``_Timeline`` on hand-made stamps: passes increasing ones through, re-times from the first that is not after
    its predecessor (header rate, else the median step so far, else 30 fps), warns once."""
    def timed(fps, stamps, last=None):
        t = _Timeline("cam", fps, last)
        return [t(i, ts) for i, ts in enumerate(stamps)]

    with caplog.at_level(logging.WARNING, logger="sdk"):
        out = timed(30.0, [0.0, 0.101, 0.067, 0.134, 0.034, 0.2, 0.168])
        assert out[:2] == [0.0, 0.101] and out[2] == pytest.approx(0.101 + 1 / 30)  # kept after what was passed on
        np.testing.assert_allclose(np.diff(out[2:]), 1 / 30)
        assert len(broken_warnings(caplog)) == 1 and "frame 2 at 0.067 s after 0.101 s" in caplog.records[-1].message
        out = timed(None, [0.0, 0.04, 0.08, 0.12, 0.10, None])  # no header rate: the median step so far
        assert out[4:] == pytest.approx([0.16, 0.20]) and "median step" in caplog.records[-1].message
        assert timed(None, [0.5, 0.5]) == pytest.approx([0.5, 0.5 + 1 / 30])  # nothing to measure: 30 fps
        assert "30 fps assumed" in caplog.records[-1].message
        assert timed(10.0, [None, 0.0, 0.1, 0.05, None]) == pytest.approx([None, 0.0, 0.1, 0.2, 0.3])
        caplog.clear()
        assert timed(10.0, [0.0, 0.1, 0.2], last=2.0) == pytest.approx([2.1, 2.2, 2.3])  # a second file continues
        assert timed(10.0, [5.0, 5.1], last=2.0) == [5.0, 5.1]
        assert broken_warnings(caplog) == []
