"""Importers of public datasets' annotation files (training/data/importers.py): Something-Something v2 and Kinetics
annotations over a few local videos become CSV-layout datasets that point at the videos, with missing videos
reported rather than fatal."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from sdk.errors import ConfigError
from training.data.check import check_dataset
from training.data.datasets import VIDEO_SUFFIXES, DatasetInfo
from training.data.importers import import_kinetics, main


def _rows(path: Path) -> list[tuple[str, str]]:
    with path.open(newline="") as f:
        return [(r["path"], r["label"]) for r in csv.DictReader(f)]


def test_ssv2(tmp_path: Path, write_video, capsys):
    ann, videos, out = tmp_path / "labels", tmp_path / "20bn-something-something-v2", tmp_path / "ssv2"
    ann.mkdir()
    (ann / "something-something-v2-labels.json").write_text(json.dumps({
        "Putting something on a surface": "1", "Holding something": "0",
        "Pushing [something] from left to right": "2"}))  # brackets or not: the same class
    train = [{"id": "101", "label": "holding a pen", "template": "Holding [something]", "placeholders": ["a pen"]},
             {"id": "102", "label": "putting a cup on a table", "template": "Putting [something] on a surface",
              "placeholders": ["a cup"]},
             {"id": "103", "label": "holding a cup", "template": "Holding [something]", "placeholders": ["a cup"]}]
    val = [{"id": "201", "label": "pushing a box from left to right",
            "template": "Pushing [something] from left to right", "placeholders": ["a box"]}]
    (ann / "something-something-v2-train.json").write_text(json.dumps(train))
    (ann / "something-something-v2-validation.json").write_text(json.dumps(val))
    for video in ("101", "102", "201"):  # 103 was never downloaded
        write_video(videos / f"{video}.webm")

    assert main(["ssv2", "--annotations", str(ann), "--videos", str(videos), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "warning: 1 of 3 train videos are missing (first: 103)" in captured.err
    assert (out / "labels.txt").read_text().splitlines() == ["Holding something", "Putting something on a surface",
                                                             "Pushing something from left to right"]
    assert _rows(out / "train.csv") == [(str((videos / "101.webm").resolve()), "Holding something"),
                                        (str((videos / "102.webm").resolve()), "Putting something on a surface")]
    assert (out / "missing.txt").read_text() == "train 103\n"
    meta = json.loads((out / "meta.json").read_text())["source"]
    assert meta["format"] == "ssv2" and meta["videos_found"] == {"train": 2, "val": 1}
    assert not [p for p in out.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES], "no video is copied"
    info = DatasetInfo.from_dir(out)
    assert [r.label for r in info.records("train.csv")] == [0, 1] and [r.label for r in info.records("val.csv")] == [2]
    report = check_dataset(info, ["train.csv", "val.csv"], decode=True)
    assert report.ok and "no pairs declared: within-pair accuracy will not be reported" in report.notes

    assert main(["ssv2", "--annotations", str(ann), "--videos", str(videos), "--out", str(out)]) == 2
    assert "already holds a dataset" in capsys.readouterr().err
    (ann / "something-something-v2-validation.json").write_text(json.dumps(
        [{**val[0], "template": "Spinning [something]"}]))
    assert main(["ssv2", "--annotations", str(ann), "--videos", str(videos), "--out", str(out), "--force"]) == 2
    assert "template 'Spinning [something]', which is not in something-something-v2-labels.json" in \
        capsys.readouterr().err


KINETICS_HEADER = "label,youtube_id,time_start,time_end,split\n"


def test_kinetics(tmp_path: Path, write_video, capsys):
    videos, out = tmp_path / "videos", tmp_path / "k400"
    (tmp_path / "train.csv").write_text(KINETICS_HEADER + "abseiling,aaa,10,20,train\nair drumming,bbb,0,10,train\n"
                                        "abseiling,ccc,5,15,train\nair drumming,eee,1,11,train\n")
    (tmp_path / "validate.csv").write_text(KINETICS_HEADER + "air drumming,ddd,3,13,val\n")
    write_video(videos / "abseiling" / "aaa_000010_000020.mp4")  # trimmed clip, in its label's folder
    write_video(videos / "air_drumming" / "bbb.mp4")  # whole video, label folder with underscores
    write_video(videos / "ddd_000003_000013.mkv")  # at the top
    write_video(videos / ".partial" / "ccc_000005_000015.mp4")  # a hidden folder's files do not count
    write_video(videos / "abseiling" / "eee_000001_000011.mp4")  # another class's folder: still this clip
    write_video(videos / "air drumming" / "eee_000001_000011.mp4")  # ... but its own label's folder first

    assert main(["kinetics", "--train-csv", str(tmp_path / "train.csv"), "--val-csv", str(tmp_path / "validate.csv"),
                 "--videos", str(videos), "--out", str(out)]) == 0
    assert "warning: 1 of 4 train videos are missing (first: ccc)" in capsys.readouterr().err
    assert (out / "labels.txt").read_text().splitlines() == ["abseiling", "air drumming"]
    root = videos.resolve()
    assert _rows(out / "train.csv") == [(str(root / "abseiling/aaa_000010_000020.mp4"), "abseiling"),
                                        (str(root / "air_drumming/bbb.mp4"), "air drumming"),
                                        (str(root / "air drumming/eee_000001_000011.mp4"), "air drumming")]
    assert _rows(out / "val.csv") == [(str(root / "ddd_000003_000013.mkv"), "air drumming")]
    info = DatasetInfo.from_dir(out)
    assert check_dataset(info, ["train.csv", "val.csv"], decode=False).ok
    assert json.loads((out / "meta.json").read_text())["source"]["format"] == "kinetics"

    (tmp_path / "test.csv").write_text(KINETICS_HEADER + ",zzz,0,10,test\n")
    with pytest.raises(ConfigError, match="1 rows have no label"):
        import_kinetics(tmp_path / "train.csv", tmp_path / "test.csv", videos, tmp_path / "other")
    (tmp_path / "lost.csv").write_text(KINETICS_HEADER + "abseiling,zzz,0,10,val\n")
    assert main(["kinetics", "--train-csv", str(tmp_path / "train.csv"), "--val-csv", str(tmp_path / "lost.csv"),
                 "--videos", str(videos), "--out", str(tmp_path / "other")]) == 2
    assert "none of the val videos were found" in capsys.readouterr().err
    assert not (tmp_path / "other").exists(), "nothing is written when a split would be empty"
