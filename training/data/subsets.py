"""Subsets of a labelled split, written as CSV splits outside the dataset folder (which is only read): the few labels
of a label-scarce experiment, the training-set sizes of ``python -m benchmarks data_size``.

Subsets are drawn per class with a seed and nested: the n videos of a class are among its m > n.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

from training.data.datasets import VideoRecord

__all__ = ["labelled_fraction", "nested_subsets", "write_paths", "write_split"]


def _shuffled_by_class(records: Sequence[VideoRecord], seed: int) -> dict[int, list[VideoRecord]]:
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[VideoRecord]] = {}
    for rec in records:
        by_class.setdefault(rec.label, []).append(rec)
    return {label: [recs[i] for i in rng.permutation(len(recs))] for label, recs in sorted(by_class.items())}


def nested_subsets(records: Sequence[VideoRecord], per_class: Sequence[int], seed: int) -> dict[int, list[VideoRecord]]:
    """For each n, n videos of every class (all of a class that has fewer); smaller subsets are inside larger ones."""
    order = _shuffled_by_class(records, seed)
    return {n: [rec for label in sorted(order) for rec in order[label][:n]] for n in per_class}


def labelled_fraction(records: Sequence[VideoRecord], fraction: float, seed: int
                      ) -> tuple[list[VideoRecord], list[VideoRecord]]:
    """``(labelled, rest)``: ``fraction`` of every class's videos (rounded, at least one) in :func:`nested_subsets`'
    draw (a smaller fraction is inside a larger one), and every other video in the split's order."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    order = _shuffled_by_class(records, seed)
    picked = [rec for label in sorted(order) for rec in order[label][:max(1, round(fraction * len(order[label])))]]
    chosen = {rec.path for rec in picked}
    return picked, [rec for rec in records if rec.path not in chosen]


def write_split(records: Sequence[VideoRecord], labels: Sequence[str], path: Path) -> Path:
    """A ``path,label`` CSV of absolute paths (it lives outside the dataset folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows((str(rec.path.resolve()), labels[rec.label]) for rec in records)
    return path


def write_paths(records: Sequence[VideoRecord], path: Path) -> Path:
    """A ``path`` CSV of absolute paths and no label: videos for ``training.distill --unlabelled``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path"])
        writer.writerows([str(rec.path.resolve())] for rec in records)
    return path
