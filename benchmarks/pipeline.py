"""``python -m benchmarks pipeline``: from decoded frame to label, per runtime, before and after the fused path.

    python -m benchmarks pipeline --bundle A.vbundle [--bundle B.vbundle] --video X.mp4 [--video Y.mp4]
        [--synthetic 1920x1080] [--frames 48] [--rounds 6] [--core 1] [--png PATH] [--json PATH]

Each video's first ``--frames`` frames are decoded once (PyAV, one thread) and kept as decoded frames; ``--synthetic
WxH`` adds a stream of those of the first video scaled to that size (yuv420p, as a decoder gives them). Then, per
bundle and video, these paths stream the same frames, one round each in turn (``--rounds`` rounds: a background load
hits them alike), the process pinned to one core and every runtime on one thread, every frame kept (the window is the
bundle's sampler frames: each frame goes to the model):

* ``python before`` / ``python after``: ``sdk.StreamClassifier``, the frame converted to RGB by libswscale and resized
  whole by OpenCV (``VideoFile(conversion="swscale")``, the default) vs the decoded planes through the fused convert +
  resize + crop (``conversion="camera"``: the core's one-pass kernel, no full-size RGB frame);
* ``native before`` / ``native after``: ``sdk.native.NativeStream`` (the C++ core), pushed the libswscale RGB frame
  resized by ``sdk.preprocess`` vs the decoded planes as a camera frame (``ev_push_image``);
* ``native floor``: the core pushed frames already at its short side (computed before timing): crop, normalisation,
  program and aggregation only -- the native runtime's "model" in the shares below.

Per path: end-to-end milliseconds per frame (a window's pushes, conversion included, divided by its frames: p50, p99,
mean) and the share of that time outside the model: ``1 - model / end-to-end`` over all windows, the model being the
program calls (``LatencyStats`` "model") in Python and the floor path's mean in the core. Per-stage means go to the
PNG (``--png``): what each path spends where.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

PATHS = ("python before", "python after", "native before", "native after", "native floor")


@dataclass
class PathResult:
    bundle: str
    video: str
    path: str
    frames: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    model_ms: float  # per frame
    outside_share: float
    stages_ms: dict[str, float]  # per-frame mean of each stage


def decoded_frames(path: str, count: int) -> list:
    import av

    with av.open(path) as c:
        stream = c.streams.video[0]
        stream.codec_context.thread_count = 1
        frames = []
        for f in c.decode(stream):
            frames.append(f)
            if len(frames) == count:
                break
    return frames


def scaled(frames: list, width: int, height: int) -> list:
    """The frames at ``width`` x ``height`` in yuv420p: a stand-in for a camera or a video of that size."""
    return [f.reformat(width, height, "yuv420p", interpolation="BICUBIC") for f in frames]


def _stream(push: Callable, lazies: list[Callable], window: int) -> list[float]:
    """Per-frame milliseconds of each window: its pushes' time (conversion included) / its frames."""
    out, spent = [], 0.0
    for i, lazy in enumerate(lazies):
        t0 = time.perf_counter()
        prediction = push(lazy, i / 30.0)
        spent += time.perf_counter() - t0
        if prediction is not None:
            if not prediction.ok:
                raise prediction.error
            out.append(spent * 1e3 / window)
            spent = 0.0
    return out


def measure(bundle: str, frames: list, rounds: int, video: str) -> dict[str, tuple[list[float], Any]]:
    """Every path of :data:`PATHS` over ``frames``, ``rounds`` rounds in turn: per-window per-frame ms and stats.
    ``video``: a file whose ``VideoFile.model_frame`` (what streaming calls per kept frame) converts the frames."""
    import sdk
    from sdk.native import build
    from sdk.native.stream import NativeStream
    from sdk.video import VideoFile

    model = sdk.load(bundle, backend="executorch", threads=1)
    window = model.sampler("model").frames
    pre = model.input_spec("model").preprocess
    runners = {"python before": sdk.StreamClassifier(model, window=window),
               "python after": sdk.StreamClassifier(model, window=window)}
    library = build()
    for name in ("native before", "native after", "native floor"):
        runners[name] = NativeStream(bundle, window=window, library=library)
    with VideoFile(video) as before, VideoFile(video, conversion="camera") as after:
        swscale, camera = before.model_frame, after.model_frame
        at_short_side = [pre.resize_short(swscale(f)) for f in frames]
        lazies = {"python before": [lambda f=f: swscale(f) for f in frames],
                  "python after": [lambda f=f: camera(f) for f in frames],
                  "native before": [lambda f=f: swscale(f) for f in frames],
                  "native after": [lambda f=f: camera(f) for f in frames],
                  "native floor": [lambda a=a: a for a in at_short_side]}
        samples: dict[str, list[float]] = {p: [] for p in PATHS}
        for r in range(rounds + 1):  # round 0 warms up (first calls, caches) and is not counted
            for name in PATHS:
                runner = runners[name]
                runner.reset()
                if r == 1:
                    runner.stats.reset()
                per_frame = _stream(runner.push, lazies[name], window)
                if r:
                    samples[name] += per_frame
    for name in PATHS[2:]:
        runners[name].close()
    return {p: (samples[p], runners[p].stats) for p in PATHS}


def summarise(bundle: str, video: str, measured: dict[str, tuple[list[float], Any]]) -> list[PathResult]:
    floor = float(np.mean(measured["native floor"][0]))
    results = []
    for name, (per_frame, stats) in measured.items():
        ms = np.asarray(per_frame)
        frames = stats.frames_seen
        stages = {s: stats.summary(s).total_ms / frames for s in ("decode", "sample", "preprocess", "model",
                                                                   "aggregate")}
        model = stages["model"] if name.startswith("python") else floor
        if name.startswith("native"):  # the core's call is "model" in NativeStream's stats: its floor, then the rest
            stages["core beyond the floor"] = max(0.0, stages["model"] - floor)
            stages["model"] = min(stages["model"], floor)
        results.append(PathResult(Path(bundle).name, video, name, int(frames), float(np.percentile(ms, 50)),
                                  float(np.percentile(ms, 99)), float(ms.mean()), model,
                                  1.0 - model / float(ms.mean()), stages))
    return results


def table(results: list[PathResult], host: str) -> str:
    head = ("bundle", "video", "path", "frames", "p50 ms", "p99 ms", "p99/p50", "mean ms", "model ms", "outside")
    rows = [(r.bundle, r.video, r.path, str(r.frames), f"{r.p50_ms:.3f}", f"{r.p99_ms:.3f}",
             f"{r.p99_ms / r.p50_ms:.2f}", f"{r.mean_ms:.3f}", f"{r.model_ms:.3f}", f"{100 * r.outside_share:.1f}%")
            for r in results]
    widths = [max(len(x[i]) for x in (head, *rows)) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" if i < 3 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([host, fmt.format(*head), fmt.format(*("-" * w for w in widths)), *(fmt.format(*r) for r in rows)])


def plot(results: list[PathResult], host: str, path: Path) -> Path:
    """One panel per bundle: a stacked bar of per-frame stage means for each video and path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = ("decode", "sample", "preprocess", "core beyond the floor", "aggregate", "model")
    labels = {"decode": "conversion to RGB / camera frame", "sample": "sampling", "preprocess": "resize + crop",
              "core beyond the floor": "core: fused conversion + resize", "aggregate": "aggregation",
              "model": "model (program)"}
    colours = dict(zip(stages, ("tab:red", "tab:grey", "tab:orange", "tab:purple", "tab:olive", "tab:blue")))
    bundles = list(dict.fromkeys(r.bundle for r in results))
    fig, axes = plt.subplots(1, len(bundles), figsize=(7.5 * len(bundles), 0.3 * len(results) / len(bundles) + 2),
                             squeeze=False)
    for ax, bundle in zip(axes[0], bundles):
        rows = [r for r in results if r.bundle == bundle][::-1]
        y = np.arange(len(rows))
        left = np.zeros(len(rows))
        for s in stages:
            width = np.array([r.stages_ms.get(s, 0.0) for r in rows])
            ax.barh(y, width, left=left, color=colours[s], label=labels[s])
            left += width
        for yi, r, end in zip(y, rows, left):
            ax.text(end, yi, f" {100 * r.outside_share:.1f}% outside", va="center", fontsize=6)
        ax.set_yticks(y, [f"{r.video}  {r.path}" for r in rows], fontsize=6)
        ax.set_xlabel("per-frame mean ms, decoded frame to label (1 pinned core, 1 thread)")
        ax.set_xlim(0, 1.3 * left.max())
        ax.set_title(bundle, fontsize=9)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=7, loc="lower center", ncol=len(stages))
    fig.suptitle(host, fontsize=7)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks pipeline", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", action="append", required=True)
    p.add_argument("--video", action="append", required=True)
    p.add_argument("--synthetic", default=None, help="WxH: the first video's frames scaled to that size too")
    p.add_argument("--frames", type=int, default=48, help="decoded frames per video, streamed each round")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--core", type=int, default=1, help="the core the process is pinned to")
    p.add_argument("--png", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    import cv2

    os.sched_setaffinity(0, {args.core})
    cv2.setNumThreads(1)
    videos = {Path(v).name: decoded_frames(v, args.frames) for v in args.video}
    if args.synthetic:
        width, height = (int(x) for x in args.synthetic.lower().split("x"))
        videos[f"synthetic {width}x{height}"] = scaled(next(iter(videos.values())), width, height)
    results = []
    for bundle in args.bundle:
        for name, frames in videos.items():
            results += summarise(bundle, name, measure(bundle, frames, args.rounds, args.video[0]))
            print(f"[pipeline] {Path(bundle).name} {name} done", flush=True)
    host = (f"host: {os.uname().machine}, pinned to core {args.core}, 1 thread; load average "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.frames} frames x {args.rounds} rounds per path, "
            "paths in turn")
    print(table(results, host))
    if args.json:
        args.json.write_text(json.dumps({"host": host, "results": [asdict(r) for r in results]}, indent=1))
    if args.png:
        print(f"[pipeline] {plot(results, host, args.png)}")
    return 0
