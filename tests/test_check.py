"""Dataset validation (training/data/check.py): the cheap check every training tool runs first, the decoding check,
and the command line's table, JSON and exit status."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from sdk.errors import ConfigError
from training.data.check import check_dataset, main
from training.data.datasets import DatasetInfo


def _dataset(root: Path, write_video, train: str, val: str) -> Path:
    """labels a, b, c; videos/{a,b,c}{0,1}.mp4 with 8, 12 or 20 frames at 10 fps; the given split rows."""
    for label, frames in (("a", 8), ("b", 12), ("c", 20)):
        for i in range(2):
            write_video(root / "videos" / f"{label}{i}.mp4", frames=frames, fps=10)
    (root / "labels.txt").write_text("a\nb\nc\n")
    (root / "train.csv").write_text("path,label\n" + train)
    (root / "val.csv").write_text("path,label\n" + val)
    return root


GOOD_TRAIN = "videos/a0.mp4,a\nvideos/b0.mp4,b\nvideos/c0.mp4,c\n"
GOOD_VAL = "videos/a1.mp4,a\nvideos/b1.mp4,b\nvideos/c1.mp4,c\n"


def test_cheap_check_finds_missing_and_shared_videos_and_notes_balance_and_pairs(tmp_path: Path, write_video):
    root = _dataset(tmp_path, write_video, GOOD_TRAIN + "videos/gone.mp4,a\nvideos/lost.mp4,b\n",
                    "videos/a1.mp4,a\nvideos/../videos/a0.mp4,a\n")  # a0 again, spelled differently
    (root / "alias.mp4").symlink_to(root / "videos" / "b0.mp4")
    (root / "test.csv").write_text("path,label\nalias.mp4,b\n")  # b0 through a link
    report = check_dataset(DatasetInfo.from_dir(root), ["train.csv", "val.csv", "test.csv"], decode=False)
    assert not report.ok and len(report.errors) == 3, report.errors
    assert report.errors[0].startswith("train.csv: 2 of 5 videos do not exist (first: ") and "gone.mp4" in \
        report.errors[0] and "lost.mp4" in report.errors[0]
    assert report.errors[1].startswith("train.csv and val.csv share 1 videos (first: ")
    assert report.errors[2].startswith("train.csv and test.csv share 1 videos (first: ")
    assert report.splits["val.csv"]["per_class"] == {"a": 2, "b": 0, "c": 0}
    assert "val.csv: 2 of 3 classes have no videos (b, c)" in report.notes
    assert "no pairs declared: within-pair accuracy will not be reported" in report.notes
    with pytest.raises(ConfigError, match=r"^train.csv: 2 of 5 videos do not exist .*\(and 2 more problems: python -m "
                                          r"training.data.check"):
        report.raise_for_problems()


def test_an_unknown_label_or_split_is_an_error_naming_the_line(tmp_path: Path, write_video):
    root = _dataset(tmp_path, write_video, GOOD_TRAIN, GOOD_VAL + "videos/a1.mp4,dancing\n")
    report = check_dataset(DatasetInfo.from_dir(root), ["train.csv", "val.csv", "test.csv"], decode=False)
    assert [e.split(":")[0] for e in report.errors] == [f"{root}/val.csv", "split 'test.csv' not found in " + str(root)]
    assert "val.csv:5: label 'dancing' is neither an index nor a known label name" in report.errors[0]


def test_decoding_check_measures_the_clips_and_finds_truncated_videos(tmp_path: Path, write_video):
    root = _dataset(tmp_path, write_video, GOOD_TRAIN + "videos/cut.avi,c\n", GOOD_VAL)
    data = write_video(tmp_path / "whole.avi", frames=20, fps=10).read_bytes()
    movi = data.index(b"movi") + 4  # an AVI header counts every frame written: cut the packets after it short
    (root / "videos" / "cut.avi").write_bytes(data[:movi + (len(data) - movi) // 2])
    report = check_dataset(DatasetInfo.from_dir(root), ["train.csv", "val.csv"], decode=True)
    train = report.splits["train.csv"]
    assert train["frames"] == {"min": 8, "median": 12, "max": 20} and train["undecodable"] == 1
    assert train["fps"] == {"min": 10.0, "median": 10.0, "max": 10.0}
    assert train["seconds"] == pytest.approx({"min": 0.8, "median": 1.2, "max": 2.0})
    assert train["sizes"] == {"32x32": 3}
    [error] = report.errors
    assert error.startswith("train.csv: 1 of 4 videos cannot be decoded to the end (first: ") and "cut.avi" in error
    assert "decoded" in error and "of 20 frames" in error, "the header's count against the decoded one"
    assert check_dataset(DatasetInfo.from_dir(root), ["val.csv"], decode=True).ok


def test_command_line_table_json_and_exit_status(tmp_path: Path, write_video, capsys):
    good = _dataset(tmp_path / "good", write_video, GOOD_TRAIN, GOOD_VAL)
    assert main([str(good)]) == 0
    out, err = capsys.readouterr()
    assert "frames min/med/max" in out and "train.csv" in out and "val.csv" in out and "error" not in err
    assert main([str(good), "--json", "--no-decode"]) == 0
    report = json.loads(capsys.readouterr().out)  # JSON only on stdout
    assert report["ok"] and report["splits"]["val.csv"]["videos"] == 3 and not report["decoded"]
    bad = _dataset(tmp_path / "bad", write_video, GOOD_TRAIN + "videos/gone.mp4,a\n", GOOD_TRAIN)
    assert main([str(bad), "--json"]) == 2
    out, err = capsys.readouterr()
    assert len(json.loads(out)["errors"]) == 2
    assert [line.split(":")[0] for line in err.splitlines() if line.startswith("error")] == ["error", "error"]
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "error: dataset directory" in capsys.readouterr().err


def _run_train(data: Path, out: Path) -> None:
    from training.train import TrainConfig, train

    train(TrainConfig(data=str(data), out=str(out), workers=0, pretrained=False))


def _run_distill(data: Path, out: Path) -> None:
    from training.distill import DistillConfig, distill

    distill(DistillConfig(data=str(data), out=str(out), no_teacher=True, workers=0, pretrained=False))


def _run_qat(data: Path, out: Path) -> None:
    from training.qat import QATConfig, quantize_checkpoint

    quantize_checkpoint(QATConfig(data=str(data), out=str(out), checkpoint=str(out / "best.pt"), workers=0))


def _run_evaluate(data: Path, out: Path) -> None:
    from training.evaluate import evaluate_checkpoint

    evaluate_checkpoint(out / "best.pt", data, workers=0, out=out)


@pytest.mark.parametrize("run", [_run_train, _run_distill, _run_qat, _run_evaluate],
                         ids=["train", "distill", "qat", "evaluate"])
def test_training_tools_check_the_dataset_before_building_anything(run, tmp_path: Path, write_video, monkeypatch):
    """A missing video fails every tool at once with the check's error: no model, checkpoint or cache is touched."""
    import importlib

    def built(*_, **__):
        pytest.fail("a model was built or loaded before the dataset was checked")

    for name in ("training.train", "training.distill", "training.qat", "training.evaluate"):
        module = importlib.import_module(name)
        for attr in ("create", "load_checkpoint_model"):
            if hasattr(module, attr):
                monkeypatch.setattr(module, attr, built)
    data = _dataset(tmp_path / "data", write_video, GOOD_TRAIN, GOOD_VAL + "videos/gone.mp4,a\n")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"^val.csv: 1 of 4 videos do not exist \(first: .*gone.mp4\)"):
        run(data, tmp_path / "run")
    assert time.perf_counter() - start < 1.0
