"""The main job, end to end on the built-in default: ``python -m edgevideo.pipeline`` (README command (a)).

generate the time-reversal benchmark -> cache the frozen ImageNet trunk's output per frame (CPU presets) -> train the
teacher (TAM head, N frames) and the order-blind baseline (TSN head, same cost) on the cache -> distil a
see-very-little student that sees k = 2 of the teacher's frames, and train the same student without the teacher ->
quantization-aware training of the student to int8 (post-training int8 beside it) -> evaluate every model (JSON +
confusion matrix PNG) -> the table (role, model, frames, GMACs, top-1, within-pair, int8) + ``summary.json`` +
``accuracy_vs_gmacs.png`` -> export the QAT int8 student as ``student.vbundle`` (int8 ``.pte``, parity-gated) ->
stream validation videos through ``sdk`` frame by frame (``sdk.StreamClassifier``), printing each prediction, the
streaming accuracy and the per-stage latency table.

Every stage writes under ``--out`` and a rerun continues: the benchmark is reused when its preset and seed match, the
feature cache while its key matches, and a finished stage is not run again; an interrupted one resumes from its
``last.pt``. The ``small`` default fits 2 CPU cores in under 20 minutes; ``--preset full`` is sized for a GPU (the
whole network trains end to end there).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from training.config import set_verbose, tool_parser
from training.data import synthetic
from training.distill import DistillConfig, distill
from training.evaluate import evaluate_checkpoint
from training.models import create
from training.plots import plot_accuracy_vs_macs
from training.profile import count_gmacs
from training.qat import QATConfig, quantize_checkpoint
from training.train import TrainConfig, train

# Per-preset recipe (README "Models that learn"). On the CPU presets the ImageNet MobileNetV2 trunk (first `freeze`
# blocks) is frozen and cached once per frame, and the TAM head trains for many epochs on the cache; the `full` preset
# (a GPU) trains the whole network end to end (freeze=0). The teacher sees N frames, the student k = 2 of them.
PRESET_TRAINING: dict[str, dict[str, Any]] = {
    "tiny": dict(teacher_frames=8, student_frames=2, size=64, resize=72, batch_size=8, epochs=2, student_epochs=2,
                 qat_epochs=1, freeze=7, lr=3e-3, cache_precision="fp32"),
    "small": dict(teacher_frames=8, student_frames=2, size=112, resize=128, batch_size=16, epochs=10,
                  student_epochs=12, qat_epochs=1, freeze=7, lr=3e-3, cache_precision="bf16"),
    "full": dict(teacher_frames=16, student_frames=2, size=224, resize=256, batch_size=32, epochs=30,
                 student_epochs=30, qat_epochs=3, freeze=0, lr=1e-3, cache_precision="fp32"),
}
TEACHER, BASELINE = "tam_head_mobilenet_v2", "tsn_head_mobilenet_v2"
# select=last: the reported model is the last epoch's, not the one that scored best on the validation clips.
# hflip off: a flipped view doubles the training cache and did not help in the ablation (README).
OPTIMIZER = dict(optimizer="adamw", weight_decay=0.05, select="last", hflip=False)


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
    print(f"[{name}] {timings[name]:.0f} s")


def _gmacs(arch: str, frames: int, size: int, num_classes: int) -> float:
    return count_gmacs(create(arch, num_classes=num_classes, frames=frames, pretrained=False),
                       torch.zeros(1, frames, 3, size, size))


def main(argv: Sequence[str] | None = None) -> int:
    p = tool_parser("python -m edgevideo.pipeline", __doc__.splitlines()[0],
                    "python -m edgevideo.pipeline --preset tiny --out runs/tiny > tiny.log 2>&1")
    p.add_argument("--preset", choices=sorted(PRESET_TRAINING), default="small",
                   help="benchmark size and training recipe (tiny: CI-sized, small: 2 CPU cores, full: a GPU)")
    p.add_argument("--seed", type=int, default=0, help="benchmark and training seed")
    p.add_argument("--out", default="runs/demo", help="output folder (benchmark, checkpoints, metrics)")
    p.add_argument("--epochs", type=int, default=None, help="teacher and baseline epochs (default: the preset's)")
    p.add_argument("--student-epochs", type=int, default=None,
                   help="student epochs, with and without the teacher (default: the preset's)")
    p.add_argument("--qat-epochs", type=int, default=None,
                   help="quantization-aware training epochs (default: the preset's)")
    p.add_argument("--workers", type=int, default=None,
                   help="processes for generation and data loading (default: the CPUs for generation, 2 for loading)")
    p.add_argument("--stream-videos", type=int, default=STREAM_VIDEOS,
                   help="validation videos streamed through the sdk at the end, spread over the split (0: all)")
    args = p.parse_args(argv)
    set_verbose(args.verbose)

    recipe = dict(PRESET_TRAINING[args.preset])
    epochs = args.epochs or recipe["epochs"]
    student_epochs = args.student_epochs or recipe["student_epochs"]
    qat_epochs = args.qat_epochs or recipe["qat_epochs"]
    out = Path(args.out)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    data = ensure_benchmark(out / f"data-{args.preset}-seed{args.seed}", args.preset, args.seed, args.workers)
    timings["benchmark"] = time.perf_counter() - t0
    workers = {"workers": args.workers} if args.workers is not None else {}
    common = dict(data=str(data), seed=args.seed, size=recipe["size"], resize=recipe["resize"],
                  batch_size=recipe["batch_size"], resume=True, freeze=recipe["freeze"], lr=recipe["lr"],
                  cache_precision=recipe["cache_precision"], **OPTIMIZER,
                  **workers)
    n, k = recipe["teacher_frames"], recipe["student_frames"]
    dirs = {role: out / role for role in ("teacher", "baseline_tsn", "student", "student_no_teacher")}
    qat_dir = out / "int8"
    if recipe["freeze"]:
        _stage("cache", data / "cache" / "done.json", lambda: _build_caches(data, recipe, args), timings)
    _stage("teacher", dirs["teacher"] / "summary.json", lambda: train(TrainConfig(
        arch=TEACHER, frames=n, out=str(dirs["teacher"]), epochs=epochs, **common)), timings)
    _stage("baseline_tsn", dirs["baseline_tsn"] / "summary.json", lambda: train(TrainConfig(
        arch=BASELINE, frames=n, out=str(dirs["baseline_tsn"]), epochs=epochs, **common)), timings)
    for role, no_teacher in (("student", False), ("student_no_teacher", True)):
        _stage(role, dirs[role] / "distill.json", lambda role=role, no_teacher=no_teacher: distill(DistillConfig(
            arch=TEACHER, frames=k, sampler="uniform_k", teacher=str(dirs["teacher"] / "best.pt"),
            no_teacher=no_teacher, out=str(dirs[role]), epochs=student_epochs, **common)), timings)
    _stage("qat", qat_dir / "qat.json", lambda: quantize_checkpoint(QATConfig(
        checkpoint=str(dirs["student"] / "best.pt"), data=str(data), out=str(qat_dir), epochs=qat_epochs,
        seed=args.seed, batch_size=recipe["batch_size"], resume=True, **workers)), timings)

    t0 = time.perf_counter()
    eval_workers = args.workers if args.workers is not None else 2
    # each model's evaluation on its own validation split: ROLE/eval-val-1x1, int8/eval-int8_{qat,ptq}-val-1x1
    results = {role: evaluate_checkpoint(path / "best.pt", data, workers=eval_workers, out=path / "eval-val-1x1")
               for role, path in dirs.items()}
    int8 = {name: evaluate_checkpoint(qat_dir / f"{name}.pt2", data, workers=eval_workers,
                                      out=qat_dir / f"eval-{name}-val-1x1") for name in ("int8_qat", "int8_ptq")}
    timings["evaluate"] = time.perf_counter() - t0
    labels = (data / "labels.txt").read_text().split()
    arch = {"teacher": TEACHER, "baseline_tsn": BASELINE, "student": TEACHER, "student_no_teacher": TEACHER}
    frames = {"teacher": n, "baseline_tsn": n, "student": k, "student_no_teacher": k}
    rows = [{"role": role, "model": arch[role], "frames": frames[role],
             "gmacs": _gmacs(arch[role], frames[role], recipe["size"], len(labels)),
             "top1_fp32": results[role]["top1"], "within_pair_fp32": results[role].get("within_pair_acc"),
             "top1_int8": int8["int8_qat"]["top1"] if role == "student" else None,
             "top1_int8_ptq": int8["int8_ptq"]["top1"] if role == "student" else None,
             "checkpoint": str(dirs[role] / "best.pt")} for role in dirs]
    teacher, student = rows[0], rows[2]
    summary = {"preset": args.preset, "seed": args.seed, "epochs": epochs, "student_epochs": student_epochs,
               "qat_epochs": qat_epochs, "recipe": recipe, "val_clips": results["teacher"]["n"], "models": rows,
               "int8": {name: {"top1": r["top1"], "within_pair": r.get("within_pair_acc"),
                               "checkpoint": str(qat_dir / f"{name}.pt2")} for name, r in int8.items()},
               "student_teacher": {"top1_ratio": student["top1_fp32"] / max(teacher["top1_fp32"], 1e-9),
                                   "macs_ratio": student["gmacs"] / teacher["gmacs"]}}
    print()
    print(f"Time-reversal benchmark: preset {args.preset}, seed {args.seed}, {summary['val_clips']} validation clips; "
          f"{epochs} epochs teacher and baseline, {student_epochs} students, {qat_epochs} QAT")
    print(f"{'role':<20} {'model':<22} {'frames':>6} {'GMACs':>7} {'top-1 fp32':>10} {'within-pair':>11} "
          f"{'int8 QAT':>8} {'int8 PTQ':>8}")
    for r in rows:
        q = "-" if r["top1_int8"] is None else f"{r['top1_int8']:.3f}"
        ptq = "-" if r["top1_int8_ptq"] is None else f"{r['top1_int8_ptq']:.3f}"
        print(f"{r['role']:<20} {r['model']:<22} {r['frames']:>6} {r['gmacs']:>7.3f} {r['top1_fp32']:>10.3f} "
              f"{r['within_pair_fp32']:>11.3f} {q:>8} {ptq:>8}")
    st = summary["student_teacher"]
    print(f"student/teacher: top-1 {st['top1_ratio']:.3f}x at {st['macs_ratio']:.3f}x the MACs; distilled - no "
          f"teacher: {100 * (student['top1_fp32'] - rows[3]['top1_fp32']):+.1f} points; int8 QAT - fp32: "
          f"{100 * (student['top1_int8'] - student['top1_fp32']):+.1f} points")
    print(f"chance: top-1 {1 / len(labels):.3f}, within-pair 0.500 (the true class beats its time-reversed partner)")
    plot_accuracy_vs_macs(rows, out / "accuracy_vs_gmacs.png", chance=1 / len(labels))
    _write_summary(out, summary, timings)

    bundle = out / "student.vbundle"
    _stage("export", bundle / "manifest.json", lambda: _export_student(qat_dir / "int8_qat.pt2", data, bundle),
           timings)
    t0 = time.perf_counter()
    summary["streaming"] = stream_videos(bundle, data, videos=args.stream_videos)
    timings["stream"] = time.perf_counter() - t0
    s = summary["streaming"]
    print(f"[stream] {s['correct']}/{s['videos']} correct: top-1 {s['top1']:.3f} through the sdk (the evaluated torch "
          f"int8 student: {student['top1_int8']:.3f} on all {summary['val_clips']} validation clips)")
    _write_summary(out, summary, timings)
    print("wall time: " + ", ".join(f"{k_} {v:.0f}s" for k_, v in timings.items())
          + f" (total {sum(timings.values()) / 60:.1f} min); files under {out}")
    return 0


def _write_summary(out: Path, summary: dict[str, Any], timings: dict[str, float]) -> None:
    summary["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


def _build_caches(data: Path, recipe: dict[str, Any], args: argparse.Namespace) -> None:
    """The feature caches of the frozen trunk over both splits (every stage after this reads them)."""
    from training.data.datasets import DatasetInfo
    from training.frozen import cache_split

    info = DatasetInfo.from_dir(data)
    model = create(TEACHER, num_classes=len(info.labels), frames=recipe["teacher_frames"])
    preprocess = TrainConfig(size=recipe["size"], resize=recipe["resize"]).preprocess_spec
    workers = args.workers if args.workers is not None else 2
    paths = {split: str(cache_split(model, recipe["freeze"], info, split, preprocess, train=split == "train.csv",
                                    hflip=OPTIMIZER["hflip"] and info.hflip_map is not None,
                                    precision=recipe["cache_precision"],
                                    workers=workers).path)
             for split in ("train.csv", "val.csv")}
    (data / "cache" / "done.json").write_text(json.dumps(paths, indent=2))


STREAM_VIDEOS = 0  # validation videos streamed through the sdk at the end of the main job (0: all of them)
PRINTED_PREDICTIONS = 8  # streamed predictions printed one per line (all of them go to summary.json)


def _export_student(checkpoint: Path, data: Path, bundle: Path) -> None:
    """The QAT int8 student (``int8_qat.pt2``) as a bundle with its int8 ``.pte`` (ExecuTorch, XNNPACK), parity-checked
    against the torch int8 program on held-out clips at the exporter's default agreement gate."""
    from converters.export import ExportOptions, export_bundle

    report = export_bundle(ExportOptions(checkpoint, bundle, formats=["pte"], precision="int8", data=data,
                                         parity_clips=32, golden_clips=1, force=True))
    print(report.table())


def stream_videos(bundle: Path, data: Path, videos: int = STREAM_VIDEOS) -> dict[str, Any]:
    """Stream ``videos`` validation videos (spread over the split; 0: all) back to back through
    ``sdk.StreamClassifier``, one window per video; print the first predictions beside the true labels, the accuracy
    and the per-stage latency table. Returns the predictions and the statistics."""
    import sdk
    from training.data.datasets import read_records

    labels = (data / "labels.txt").read_text().split()
    records = read_records(data / "val.csv", labels)
    count = len(records) if videos <= 0 else min(videos, len(records))
    picks = [records[i] for i in np.linspace(0, len(records) - 1, count).round().astype(int)]
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
                if len(rows) <= PRINTED_PREDICTIONS:
                    print(f"[stream] {rec.path.name}: true {labels[rec.label]:<14} predicted {pred}")
        print(clf.stats.table())
    correct = sum(r["correct"] for r in rows)
    return {"backend": model.backend, "precision": model.precision, "window": frames, "videos": len(rows),
            "correct": correct, "top1": correct / max(1, len(rows)), "predictions": rows, "stats": clf.stats.as_dict()}


if __name__ == "__main__":
    raise SystemExit(main())
