"""``python -m sdk {classify,stream,bench,inspect}``: the runtime from the command line.

    python -m sdk classify VIDEO --bundle B          one prediction for a whole video + per-stage latency
    python -m sdk stream SOURCE --bundle B           a file, camera index (0) or URL (rtsp://...) frame by frame
    ... classify|stream ... --runtime native         the bundle's .pte programs on the native C++ core (sdk/native):
                                                     no torch, no Python ExecuTorch (scripts/device_install.sh);
                                                     --runtime auto (default) picks it when its build is cached
                                                     and the bundle's first choice is a .pte program
    python -m sdk bench --bundle B [--bundle B2]     every available backend side by side: per-frame p50/p95, ratios,
                                                     one pinned core with 1 thread, then all cores
    python -m sdk inspect B                          the bundle's page (programs, parity, provenance)
    python -m sdk web B                              the bundle's .onnx programs in a browser page (localhost)

Which runtime ran and why is written on stderr; stdout holds only the result (with ``--json``, only JSON).
Exit status: 0 on success, 2 on a typed sdk error (one ``error:`` line on stderr; ``--verbose``: the traceback, and
the runtimes' own log lines unfiltered).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from sdk.backends.table import BACKENDS
from sdk.describe import add_inspect_command
from sdk.web.serve import add_web_command
from sdk.errors import SdkError
from sdk.preprocess import CONVERSIONS


def _model(args: argparse.Namespace):
    from sdk.runtime import load

    model = load(args.bundle, backend=args.backend, verify=args.verify, threads=args.threads,
                 precision=args.precision)
    _say(f"model: {model.manifest.name} ({model.kind}) on {model.backend} {model.precision}, "
         f"threads {args.threads or 'default'}" + (" - golden vectors verified" if args.verify else ""))
    if model.backend == "executorch" and not args.why:
        _say("runtime: the Python ExecuTorch bindings (they import torch: seconds before the first frame); build "
             "the native core once with `python -m sdk.native build` and the .pte programs run there instead")
    else:
        _say(f"runtime: Python ({args.why})" if args.why else "runtime: Python")
    return model


def _say(line: str) -> None:
    """What the tool tells the person (the model, the runtime and why): stderr, so stdout stays the result."""
    print(line, file=sys.stderr, flush=True)


def _use_native(args: argparse.Namespace) -> bool:
    """Whether the native core runs the bundle (``--runtime``; ``auto``: when the program the Python runtimes would
    pick first is a .pte and the core's build is cached), with the reason in ``args.why``."""
    args.why = ""
    if args.runtime != "auto":
        args.why = f"--runtime {args.runtime}"
        return args.runtime == "native"
    if args.backend != "auto":
        args.why = f"--backend {args.backend}"
        return False
    if args.threads is not None:
        args.why = "--threads: the native core's threadpool has no thread setting"
        return False
    from sdk.bundle import Bundle
    from sdk.native import cached_build
    from sdk.runtime import first_choice

    with Bundle(args.bundle) as bundle:
        first = first_choice(bundle.manifest, args.backend, args.precision)
    if first is None or first[0] != "executorch":
        args.why = f"the bundle's first choice on this host is {' '.join(first)}" if first else ""
        return False
    library = args.library or cached_build()
    if library is None:
        return False
    args.library = library
    args.why = f"the bundle's first choice is its .pte {first[1]} program and the native core is built ({library})"
    return True


def _native_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of the native classifiers; refuses the options that do not apply to the core (it runs
    the .pte programs on one process-wide threadpool)."""
    from sdk.errors import ConfigError

    if args.backend != "auto":
        raise ConfigError(f"--runtime native runs the bundle's .pte programs on the native core: --backend {args.backend} "
                          "does not apply (drop one of the two)")
    if args.threads is not None:
        raise ConfigError("--runtime native: the core's XNNPACK threadpool is process-wide and has no thread setting; pin "
                          "the process with taskset instead of --threads")
    return {"top_k": args.top_k, "precision": args.precision, "verify": args.verify, "library": args.library,
            "gate_threshold": args.gate_threshold}


def _announce_native(clf, args: argparse.Namespace) -> None:
    _say(f"model: {clf.manifest.name} ({clf.kind}) on native {clf.precision}"
         + (" - golden vectors verified" if args.verify else ""))
    _say(f"runtime: native core ({args.why})")


def _conversion(args: argparse.Namespace) -> dict[str, str]:
    """``open_source``'s conversion of a video file: ``--conversion`` when given, else the one the bundle's model was
    trained with (its ``input.preprocess.conversion``); other sources ignore it."""
    if args.conversion is not None:
        return {"file_conversion": args.conversion}
    from sdk.bundle import Bundle
    from sdk.classifier import file_conversion

    with Bundle(args.bundle) as bundle:
        return {"file_conversion": file_conversion(bundle.manifest)}


def _classify(args: argparse.Namespace) -> int:
    _require_file(args.video, "video")  # before loading a model: that costs seconds
    from sdk.video import open_source

    if _use_native(args):
        from sdk.native.stream import NativeVideoClassifier

        with (NativeVideoClassifier(args.bundle, strict=args.strict, **_native_options(args)) as clf,
              open_source(args.video, **_conversion(args)) as video):
            _announce_native(clf, args)
            _print_prediction(args, clf.classify(video), clf.stats)
        return 0
    from sdk.classifier import VideoClassifier

    with _model(args) as model, open_source(args.video, **_conversion(args)) as video:
        clf = VideoClassifier(model, top_k=args.top_k, strict=args.strict, gate_threshold=args.gate_threshold)
        _print_prediction(args, clf.classify(video), clf.stats)
    return 0


def _print_prediction(args: argparse.Namespace, pred, stats) -> None:
    """One whole-video prediction (``--json``: with its class ids, raw logits and the classifier's statistics)."""
    if args.json:
        print(json.dumps({"labels": pred.labels, "scores": pred.scores, "class_ids": pred.class_ids,
                          "logits": pred.logits.tolist(), "latency_ms": pred.latency_ms, "warnings": pred.warnings,
                          "stats": stats.as_dict()}, indent=2))
    else:  # a warning of the classifier (e.g. a video shorter than its header) is on stderr, from the logger
        print(pred)
        print()
        print(stats.table())


def _require_file(path: str, what: str) -> None:
    from sdk.errors import ConfigError

    if not Path(path).is_file():
        raise ConfigError(f"{what} {path} {'is not a file' if Path(path).exists() else 'does not exist'}: give the "
                          f"path of a {what} file")


def _source(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def _stream(args: argparse.Namespace) -> int:
    from sdk.classifier import Smoothing, StreamClassifier
    from sdk.video import open_source

    smoothing = Smoothing(args.ema, args.hysteresis) if (args.ema or args.hysteresis) else None
    if args.conversion not in (None, "swscale") and not Path(args.source).is_file():
        from sdk.errors import ConfigError

        raise ConfigError(f"--conversion {args.conversion} reads video files and {args.source} is not one (cameras "
                          "and URLs are read with OpenCV, in RGB): give a video file or leave --conversion out")
    # first: the default window follows the source's frame rate
    with open_source(_source(args.source), **_conversion(args)) as source:
        if _use_native(args):
            from sdk.native.stream import NativeStream

            with NativeStream(args.bundle, window=args.window, fps=source.fps, smoothing=smoothing,
                              **_native_options(args)) as clf:
                _announce_native(clf, args)
                _print_stream(args, clf, source)
            return 0
        with _model(args) as model:
            clf = StreamClassifier(model, window=args.window, fps=source.fps, top_k=args.top_k, smoothing=smoothing,
                                   gate_threshold=args.gate_threshold)
            _print_stream(args, clf, source)
    return 0


def _print_stream(args: argparse.Namespace, clf, source) -> None:
    _say(f"window: {clf.window} frames ({clf.window_reason})")
    started = time.perf_counter()
    for pred in clf.run(source, max_frames=args.max_frames):
        print(pred, flush=True)
    wall = time.perf_counter() - started
    print()
    print(clf.stats.table())
    seen = clf.stats.frames_seen
    print(f"{seen} frames in {wall:.2f} s: {seen / wall:.1f} frames/s end to end (decoding included)")


def _bench(args: argparse.Namespace) -> int:
    if args.first_prediction:
        return _first_prediction(args)
    from sdk.bench import BenchOptions, run_bench

    opts = BenchOptions(bundles=[Path(b) for b in args.bundle], torch_programs=list(args.torch or []),
                        backends=args.backends.split(",") if args.backends else None, seconds=args.seconds,
                        warmup=args.warmup, core=args.core, all_threads=not args.one_thread_only,
                        baseline=args.baseline)
    report = run_bench(opts)
    print(report.table())
    if args.png:
        print(f"\nwrote {report.plot(Path(args.png))}")
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2))
        print(f"\nwrote {args.json}")
    return 0


def _first_prediction(args: argparse.Namespace) -> int:
    from sdk.first_prediction import as_dict, auto_runtime, first_prediction_times, table

    results = {}
    for bundle in args.bundle:
        rows = first_prediction_times(bundle, args.first_prediction, repeats=args.repeats,
                                      runtimes=args.backends.split(",") if args.backends else None)
        print(f"{bundle}: first prediction of {args.first_prediction}")
        print(table(rows, auto_runtime(bundle)))
        results[str(bundle)] = as_dict(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
        print(f"\nwrote {args.json}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", type=Path, required=True, help="NAME.vbundle directory or its zip")
    p.add_argument("--backend", default="auto", help=f"auto (default), {', '.join(BACKENDS)}")
    p.add_argument("--precision", default=None, choices=("fp32", "fp16", "int8"),
                   help="program precision (default: the smallest the bundle has: int8, then fp16, then fp32)")
    p.add_argument("--threads", type=int, default=None, help="runtime threads (default: the runtime's)")
    p.add_argument("--verify", action="store_true", help="check the golden vectors after loading")
    p.add_argument("--top-k", type=int, default=5, help="labels printed per prediction (default 5)")
    p.add_argument("--gate-threshold", type=float, default=None,
                   help="adaptive FASTER bundles: run the expensive model where the gate's score exceeds this "
                        "(default: the bundle's; inf: never, -inf: always)")
    p.add_argument("--runtime", choices=("auto", "python", "native"), default="auto",
                   help="native: the bundle's .pte programs on the native C++ core (sdk/native; no torch needed, "
                        "scripts/device_install.sh --native); python: sdk.load's runners; auto (default): native "
                        "when the bundle's first choice is a .pte program and the core's build is cached (python -m "
                        "sdk.native build), else python")
    p.add_argument("--native", dest="runtime", action="store_const", const="native", help="= --runtime native")
    p.add_argument("--verbose", action="store_true",
                   help="on an error, the traceback; and the runtimes' own log lines, unfiltered")
    p.add_argument("--library", type=Path, default=None,
                   help="with --runtime native: a prebuilt libedgevideo.so or its directory (default: python -m "
                        "sdk.native build's, cached)")
    p.add_argument("--conversion", choices=CONVERSIONS, default=None,
                   help="video files: swscale: libswscale's RGB of each kept frame, resized whole; camera: the "
                        "decoded planes through the fused convert + resize + crop (sdk.video.VideoFile) (default: "
                        "the one the bundle's model was trained with, its manifest's input.preprocess.conversion; "
                        "swscale for bundles that do not record it)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdk", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("classify", help="classify one video file")
    c.add_argument("video", help="video file to classify (decoded with PyAV or OpenCV)")
    _common(c)
    c.add_argument("--json", action="store_true", help="print the prediction and stats as JSON")
    c.add_argument("--strict", action="store_true",
                   help="fail on a video whose stream ends before its header's frame count (default: classify the "
                        "frames that exist, with a warning)")
    c.set_defaults(func=_classify)
    s = sub.add_parser("stream", help="stream a file, camera index or URL frame by frame")
    s.add_argument("source", help="video file, camera index (0) or URL (rtsp://...)")
    _common(s)
    s.add_argument("--window", type=int, default=None,
                   help="frames per window (clip/stream bundles; default: the bundle's training clip, in seconds at "
                        "the source's frame rate, or 32 for a bundle that does not record it)")
    s.add_argument("--max-frames", type=int, default=None, help="stop after this many frames (default: the end)")
    s.add_argument("--ema", type=float, default=0.0, help="EMA smoothing weight of the previous output, [0, 1)")
    s.add_argument("--hysteresis", type=float, default=0.0, help="margin before the top label may change")
    s.set_defaults(func=_stream)
    b = sub.add_parser("bench", help="per-frame latency of every available backend, side by side")
    b.add_argument("--bundle", action="append", required=True, help="a bundle (repeat to compare several)")
    b.add_argument("--torch", action="append", metavar="NAME=PROGRAM.pt2",
                   help="an eager-torch reference program (torch.export.save) to time beside them (repeatable)")
    b.add_argument("--backends", default=None, help="comma-separated subset (default: all available)")
    b.add_argument("--seconds", type=float, default=2.0, help="measuring time per program and setting")
    b.add_argument("--warmup", type=int, default=5, help="untimed calls first")
    b.add_argument("--core", type=int, default=0, help="the CPU core the 1-thread pass is pinned to")
    b.add_argument("--one-thread-only", action="store_true", help="skip the all-cores pass")
    b.add_argument("--json", default=None, help="also write the figures to this JSON file")
    b.add_argument("--png", default=None, help="also plot per-frame latency per program (fp32 vs int8) to this PNG")
    b.add_argument("--baseline", default=None, metavar="NAME",
                   help="a bundle's name: print every program's p50 as a ratio to its (same runtime and precision)")
    b.add_argument("--first-prediction", metavar="VIDEO", default=None,
                   help="instead of per-frame latency: cold (a new `python -m sdk classify` process, start to exit) "
                        "and warm time to classify VIDEO, per runtime (native when built, then each Python backend; "
                        "--backends picks, e.g. native,onnx)")
    b.add_argument("--repeats", type=int, default=3, help="with --first-prediction: cold runs per runtime (median)")
    b.set_defaults(func=_bench)
    add_inspect_command(sub)
    add_web_command(sub)
    args = parser.parse_args(argv)
    verbose = getattr(args, "verbose", False)
    if verbose:
        from sdk.backends import VERBOSE_ENV

        os.environ[VERBOSE_ENV] = "1"
    try:
        return args.func(args)
    except SdkError as e:
        if verbose:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
