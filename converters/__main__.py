"""``python -m converters export ...`` (checkpoint -> verified bundle) and ``python -m converters inspect BUNDLE``."""
from __future__ import annotations

import argparse
import sys

from converters.options import ExportOptions
from converters.parity import ParityError
from sdk.describe import add_inspect_command
from sdk.errors import SdkError
from training.cli import VERBOSE_HELP, HelpFormatter, add_options, options_from_args, set_verbose


def _export(args: argparse.Namespace) -> int:
    from converters.export import export_bundle

    opts = options_from_args(ExportOptions, args)
    report = export_bundle(opts)
    print()
    print(report.table())
    print(f"\nbundle {report.bundle} written in {report.timings['total']:.1f} s"
          + (f" (and {report.bundle}.zip)" if args.zip else ""))
    for failure in report.failed:
        print(f"error: {failure.format} is not in the bundle: {failure.error}", file=sys.stderr)
    return 1 if report.failed else 0


EXPORT_EXAMPLE = ("python -m converters export --checkpoint runs/demo/int8/int8_qat.pt2 --to pte --precision int8 "
                  "--out student.vbundle")


def build_parser() -> argparse.ArgumentParser:
    """The command line: ``export``'s options are :class:`ExportOptions`'s fields (their metadata), ``inspect``'s
    are sdk's."""
    parser = argparse.ArgumentParser(prog="python -m converters", description=__doc__, formatter_class=HelpFormatter,
                                     epilog=f"examples:\n  {EXPORT_EXAMPLE}\n  python -m converters inspect "
                                            "student.vbundle --verify\n\n'python -m converters COMMAND --help' "
                                            "describes a command's options")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    e = sub.add_parser("export", help="checkpoint -> verified bundle (.pte, .mlpackage, .tflite, .onnx)",
                       description="Export a checkpoint as a bundle whose programs are verified against the torch "
                                   "model in their real runtimes.", formatter_class=HelpFormatter,
                       epilog=f"example:\n  {EXPORT_EXAMPLE}")
    e.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    add_options(e, ExportOptions)
    e.set_defaults(func=_export)
    add_inspect_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_verbose(getattr(args, "verbose", False))
    try:
        return args.func(args)
    except (SdkError, ParityError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
