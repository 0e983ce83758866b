"""Validate a dataset before anything expensive: ``python -m training.data.check DIR``.

The cheap check (``decode=False``; ``--no-decode``) reads only the split lists and the file system: every split
resolves, every label is known, every video exists, no video is in two splits, and how the classes are balanced.
``training.train``, ``distill``, ``qat`` and ``evaluate`` run it first, so a missing file or an unknown label fails
in a second with one clear error instead of after a model and a feature cache were built. The full check also opens
and decodes every video: the header's frame count against the decoded one, fps, frame size, clip lengths.

Exit status 0 when the dataset is usable, 2 with one ``error:`` line per problem (on stderr) when it is not;
``--json`` prints the report as JSON, and nothing else, on stdout.
"""
from __future__ import annotations

import json
import os
import stat
import statistics
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from sdk.errors import ConfigError, SdkError, TruncatedVideoError

from training.cli import set_verbose, tool_parser
from training.data.datasets import DatasetInfo, VideoRecord
from training.progress import progress

__all__ = ["Report", "check_dataset", "main"]

SHOWN = 3  # offending files named per problem
BALANCE_TABLE_LABELS = 30  # up to this many labels the per-class counts are a table, beyond it min/median/max


@dataclass
class _Facts:
    """What decoding one video found."""

    frames: int | None = None  # the header's count (a frame list's count for frame folders)
    decoded: int | None = None
    fps: float | None = None
    seconds: float | None = None
    size: str | None = None  # "WxH" of the decoded frames
    error: str | None = None


@dataclass
class Report:
    """The findings of :func:`check_dataset`: per split, what was found; ``errors`` make the dataset unusable,
    ``notes`` are worth knowing (no pairs, empty classes, ...)."""

    root: str
    labels: list[str]
    decoded: bool
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)
    pairs: list[list[int]] = field(default_factory=list)
    hflip_map: list[int] | None = None
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}

    def raise_for_problems(self) -> None:
        """A :class:`ConfigError` with the first problem (and how many more there are) unless the dataset is usable."""
        if self.errors:
            more = len(self.errors) - 1
            raise ConfigError(self.errors[0] + (f" (and {more} more problem{'s' * (more > 1)}: python -m "
                                                f"training.data.check {self.root} lists them)" if more else ""))

    def summary(self, errors: bool = True) -> str:
        """A readable report: a table of the splits, the videos per class, the notes and (``errors``) one
        ``error:`` line per problem."""
        lines = [f"dataset {self.root}: {len(self.labels)} labels, splits checked "
                 f"{'by decoding every video' if self.decoded else 'without decoding'}"]
        header = ["split", "videos", "classes"]
        if self.decoded:
            header += ["frames min/med/max", "seconds min/med/max", "fps min/med/max", "sizes"]
        rows = [header]
        for name, s in self.splits.items():
            row = [name, str(s["videos"]), f"{sum(1 for n in s['per_class'].values() if n)}/{len(self.labels)}"]
            if self.decoded:
                row += [_spread_text(s["frames"], "{:.0f}"), _spread_text(s["seconds"], "{:.2f}"),
                        _spread_text(s["fps"], "{:.4g}"),
                        ", ".join(f"{size} x{n}" for size, n in Counter(s["sizes"]).most_common(2))
                        + (f", {len(s['sizes']) - 2} more" if len(s["sizes"]) > 2 else "")]
            rows.append(row)
        lines += _table(rows)
        if self.splits:
            lines.append("videos per class:")
            names = list(self.splits)
            if len(self.labels) <= BALANCE_TABLE_LABELS:
                lines += ["  " + line for line in _table(
                    [["label", *names]] + [[label, *(str(self.splits[n]["per_class"][label]) for n in names)]
                                           for label in self.labels])]
            else:
                for n in names:
                    counts = self.splits[n]["per_class"]
                    order = sorted(counts, key=counts.get)
                    lines.append(f"  {n}: min {counts[order[0]]} ({order[0]}), median "
                                 f"{statistics.median(counts.values()):g}, max {counts[order[-1]]} ({order[-1]})")
        lines += [f"note: {n}" for n in self.notes]
        if errors:
            lines += [f"error: {e}" for e in self.errors]
        return "\n".join(lines)


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]


def _spread(values: Sequence[float]) -> dict[str, float] | None:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)} if values else None


def _spread_text(spread: dict[str, float] | None, fmt: str) -> str:
    return "-" if spread is None else "/".join(fmt.format(spread[k]) for k in ("min", "median", "max"))


def _first(items: Sequence[Any]) -> str:
    return ", ".join(map(str, items[:SHOWN])) + (", ..." if len(items) > SHOWN else "")


def _identity(record: VideoRecord) -> tuple[int, int] | None:
    """The file's (device, inode): the same video however its path is spelled or linked; None when it is not there
    (or is a file where a frame folder is expected, or the other way round)."""
    try:
        st = os.stat(record.path)
    except OSError:
        return None
    wanted = stat.S_ISDIR if record.num_frames is not None else stat.S_ISREG
    return (st.st_dev, st.st_ino) if wanted(st.st_mode) else None


def _inspect(record: VideoRecord, template: str, conversion: str = "swscale") -> _Facts:
    """Open and decode every frame of one video (or frame folder), converted as training will (``conversion``)."""
    facts = _Facts(frames=record.num_frames)
    try:
        source = record.open(template, conversion)
        if record.num_frames is None:
            facts.frames, facts.fps, facts.seconds = source.num_frames, source.fps, source.duration_s
        with source:
            facts.decoded = 0
            for frame in source:
                facts.decoded += 1
                facts.size = facts.size or f"{frame.shape[1]}x{frame.shape[0]}"
    except TruncatedVideoError as e:
        facts.decoded, facts.error = e.decoded, e.reason
    except SdkError as e:
        facts.error = str(e)
    if facts.error is None and facts.decoded < facts.frames:  # a frame folder with fewer files than its list says
        facts.error = f"{facts.decoded} frames found, the list says {facts.frames}"
    return facts


def _decode_split(name: str, records: list[VideoRecord], template: str, workers: int, show: bool,
                  conversion: str = "swscale") -> list[_Facts]:
    def inspect(record: VideoRecord) -> _Facts:
        return _inspect(record, template, conversion)

    with ThreadPoolExecutor(max(1, workers)) as pool:  # decoding releases the GIL
        return list(progress(pool.map(inspect, records), desc=f"check {name}", total=len(records), unit="video",
                             disable=not show))


def check_dataset(info: DatasetInfo, splits: Sequence[str], *, decode: bool, template: str = "img_{:05d}.jpg",
                  workers: int = 2, show_progress: bool = False, conversion: str = "swscale") -> Report:
    """Check ``splits`` of ``info`` (names as :meth:`DatasetInfo.records` takes them); ``decode``: also open and
    decode every video with ``workers`` threads (``template``: file names in frame folders), its frames converted
    as training's ``Preprocess.conversion`` says."""
    report = Report(str(info.root), list(info.labels), decode, pairs=[list(p) for p in info.pairs],
                    hflip_map=info.hflip_map)
    owners: dict[tuple[int, int], tuple[str, Path]] = {}
    shared: dict[tuple[str, str], list[Path]] = {}
    for name in splits:
        try:
            records = info.records(name)
        except (ValueError, OSError) as e:  # ConfigError, or a list that is not text
            report.errors.append(str(e))
            continue
        where = info.split_path(name)
        if not records:
            report.errors.append(f"{name}: no videos in {where}; add videos or choose another split")
            continue
        counts = Counter(r.label for r in records)
        summary: dict[str, Any] = {"path": str(where), "videos": len(records),
                                   "per_class": {label: counts[i] for i, label in enumerate(info.labels)}}
        report.splits[name] = summary
        missing, repeated, present = [], [], []
        seen: set[tuple[int, int]] = set()
        for r in records:
            ident = _identity(r)
            if ident is None:
                missing.append(r.path)
                continue
            present.append(r)
            if ident in seen:
                repeated.append(r.path)
                continue
            seen.add(ident)
            other = owners.setdefault(ident, (name, r.path))
            if other[0] != name:
                shared.setdefault((other[0], name), []).append(r.path)
        summary["missing"] = len(missing)
        if missing:
            report.errors.append(f"{name}: {len(missing)} of {len(records)} videos do not exist (first: "
                                 f"{_first(missing)}); fix their paths or restore the files")
        if repeated:
            report.notes.append(f"{name}: {len(repeated)} videos are listed more than once (first: {_first(repeated)})")
        empty = [label for label, n in summary["per_class"].items() if not n]
        if empty:
            report.notes.append(f"{name}: {len(empty)} of {len(info.labels)} classes have no videos ({_first(empty)})")
        if decode:
            _add_decoded(report, name, summary,
                         _decode_split(name, present, template, workers, show_progress, conversion), present)
    for (a, b), paths in shared.items():
        report.errors.append(f"{a} and {b} share {len(paths)} videos (first: {_first(paths)}); a video must be in one "
                             "split only, or validation measures clips the model was trained on")
    report.notes.append(f"{len(info.pairs)} time-reversal pairs declared: pair and within-pair accuracy will be "
                        "reported" if info.pairs else "no pairs declared: within-pair accuracy will not be reported")
    if info.hflip_map is None:
        report.notes.append("no hflip_map declared: training does not flip videos horizontally")
    else:
        swapped = sum(1 for i, j in enumerate(info.hflip_map) if i != j)
        report.notes.append(f"hflip_map declared: training flips videos horizontally, swapping {swapped} labels")
    return report


def _add_decoded(report: Report, name: str, summary: dict[str, Any], facts: list[_Facts],
                 records: list[VideoRecord]) -> None:
    good = [f for f in facts if f.error is None]
    summary.update(frames=_spread([f.decoded for f in good]), seconds=_spread([f.seconds for f in good if f.seconds]),
                   fps=_spread([f.fps for f in good if f.fps]), sizes=dict(Counter(f.size for f in good)),
                   undecodable=len(facts) - len(good))
    bad = [f"{r.path} ({f.error})" for r, f in zip(records, facts) if f.error is not None]
    if bad:
        report.errors.append(f"{name}: {len(bad)} of {len(facts)} videos cannot be decoded to the end (first: "
                             f"{_first(bad)}); re-encode or remove them")
    longer = [r.path for r, f in zip(records, facts) if f.error is None and f.decoded > f.frames]
    summary["more_frames_than_header"] = len(longer)
    if longer:
        report.notes.append(f"{name}: {len(longer)} videos decode to more frames than their header says (first: "
                            f"{_first(longer)}); sampling uses the header's count")


def main(argv: Sequence[str] | None = None) -> int:
    parser = tool_parser("python -m training.data.check", __doc__.splitlines()[0],
                         "python -m training.data.check data/kinetics --split train.csv --split val.csv")
    parser.add_argument("data", metavar="DIR",
                        help="dataset directory (split files beside labels.txt, or train/<label>/ folders)")
    parser.add_argument("--split", action="append", metavar="NAME", help="a split to check, as the training tools "
                        "name it (repeatable; default: every split found: the .csv files, else the split folders)")
    parser.add_argument("--no-decode", dest="decode", action="store_false",
                        help="the cheap check only: lists, labels, files present, overlap, balance (default: "
                             "also decode every video)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON (nothing else on stdout)")
    parser.add_argument("--workers", type=int, default=2, metavar="N", help="decoding threads")
    parser.add_argument("--frame-template", default="img_{:05d}.jpg", metavar="TEMPLATE",
                        help="file names inside frame folders")
    args = parser.parse_args(argv)
    set_verbose(args.verbose)
    try:
        info = DatasetInfo.from_dir(args.data)
        report = check_dataset(info, args.split or info.splits(), decode=args.decode, template=args.frame_template,
                               workers=args.workers, show_progress=True)
    except ConfigError as e:  # nothing was checked: the error alone (in the JSON report too)
        report = Report(str(args.data), [], args.decode, errors=[str(e)])
        if not args.json:
            print(f"error: {e}", file=sys.stderr)
            return 2
    print(json.dumps(report.as_dict(), indent=1, default=str) if args.json else report.summary(errors=False))
    for error in report.errors:
        print(f"error: {error}", file=sys.stderr)
    return 0 if report.ok else 2


if __name__ == "__main__":
    raise SystemExit(main())
