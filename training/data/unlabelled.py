"""Unlabelled videos for distillation (``python -m training.distill --unlabelled PATH``): footage nobody labelled,
from which a student learns only what the teacher says about it.

``PATH`` is a folder searched recursively for video files (:data:`~training.data.datasets.VIDEO_SUFFIXES`, hidden
files and folders skipped), a ``.csv`` with a ``path`` column (any other column, a ``label`` one included, is
ignored: a labelled split can serve as unlabelled footage), or a text file of one video path per line (``#``
comments). Relative paths in a file are relative to that file's folder. Every record gets the label
:data:`UNLABELLED`, which no loss term may read as a class (``training.distill`` masks it out of the cross-entropy).
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence

from sdk.errors import ConfigError
from training.data.datasets import VideoRecord, is_video_name

__all__ = ["UNLABELLED", "read_unlabelled", "without"]

UNLABELLED = -1  # the label of a clip that has none: never a class index


def _walk(folder: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / name for name in sorted(filenames) if is_video_name(name)]
    return found


def _listed(path: Path) -> list[Path]:
    base = path.parent
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or "path" not in reader.fieldnames:
                raise ConfigError(f"{path}: expected a header with a 'path' column, got {reader.fieldnames}")
            return [base / row["path"] for row in reader if (row["path"] or "").strip()]
    lines = (line.strip() for line in path.read_text().splitlines())
    return [base / line for line in lines if line and not line.startswith("#")]


def read_unlabelled(path: str | Path) -> list[VideoRecord]:
    """The videos of ``path`` (a folder, a CSV or a list file; see the module docstring) as records labelled
    :data:`UNLABELLED`, in a stable order; a missing path, a listed video that does not exist or no video at all is
    a :class:`~sdk.errors.ConfigError`."""
    path = Path(path)
    if path.is_dir():
        videos = _walk(path)
    elif path.is_file():
        videos = _listed(path)
        missing = [v for v in videos if not v.is_file()]
        if missing:
            raise ConfigError(f"{path}: {len(missing)} listed videos do not exist, e.g. {missing[0]}")
    else:
        raise ConfigError(f"unlabelled videos {path} not found: pass a folder of videos, a .csv with a 'path' column "
                          "or a file of one video path per line")
    if not videos:
        raise ConfigError(f"{path} holds no videos ({', '.join(('.mp4', '.avi', '.mov', '...'))})")
    return [VideoRecord(v, UNLABELLED) for v in videos]


def without(records: Sequence[VideoRecord], labelled: Sequence[VideoRecord]) -> list[VideoRecord]:
    """``records`` minus the videos of ``labelled`` (by resolved path): footage that is labelled already teaches
    through its label, and listing it twice would weigh it twice."""
    known = {r.path.resolve() for r in labelled}
    return [r for r in records if r.path.resolve() not in known]
