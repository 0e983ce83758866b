"""Per-frame latency of the native core vs the Python sdk on the same bundle and frames, side by side in one run.

    python -m sdk.native.bench BUNDLE [--frames 256] [--window 8] [--precision fp32] [--rounds 3]

Both stream the same frames (shorter side already at the bundle's ``short_side``, so neither resizes) through
``sdk.StreamClassifier`` and ``sdk.native.NativeStreamClassifier``, alternating rounds so that machine noise hits
both; reported: mean milliseconds per pushed frame (the best round of each) and their ratio. A benchmark, not a
test: the numbers depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import sdk
from sdk.classifier import StreamClassifier
from sdk.native import NativeStreamClassifier, build
from sdk.preprocess import Preprocess


def _frames(n: int, short_side: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, short_side, short_side * 4 // 3, 3), dtype=np.uint8)


def _run_python(classifier: StreamClassifier, frames: np.ndarray) -> float:
    classifier.reset()
    t0 = time.perf_counter()
    for f in frames:
        classifier.push(f)
    return (time.perf_counter() - t0) * 1e3 / len(frames)


def _run_native(classifier: NativeStreamClassifier, frames: np.ndarray) -> float:
    classifier.reset()
    t0 = time.perf_counter()
    for f in frames:
        req = classifier.next_frame()
        x = None
        if req["copies"]:
            x = f if min(f.shape[:2]) == req["short_side"] else Preprocess(
                size=req["size"], resize=req["short_side"]).resize_short(f)
        classifier.push(x)
    return (time.perf_counter() - t0) * 1e3 / len(frames)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sdk.native.bench", description=__doc__.split("\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("--frames", type=int, default=256)
    ap.add_argument("--window", type=int, default=None)
    ap.add_argument("--precision", default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--library", default=None, help="libedgevideo.so or its directory (default: build it)")
    args = ap.parse_args(argv)
    model = sdk.load(args.bundle, backend="executorch", precision=args.precision)
    py = StreamClassifier(model, window=args.window)
    nat = NativeStreamClassifier(args.bundle, library=args.library or build(), window=args.window,
                                 precision=model.precision)
    frames = _frames(args.frames, nat.short_side)
    _run_python(py, frames[:16]), _run_native(nat, frames[:16])  # warm-up
    py_ms, nat_ms = [], []
    for _ in range(args.rounds):
        py_ms.append(_run_python(py, frames))
        nat_ms.append(_run_native(nat, frames))
    p, n = min(py_ms), min(nat_ms)
    print(f"bundle {args.bundle} ({model.kind}, executorch {model.precision}), {args.frames} frames, window "
          f"{py.window}, best of {args.rounds} rounds")
    print(f"python sdk.StreamClassifier : {p:.4f} ms/frame")
    print(f"native core (ctypes)        : {n:.4f} ms/frame")
    print(f"ratio python / native       : {p / n:.2f}x")
    nat.close()
    model.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
