"""``python -m benchmarks NAME [args]``: run one benchmark. Add a benchmark by adding a line to BENCHMARKS."""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module with a ``main(argv: list[str]) -> int | None``, what it measures); a module is imported only when
# chosen, so one benchmark's dependencies never break another's.
BENCHMARKS = {
    "camera": ("benchmarks.camera", "camera frame (NV12 / RGBA) to model input: app-side RGB + sdk vs the sdk "
                                    "reference vs the native core's fused path"),
    "data_size": ("benchmarks.data_size", "how much data a task needs: the teacher recipe on n training videos per "
                                          "class, accuracy vs n"),
    "decode": ("benchmarks.decode", "decode speed: all frames vs the sampled ones, and what seeking buys"),
    "frame_budget": ("benchmarks.frame_budget", "how few frames are enough: students seeing k of the teacher's N "
                                                "frames, distilled and label-only, top-1 vs GMACs"),
    "generate": ("benchmarks.generate", "speed of the synthetic benchmark generator (tiny wall time, small "
                                        "throughput)"),
    "pipeline": ("benchmarks.pipeline", "decoded frame to label per runtime (Python, native core), before and "
                                        "after the fused conversion + resize + crop: time outside the model, p50 / p99"),
    "probe": ("benchmarks.probe", "order-blind vs order-aware linear probes on frozen ImageNet features of a "
                                  "generated benchmark"),
    "threads": ("benchmarks.threads", "each runtime's default thread count vs one thread, ms per frame"),
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", usage="python -m benchmarks NAME [its options]",
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="benchmarks:\n" + "\n".join(f"  {name:<10} {text}" for name, (_, text) in BENCHMARKS.items())
        + "\n\nexample:\n  python -m benchmarks decode --size 224\n\n'python -m benchmarks NAME --help' describes "
          "a benchmark's options")
    parser.add_argument("name", choices=BENCHMARKS, help="the benchmark to run (see below)")
    try:
        args = parser.parse_args(argv[:1])  # everything after the name is the benchmark's own
    except SystemExit as stop:  # --help, or no or an unknown name: argparse has printed why
        return int(stop.code or 0)
    return importlib.import_module(BENCHMARKS[args.name][0]).main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
