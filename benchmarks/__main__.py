"""``python -m benchmarks NAME [args]``: run one benchmark. Add a benchmark by adding a line to BENCHMARKS."""
from __future__ import annotations

import importlib
import sys

# name -> module with a ``main(argv: list[str]) -> int | None``; imported only when chosen, so one benchmark's
# dependencies never break another's.
BENCHMARKS = {
    "decode": "benchmarks.decode",
    "generate": "benchmarks.generate",
    "probe": "benchmarks.probe",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHMARKS:
        print(f"usage: python -m benchmarks {{{','.join(BENCHMARKS)}}} [args] (--help for a benchmark's args)")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return importlib.import_module(BENCHMARKS[argv[0]]).main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
