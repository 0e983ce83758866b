"""The first end-to-end training path: train.py on the tiny benchmark, and the README main job (pipeline)."""
from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edgevideo import pipeline
from sdk.preprocess import Preprocess
from sdk.samplers import Sampler
from training.checkpoint import CheckpointMeta
from training.train import main as train_main

REPO = Path(__file__).resolve().parents[1]


def test_train_writes_metrics_and_loadable_checkpoints(tiny_benchmark: Path, tmp_path: Path, capsys):
    out = tmp_path / "run"
    args = ["--data", str(tiny_benchmark), "--out", str(out), "--epochs", "2", "--frames", "4", "--size", "64",
            "--resize", "72", "--batch-size", "16", "--workers", "0", "--no-pretrained"]
    assert train_main(args) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    ckpt = torch.load(out / "best.pt", map_location="cpu", weights_only=True)  # no pickled code in checkpoints
    # the logged validation is the saved model's: evaluating best.pt alone gives its epoch's row
    from training.evaluate import evaluate_checkpoint

    evaluated = evaluate_checkpoint(out / "best.pt", tiny_benchmark, workers=0, out=tmp_path / "eval")
    logged = rows[ckpt["epoch"] - 1]
    assert evaluated["n"] == logged["val_n"] == 32
    assert evaluated["top1"] == pytest.approx(logged["val_top1"])
    assert evaluated["within_pair_acc"] == pytest.approx(logged["val_within_pair_acc"])
    assert logged["val_top1"] == max(r["val_top1"] for r in rows)
    assert Sampler.from_dict(ckpt["sampler"]) == Sampler("uniform_segments", 4)
    assert Preprocess.from_dict(ckpt["preprocess"]) == Preprocess(size=64, resize=72)
    assert len(ckpt["labels"]) == 16 and ckpt["epoch"] in (1, 2)
    # the training videos' clip profile, from their headers: what the runtime should expect of a video
    assert ckpt["dataset"]["clip"] == {"frames": 16, "fps": 15.0, "seconds": pytest.approx(16 / 15), "videos": 64}
    # written through CheckpointMeta: its schema reads back every metadata entry, nothing more, nothing less
    metadata = {k: v for k, v in ckpt.items() if k not in ("model", "epoch")}
    assert CheckpointMeta.from_dict(ckpt, out / "best.pt").to_dict() == metadata
    assert not list(out.glob("*.tmp")), "atomic writes leave no temporary files"
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "best val top-1" in capsys.readouterr().out


@pytest.mark.timeout(1800)  # nine stages, three torch.export round trips for int8
def test_pipeline_main_job_on_tiny(tmp_path: Path, capsys):
    """README command (a) on the CI-sized preset: generate -> cache -> teacher, TSN baseline, students with and without
    the teacher -> QAT -> evaluate -> table, summary.json, plot -> int8 bundle -> streaming; a rerun reuses the
    benchmark, the cache and every finished stage."""
    args = ["--preset", "tiny", "--out", str(tmp_path), "--workers", "0", "--stream-videos", "4"]
    # the first run as a user runs it, its output going to a log file (no terminal): stdout and stderr, native too
    run = subprocess.run([sys.executable, "-m", "training.pipeline", *args], cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=1500)
    raw = run.stdout  # bytes: text mode would turn a carriage return into a newline and hide it
    out = raw.decode()
    assert run.returncode == 0, out[-3000:]
    assert "int8 QAT" in out and "baseline_tsn" in out and "student_no_teacher" in out
    # quiet by default: the known-harmless third-party chatter is hidden (training/logs.py), and progress is a line
    # per loop, not carriage-return updates
    noise = [line for line in out.splitlines() if re.search(r"failed to load|deprecated|cpuinfo", line, re.I)]
    assert not noise, noise[:5]
    assert b"\r" not in raw and len(out.splitlines()) < 300
    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = {r["role"]: r for r in summary["models"]}
    assert list(rows) == ["teacher", "baseline_tsn", "student", "student_no_teacher", "student_k4", "teacher_25pct",
                          "student_unlabelled", "student_25pct_no_teacher"]
    for role, r in rows.items():
        assert set(r) >= {"role", "model", "frames", "gmacs", "top1_fp32", "within_pair_fp32", "top1_int8",
                          "checkpoint"}
        assert Path(r["checkpoint"]).is_file()
        # the table's figure is the role's own evaluation (its eval.json), not another number
        evaluated = json.loads((Path(r["checkpoint"]).parent / "eval-val-1x1" / "eval.json").read_text())
        assert r["top1_fp32"] == pytest.approx(evaluated["top1"]) and evaluated["n"] == summary["val_clips"]
        assert (r["top1_int8"] is None) == (role != "student")
        assert (tmp_path / role / "eval-val-1x1" / "confusion.png").is_file()
    # the frame budget: the shipped 2-frame student and the 4-frame one, both distilled from the teacher
    assert [(b["role"], b["frames"]) for b in summary["frame_budget"]] == [("student", 2), ("student_k4", 4)]
    assert summary["frame_budget"][1]["macs_ratio"] == pytest.approx(rows["student_k4"]["gmacs"]
                                                                      / rows["teacher"]["gmacs"])
    # the label-scarce rows: a quarter of every class's training labels, the other videos given without a label
    # (one of the 4 per class of the tiny preset: 16 labelled, 48 unlabelled); the unlabelled ones reach the
    # distilled student only, and its teacher is the one trained on the quarter
    train_videos = {Path(p).resolve() for p in
                    (tmp_path / "data-tiny-seed0" / "videos" / "train").glob("*.mp4")}
    labelled = {Path(row["path"]) for row in csv.DictReader((tmp_path / "splits" / "labelled_25pct.csv").open())}
    unlabelled = {Path(row["path"]) for row in csv.DictReader((tmp_path / "splits" / "unlabelled_25pct.csv").open())}
    assert len(labelled) == 16 and not labelled & unlabelled and labelled | unlabelled == train_videos
    scarce = summary["label_scarce"]
    assert (scarce["labelled_videos"], scarce["unlabelled_videos"]) == (16, 48)
    for role, seen in (("teacher_25pct", (16, 0)), ("student_unlabelled", (16, 48)),
                       ("student_25pct_no_teacher", (16, 0)), ("student", (64, 0))):
        assert (rows[role]["labelled_videos"], rows[role]["unlabelled_videos"]) == seen, role
    distilled = json.loads((tmp_path / "student_unlabelled" / "distill.json").read_text())
    assert (distilled["labelled_videos"], distilled["unlabelled_videos"]) == (16, 48)
    assert torch.load(tmp_path / "student_unlabelled" / "best.pt", weights_only=True)["teacher"]["checkpoint"] == \
        str(tmp_path / "teacher_25pct" / "best.pt")
    assert scarce["gain_points"] == pytest.approx(100 * (rows["student_unlabelled"]["top1_fp32"]
                                                         - rows["student_25pct_no_teacher"]["top1_fp32"]))
    for name, entry in summary["int8"].items():  # both int8 programs sit in int8/: each has its own evaluation
        assert json.loads((tmp_path / "int8" / f"eval-{name}-val-1x1" / "eval.json").read_text())["top1"] == \
            pytest.approx(entry["top1"])
    assert (rows["teacher"]["frames"], rows["student"]["frames"]) == (8, 2)
    # same backbone and head; the TAM's temporal taps add well under 1 % of the MACs
    tam, tsn = rows["teacher"]["gmacs"], rows["baseline_tsn"]["gmacs"]
    assert tsn < tam < 1.01 * tsn
    assert summary["student_teacher"]["macs_ratio"] <= 0.3
    assert summary["int8"]["int8_ptq"]["top1"] is not None
    # the cache-trained student is fine-tuned to int8 on the centre crops it was trained on, not multi-scale crops
    assert json.loads((tmp_path / "int8" / "qat.json").read_text())["crop"] == "centre"
    streaming = summary["streaming"]
    assert streaming["videos"] == len(streaming["predictions"]) == 4  # one prediction per streamed video
    assert all(p["correct"] == (p["true"] == p["predicted"]) for p in streaming["predictions"])
    assert streaming["top1"] == sum(p["correct"] for p in streaming["predictions"]) / 4
    assert (tmp_path / "accuracy_vs_gmacs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((tmp_path / "student.vbundle" / "manifest.json").read_text())
    assert {p["precision"] for p in manifest["programs"]} == {"int8"}  # the shipped bundle is the QAT model
    assert pipeline.main(args) == 0
    again = capsys.readouterr().out
    # cache, teacher, baseline, two students, the 4-frame student, the three label-scarce rows, qat, export
    assert "reusing" in again and again.count("done before") == 11


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
