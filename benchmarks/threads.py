"""``python -m benchmarks threads``: each runtime's default thread count against one thread, on this machine.

    python -m benchmarks threads --bundle A.vbundle [--bundle B.vbundle] [--rounds 3] [--seconds 2]

Per bundle and runtime (every backend its programs have and that is installed, through ``sdk.load``; and the native
core when built), milliseconds per frame of the bundle's program (random input, state zero) with the runtime's
default threads (``sdk.load(threads=None)``; the core: ExecuTorch's default threadpool) and with one
(``threads=1``; the core has no thread option: the process is pinned to one core, ``os.sched_setaffinity``). Each
measurement runs in a process of its own -- ExecuTorch's threadpool is process-wide, so one process cannot hold both
settings -- and the two settings alternate for ``--rounds`` rounds, so that a background load hits both; reported:
the median over rounds of each process's p50.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SETTINGS = ("default", "1 thread")


def _time_python(bundle: str, backend: str, threads: int | None, seconds: float) -> float:
    import sdk

    model = sdk.load(bundle, backend=backend, threads=threads)
    program = model.programs["model"]
    rng = np.random.default_rng(0)
    inputs = [rng.uniform(0, 255, program.inputs[0].shape).astype(np.float32), *model.zero_state("model")]
    frames = program.inputs[0].shape[0] if program.mode == "clip" else 1
    return _p50(lambda: model.run("model", inputs), seconds) / frames


def _time_native(bundle: str, seconds: float) -> float:
    from sdk.bundle import Bundle
    from sdk.native import NativeStreamClassifier, build

    with Bundle(bundle) as b:
        window = b.manifest.sampler.frames  # every frame kept
    core = NativeStreamClassifier(bundle, library=build(), window=window)
    frame = np.random.default_rng(0).integers(0, 256, (core.short_side, core.short_side, 3), dtype=np.uint8)

    def one_window() -> None:  # each frame's crop + program (a clip bundle's: at the window's end) + the prediction
        for _ in range(window):
            core.push(frame)
    return _p50(one_window, seconds) / window


def _p50(call, seconds: float) -> float:
    for _ in range(5):
        call()
    samples, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    return float(np.percentile(samples, 50)) * 1e3


def _child(args: argparse.Namespace) -> int:
    if args.setting == "1 thread" and args.runtime == "native":
        os.sched_setaffinity(0, {args.core})
    if args.runtime == "native":
        ms = _time_native(args.bundle[0], args.seconds)
    else:
        ms = _time_python(args.bundle[0], args.runtime, 1 if args.setting == "1 thread" else None, args.seconds)
    print(json.dumps({"ms": ms}))
    return 0


def _runtimes(bundle: str) -> list[str]:
    from sdk.bundle import Bundle
    from sdk.native import cached_build
    from sdk.backends.table import BACKENDS
    from sdk.runtime import is_available

    with Bundle(bundle) as b:
        backends = {p.backend for p in b.manifest.programs}
    found = [be for be in BACKENDS if be in backends and is_available(be)]
    return found + (["native"] if "executorch" in backends and cached_build() is not None else [])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks threads", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", action="append", required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--core", type=int, default=1, help="the core a one-thread native process is pinned to")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--runtime", help=argparse.SUPPRESS)
    p.add_argument("--setting", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return _child(args)
    rows = []
    for bundle in args.bundle:
        for runtime in _runtimes(bundle):
            ms: dict[str, list[float]] = {s: [] for s in SETTINGS}
            for _ in range(args.rounds):
                for setting in SETTINGS:
                    out = subprocess.run([sys.executable, "-m", "benchmarks.threads", "--child", "--bundle", bundle,
                                          "--runtime", runtime, "--setting", setting, "--seconds",
                                          str(args.seconds), "--core", str(args.core)],
                                         capture_output=True, text=True, check=True)
                    ms[setting].append(json.loads(out.stdout.strip().splitlines()[-1])["ms"])
            default, one = (float(np.median(ms[s])) for s in SETTINGS)
            rows.append((Path(bundle).name, runtime, f"{default:.3f}", f"{one:.3f}", f"{one / default:.2f}x"))
            print(f"[threads] {Path(bundle).name} {runtime} done", flush=True)
    head = ("bundle", "runtime", "default ms/frame", "1 thread ms/frame", "1 thread / default")
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" if i < 2 else f"{{:>{w}}}" for i, w in enumerate(widths))
    print(f"host: {os.uname().machine}, {len(os.sched_getaffinity(0))} usable cores, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.rounds} rounds, settings alternating, "
          f"{args.seconds:g} s each, median of the processes' p50s")
    print("\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths)), *(fmt.format(*r) for r in rows)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
