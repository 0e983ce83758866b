"""Stream the validation videos of a long-video benchmark through a FASTER bundle, frame by frame, in the Python
runtime (``sdk.StreamClassifier``) and in the native core (the Jetson app's ``NativeStream``), and compare:
``python -m benchmarks.faster_stream --bundle runs/faster/faster_1-3.vbundle --data runs/faster/long_small``.

Each video is streamed from a reset state (one FASTER segment per window, as the bundle says); the video's prediction
is the one emitted after its last segment, which is what ``python -m training.faster`` evaluates offline. Prints the
top-1 of both runtimes, how often they agree, the largest logit difference, and the per-stage latency of each.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def stream_videos(bundle: Path, data: Path, videos: int = 0, native: bool = True) -> dict:
    """``videos`` validation videos spread over the split (0: all) through both runtimes; the comparison as a dict."""
    import sdk
    from training.data.datasets import DatasetInfo

    info = DatasetInfo.from_dir(data)
    labels, records = info.labels, info.records("val.csv")
    count = len(records) if videos <= 0 else min(videos, len(records))
    picks = [records[i] for i in np.linspace(0, len(records) - 1, count).round().astype(int)]
    model = sdk.load(bundle, backend="executorch", verify=True)
    python = sdk.StreamClassifier(model)
    core = None
    if native:
        from sdk.native.stream import NativeStream

        core = NativeStream(bundle)
    rows = []
    for rec in picks:
        with sdk.VideoFile(rec.path) as v:
            frames = v.read_indices(range(v.num_frames))
        python.reset()
        last = [p for p in (python.push(f) for f in frames) if p is not None][-1]
        row = {"video": rec.path.name, "true": labels[rec.label], "python": last.label,
               "python_correct": last.label == labels[rec.label]}
        if core is not None:
            core.classifier.reset()
            native_last = [p for p in (core.push(f) for f in frames) if p is not None][-1]
            row.update(native=native_last.label, native_correct=native_last.label == labels[rec.label],
                       max_logit_diff=float(np.abs(native_last.logits - last.logits).max()))
        rows.append(row)
    n = len(rows)
    report = {"bundle": str(bundle), "precision": model.precision, "videos": n,
              "top1_python": sum(r["python_correct"] for r in rows) / n, "python_stats": python.stats.as_dict()}
    if core is not None:
        report.update(top1_native=sum(r["native_correct"] for r in rows) / n,
                      agreement=sum(r["native"] == r["python"] for r in rows) / n,
                      max_logit_diff=max(r["max_logit_diff"] for r in rows), native_stats=core.stats.as_dict())
        print(f"native core:\n{core.stats.table()}")
        core.close()
    print(f"python runtime:\n{python.stats.table()}")
    model.close()
    report["predictions"] = rows
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.faster_stream", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, required=True, help="a FASTER .vbundle with .pte programs")
    p.add_argument("--data", type=Path, required=True, help="the long-video benchmark (its val split is streamed)")
    p.add_argument("--videos", type=int, default=0, help="validation videos, spread over the split (0: all)")
    p.add_argument("--no-native", action="store_true", help="the Python runtime only")
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = p.parse_args(argv)
    report = stream_videos(args.bundle, args.data, args.videos, native=not args.no_native)
    line = f"{report['videos']} videos, {report['precision']}: top-1 python {report['top1_python']:.3f}"
    if "top1_native" in report:
        line += (f", native {report['top1_native']:.3f}, labels agree {report['agreement']:.3f}, "
                 f"max |logit diff| {report['max_logit_diff']:.2e}")
    print(line)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
