"""Benchmark of the synthetic time-reversal-pairs generator (training.data.synthetic).

    python -m benchmarks generate [--workers N] [--small-clips 200] [--json out.json]

Measures, in one run on this machine:
  * ``tiny`` preset: wall time of a complete generation (process pool start, rendering, H.264 encoding, CSV/meta),
    the number CI depends on (target: < 30 s on 2 cores);
  * ``small`` preset: throughput in clips/s and frames/s on a subset (~200 clips, all 16 classes) with the stated
    number of worker processes;
  * a serial in-process breakdown of one ``small`` clip: render ms vs encode ms.
Wall-clock figures on a shared machine are noisy: compare them only against figures from the same run / machine.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def main(argv: list[str] | None = None) -> int:
    from training.cli import set_verbose, tool_parser

    parser = tool_parser("python -m benchmarks generate", __doc__.split("\n\n")[0],
                         "python -m benchmarks generate --workers 2 --json generate.json")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: CPUs available)")
    parser.add_argument("--small-clips", type=int, default=200, help="clips of the small preset to generate")
    parser.add_argument("--serial-clips", type=int, default=8, help="clips for the serial render/encode breakdown")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--keep", default=None, help="generate into this directory instead of a temporary one")
    args = parser.parse_args(argv)
    set_verbose(args.verbose)


    from training.data import synthetic as syn
    from training.data.writer import write_mp4

    workers = args.workers or _cpus()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_generate_"))
    root.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "machine": {"cpus_available": _cpus(), "python": platform.python_version(), "processor": platform.machine()},
        "workers": workers,
        "seed": args.seed,
    }
    try:
        # ---- tiny: complete generation, wall clock from a cold process pool
        t0 = time.perf_counter()
        out = syn.generate(root / "tiny", "tiny", seed=args.seed, workers=workers, overwrite=True, progress=False)
        tiny_wall = time.perf_counter() - t0
        meta = json.loads((out / "meta.json").read_text())
        n_tiny = sum(meta["counts"].values())
        results["tiny"] = {"clips": n_tiny, "frames_per_clip": meta["frames"],
                           "size": f"{meta['width']}x{meta['height']}", "wall_s": round(tiny_wall, 2),
                           "clips_per_s": round(n_tiny / tiny_wall, 1),
                           "bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file())}

        # ---- small: throughput on a subset (all classes, train split only)
        per_class = max(1, math.ceil(args.small_clips / len(syn.CLASSES)))
        cfg = dataclasses.replace(syn.PRESETS["small"], train_per_class=per_class, val_per_class=0)
        t0 = time.perf_counter()
        out = syn.generate(root / "small_subset", cfg, seed=args.seed, workers=workers, overwrite=True, progress=False)
        small_wall = time.perf_counter() - t0
        n_small = per_class * len(syn.CLASSES)
        full_small = syn.PRESETS["small"]
        n_full_small = (full_small.train_per_class + full_small.val_per_class) * len(syn.CLASSES)
        results["small"] = {"clips": n_small, "frames_per_clip": cfg.frames, "size": f"{cfg.width}x{cfg.height}",
                            "wall_s": round(small_wall, 2), "clips_per_s": round(n_small / small_wall, 1),
                            "frames_per_s": round(n_small * cfg.frames / small_wall),
                            "estimated_full_small_preset_s": round(n_full_small * small_wall / n_small),
                            "mb_per_clip": round(sum(p.stat().st_size for p in (out / "videos").rglob("*.mp4"))
                                                 / n_small / 1e6, 3)}

        # ---- serial breakdown of the small preset (this process, one core)
        syn.photo_pool()
        syn.render_clip(0, 0, cfg)  # warm-up: photo pool, noise bank
        render_s = encode_s = 0.0
        for i in range(args.serial_clips):
            t0 = time.perf_counter()
            frames, _ = syn.render_clip(i % len(syn.CLASSES), syn.clip_seed(args.seed, "val", i % 16, i), cfg)
            t1 = time.perf_counter()
            write_mp4(root / "serial.mp4", frames, cfg.fps, cfg.crf, cfg.x264_preset)
            t2 = time.perf_counter()
            render_s += t1 - t0
            encode_s += t2 - t1
        n = max(1, args.serial_clips)
        results["small_serial_per_clip_ms"] = {"render": round(1e3 * render_s / n, 1),
                                               "encode": round(1e3 * encode_s / n, 1)}
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    t, s, b = results["tiny"], results["small"], results["small_serial_per_clip_ms"]
    procs = f"{workers} worker process{'es' if workers > 1 else ''}"
    print(f"synthetic generator benchmark ({procs}, {results['machine']['cpus_available']} CPUs)")
    print(f"  tiny : {t['clips']} clips x {t['frames_per_clip']} frames {t['size']}: {t['wall_s']:.2f} s wall "
          f"({t['clips_per_s']} clips/s)")
    print(f"  small: {s['clips']} clips x {s['frames_per_clip']} frames {s['size']}: {s['wall_s']:.2f} s wall, "
          f"{s['clips_per_s']} clips/s, {s['frames_per_s']} frames/s "
          f"(full small preset ~{s['estimated_full_small_preset_s']} s)")
    print(f"  small, one process: render {b['render']} ms + encode {b['encode']} ms per clip")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
