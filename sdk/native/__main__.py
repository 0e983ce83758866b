"""``python -m sdk.native build``: compile the native core for this environment and print its directory.

    python -m sdk.native build [--cache-dir DIR] [--jobs 2] [--verbose]

The step of a device install (``scripts/device_install.sh``) that makes ``python -m sdk classify --native`` work:
CMake (>= 3.19) and a C++17 compiler build ``libedgevideo.so`` + ``edgevideo_cli`` against the executorch wheel
installed in this environment (``pip install --no-deps executorch==1.5.1``: headers, libexecutorch and its CMake
package; torch is not needed), cached by a hash of the sources and of that wheel's location
(:func:`sdk.native.build`). Running it again prints the cached build at once. Exit status 2 on a typed error.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sdk.errors import SdkError
from sdk.native import build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdk.native", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the native core (cached) and print the directory holding libedgevideo.so")
    b.add_argument("--cache-dir", type=Path, default=None,
                   help="where builds are kept (default: $EDGEVIDEO_NATIVE_CACHE or ~/.cache/edgevideo/native)")
    b.add_argument("--jobs", type=int, default=2, help="parallel compile jobs")
    b.add_argument("--verbose", action="store_true", help="show CMake's output")
    args = parser.parse_args(argv)
    try:
        print(build(args.cache_dir, jobs=args.jobs, verbose=args.verbose))
    except SdkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
