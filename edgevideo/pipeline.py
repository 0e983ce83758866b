"""The main job, end to end: ``python -m edgevideo.pipeline`` (README command (a)), on the built-in benchmark or on
your own dataset (``--data DIR``).

validate the dataset -> cache the frozen ImageNet trunk's output per frame (CPU recipes) -> train the teacher (TAM
head, N frames) and the order-blind baseline (TSN head, same cost) -> distil a see-very-little student that sees k of
the teacher's frames, and train the same student without the teacher -> the comparison rows: distilled students at
other frame budgets (``--compare-frames``, 4 of 8 by default) and, on the built-in benchmark, the label-scarce rows
(``--labelled-fraction``: a teacher on 25 % of the training labels, the student distilled from it on those labels
plus the other training videos unlabelled, and the same student on the labels alone) -> quantization-aware training
of the shipped student to int8 (post-training int8 beside it) -> evaluate every model (JSON + confusion matrix PNG) -> the table (role, model,
frames, GMACs, top-1, within-pair when the dataset declares time-reversal pairs, int8) + ``summary.json`` +
``accuracy_vs_gmacs.png`` -> export the QAT int8 student as ``student.vbundle`` (int8 ``.pte``, parity-gated) ->
stream the validation videos through ``sdk`` frame by frame (``sdk.StreamClassifier`` with the bundle's own window),
printing predictions, the streaming accuracy and the per-stage latency table.

Each stage runs a named recipe of ``training/configs/`` (``teacher_cpu``, ``baseline_cpu``, ``student_cpu``,
``qat_cpu``, or the ``_gpu`` ones); ``training/configs/main_job.yaml`` says which recipes and overrides each
``--preset`` uses. Every stage writes under ``--out`` and a rerun continues: the benchmark is reused when its preset
and seed match, the feature cache while its key matches, and a finished stage is not run again; an interrupted one
resumes from its ``last.pt``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import yaml

from converters.parity import ParityError
from sdk.errors import ConfigError, SdkError
from sdk.preprocess import CONVERSIONS
from training.cli import set_verbose, tool_parser
from training.config import RECIPES, config_from_mapping, load_recipe
from training.data import synthetic
from training.data.check import check_dataset
from training.data.datasets import DatasetInfo
from training.data.subsets import labelled_fraction, write_paths, write_split
from training.data.unlabelled import read_unlabelled, without
from training.distill import DistillConfig, distill
from training.evaluate import evaluate_checkpoint
from training.models import create
from training.plots import plot_accuracy_vs_macs
from training.macs import count_gmacs
from training.qat import QATConfig, quantize_checkpoint
from training.train import TrainConfig, train

MAIN_JOB = RECIPES / "main_job.yaml"
STREAM_VIDEOS = 0  # validation videos streamed through the sdk at the end of the main job (0: all of them)
PRINTED_PREDICTIONS = 8  # streamed predictions printed one per line (all of them go to summary.json)


@dataclass(frozen=True)
class LabelScarce:
    """The label-scarce rows: ``fraction`` of every class's training videos keep their label (``labelled``, a CSV
    split under ``--out``), the others are given to distillation without one (``unlabelled``)."""

    fraction: float
    labelled: Path
    unlabelled: Path

    @property
    def tag(self) -> str:
        return f"{round(100 * self.fraction)}pct"


@dataclass
class Stages:
    """The resolved configuration of every training stage (recipe + preset overrides + command line): the shipped
    chain (teacher, order-blind baseline, student with and without the teacher, QAT) and the comparison rows
    (``extra``: students at other frame budgets, the label-scarce teacher and students)."""

    teacher: TrainConfig
    baseline_tsn: TrainConfig
    student: DistillConfig
    student_no_teacher: DistillConfig
    qat: QATConfig
    recipes: dict[str, str]  # stage -> recipe name
    extra: dict[str, TrainConfig | DistillConfig] = field(default_factory=dict)  # role -> config, table order
    label_scarce: LabelScarce | None = None

    def fp32(self) -> dict[str, TrainConfig | DistillConfig]:
        """Every fp32 model's config by role, in the table's order."""
        return {"teacher": self.teacher, "baseline_tsn": self.baseline_tsn, "student": self.student,
                "student_no_teacher": self.student_no_teacher, **self.extra}

    def recipe_of(self, role: str) -> str:
        cfg = self.fp32()[role]
        return self.recipes["student" if isinstance(cfg, DistillConfig) else
                            "baseline_tsn" if role == "baseline_tsn" else "teacher"]


def main_job_config() -> dict[str, Any]:
    """``training/configs/main_job.yaml``: presets, stage recipes and the comparison rows."""
    return yaml.safe_load(MAIN_JOB.read_text())


def main_job_presets() -> dict[str, dict[str, Any]]:
    """``training/configs/main_job.yaml``'s presets (tiny, small, full)."""
    return main_job_config()["presets"]


STAGE_TOOLS = {"teacher": "train", "baseline_tsn": "train", "student": "distill", "qat": "qat"}


StageConfig = Callable[[type, str, dict[str, Any], "int | None"], Any]  # (class, stage, values, epochs) -> config


def resolve_stages(preset: str, recipes: str | None, data: Path, out: Path, seed: int,
                   cli: dict[str, Any]) -> Stages:
    """Each stage's config: its named recipe, then the preset's overrides (``fp32`` for the teacher, baseline and
    students, ``qat`` for QAT), then the command line (``cli``: epochs, student_epochs, qat_epochs, workers,
    student_frames, compare_frames, labelled_fraction, unlabelled, conversion; a missing or None entry takes
    main_job.yaml's). ``conversion`` goes to every trained stage (QAT takes its checkpoint's)."""
    job = main_job_config()
    spec = job["presets"][preset]
    names = {stage: pattern.format(recipes=recipes or spec["recipes"]) for stage, pattern in job["stages"].items()}
    preset_overrides = spec.get("overrides") or {}
    shared = {"data": str(data), "seed": seed, "resume": True,
              **({"workers": cli["workers"]} if cli.get("workers") is not None else {}),
              **({"conversion": cli["conversion"]} if cli.get("conversion") is not None else {})}

    def option(name: str) -> Any:
        return job["rows"][name] if cli.get(name) is None else cli[name]

    def config(cls: type, stage: str, values: dict[str, Any], epochs: int | None) -> Any:
        merged = {**load_recipe(names[stage], STAGE_TOOLS[stage]),
                  **preset_overrides.get("qat" if stage == "qat" else "fp32", {}), **shared, **values,
                  **({"epochs": epochs} if epochs else {})}
        return config_from_mapping(cls, merged, where=f"stage {stage} (recipe {names[stage]})")

    teacher_ckpt = str(out / "teacher" / "best.pt")
    shipped = {"frames": cli["student_frames"]} if cli.get("student_frames") else {}
    students = {role: config(DistillConfig, "student", {"out": str(out / role), "no_teacher": role != "student",
                                                        "teacher": teacher_ckpt, **shipped,
                                                        **({"unlabelled": cli["unlabelled"]} if cli.get("unlabelled")
                                                           and role == "student" else {})},
                             cli.get("student_epochs")) for role in ("student", "student_no_teacher")}
    teacher = config(TrainConfig, "teacher", {"out": str(out / "teacher")}, cli.get("epochs"))
    extra = {f"student_k{f}": config(DistillConfig, "student", {"out": str(out / f"student_k{f}"), "frames": f,
                                                                 "teacher": teacher_ckpt}, cli.get("student_epochs"))
             for f in option("compare_frames") if f != students["student"].frames}
    scarce, scarce_rows = label_scarce_rows(config, out, float(option("labelled_fraction") or 0), teacher,
                                            students["student"], shipped)
    extra.update(scarce_rows)
    for role, cfg in {**students, **extra}.items():
        if isinstance(cfg, DistillConfig) and cfg.frames > teacher.frames:
            raise ConfigError(f"{role} would see {cfg.frames} frames of the teacher's {teacher.frames}: give "
                              f"--student-frames / --compare-frames of at most {teacher.frames}")
    return Stages(
        teacher=teacher,
        baseline_tsn=config(TrainConfig, "baseline_tsn", {"out": str(out / "baseline_tsn")}, cli.get("epochs")),
        qat=config(QATConfig, "qat", {"out": str(out / "int8"), "checkpoint": str(out / "student" / "best.pt")},
                   cli.get("qat_epochs")),
        recipes=names, extra=extra, label_scarce=scarce, **students)


def label_scarce_rows(config: StageConfig, out: Path, fraction: float, teacher: TrainConfig, student: DistillConfig,
                      shipped: dict[str, Any]) -> tuple[LabelScarce | None, dict[str, TrainConfig | DistillConfig]]:
    """The label-scarce rows (none for ``fraction`` 0): a teacher on the labelled fraction, the shipped student's
    recipe distilled from it on those labels + the other videos unlabelled, and on the labels alone. The runs on the
    labelled part take as many optimiser steps as their full-label counterparts."""
    if not fraction:
        return None, {}
    if not 0 < fraction < 1:
        raise ConfigError(f"--labelled-fraction {fraction}: give a fraction of the training labels in (0, 1), or 0 "
                          "for no label-scarce rows")
    tag = f"{round(100 * fraction)}pct"
    scarce = LabelScarce(fraction, out / "splits" / f"labelled_{tag}.csv", out / "splits" / f"unlabelled_{tag}.csv")

    def same_steps(epochs: int) -> int:
        return max(epochs, round(epochs / fraction))

    labelled = {"train_split": str(scarce.labelled)}
    return scarce, {
        f"teacher_{tag}": config(TrainConfig, "teacher", {"out": str(out / f"teacher_{tag}"), **labelled},
                                 same_steps(teacher.epochs)),
        "student_unlabelled": config(DistillConfig, "student",
                                     {"out": str(out / "student_unlabelled"), **labelled, **shipped,
                                      "unlabelled": str(scarce.unlabelled),
                                      "teacher": str(out / f"teacher_{tag}" / "best.pt")}, student.epochs),
        f"student_{tag}_no_teacher": config(DistillConfig, "student",
                                            {"out": str(out / f"student_{tag}_no_teacher"), **labelled, **shipped,
                                             "no_teacher": True, "teacher": ""}, same_steps(student.epochs))}


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


def _gmacs(cfg: TrainConfig, num_classes: int) -> float:
    model = create(cfg.arch, num_classes=num_classes, frames=cfg.frames, pretrained=False)
    return count_gmacs(model, torch.zeros(1, cfg.frames, 3, cfg.size, cfg.size))


def validate(info: DatasetInfo, stages: Stages, decode: bool) -> dict[str, Any]:
    """Check the dataset, and the shipped student's unlabelled videos when given, before anything expensive
    (``decode``: every video opens and decodes); raise on a problem."""
    cfg = stages.teacher
    report = check_dataset(info, [cfg.train_split, cfg.val_split], decode=decode, conversion=cfg.conversion)
    print(report.summary())
    report.raise_for_problems()
    if stages.student.unlabelled:
        read_unlabelled(stages.student.unlabelled)  # a missing path or an empty folder: one error line, now
    return report.as_dict()


def build_caches(info: DatasetInfo, cfg: TrainConfig) -> dict[str, str]:
    """The feature caches of the teacher's frozen trunk over both splits (every later stage reads them)."""
    from training.frozen import cache_split

    model = create(cfg.arch, num_classes=len(info.labels), frames=cfg.frames)
    return {split: str(cache_split(model, cfg.freeze, info, split, cfg.preprocess_spec, train=split == cfg.train_split,
                                   hflip=cfg.hflip and info.hflip_map is not None, cache_dir=cfg.cache_dir,
                                   precision=cfg.cache_precision, workers=cfg.workers).path)
            for split in (cfg.train_split, cfg.val_split)}


def write_label_scarce_splits(scarce: LabelScarce, info: DatasetInfo, split: str, seed: int) -> None:
    """The labelled fraction of ``split`` (per class, drawn with ``seed``) and the rest, as two CSVs under ``--out``."""
    labelled, rest = labelled_fraction(info.records(split), scarce.fraction, seed)
    write_split(labelled, info.labels, scarce.labelled)
    write_paths(rest, scarce.unlabelled)


def _run_role(cfg: TrainConfig | DistillConfig) -> Any:
    return distill(cfg) if isinstance(cfg, DistillConfig) else train(cfg)


def _done_file(cfg: TrainConfig | DistillConfig) -> Path:
    return Path(cfg.out) / ("distill.json" if isinstance(cfg, DistillConfig) else "summary.json")


def train_stages(stages: Stages, out: Path, info: DatasetInfo, timings: dict[str, float]) -> None:
    """Cache, every fp32 model (shipped chain, then the comparison rows) and QAT, each skipped when it finished
    before."""
    teacher = stages.teacher
    if teacher.cached:
        _stage("cache", out / "cache.json", lambda: (out / "cache.json").write_text(
            json.dumps(build_caches(info, teacher), indent=2)), timings)
    if stages.label_scarce is not None:
        write_label_scarce_splits(stages.label_scarce, info, teacher.train_split, teacher.seed)
    for role, cfg in stages.fp32().items():
        _stage(role, _done_file(cfg), lambda cfg=cfg: _run_role(cfg), timings)
    _stage("qat", out / "int8" / "qat.json", lambda: quantize_checkpoint(stages.qat), timings)


def evaluate_models(stages: Stages, out: Path, info: DatasetInfo, workers: int
                    ) -> tuple[dict[str, dict], dict[str, dict]]:
    """Every fp32 model and both int8 programs on the validation split (each in its own ``eval-*`` folder)."""
    split = stages.teacher.val_split
    fp32 = {role: evaluate_checkpoint(Path(cfg.out) / "best.pt", info.root, split=split, workers=workers,
                                      out=Path(cfg.out) / "eval-val-1x1") for role, cfg in stages.fp32().items()}
    int8 = {name: evaluate_checkpoint(out / "int8" / f"{name}.pt2", info.root, split=split, workers=workers,
                                      out=out / "int8" / f"eval-{name}-val-1x1") for name in ("int8_qat", "int8_ptq")}
    return fp32, int8


def _labelled_videos(cfg: TrainConfig | DistillConfig, info: DatasetInfo) -> tuple[int, int]:
    """(labelled, unlabelled) training videos a row learnt from."""
    unlabelled = getattr(cfg, "unlabelled", "")
    labelled = info.records(cfg.train_split)
    return len(labelled), len(without(read_unlabelled(unlabelled), labelled)) if unlabelled else 0


def summarise(stages: Stages, out: Path, info: DatasetInfo, fp32: dict[str, dict], int8: dict[str, dict],
              source: dict[str, Any]) -> dict[str, Any]:
    """``summary.json``'s content: one row per model, the int8 results, the student / teacher ratios, the frame
    budget (every student distilled from the teacher) and the label-scarce comparison."""
    rows = []
    for role, cfg in stages.fp32().items():
        r = fp32[role]
        labelled, unlabelled = _labelled_videos(cfg, info)
        rows.append({"role": role, "model": cfg.arch, "frames": cfg.frames, "gmacs": _gmacs(cfg, len(info.labels)),
                     "recipe": stages.recipe_of(role), "epochs": cfg.epochs,
                     "labelled_videos": labelled, "unlabelled_videos": unlabelled,
                     "top1_fp32": r["top1"], "within_pair_fp32": r.get("within_pair_acc"),
                     "top1_int8": int8["int8_qat"]["top1"] if role == "student" else None,
                     "top1_int8_ptq": int8["int8_ptq"]["top1"] if role == "student" else None,
                     "checkpoint": str(Path(cfg.out) / "best.pt")})
    by_role = {r["role"]: r for r in rows}
    teacher, student = by_role["teacher"], by_role["student"]

    def ratios(row: dict) -> dict[str, Any]:
        return {"role": row["role"], "frames": row["frames"], "top1_ratio": row["top1_fp32"] / max(teacher["top1_fp32"], 1e-9),
                "macs_ratio": row["gmacs"] / teacher["gmacs"]}

    summary = {**source, "epochs": stages.teacher.epochs, "student_epochs": stages.student.epochs,
               "qat_epochs": stages.qat.epochs, "recipes": stages.recipes, "labels": list(info.labels),
               "pairs": [list(p) for p in info.pairs], "val_clips": fp32["teacher"]["n"], "models": rows,
               "int8": {name: {"top1": r["top1"], "within_pair": r.get("within_pair_acc"),
                               "checkpoint": str(out / "int8" / f"{name}.pt2")} for name, r in int8.items()},
               "student_teacher": {k: v for k, v in ratios(student).items() if k.endswith("ratio")},
               "frame_budget": sorted((ratios(r) for role, r in by_role.items()
                                       if role == "student" or role.startswith("student_k")),
                                      key=lambda r: r["frames"])}
    scarce = stages.label_scarce
    if scarce is not None:
        distilled, alone = by_role["student_unlabelled"], by_role[f"student_{scarce.tag}_no_teacher"]
        summary["label_scarce"] = {
            "fraction": scarce.fraction, "labelled_videos": distilled["labelled_videos"],
            "unlabelled_videos": distilled["unlabelled_videos"],
            "teacher_top1": by_role[f"teacher_{scarce.tag}"]["top1_fp32"], "distilled_top1": distilled["top1_fp32"],
            "label_only_top1": alone["top1_fp32"], "all_labels_student_top1": student["top1_fp32"],
            "gain_points": 100 * (distilled["top1_fp32"] - alone["top1_fp32"])}
    return summary


def print_table(summary: dict[str, Any]) -> None:
    """The main job's table, then what it says: the shipped student against the teacher and without it, the frame
    budget, the label-scarce rows; the within-pair column only when the dataset declares time-reversal pairs."""
    pairs = bool(summary["pairs"])
    labels = summary["labels"]
    print()
    print(f"{summary['dataset_name']}: {len(labels)} classes, {summary['val_clips']} validation clips; "
          f"{summary['epochs']} epochs teacher and baseline, {summary['student_epochs']} students, "
          f"{summary['qat_epochs']} QAT (recipes {', '.join(sorted(set(summary['recipes'].values())))})")
    width = max(20, *(len(r["role"]) for r in summary["models"]))
    print(f"{'role':<{width}} {'model':<22} {'frames':>6} {'GMACs':>7} {'labelled':>8} {'top-1 fp32':>10}"
          + (f" {'within-pair':>11}" if pairs else "") + f" {'int8 QAT':>8} {'int8 PTQ':>8}")
    for r in summary["models"]:
        q = "-" if r["top1_int8"] is None else f"{r['top1_int8']:.3f}"
        ptq = "-" if r["top1_int8_ptq"] is None else f"{r['top1_int8_ptq']:.3f}"
        seen = f"{r['labelled_videos']}" + (f"+{r['unlabelled_videos']}u" if r["unlabelled_videos"] else "")
        print(f"{r['role']:<{width}} {r['model']:<22} {r['frames']:>6} {r['gmacs']:>7.3f} {seen:>8} "
              f"{r['top1_fp32']:>10.3f}" + (f" {r['within_pair_fp32']:>11.3f}" if pairs else "") + f" {q:>8} {ptq:>8}")
    rows = {r["role"]: r for r in summary["models"]}
    student, st = rows["student"], summary["student_teacher"]
    print(f"shipped student/teacher: top-1 {st['top1_ratio']:.3f}x at {st['macs_ratio']:.3f}x the MACs; distilled - no "
          f"teacher: {100 * (student['top1_fp32'] - rows['student_no_teacher']['top1_fp32']):+.1f} points; int8 QAT "
          f"- fp32: {100 * (student['top1_int8'] - student['top1_fp32']):+.1f} points")
    if len(summary["frame_budget"]) > 1:
        print("frame budget (distilled students / teacher): " + "; ".join(
            f"k={b['frames']} top-1 {b['top1_ratio']:.3f}x at {b['macs_ratio']:.2f}x the MACs"
            for b in summary["frame_budget"]))
    scarce = summary.get("label_scarce")
    if scarce:
        print(f"{100 * scarce['fraction']:.0f} % of the labels ({scarce['labelled_videos']} videos, "
              f"{scarce['unlabelled_videos']} more unlabelled): the student distilled on both "
              f"{scarce['distilled_top1']:.3f} vs on the labels alone {scarce['label_only_top1']:.3f} "
              f"({scarce['gain_points']:+.1f} points; its teacher {scarce['teacher_top1']:.3f}, the student with every "
              f"label {scarce['all_labels_student_top1']:.3f})")
    print(f"chance: top-1 {1 / len(labels):.3f}" + (", within-pair 0.500 (the true class beats its time-reversed "
                                                    "partner)" if pairs else "; no time-reversal pairs declared "
                                                    "(meta.json): no within-pair metric"))


def _write_summary(out: Path, summary: dict[str, Any], timings: dict[str, float]) -> None:
    summary["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


PARITY_CLIPS = 32  # clips the exported program is checked on against the torch int8 program


def export_student(checkpoint: Path, info: DatasetInfo, bundle: Path, stages: Stages) -> None:
    """The QAT int8 student (``int8_qat.pt2``) as a bundle with its int8 ``.pte`` (ExecuTorch, XNNPACK), parity-checked
    against the torch int8 program at the exporter's default agreement gate. The check compares two programs on the
    same clips (no labels, nothing learnt from them), so it runs on the validation split, or on the training split
    when the validation split is too small for the gate to mean anything (a small dataset of your own)."""
    from converters.export import ExportOptions, export_bundle

    val, train = stages.teacher.val_split, stages.teacher.train_split
    val_clips, train_clips = len(info.records(val)), len(info.records(train))
    split = train if val_clips <= PARITY_CLIPS and train_clips > val_clips else val
    report = export_bundle(ExportOptions(checkpoint, bundle, formats=["pte"], precision="int8", data=info.root,
                                         split=split, parity_clips=PARITY_CLIPS, golden_clips=1, force=True))
    print(report.table())


def stream_videos(bundle: Path, info: DatasetInfo, split: str, videos: int = STREAM_VIDEOS) -> dict[str, Any]:
    """Stream ``videos`` validation videos (spread over the split; 0: all) through ``sdk.StreamClassifier`` with the
    bundle's own window (the clip length its model was trained on), the stream reset between videos; every complete
    window is one prediction, scored against its video's label. Prints the first predictions, the accuracy and the
    per-stage latency table; returns the predictions and the statistics."""
    import sdk

    records = info.records(split)
    count = len(records) if videos <= 0 else min(videos, len(records))
    picks = [records[i] for i in np.linspace(0, len(records) - 1, count).round().astype(int)]
    labels = info.labels
    with sdk.load(bundle, verify=True) as model:
        clf = sdk.StreamClassifier(model)
        print(f"[stream] {model.manifest.name} on {model.backend} {model.precision} (golden vectors verified); "
              f"{len(picks)} validation videos, windows of {clf.window} frames, {model.sampler().frames} frames kept "
              "per window")
        rows, unscored = [], []
        for rec in picks:
            clf.reset()
            windows = 0
            for pred in clf.run(str(rec.path)):
                if pred.error is not None:
                    print(f"[stream] {rec.path.name}: {pred.error}")
                    continue
                windows += 1
                ok = pred.label == labels[rec.label]
                rows.append({"video": rec.path.name, "true": labels[rec.label], "predicted": pred.label,
                             "score": pred.score, "window": pred.window, "correct": ok})
                if len(rows) <= PRINTED_PREDICTIONS:
                    print(f"[stream] {rec.path.name}: true {labels[rec.label]:<14} predicted {pred}")
            if not windows:
                unscored.append(rec.path.name)
        print(clf.stats.table())
    if unscored:
        print(f"[stream] {len(unscored)} videos shorter than one window gave no prediction (e.g. {unscored[0]})")
    correct = sum(r["correct"] for r in rows)
    return {"backend": model.backend, "precision": model.precision, "window": clf.window, "videos": len(picks),
            "windows": len(rows), "videos_without_window": unscored, "correct": correct,
            "top1": correct / max(1, len(rows)), "predictions": rows, "stats": clf.stats.as_dict()}


def _frames(text: str) -> int:
    try:
        frames = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a frame count, got {text!r}")
    if frames < 1:
        raise argparse.ArgumentTypeError(f"a frame count must be at least 1, got {text!r}")
    return frames


def _frame_list(text: str) -> list[int]:
    return [_frames(f) for f in text.replace(" ", "").split(",") if f]


def parse_args(argv: Sequence[str] | None):
    presets = main_job_presets()
    p = tool_parser("python -m edgevideo.pipeline", __doc__.splitlines()[0],
                    "python -m edgevideo.pipeline --data my_videos --out runs/mine   # your own dataset\n"
                    "  python -m edgevideo.pipeline --preset tiny --out runs/tiny > tiny.log 2>&1")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="your dataset (a folder per class, CSV + labels.txt, or an imported one: docs/own-data.md); "
                        "default: generate the built-in time-reversal benchmark of --preset")
    p.add_argument("--preset", choices=sorted(presets), default="small",
                   help="benchmark size and recipe set (tiny: CI-sized, small: 2 CPU cores, full: a GPU; "
                        "training/configs/main_job.yaml)")
    p.add_argument("--recipes", choices=("cpu", "gpu"), default=None,
                   help="the stage recipes: cpu (frozen trunk + feature cache) or gpu (everything trains) "
                        "(default: the preset's)")
    p.add_argument("--seed", type=int, default=0, help="benchmark and training seed")
    p.add_argument("--out", default="runs/demo", help="output folder (benchmark, checkpoints, metrics)")
    p.add_argument("--epochs", type=int, default=None, help="teacher and baseline epochs (default: the recipe's)")
    p.add_argument("--student-epochs", type=int, default=None,
                   help="student epochs, with and without the teacher (default: the recipe's)")
    p.add_argument("--qat-epochs", type=int, default=None,
                   help="quantization-aware training epochs (default: the recipe's)")
    p.add_argument("--student-frames", type=_frames, default=None, metavar="K",
                   help="frames the shipped student sees, of the teacher's (default: the recipe's, 2 of 8)")
    p.add_argument("--compare-frames", type=_frame_list, default=None, metavar="K[,K]",
                   help="distilled students at other frame budgets, printed beside the shipped one ('' for none; "
                        "default: main_job.yaml's, 4)")
    p.add_argument("--labelled-fraction", type=float, default=None, metavar="F",
                   help="label-scarce rows: a teacher on this fraction of the training labels, the student distilled "
                        "on them + the other training videos unlabelled, and on the labels alone (0: none; default: "
                        "0.25 on the built-in benchmark, 0 with --data)")
    p.add_argument("--unlabelled", default=None, metavar="PATH",
                   help="your unlabelled videos (a folder or a list file): the shipped student also learns from the "
                        "teacher's outputs on them")
    p.add_argument("--workers", type=int, default=None,
                   help="processes for generation and data loading (default: the CPUs for generation, the recipe's "
                        "for loading)")
    p.add_argument("--conversion", choices=CONVERSIONS, default=None,
                   help="how video files' frames become pixels in every training stage (recorded in the bundle, "
                        "which the sdk then reads files with): swscale (libswscale's RGB) or camera (the camera "
                        "frames' path: the pixels a device's camera gives, bit for bit) (default: the recipes', "
                        "swscale)")
    p.add_argument("--stream-videos", type=int, default=STREAM_VIDEOS,
                   help="validation videos streamed through the sdk at the end, spread over the split (0: all)")
    args = p.parse_args(argv)
    set_verbose(args.verbose)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (SdkError, ParityError) as e:  # a user's mistake, or an export its parity gate refused: one line
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(args) -> int:
    """The main job as its named steps; each prints what it did and adds its wall time to ``timings``."""
    out = Path(args.out)
    timings: dict[str, float] = {}
    info, source = timed("benchmark", lambda: prepare_dataset(args, out), timings)
    out.mkdir(parents=True, exist_ok=True)
    cli = vars(args)
    if args.data and args.labelled_fraction is None:
        cli = {**cli, "labelled_fraction": 0}  # your own dataset: the label-scarce rows only when asked for
    stages = resolve_stages(args.preset, args.recipes, info.root, out, args.seed, cli)
    source["check"] = timed("check", lambda: validate(info, stages, decode=bool(args.data)), timings)
    train_stages(stages, out, info, timings)
    workers = args.workers if args.workers is not None else stages.teacher.workers
    fp32, int8 = timed("evaluate", lambda: evaluate_models(stages, out, info, workers), timings)
    summary = summarise(stages, out, info, fp32, int8, source)
    print_table(summary)
    plot_accuracy_vs_macs(summary["models"], out / "accuracy_vs_gmacs.png", chance=1 / len(info.labels))
    _write_summary(out, summary, timings)

    bundle = out / "student.vbundle"
    _stage("export", bundle / "manifest.json", lambda: export_student(out / "int8" / "int8_qat.pt2", info, bundle,
                                                                        stages), timings)
    summary["streaming"] = s = timed("stream", lambda: stream_videos(bundle, info, stages.teacher.val_split,
                                                                     videos=args.stream_videos), timings)
    student = next(r for r in summary["models"] if r["role"] == "student")
    print(f"[stream] {s['correct']}/{s['windows']} windows correct over {s['videos']} videos: top-1 {s['top1']:.3f} "
          f"through the sdk (the evaluated torch int8 student: {student['top1_int8']:.3f} on all "
          f"{summary['val_clips']} validation clips)")
    _write_summary(out, summary, timings)
    print("wall time: " + ", ".join(f"{k_} {v:.0f}s" for k_, v in timings.items())
          + f" (total {sum(timings.values()) / 60:.1f} min); files under {out}")
    return 0


def prepare_dataset(args, out: Path) -> tuple[DatasetInfo, dict[str, Any]]:
    """Your dataset (``--data``), or the built-in benchmark of ``--preset`` generated under ``--out`` (reused when
    there); with what ``summary.json`` says about it."""
    if args.data:
        info = DatasetInfo.from_dir(args.data)
        return info, {"dataset": str(info.root), "dataset_name": f"dataset {info.root}", "preset": None,
                      "seed": args.seed}
    root = ensure_benchmark(out / f"data-{args.preset}-seed{args.seed}", args.preset, args.seed, args.workers)
    return DatasetInfo.from_dir(root), {"dataset": str(root), "dataset_name": f"Time-reversal benchmark: preset "
                                        f"{args.preset}, seed {args.seed}", "preset": args.preset, "seed": args.seed}


def timed(name: str, step: Callable[[], Any], timings: dict[str, float]) -> Any:
    """``step()``, its wall time recorded under ``name``."""
    t0 = time.perf_counter()
    result = step()
    timings[name] = time.perf_counter() - t0
    return result


if __name__ == "__main__":
    raise SystemExit(main())
