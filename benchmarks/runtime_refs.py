"""The reference programs ``python -m sdk bench`` compares a student with:
``python -m benchmarks.runtime_refs --checkpoint STUDENT.pt --out DIR [--formats pte,tflite,onnx]``.

Writes into ``DIR``:

* ``student_torch.pt2`` -- the student's clip program (``converters.program.ClipProgram``: the bundle's calling
  convention) saved with ``torch.export.save``: ``python -m sdk bench --torch student=DIR/student_torch.pt2`` times it
  in eager torch beside the bundles (the "eager torch fp32" row);
* ``plain_mnv2_{fp32,int8}.vbundle`` -- a plain MobileNetV2 (``tsn_mobilenet_v2`` with one frame: no temporal
  module) as a one-frame clip program at the student's resolution (or ``--size``): the "plain MobileNetV2 frame" in
  each runtime; both precisions carry the bundle name ``plain_mnv2``, so ``python -m sdk bench --baseline plain_mnv2``
  prints every program's ratio to it;
* ``causal_tam_step_{fp32,int8}.vbundle`` / ``online_tsm_step_{fp32,int8}.vbundle`` -- the streaming forms
  (``--mode stream``: one frame + explicit state per call) of ``tam_mobilenet_v2_causal`` and
  ``tsm_mobilenet_v2_online`` (``--stream-arch``) at that resolution: the "streaming steps" to compare with the plain
  frame in the same runtime;
* ``plain_mnv2_torch.pt2`` / ``causal_tam_step_torch.pt2`` / ... -- the same programs in eager torch.

The plain and causal networks have random weights (their labels, sampler and preprocessing are the student's):
latency does not depend on the weights; accuracy is not measured here. Exports go through ``converters.export``
(parity-checked in every runtime) on a few clips of the student's benchmark.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from training.checkpoint import CheckpointMeta

STEP_NAMES = {"tam_mobilenet_v2_causal": "causal_tam_step", "tam_mobilenet_v2_causal_expanded": "expanded_tam_step",
              "tsm_mobilenet_v2_online": "online_tsm_step"}


def _checkpoint(path: Path, student_meta: CheckpointMeta, arch: str, frames: int) -> Path:
    from training.checkpoint import atomic_save
    from training.models.registry import create

    torch.manual_seed(0)
    model = create(arch, num_classes=len(student_meta.labels), frames=frames, pretrained=False)
    atomic_save({"model": model.state_dict(), "config": {"arch": arch, "frames": frames},
                 "labels": list(student_meta.labels),
                 "sampler": {**student_meta.sampler.to_dict(), "kind": "uniform_segments", "frames": frames,
                             "of": None},
                 "preprocess": student_meta.preprocess.to_dict(), "dataset": dict(student_meta.dataset)}, path)
    return path


def _save_torch(program: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path) -> None:
    ep = torch.export.export(program.eval(), example)
    torch.export.save(ep, str(path))
    print(f"[refs] {path}", flush=True)


def main(argv: list[str] | None = None) -> int:
    from converters.export import ExportOptions, export_bundle
    from converters.program import ClipProgram, StreamProgram
    from training.checkpoint import load_checkpoint_model

    p = argparse.ArgumentParser(prog="python -m benchmarks.runtime_refs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True, help="the student's best.pt")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--formats", default="pte,tflite,onnx")
    p.add_argument("--precisions", default="fp32,int8")
    p.add_argument("--data", type=Path, default=None, help="benchmark for calibration/parity (default: the student's)")
    p.add_argument("--stream-arch", default="tam_mobilenet_v2_causal,tsm_mobilenet_v2_online",
                   help="causal registry models of the streaming steps, comma-separated")
    p.add_argument("--size", type=int, default=None,
                   help="input resolution of the reference networks (default: the student's; e.g. 224)")
    p.add_argument("--only-stream", action="store_true", help="export the streaming steps only")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    student, meta = load_checkpoint_model(args.checkpoint, "cpu")
    pre = meta.preprocess
    if args.size is not None:
        pre = dataclasses.replace(pre, size=args.size, resize=round(args.size * pre.resize / pre.size))
        meta = dataclasses.replace(meta, preprocess=pre)
    size = pre.size
    frames = meta.sampler.frames
    if not args.only_stream:
        _save_torch(ClipProgram(student.eval(), pre), (torch.rand(frames, 3, size, size) * 255,),
                    args.out / "student_torch.pt2")
    started = time.perf_counter()
    jobs = [("plain_mnv2", "tsn_mobilenet_v2", 1, "clip")] * (not args.only_stream) + [
        (STEP_NAMES.get(arch, f"{arch}_step"), arch, 2, "stream") for arch in args.stream_arch.split(",")]
    failed: list[str] = []
    for name, arch, n, mode in jobs:
        ckpt = _checkpoint(args.out / f"{name}.pt", meta, arch, n)
        model, _ = load_checkpoint_model(ckpt, "cpu")
        model.eval()
        if mode == "clip":
            _save_torch(ClipProgram(model, pre), (torch.rand(1, 3, size, size) * 255,), args.out / f"{name}_torch.pt2")
        else:
            state = tuple(torch.zeros(shape) for _, shape in model.state_specs(size, size))
            _save_torch(StreamProgram(model, pre), (torch.rand(1, 3, size, size) * 255, *state),
                        args.out / f"{name}_torch.pt2")
        for precision in args.precisions.split(","):
            out = args.out / f"{name}_{precision}.vbundle"
            if out.exists():
                print(f"[refs] {out} exists, kept", flush=True)
                continue
            report = export_bundle(ExportOptions(ckpt, out, formats=args.formats.split(","), precision=precision,
                                                 mode=mode, data=args.data, parity_clips=4, golden_clips=1,
                                                 calibration_clips=8, name=name, tolerance=_loose_int8()))
            failed += [f"{out.name} {f.format}: {f.error}" for f in report.failed]
            print(f"[refs] {out}", flush=True)
    print(f"[refs] done in {time.perf_counter() - started:.0f} s")
    for line in failed:
        print(f"[refs] FAILED {line}", file=sys.stderr)
    return 1 if failed else 0


def _loose_int8():
    """Random-weight networks: int8 agreement, with torch int8 or fp32, is not what these reference programs are for
    (latency only)."""
    from converters.parity import Tolerance

    return Tolerance(int8_min_top1=0.0, int8_min_fp32_top1=0.0, int8_max_fp32_error=None)


if __name__ == "__main__":
    sys.exit(main())
