"""The first end-to-end training path: train.py on the tiny benchmark, and the README main job (pipeline)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sdk.preprocess import Preprocess
from sdk.samplers import Sampler
from training import pipeline
from training.train import main as train_main


def test_train_writes_metrics_and_loadable_checkpoints(tiny_benchmark: Path, tmp_path: Path, capsys):
    out = tmp_path / "run"
    args = ["--data", str(tiny_benchmark), "--out", str(out), "--epochs", "2", "--frames", "4", "--size", "64",
            "--resize", "72", "--batch-size", "16", "--workers", "0", "--no-pretrained"]
    assert train_main(args) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert 0.0 <= r["val_top1"] <= 1.0 and 0.0 <= r["val_within_pair_acc"] <= 1.0 and r["train_loss"] > 0
    ckpt = torch.load(out / "best.pt", map_location="cpu", weights_only=True)  # no pickled code in checkpoints
    assert Sampler.from_dict(ckpt["sampler"]) == Sampler("uniform_segments", 4)
    assert Preprocess.from_dict(ckpt["preprocess"]) == Preprocess(size=64, resize=72)
    assert len(ckpt["labels"]) == 16 and ckpt["epoch"] in (1, 2)
    assert not list(out.glob("*.tmp")), "atomic writes leave no temporary files"
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "best val top-1" in capsys.readouterr().out


@pytest.mark.timeout(1800)  # five stages, three torch.export round trips for int8
def test_pipeline_main_job_on_tiny(tmp_path: Path, capsys):
    """README command (a) on the CI-sized preset: generate -> teacher -> distil -> QAT -> evaluate -> summary table;
    a rerun reuses the benchmark and every finished stage."""
    args = ["--preset", "tiny", "--out", str(tmp_path), "--workers", "0"]
    assert pipeline.main(args) == 0
    out = capsys.readouterr().out
    assert "top-1 int8" in out and "student tam_mobilenet_v2" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    teacher, student = summary["models"]
    assert (teacher["frames"], student["frames"]) == (16, 2)
    assert student["gmacs"] / teacher["gmacs"] <= 0.15
    assert 0.0 <= student["top1_int8"] <= 1.0 and summary["ptq_top1"] is not None
    for name in ("teacher", "student"):
        assert (tmp_path / name / "eval-val-1x1" / "confusion.png").is_file()
    assert (tmp_path / "int8" / "int8_qat.pt2").is_file()
    assert pipeline.main(args) == 0
    again = capsys.readouterr().out
    assert "reusing" in again and again.count("done before") == 4  # teacher, distil, qat, export


def test_train_on_frame_folders_in_the_list_format(tiny_benchmark: Path, tmp_path: Path):
    """The TSN/bLVNet layout: frames/<clip>/img_00001.jpg ... and 'folder num_frames label' lists."""
    import shutil

    import cv2

    from sdk.video import VideoFile
    from training.data.datasets import read_video_csv

    data = tmp_path / "frames_dataset"
    (data / "frames").mkdir(parents=True)
    shutil.copy(tiny_benchmark / "labels.txt", data / "labels.txt")
    lines = []
    for i, rec in enumerate(read_video_csv(tiny_benchmark / "val.csv")[::2]):  # one clip per class
        folder = data / "frames" / f"clip{i}"
        folder.mkdir()
        with VideoFile(rec.path) as v:
            for t, frame in enumerate(v):
                cv2.imwrite(str(folder / f"img_{t + 1:05d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        lines.append(f"clip{i} {t + 1} {rec.label}")
    (data / "frames" / "list.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    args = ["--data", str(data), "--train-split", "frames/list.txt", "--val-split", "frames/list.txt",
            "--out", str(out), "--epochs", "1", "--frames", "4", "--size", "64", "--resize", "72",
            "--workers", "0", "--no-pretrained"]
    assert train_main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train_clips"] == summary["val_clips"] == 16
