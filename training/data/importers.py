"""Import a public dataset's annotations as a dataset directory: ``python -m training.data.importers ssv2|kinetics``.

Both write the CSV layout (``labels.txt``, ``train.csv``, ``val.csv`` with absolute video paths, ``meta.json`` noting
the source) pointing at the videos where they are: nothing is copied. Videos that cannot be found are left out and
reported (how many, the first few, and every one in ``missing.txt``) instead of stopping the import at the first.

- ``ssv2``: Something-Something v2. ``--annotations`` holds ``something-something-v2-{labels,train,validation}.json``;
  a class is a template with its brackets removed (``Putting [something] on a surface`` -> ``Putting something on a
  surface``), as in the official labels file, whose order gives the label indices; video ``<id>.webm``.
- ``kinetics``: Kinetics-400/600/700 CSVs (``label,youtube_id,time_start,time_end[,split,...]``); classes are the sorted
  label names; a video is ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` or ``<youtube_id>.<ext>`` anywhere under
  ``--videos`` (e.g. in ``<label>/`` folders).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdk.errors import ConfigError, SdkError
from sdk.files import atomic_path
from training.cli import HelpFormatter, set_verbose, tool_parser
from training.data.datasets import is_video_name

__all__ = ["ImportReport", "import_kinetics", "import_ssv2", "main"]

SHOWN = 5  # missing videos named in the report (missing.txt lists all of them)
SSV2_FILES = {"labels": "something-something-v2-labels.json", "train": "something-something-v2-train.json",
              "val": "something-something-v2-validation.json"}


@dataclass
class ImportReport:
    """What an import wrote: per split, the videos found and the ids of those that were not."""

    out: Path
    source: str
    labels: int
    videos: dict[str, int] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"{self.source}: {self.labels} labels -> {self.out}"]
        for split, n in self.videos.items():
            gone = self.missing.get(split, [])
            lines.append(f"  {split}: {n} videos" + (f", {len(gone)} missing (first: {', '.join(gone[:SHOWN])})"
                                                      if gone else ""))
        if any(self.missing.values()):
            lines.append(f"  every missing video is listed in {self.out / 'missing.txt'}")
        return "\n".join(lines)


def _index_videos(videos: Path) -> dict[str, list[Path]]:
    """Every video file under ``videos`` by its name without suffix (one walk, not a lookup per annotation)."""
    if not videos.is_dir():
        raise ConfigError(f"video folder {videos} does not exist: pass the folder holding the downloaded videos")
    found: dict[str, list[Path]] = {}
    for folder, dirs, files in os.walk(videos.resolve()):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if is_video_name(name):
                found.setdefault(os.path.splitext(name)[0], []).append(Path(folder, name))
    return found


def _write_dataset(out: Path, labels: Sequence[str], splits: dict[str, list[tuple[Path, str]]],
                   missing: dict[str, list[str]], source: dict[str, Any], force: bool) -> ImportReport:
    """The CSV-layout dataset ``out`` (each file written atomically); refuses an existing dataset unless ``force``."""
    if (out / "labels.txt").exists() and not force:
        raise ConfigError(f"{out} already holds a dataset (labels.txt): choose another --out, or pass --force to "
                          "overwrite it (e.g. after downloading more videos)")
    empty = [split for split, rows in splits.items() if not rows]
    if empty:
        raise ConfigError(f"none of the {', '.join(empty)} videos were found under {source['videos']} (first missing: "
                          f"{', '.join(missing[empty[0]][:SHOWN])}): check --videos")
    out.mkdir(parents=True, exist_ok=True)

    def write(name: str, text: str) -> None:
        with atomic_path(out / name) as tmp:
            tmp.write_text(text)

    write("labels.txt", "".join(f"{label}\n" for label in labels))
    for split, rows in splits.items():
        with atomic_path(out / f"{split}.csv") as tmp, tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "label"])
            writer.writerows((str(path), label) for path, label in rows)
    counts = {split: len(rows) for split, rows in splits.items()}
    write("meta.json", json.dumps({"source": {**source, "videos_found": counts,
                                              "videos_missing": {s: len(m) for s, m in missing.items()}}}, indent=1))
    if any(missing.values()):
        write("missing.txt", "".join(f"{split} {video}\n" for split, ids in missing.items() for video in ids))
    else:
        (out / "missing.txt").unlink(missing_ok=True)  # from an earlier import with --force
    return ImportReport(out, source["format"], len(labels), counts, missing)


# --------------------------------------------------------------------------------------------------------------------
# Something-Something v2
# --------------------------------------------------------------------------------------------------------------------
def _ssv2_class(template: str) -> str:
    return template.replace("[", "").replace("]", "")


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path} is missing: --annotations must hold the files {', '.join(SSV2_FILES.values())}")
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ConfigError(f"{path} is not valid JSON ({e}): download it again") from e


def import_ssv2(annotations: str | Path, videos: str | Path, out: str | Path, *, force: bool = False) -> ImportReport:
    """Something-Something v2's train and validation annotations over the ``<id>.webm`` files under ``videos``."""
    annotations, videos, out = Path(annotations), Path(videos), Path(out)
    names = _read_json(annotations / SSV2_FILES["labels"])
    try:
        order = sorted((int(index), _ssv2_class(name)) for name, index in names.items())
    except (AttributeError, TypeError, ValueError) as e:
        raise ConfigError(f"{annotations / SSV2_FILES['labels']}: expected {{template: index string}} ({e})") from e
    labels = [name for _, name in order]
    if [i for i, _ in order] != list(range(len(labels))):
        raise ConfigError(f"{annotations / SSV2_FILES['labels']}: indices must be 0..{len(labels) - 1}, each once")
    known, found = set(labels), _index_videos(videos)
    splits: dict[str, list[tuple[Path, str]]] = {}
    missing: dict[str, list[str]] = {}
    for split in ("train", "val"):
        path = annotations / SSV2_FILES[split]
        entries = _read_json(path)
        splits[split], missing[split] = [], []
        for i, entry in enumerate(entries):
            try:
                video, label = str(entry["id"]), _ssv2_class(entry["template"])
            except (KeyError, TypeError) as e:
                raise ConfigError(f"{path}: entry {i} has no 'id' and 'template' ({entry!r})") from e
            if label not in known:
                raise ConfigError(f"{path}: entry {video} has the template {entry['template']!r}, which is not in "
                                  f"{SSV2_FILES['labels']}: use the labels file of the same release")
            paths = found.get(video)
            if paths:
                splits[split].append((paths[0], label))
            else:
                missing[split].append(video)
    source = {"format": "ssv2", "annotations": str(annotations.resolve()), "videos": str(videos.resolve())}
    return _write_dataset(out, labels, splits, missing, source, force)


# --------------------------------------------------------------------------------------------------------------------
# Kinetics
# --------------------------------------------------------------------------------------------------------------------
KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end")


def _kinetics_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise ConfigError(f"Kinetics annotation file {path} does not exist")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not set(KINETICS_COLUMNS) <= set(reader.fieldnames):
            raise ConfigError(f"{path}: expected the columns {','.join(KINETICS_COLUMNS)} (a Kinetics CSV), got "
                              f"{reader.fieldnames}")
        rows = list(reader)
    unlabelled = sum(1 for r in rows if not r["label"].strip())
    if unlabelled:
        raise ConfigError(f"{path}: {unlabelled} rows have no label (a test split?): import labelled splits only")
    return rows


def _kinetics_video(row: dict[str, str], found: dict[str, list[Path]], where: str) -> Path | None:
    """The file of a row: the trimmed clip's name, else the whole video's; one in the label's folder first."""
    try:
        start, end = int(float(row["time_start"])), int(float(row["time_end"]))
    except ValueError as e:
        raise ConfigError(f"{where}: time_start/time_end must be numbers, got {row['time_start']!r}, "
                          f"{row['time_end']!r}") from e
    yid, label = row["youtube_id"], row["label"].strip()
    for stem in (f"{yid}_{start:06d}_{end:06d}", yid):
        paths = found.get(stem, [])
        if paths:
            return next((p for p in paths if p.parent.name in (label, label.replace(" ", "_"))), paths[0])
    return None


def import_kinetics(train_csv: str | Path, val_csv: str | Path, videos: str | Path, out: str | Path, *,
                    force: bool = False) -> ImportReport:
    """A Kinetics training and validation CSV over the video files under ``videos``."""
    videos, out = Path(videos), Path(out)
    tables = {"train": (Path(train_csv), _kinetics_rows(Path(train_csv))),
              "val": (Path(val_csv), _kinetics_rows(Path(val_csv)))}
    labels = sorted({r["label"].strip() for _, rows in tables.values() for r in rows})
    found = _index_videos(videos)
    splits: dict[str, list[tuple[Path, str]]] = {}
    missing: dict[str, list[str]] = {}
    for split, (path, rows) in tables.items():
        splits[split], missing[split] = [], []
        for i, row in enumerate(rows):
            video = _kinetics_video(row, found, f"{path}:{i + 2}")
            if video is None:
                missing[split].append(row["youtube_id"])
            else:
                splits[split].append((video, row["label"].strip()))
    source = {"format": "kinetics", "train_csv": str(Path(train_csv).resolve()),
              "val_csv": str(Path(val_csv).resolve()), "videos": str(videos.resolve())}
    return _write_dataset(out, labels, splits, missing, source, force)


# --------------------------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------------------------
SSV2_EXAMPLE = ("python -m training.data.importers ssv2 --annotations ssv2/labels --videos ssv2/20bn-something-"
                "something-v2 --out data/ssv2")
KINETICS_EXAMPLE = ("python -m training.data.importers kinetics --train-csv k400/annotations/train.csv --val-csv "
                    "k400/annotations/val.csv --videos k400/videos --out data/k400")


def _parser() -> argparse.ArgumentParser:
    parser = tool_parser("python -m training.data.importers", __doc__.splitlines()[0], SSV2_EXAMPLE,
                         usage="python -m training.data.importers [--verbose] {ssv2,kinetics} [its options]",
                         notes=f"and:\n  {KINETICS_EXAMPLE}\n\n'python -m training.data.importers FORMAT --help' "
                               "describes a format's options")
    sub = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    commands = {"ssv2": ("Something-Something v2 (JSON annotations, <id>.webm videos)", SSV2_EXAMPLE),
                "kinetics": ("Kinetics 400/600/700 (CSV annotations, videos named by youtube_id)", KINETICS_EXAMPLE)}
    for name, (text, example) in commands.items():
        p = sub.add_parser(name, prog=f"python -m training.data.importers {name}", help=text,
                           description=f"Import {text} as a dataset directory.", formatter_class=HelpFormatter,
                           epilog=f"example:\n  {example}")
        if name == "ssv2":
            p.add_argument("--annotations", type=Path, required=True, metavar="DIR",
                           help=f"folder holding {', '.join(SSV2_FILES.values())}")
        else:
            p.add_argument("--train-csv", type=Path, required=True, metavar="FILE",
                           help="the training annotations (e.g. train.csv)")
            p.add_argument("--val-csv", type=Path, required=True, metavar="FILE",
                           help="the validation annotations (e.g. validate.csv)")
        p.add_argument("--videos", type=Path, required=True, metavar="DIR",
                       help="folder holding the downloaded videos (searched recursively)")
        p.add_argument("--out", type=Path, required=True, metavar="DIR",
                       help="the dataset directory to write (no video is copied)")
        p.add_argument("--force", action="store_true", help="overwrite a dataset already in --out")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    set_verbose(args.verbose)
    try:
        if args.format == "ssv2":
            report = import_ssv2(args.annotations, args.videos, args.out, force=args.force)
        else:
            report = import_kinetics(args.train_csv, args.val_csv, args.videos, args.out, force=args.force)
    except SdkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.summary())
    for split, ids in report.missing.items():
        if ids:
            print(f"warning: {len(ids)} of {len(ids) + report.videos[split]} {split} videos are missing (first: "
                  f"{', '.join(ids[:SHOWN])})", file=sys.stderr)
    print(f"next: python -m training.data.check {report.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
