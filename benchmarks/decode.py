"""Decode speed: everything vs. only the frames a see-very-little model samples, and what seeking buys.

``python -m benchmarks decode [--size 224] [--frames 300] [--sampled 8] [--threads 1] [--repeat 5]``

Encodes its own H.264 clips in a temp dir (16:9, ``--size`` pixels high: 398x224 by default; a photo from
scikit-image panned and zoomed over time, or a synthetic moving gradient without scikit-image), once with x264's default
GOP (keyframe every 250 frames) and once with a keyframe every second (30 frames, as phones record), then times side by
side in one run (interleaved repeats, median; the machines are shared and noisy):

1. PyAV sequential decode of every frame to RGB;
2. ``VideoFile.read_indices`` of the ``uniform_segments`` sampler's picks (segment centres), default GOP;
3. the same picks on the 1 s GOP clip, where seeking skips whole GOPs (its own sequential decode alongside);
4. OpenCV sequential decode to RGB, for comparison.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sdk.samplers import Sampler
from sdk.video import VideoFile

FPS = 30


def _content(size: int, frames: int) -> tuple[Callable[[int], np.ndarray], str, int]:
    """A frame generator, its description, and the clip width (even, 16:9)."""
    import cv2

    height = size
    width = int(round(size * 16 / 9 / 2)) * 2
    try:
        from skimage import data

        photo, name = data.astronaut(), "skimage astronaut, panned and zoomed"
    except ImportError:
        yy, xx = np.mgrid[0:512, 0:512].astype(np.float32)
        photo = np.stack([xx / 2, yy / 2, (xx + yy) / 4], axis=-1).astype(np.uint8)
        name = "synthetic gradient (scikit-image not installed), panned and zoomed"
    ph, pw = photo.shape[:2]

    def frame(i: int) -> np.ndarray:
        t = i / max(frames - 1, 1)
        zoom = 0.55 + 0.35 * np.cos(2 * np.pi * t)  # crop height as a fraction of the photo's
        ch = int(ph * zoom)
        cw = min(pw, int(ch * width / height))
        cy = (ph - ch) * (0.5 + 0.5 * np.sin(2 * np.pi * t))
        cx = (pw - cw) * (0.5 + 0.5 * np.cos(3 * np.pi * t))
        crop = photo[int(cy) : int(cy) + ch, int(cx) : int(cx) + cw]
        return cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)

    return frame, name, width


def _encode(path: Path, frame: Callable[[int], np.ndarray], frames: int, width: int, height: int, gop: int | None):
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        if gop:
            s.codec_context.gop_size = gop
        for i in range(frames):
            c.mux(s.encode(av.VideoFrame.from_ndarray(frame(i), format="rgb24")))
        c.mux(s.encode())


def _keyframes(path: Path) -> list[int]:
    import av

    with av.open(str(path)) as c:
        return [i for i, e in enumerate(c.streams.video[0].index_entries) if e.is_keyframe]


def _sequential(path: Path, threads: int) -> int:
    n = 0
    with VideoFile(path, threads=threads) as v:
        for _ in v:
            n += 1
    return n


def _sampled(path: Path, threads: int, indices: np.ndarray) -> int:
    with VideoFile(path, threads=threads) as v:
        v.read_indices(indices)
        return v.frames_decoded


def _opencv(path: Path, threads: int) -> int:
    import cv2

    params = [cv2.CAP_PROP_N_THREADS, threads] if threads else []
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
    n = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        n += 1
    cap.release()
    return n


def main(argv: list[str] | None = None) -> int:
    from training.cli import set_verbose, tool_parser

    p = tool_parser("python -m benchmarks decode", __doc__.split("\n")[0],
                    "python -m benchmarks decode --size 224 --frames 300 --sampled 8 --threads 1")
    p.add_argument("--size", type=int, default=224, help="clip height in pixels (width = 16:9, even)")
    p.add_argument("--frames", type=int, default=300, help="clip length")
    p.add_argument("--sampled", type=int, default=8, help="frames the sampler picks")
    p.add_argument("--threads", type=int, default=1, help="decoder threads (0 = decoder's choice)")
    p.add_argument("--repeat", type=int, default=5, help="timed repeats (median reported)")
    args = p.parse_args(argv)
    set_verbose(args.verbose)

    frame, content, width = _content(args.size, args.frames)
    indices = Sampler("uniform_segments", args.sampled).indices(args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        default_gop, short_gop = Path(tmp) / "gop_default.mp4", Path(tmp) / "gop_1s.mp4"
        _encode(default_gop, frame, args.frames, width, args.size, None)
        _encode(short_gop, frame, args.frames, width, args.size, FPS)

        # (measurement, clip, run -> frames decoded, frames returned)
        runs: list[tuple[str, str, Callable[[], int], int]] = [
            ("pyav sequential, all frames", "default GOP", lambda: _sequential(default_gop, args.threads), args.frames),
            (f"pyav read_indices, {args.sampled} frames", "default GOP",
             lambda: _sampled(default_gop, args.threads, indices), args.sampled),
            ("pyav sequential, all frames", "1 s GOP", lambda: _sequential(short_gop, args.threads), args.frames),
            (f"pyav read_indices, {args.sampled} frames", "1 s GOP",
             lambda: _sampled(short_gop, args.threads, indices), args.sampled),
            ("opencv sequential, all frames", "default GOP", lambda: _opencv(default_gop, args.threads), args.frames),
        ]
        times: list[list[float]] = [[] for _ in runs]
        decoded = [run() for _, _, run, _ in runs]  # warm-up: page cache, codec initialisation
        for _ in range(args.repeat):  # interleaved, so drifting machine load hits every row alike
            for row, (_, _, run, _) in enumerate(runs):
                t = time.perf_counter()
                run()
                times[row].append(time.perf_counter() - t)
        clips = {"default GOP": default_gop, "1 s GOP": short_gop}
        facts = {clip: (path.stat().st_size, _keyframes(path)) for clip, path in clips.items()}

    median_ms = [statistics.median(t) * 1000 for t in times]
    sequential_ms = {clip: median_ms[row] for row, (name, clip, _, _) in enumerate(runs) if name.startswith("pyav seq")}
    print(f"clip: {width}x{args.size}, {args.frames} frames @ {FPS} fps, H.264 (libx264 defaults, yuv420p); {content}")
    for clip, (size, keyframes) in facts.items():
        print(f"  {clip:12s}: {size / 1024:.0f} KiB, keyframes at {keyframes}")
    print(f"sampled indices ({args.sampled} segment centres): {indices.tolist()}")
    print(f"decoder threads: {args.threads} (0 = decoder's choice); "
          f"CPUs available to this process: {len(os.sched_getaffinity(0))}; median of {args.repeat} interleaved runs")
    print()
    print(f"{'measurement':32s} {'clip':12s} {'ms':>8s} {'frames/s':>9s} {'decoded':>8s} {'x sequential':>13s}")
    for (name, clip, _, returned), ms, dec in zip(runs, median_ms, decoded, strict=True):
        print(f"{name:32s} {clip:12s} {ms:8.1f} {returned / ms * 1000:9.0f} {dec:8d} {ms / sequential_ms[clip]:13.2f}")
    print("\nframes/s: frames returned per second; decoded: frames the decoder produced; x sequential: time relative "
          "to PyAV sequential decoding of the same clip (open + decode + RGB conversion in every row).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
