"""``python -m benchmarks camera``: what it costs to turn one camera frame into model input, per path, side by side.

For a synthetic camera frame (NV12 and RGBA; 640x480, 1280x720, 1920x1080) and a model input (short side 128 / crop
112, short side 256 / crop 224), three paths that give the same pixels are timed round-robin in one run (so a
background load hits them alike), one thread:

* ``app RGB + sdk``: what an app does without camera formats: OpenCV converts the whole frame to RGB
  (``cv2.cvtColor``; the frame's own conversion for NV12, a channel drop for RGBA), then ``sdk.preprocess`` resizes
  the whole frame and crops;
* ``sdk.CameraFrame``: the Python reference (``to_rgb`` in numpy, then the same resize and crop);
* ``native fused``: the core's ``ev_image_to_input``, conversion + resize + crop over the crop's pixels only (no
  full-size RGB frame), through ctypes.

Prints p50 / p95 in ms per frame and each path's ratio to ``app RGB + sdk``.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from sdk.camera import CameraFrame
from sdk.preprocess import Preprocess

SIZES = {"480p": (480, 640), "720p": (720, 1280), "1080p": (1080, 1920)}
INPUTS = ((128, 112), (256, 224))


def _frame(height: int, width: int, fmt: str) -> CameraFrame:
    import cv2

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
    return CameraFrame.from_rgb(cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC), fmt)


def _paths(frame: CameraFrame, short: int, crop: int, lib) -> dict:
    import cv2

    from sdk.native import image_to_input

    pre = Preprocess(size=crop, resize=short)
    if frame.format == "nv12":
        packed = np.concatenate(frame.planes).reshape(frame.height * 3 // 2, frame.width)

        def app_rgb() -> np.ndarray:
            return cv2.cvtColor(packed, cv2.COLOR_YUV2RGB_NV12)
    else:
        rgba = frame.planes[0].reshape(frame.height, frame.width, 4)

        def app_rgb() -> np.ndarray:
            return cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB)
    paths = {"app RGB + sdk": lambda: pre._centre_crop(pre.resize_short(app_rgb())),
             "sdk.CameraFrame": lambda: pre._centre_crop(pre.resize_short(frame.to_rgb()))}
    if lib is not None:
        paths["native fused"] = lambda: image_to_input(lib, frame, short, crop)
    return paths


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks camera", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="measuring time per path and case")
    parser.add_argument("--sizes", default="480p,720p,1080p", help=f"of {', '.join(SIZES)}")
    args = parser.parse_args(argv)
    import cv2

    cv2.setNumThreads(1)
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    except (AttributeError, OSError):
        pass
    try:
        from sdk.native import build, load_library

        lib = load_library(build())
    except Exception as e:  # no compiler or executorch wheel: the Python paths alone
        print(f"native core unavailable ({e}): Python paths only")
        lib = None
    print(f"{'frame':<12} {'input':<9} {'path':<16} {'p50 ms':>8} {'p95 ms':>8} {'vs app RGB':>11}")
    for size in args.sizes.split(","):
        h, w = SIZES[size]
        for fmt in ("nv12", "rgba"):
            frame = _frame(h, w, fmt)
            for short, crop in INPUTS:
                paths = _paths(frame, short, crop, lib)
                times: dict[str, list[float]] = {name: [] for name in paths}
                for fn in paths.values():  # warm up
                    fn()
                deadline = time.perf_counter() + args.seconds * len(paths)
                while time.perf_counter() < deadline:  # round-robin
                    for name, fn in paths.items():
                        t = time.perf_counter()
                        fn()
                        times[name].append((time.perf_counter() - t) * 1e3)
                base = float(np.median(times["app RGB + sdk"]))
                for name, ts in times.items():
                    p50, p95 = float(np.median(ts)), float(np.percentile(ts, 95))
                    print(f"{size + ' ' + fmt:<12} {f'{short}/{crop}':<9} {name:<16} {p50:>8.3f} {p95:>8.3f} "
                          f"{base / p50:>10.2f}x")
    return 0
