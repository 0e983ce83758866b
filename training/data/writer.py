"""Writing a generated video dataset, shared by the time-reversal benchmark (:mod:`training.data.synthetic`) and the
long-video benchmark (:mod:`training.data.long_video`): deterministic H.264 files, the output directory that appears
only once complete, the worker pool that fails fast, the split files, and the command line.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from sdk.errors import ConfigError, SdkError
from sdk.files import atomic_dir, atomic_path

__all__ = ["UNGUARDED_SCRIPT_HINT", "WorkerPoolError", "check_output", "dataset_output", "generator_cli", "meta_head",
           "pool_context", "resolve_workers", "run_jobs", "split_arrays", "start", "video_relpath",
           "write_mp4", "write_split", "write_video", "x264_needs_plain_c"]


# --------------------------------------------------------------------------------------------------------------------
# video files
# --------------------------------------------------------------------------------------------------------------------
def x264_needs_plain_c(width: int) -> bool:
    """True when write_mp4 turns off x264's assembly to stay deterministic at this frame width.

    Measured with the bundled libx264 (PyAV 18.1, FFmpeg 8) on an AVX-512 Xeon, 1 encoder thread: at widths that are
    not a multiple of 128 (112, 192 and 96 seen) the SIMD code reads uninitialised memory, so the same frames encode
    to different bitstreams (and decoded frames) from run to run -- in 44 of 48 clips at 112 px once the heap had
    been churned. Widths that are multiples of 128 (128, 256, 384) and ``asm=0`` (plain C, ~3x slower to encode)
    were deterministic in every trial.
    """
    return width % 128 != 0


def write_mp4(path: str | Path, frames: np.ndarray, fps: int, crf: int = 20, preset: str = "veryfast") -> None:
    """Write (T, H, W, 3) uint8 RGB frames as H.264 (libx264, yuv420p, constant fps) mp4 with PyAV.

    One encoder thread; for widths where x264's SIMD code is not run-to-run deterministic the assembly is turned off
    (:func:`x264_needs_plain_c`), so the same frames always decode to the same frames.
    """
    import av

    T, H, W, _ = frames.shape
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=int(fps))
        stream.width, stream.height = W, H
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        options = {"crf": str(crf), "preset": preset}
        if x264_needs_plain_c(W):
            options["x264-params"] = "asm=0"
        stream.options = options
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            vf.pts = i
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)




def video_relpath(split: str, class_name: str, index: int) -> str:
    """Where a dataset keeps a video: ``videos/{split}/{class}_{index:06d}.mp4``."""
    return f"videos/{split}/{class_name}_{index:06d}.mp4"


def write_video(root: str | Path, rel: str, frames: np.ndarray, cfg: Any) -> None:
    """``frames`` encoded to ``root/rel`` with ``cfg``'s fps, crf and x264 preset; a killed worker leaves no file."""
    with atomic_path(Path(root) / rel) as tmp:
        write_mp4(tmp, frames, cfg.fps, cfg.crf, cfg.x264_preset)


def split_arrays(split: str, rels: Sequence[str], labels: Sequence[int], annotations: Sequence[dict[str, np.ndarray]],
                 keys: Sequence[str], frames: int) -> dict[str, np.ndarray]:
    """``annotations.npz`` entries of one split: its paths, labels and each annotation key stacked over its videos."""
    out = {f"{split}_path": np.array(rels, dtype=np.str_), f"{split}_label": np.array(labels, dtype=np.int64)}
    for name in keys:
        out[f"{split}_{name}"] = (np.stack([a[name] for a in annotations]) if rels
                                  else np.zeros((0, frames), np.float32))
    return out


def meta_head(generator: str, version: str, cfg: Any, seed: int, classes: Sequence[str]) -> dict[str, Any]:
    """The first entries of a dataset's ``meta.json``: what wrote it, from which preset and seed, its classes."""
    return {"generator": generator, "generator_version": version, "preset": cfg.name, "config": cfg.to_dict(),
            "seed": seed, "num_classes": len(classes), "classes": list(classes)}


def write_split(path: Path, rows: Iterable[tuple[str, int]]) -> None:
    """A split file: ``path,label`` header, then one ``(relative path, label)`` row per video."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        w.writerows(rows)


# --------------------------------------------------------------------------------------------------------------------
# the output directory
# --------------------------------------------------------------------------------------------------------------------
def _is_dataset(path: Path, generator: str) -> bool:
    try:
        return json.loads((path / "meta.json").read_text()).get("generator") == generator
    except (OSError, ValueError, AttributeError):
        return False


def check_output(out: Path, overwrite: bool, generator: str) -> None:
    """Refuse a file, a foreign non-empty directory, or (without ``overwrite``) a dataset of ``generator``; and refuse
    to start at all inside a worker process that is still importing the caller's script (no main guard), before it
    writes anything."""
    import multiprocessing

    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise WorkerPoolError(f"generate() was called while a worker process was starting; {UNGUARDED_SCRIPT_HINT}")
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"{out} exists and is not a directory")
        if any(out.iterdir()):
            if not _is_dataset(out, generator):
                raise FileExistsError(f"{out} is not empty and is not a dataset written by this generator; "
                                      "refusing to replace it (choose another --out)")
            if not overwrite:
                raise FileExistsError(f"{out} already holds a dataset; pass --overwrite (overwrite=True) to replace it")


def _raise_on_sigterm():
    """While generating, turn SIGTERM into SystemExit so the partial directory is cleaned up. Returns the previous
    handler (None when not in the main thread, where handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, handler)


@contextmanager
def dataset_output(out: Path) -> Iterator[Path]:
    """Yield a fresh sibling directory to write the dataset into; once the block completes it replaces ``out``, on any
    exception (SIGTERM included, turned into SystemExit meanwhile) it is removed and ``out`` is untouched."""
    old_sigterm = _raise_on_sigterm()
    try:
        with atomic_dir(out) as partial:
            yield partial
    finally:
        if old_sigterm is not None:
            signal.signal(signal.SIGTERM, old_sigterm)


# --------------------------------------------------------------------------------------------------------------------
# workers
# --------------------------------------------------------------------------------------------------------------------
def resolve_workers(workers: int | None) -> int:
    """``workers``, or the CPUs available to this process."""
    if workers is None:
        try:
            workers = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            workers = os.cpu_count() or 1
    return max(1, int(workers))


def start(out: str | Path, preset: str | Any, seed: int, workers: int | None, overwrite: bool, *,
          presets: dict[str, Any], cls: type, generator: str) -> tuple[Any, int, Path, int]:
    """``(config, seed, absolute out, workers)`` of a generator call, every argument checked before any work:
    ``preset`` a ``cls`` config or a name of ``presets``, ``seed >= 0``, ``out`` writable (:func:`check_output`)."""
    if not isinstance(preset, cls):
        if preset not in presets:
            raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(presets)}")
        preset = presets[preset]
    seed = int(seed)
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    out = Path(out).absolute()
    check_output(out, overwrite, generator)
    return preset, seed, out, resolve_workers(workers)


def pool_context():
    """A multiprocessing context whose workers start from a clean process.

    Plain fork is unsafe here: a child forked from a parent whose OpenCV thread pool has run deadlocks in
    cv2.setNumThreads / parallel_for (seen with opencv 5.0, pthreads backend). forkserver forks workers from a fresh
    server process that has only imported modules (cheap); spawn is the portable fallback.
    """
    import multiprocessing as mp

    methods = mp.get_all_start_methods()
    if "forkserver" in methods:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["numpy", "cv2", "av", "skimage.data"])
        return ctx
    return mp.get_context("spawn")


class WorkerPoolError(SdkError, RuntimeError):
    """A worker process of a generator died: the pool cannot finish, so generation stops instead of waiting."""


UNGUARDED_SCRIPT_HINT = (
    "if you called generate(..., workers=N) from your own script: each worker process starts fresh and imports that "
    "script, so the call must sit under 'if __name__ == \"__main__\":' (or pass workers=1); otherwise a worker was "
    "killed (out of memory?) or failed, and its error is printed above")


def run_jobs(work: Callable[[Any], Any], jobs: Sequence[Any], *, workers: int, initializer: Callable[..., None],
             initargs: tuple[Any, ...], chunksize: int, desc: str, unit: str, show: bool) -> Iterator[Any]:
    """``work(job)`` for every job, in ``workers`` processes (each set up by ``initializer(*initargs)``; in this
    process when ``workers`` is 1), with progress. A process pool that loses a worker raises :class:`WorkerPoolError`
    at once (``concurrent.futures`` reports it; ``multiprocessing.Pool`` would replace the worker and wait forever)."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from training.progress import progress

    with progress(total=len(jobs), desc=desc, unit=unit, disable=not show) as bar:
        if workers == 1 or len(jobs) <= 1:
            initializer(*initargs)
            for job in jobs:
                yield work(job)
                bar.update()
            return
        pool = ProcessPoolExecutor(min(workers, len(jobs)), mp_context=pool_context(), initializer=initializer,
                                   initargs=initargs)
        try:
            for result in pool.map(work, jobs, chunksize=chunksize):
                yield result
                bar.update()
        except BrokenProcessPool as e:
            raise WorkerPoolError(f"{desc}: a worker process died after {bar.n} of {len(jobs)} {unit}s ({e}); "
                                  f"{UNGUARDED_SCRIPT_HINT}") from e
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------------------------
def generator_cli(argv: list[str] | None, *, prog: str, description: str, presets: dict[str, Any],
                  generate_fn: Callable[..., Path], describe: Callable[[Any, dict[str, Any]], str],
                  example_out: str = "data/small") -> int:
    """The command line shared by both benchmarks: pick a preset, override its per-class counts, generate, print
    ``describe(config, meta)``."""
    from training.cli import set_verbose, tool_parser

    parser = tool_parser(prog, description, f"{prog} --preset small --out {example_out} --workers 2",
                         notes="presets (train + val videos per class): " + ", ".join(
                             f"{name} {cfg.train_per_class} + {cfg.val_per_class}" for name, cfg in presets.items()))
    parser.add_argument("--preset", choices=sorted(presets), default="tiny", help="dataset size (see presets below)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed: the same seed gives the same videos")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: the CPUs available)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    parser.add_argument("--train-per-class", type=int, default=None,
                        help="training videos per class (default: the preset's)")
    parser.add_argument("--val-per-class", type=int, default=None,
                        help="validation videos per class (default: the preset's)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    set_verbose(args.verbose)
    cfg = presets[args.preset]
    over = {k: v for k, v in (("train_per_class", args.train_per_class), ("val_per_class", args.val_per_class))
            if v is not None}
    try:
        if over:
            cfg = dataclasses.replace(cfg, **over)
        path = generate_fn(args.out, cfg, seed=args.seed, workers=args.workers, overwrite=args.overwrite,
                           progress=not args.quiet)
    except (FileExistsError, ValueError, SdkError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    meta = json.loads((Path(path) / "meta.json").read_text())
    print(f"wrote {path}: {describe(cfg, meta)}, {meta['wall_time_s']:.1f} s with {meta['workers']} workers")
    return 0
