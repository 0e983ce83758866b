"""The main job, end to end on the built-in default: ``python -m training.pipeline`` (README command (a)).

generate the time-reversal benchmark -> train a teacher (TAM-MobileNetV2 on N frames) -> distil a see-very-little
student that sees N/8 of them -> quantization-aware training to int8 (and post-training int8 beside it) -> evaluate
each model (JSON + confusion matrix PNG) -> a summary table: model, frames seen, GMACs, top-1 fp32, top-1 int8 ->
export the student as a bundle (``student.vbundle``, fp32 ``.pte`` or ``--export-precision int8``, parity-checked) -> stream validation videos
through ``sdk`` frame by frame (``sdk.StreamClassifier``: only the kept frames are converted and preprocessed), printing
each prediction and the per-stage latency table.

Every stage writes under ``--out`` and a rerun continues: the benchmark is reused when its preset and seed match, and a
finished stage (its ``summary.json`` exists) is not trained again; an interrupted one resumes from its ``last.pt``.
The defaults fit 2 CPU cores in about 15 minutes; on a GPU pass more epochs (``--epochs 30``) or ``--preset full``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from training.data import synthetic
from training.distill import DistillConfig, distill
from training.evaluate import evaluate_checkpoint
from training.models import create
from training.profile import count_gmacs
from training.qat import QATConfig, quantize_checkpoint
from training.train import TrainConfig, train

# Per-preset recipe, sized for 2 CPU cores (they scale unchanged on a GPU with a bigger preset and more epochs).
# The teacher sees N = 16 frames; the student sees N/8 = 2 of them (one frame cannot tell a clip from its reversal).
PRESET_TRAINING: dict[str, dict[str, Any]] = {
    "tiny": dict(teacher_frames=16, student_frames=2, size=32, resize=36, batch_size=8, epochs=1, qat_epochs=1),
    "small": dict(teacher_frames=16, student_frames=2, size=64, resize=72, batch_size=8, epochs=1, qat_epochs=1),
    "full": dict(teacher_frames=16, student_frames=2, size=160, resize=184, batch_size=32, epochs=30, qat_epochs=3),
}
ARCH = "tam_mobilenet_v2"
OPTIMIZER = dict(optimizer="adamw", lr=1e-3, weight_decay=0.05)


def ensure_benchmark(root: Path, preset: str, seed: int, workers: int | None) -> Path:
    """Generate the benchmark into ``root`` unless a complete one with the same preset and seed is already there."""
    meta_file = root / "meta.json"
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        if meta.get("preset") == preset and meta.get("seed") == seed and meta.get("generator_version") == synthetic.GENERATOR_VERSION:
            print(f"[benchmark] reusing {root} (preset {preset}, seed {seed})")
            return root
    return synthetic.generate(root, preset=preset, seed=seed, workers=workers, overwrite=True)


def _stage(name: str, done: Path, run: Callable[[], Any], timings: dict[str, float]) -> None:
    """Run a stage unless it finished before (its last file, ``done``, exists); time it."""
    t0 = time.perf_counter()
    if done.is_file():
        print(f"[{name}] done before: {done.parent}")
    else:
        print(f"[{name}] -> {done.parent}")
        run()
    timings[name] = time.perf_counter() - t0


def _gmacs(arch: str, frames: int, size: int, num_classes: int) -> float:
    return count_gmacs(create(arch, num_classes=num_classes, frames=frames, pretrained=False),
                       torch.zeros(1, frames, 3, size, size))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.pipeline", description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=sorted(PRESET_TRAINING), default="small", help="benchmark size (default: small)")
    p.add_argument("--seed", type=int, default=0, help="benchmark and training seed")
    p.add_argument("--out", default="runs/demo", help="output folder (benchmark, checkpoints, metrics)")
    p.add_argument("--epochs", type=int, default=None, help="teacher and student epochs (default: the preset's)")
    p.add_argument("--qat-epochs", type=int, default=None, help="quantization-aware training epochs")
    p.add_argument("--workers", type=int, default=None, help="processes for generation and data loading")
    p.add_argument("--export-precision", choices=("fp32", "int8"), default="fp32",
                   help="precision of the student's .pte in student.vbundle (int8: post-training calibration at "
                        "export, a few minutes more on 2 cores)")
    args = p.parse_args(argv)

    recipe = dict(PRESET_TRAINING[args.preset])
    epochs = args.epochs or recipe["epochs"]
    qat_epochs = args.qat_epochs or recipe["qat_epochs"]
    out = Path(args.out)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    data = ensure_benchmark(out / f"data-{args.preset}-seed{args.seed}", args.preset, args.seed, args.workers)
    timings["benchmark"] = time.perf_counter() - t0

    common = dict(data=str(data), seed=args.seed, size=recipe["size"], resize=recipe["resize"],
                  batch_size=recipe["batch_size"], epochs=epochs, resume=True, **OPTIMIZER,
                  **({"workers": args.workers} if args.workers is not None else {}))
    n, k = recipe["teacher_frames"], recipe["student_frames"]
    teacher_dir, student_dir, qat_dir = out / "teacher", out / "student", out / "int8"
    _stage("teacher", teacher_dir / "summary.json", lambda: train(TrainConfig(arch=ARCH, frames=n, out=str(teacher_dir), **common)),
           timings)
    _stage("distil", student_dir / "distill.json", lambda: distill(DistillConfig(
        arch=ARCH, frames=k, sampler="uniform_k", teacher=str(teacher_dir / "best.pt"), out=str(student_dir),
        **common)), timings)
    _stage("qat", qat_dir / "qat.json", lambda: quantize_checkpoint(QATConfig(
        checkpoint=str(student_dir / "best.pt"), data=str(data), out=str(qat_dir), epochs=qat_epochs, seed=args.seed,
        batch_size=recipe["batch_size"], resume=True,
        **({"workers": args.workers} if args.workers is not None else {}))), timings)

    t0 = time.perf_counter()
    workers = args.workers if args.workers is not None else 2
    results = {name: evaluate_checkpoint(path, data, workers=workers)
               for name, path in [("teacher", teacher_dir / "best.pt"), ("student", student_dir / "best.pt"),
                                  ("student_int8", qat_dir / "int8_qat.pt2")]}
    timings["evaluate"] = time.perf_counter() - t0
    qat = json.loads((qat_dir / "qat.json").read_text())
    labels = (data / "labels.txt").read_text().split()
    rows = [("teacher " + ARCH, n, _gmacs(ARCH, n, recipe["size"], len(labels)), results["teacher"], None),
            ("student " + ARCH, k, _gmacs(ARCH, k, recipe["size"], len(labels)), results["student"],
             results["student_int8"])]
    summary = {"preset": args.preset, "seed": args.seed, "epochs": epochs, "qat_epochs": qat_epochs,
               "timings_s": {k_: round(v, 1) for k_, v in timings.items()},
               "models": [{"model": name, "frames": f, "gmacs": g, "top1_fp32": fp["top1"],
                           "within_pair_fp32": fp.get("within_pair_acc"),
                           "top1_int8": None if i8 is None else i8["top1"]} for name, f, g, fp, i8 in rows],
               "ptq_top1": qat.get("int8_ptq", {}).get("top1")}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))

    print()
    print(f"Time-reversal benchmark: preset {args.preset}, seed {args.seed}, {results['teacher']['n']} val clips; "
          f"{epochs} epoch(s) teacher and student, {qat_epochs} QAT")
    print(f"{'model':<26} {'frames':>6} {'GMACs':>7} {'top-1 fp32':>10} {'within-pair':>11} {'top-1 int8':>10}")
    for name, f, g, fp, i8 in rows:
        int8 = "-" if i8 is None else f"{i8['top1']:.3f}"
        print(f"{name:<26} {f:>6} {g:>7.3f} {fp['top1']:>10.3f} {fp['within_pair_acc']:>11.3f} {int8:>10}")
    print(f"student/teacher: top-1 {rows[1][3]['top1'] / max(rows[0][3]['top1'], 1e-9):.2f}x at "
          f"{rows[1][2] / rows[0][2]:.3f}x the MACs; int8 post-training (no QAT): top-1 {summary['ptq_top1']:.3f}")
    print(f"chance: top-1 {1 / len(labels):.3f}, within-pair 0.500 (the true class beats its time-reversed partner)")
    bundle = out / "student.vbundle"
    _stage("export", bundle / "manifest.json", lambda: _export_student(student_dir / "best.pt", data, bundle,
                                                                         args.export_precision),
           timings)
    t0 = time.perf_counter()
    summary["runtime"] = stream_videos(bundle, data, videos=STREAM_VIDEOS)
    timings["stream"] = time.perf_counter() - t0
    summary["timings_s"] = {k_: round(v, 1) for k_, v in timings.items()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("wall time: " + ", ".join(f"{k_} {v:.0f}s" for k_, v in timings.items()) + f"; files under {out}")
    return 0


STREAM_VIDEOS = 4  # validation videos streamed through the sdk at the end of the main job


def _export_student(checkpoint: Path, data: Path, bundle: Path, precision: str = "fp32") -> None:
    """The student as a bundle with its .pte (ExecuTorch, XNNPACK), parity-checked on held-out clips; int8 is
    post-training int8 calibrated at export on training clips, checked against the torch int8 program. (Exporting
    the QAT ``int8_qat.pt2`` directly fails in converters.export today: ``.eval()`` on an ExportedProgram module
    raises NotImplementedError.)"""
    from converters.export import ExportOptions, export_bundle

    report = export_bundle(ExportOptions(checkpoint, bundle, formats=["pte"], precision=precision, data=data,
                                         parity_clips=8, calibration_clips=8, golden_clips=1, force=True))
    print(report.table())


def stream_videos(bundle: Path, data: Path, videos: int = STREAM_VIDEOS) -> dict[str, Any]:
    """Stream the first ``videos`` validation videos (one class each, spread over the split) back to back through
    ``sdk.StreamClassifier``, one window per video; print each prediction beside the true label and the per-stage
    latency table. Returns the predictions and the statistics."""
    import sdk
    from training.data.datasets import read_records

    labels = (data / "labels.txt").read_text().split()
    records = read_records(data / "val.csv", labels)
    picks = [records[i] for i in np.linspace(0, len(records) - 1, min(videos, len(records))).round().astype(int)]
    with sdk.load(bundle, verify=True) as model:
        frames = sdk.VideoFile(picks[0].path).num_frames
        clf = sdk.StreamClassifier(model, window=frames)
        print(f"[stream] {model.manifest.name} on {model.backend} {model.precision} (golden vectors verified); "
              f"{len(picks)} validation videos of {frames} frames streamed back to back, one window per video, "
              f"{model.sampler().frames} frames kept per window")
        rows = []
        for rec in picks:
            for pred in clf.run(str(rec.path)):
                ok = pred.label == labels[rec.label]
                rows.append({"video": rec.path.name, "true": labels[rec.label], "predicted": pred.label,
                             "score": pred.score, "correct": ok})
                print(f"[stream] {rec.path.name}: true {labels[rec.label]:<14} predicted {pred}")
        print(clf.stats.table())
    return {"backend": model.backend, "precision": model.precision, "window": frames, "predictions": rows,
            "stats": clf.stats.as_dict()}


if __name__ == "__main__":
    raise SystemExit(main())
