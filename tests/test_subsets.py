"""Label-scarce splits (``training.data.subsets``): the labelled fraction is drawn per class, the rest is every other
video, smaller fractions sit inside larger ones, and the CSVs read back as a split and as unlabelled footage."""
from __future__ import annotations

from pathlib import Path

import pytest

from training.data.datasets import VideoRecord, read_video_csv
from training.data.subsets import labelled_fraction, nested_subsets, write_paths, write_split
from training.data.unlabelled import UNLABELLED, read_unlabelled

LABELS = ["a", "b", "c"]


def records(tmp_path: Path, per_class=(8, 12, 1)) -> list[VideoRecord]:
    recs = []
    for label, n in enumerate(per_class):
        for i in range(n):
            path = tmp_path / "videos" / f"{LABELS[label]}_{i}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
            recs.append(VideoRecord(path, label))
    return recs


def test_labelled_fraction_is_per_class_disjoint_complete_and_nested(tmp_path: Path):
    recs = records(tmp_path)
    labelled, rest = labelled_fraction(recs, 0.25, seed=0)
    per_class = [sum(r.label == c for r in labelled) for c in range(3)]
    assert per_class == [2, 3, 1]  # rounded, and at least one for the class of 1
    assert {r.path for r in labelled}.isdisjoint(r.path for r in rest)
    assert sorted(r.path for r in labelled + rest) == sorted(r.path for r in recs)
    assert rest == [r for r in recs if r not in labelled]  # the split's own order
    half, _ = labelled_fraction(recs, 0.5, seed=0)
    assert {r.path for r in labelled} <= {r.path for r in half}
    assert labelled_fraction(recs, 0.25, seed=0)[0] == labelled  # the seed decides
    assert labelled_fraction(recs, 0.25, seed=1)[0] != labelled
    subsets = nested_subsets(recs, [1, 2], seed=0)
    assert set(map(id, subsets[1])) <= set(map(id, subsets[2])) and len(subsets[2]) == 5
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match="fraction"):
            labelled_fraction(recs, bad, seed=0)


def test_the_csvs_read_back_as_a_split_and_as_unlabelled_footage(tmp_path: Path):
    recs = records(tmp_path)
    labelled, rest = labelled_fraction(recs, 0.25, seed=0)
    split = write_split(labelled, LABELS, tmp_path / "out" / "labelled.csv")
    back = read_video_csv(split, LABELS)
    assert [(r.path, r.label) for r in back] == [(r.path.resolve(), r.label) for r in labelled]
    footage = read_unlabelled(str(write_paths(rest, tmp_path / "out" / "unlabelled.csv")))
    assert [r.path for r in footage] == [r.path.resolve() for r in rest]
    assert {r.label for r in footage} == {UNLABELLED}
