"""``python -m converters export ...`` (checkpoint -> verified bundle) and ``python -m converters inspect BUNDLE``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from converters.options import FORMATS, formats_help
from converters.parity import ParityError, Tolerance
from sdk.describe import add_inspect_command
from sdk.errors import SdkError
from sdk.manifest import PRECISIONS
from training.config import VERBOSE_HELP, HelpFormatter, set_verbose


def _export(args: argparse.Namespace) -> int:
    from converters.export import ExportOptions, export_bundle

    opts = ExportOptions(
        checkpoint=args.checkpoint, out=args.out, formats=[f.strip() for f in args.to.split(",") if f.strip()],
        precision=args.precision, mode=args.mode, data=args.data, split=args.split,
        calibration_clips=args.calibration_clips, parity_clips=args.parity_clips, golden_clips=args.golden_clips,
        tolerance=Tolerance(fp32=args.atol_fp32, fp16=args.atol_fp16, int8=args.atol_int8, rtol=args.rtol,
                            int8_min_top1=args.int8_min_agreement),
        name=args.name, force=args.force, zip=args.zip, threads=args.threads, coreml_format=args.coreml_format)
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


def main(argv: list[str] | None = None) -> int:
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
    e.add_argument("--checkpoint", type=Path, required=True, help="best.pt (training) or int8_qat.pt2 (training.qat)")
    e.add_argument("--to", default=",".join(FORMATS), help=f"comma-separated formats ({formats_help()})")
    e.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="precision of the programs (int8 from a .pt: post-training calibration; a .pt2 is int8)")
    e.add_argument("--mode", choices=("clip", "stream"), default="clip",
                   help="clip: (T,3,H,W) -> logits; stream: one frame + explicit state per call (causal models)")
    e.add_argument("--out", type=Path, required=True, help="NAME.vbundle directory to write")
    e.add_argument("--data", type=Path, default=None,
                   help="benchmark for calibration and parity (default: the checkpoint's dataset)")
    e.add_argument("--split", default="val.csv", help="held-out split for parity")
    e.add_argument("--parity-clips", type=int, default=100, help="held-out clips each program is checked on")
    e.add_argument("--calibration-clips", type=int, default=32, help="int8 post-training calibration clips")
    e.add_argument("--golden-clips", type=int, default=2, help="clips stored in golden.npz")
    e.add_argument("--atol-fp32", type=float, default=1e-3, help="max |logit diff| for fp32 programs")
    e.add_argument("--atol-fp16", type=float, default=5e-2, help="max |logit diff| for fp16 programs")
    e.add_argument("--atol-int8", type=float, default=None, help="max |logit diff| for int8 programs (default: none)")
    e.add_argument("--rtol", type=float, default=1e-5,
                   help="added to each atol, times the largest |logit| of the reference (like numpy.allclose)")
    e.add_argument("--int8-min-agreement", type=float, default=0.9,
                   help="smallest top-1 agreement of an int8 program with its reference")
    e.add_argument("--coreml-format", choices=("mlpackage", "mlmodel"), default="mlpackage",
                   help="Core ML container: ML program .mlpackage (default) or legacy NeuralNetwork .mlmodel (fp32)")
    e.add_argument("--threads", type=int, default=None, help="runtime threads for the parity runs")
    e.add_argument("--name", default=None, help="bundle name (default: from --out)")
    e.add_argument("--force", action="store_true", help="replace an existing bundle")
    e.add_argument("--zip", action="store_true", help="also write NAME.vbundle.zip")
    e.set_defaults(func=_export)
    add_inspect_command(sub)
    args = parser.parse_args(argv)
    set_verbose(getattr(args, "verbose", False))
    try:
        return args.func(args)
    except (SdkError, ParityError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
