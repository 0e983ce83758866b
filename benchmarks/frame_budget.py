"""How few frames are enough: students that see k of the teacher's N frames, each distilled and trained on the labels
alone, scored on the whole validation split with their multiply-accumulates.

    python -m benchmarks frame_budget --data runs/demo/data-small-seed0 --frames 1,2,4 --out runs/frame_budget

The teacher is ``--teacher CHECKPOINT``, or the ``--teacher-recipe`` trained into ``OUT/teacher``; every student is
the ``--student-recipe`` with ``frames=k`` (``OUT/k{k}_distilled``, ``OUT/k{k}_label_only``). A run whose
``summary.json`` exists is read, not trained again, so an interrupted benchmark goes on where it stopped. Writes
``frame_budget.jsonl`` (one row per model), ``frame_budget.png`` (top-1 vs GMACs) and a table.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

from training.config import config_from_mapping, load_recipe

ROLES = ("distilled", "label_only")


def _summary(out: Path) -> dict[str, Any] | None:
    path = out / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def run(data: Path, frames: Sequence[int], out: Path, teacher: str, teacher_recipe: str, student_recipe: str,
        seed: int, overrides: dict[str, Any]) -> list[dict[str, Any]]:
    from training.distill import DistillConfig, distill
    from training.train import TrainConfig, train

    if not teacher:
        cfg = config_from_mapping(TrainConfig, {**load_recipe(teacher_recipe, "train"), "data": str(data),
                                                "out": str(out / "teacher"), "seed": seed, **overrides})
        _summary(out / "teacher") or train(cfg)
        teacher = str(out / "teacher" / "best.pt")
    base = {**load_recipe(student_recipe, "distill"), "data": str(data), "teacher": teacher, "seed": seed,
            **overrides}
    rows: list[dict[str, Any]] = []
    for k in frames:
        for role in ROLES:
            run_dir = out / f"k{k}_{role}"
            cfg = config_from_mapping(DistillConfig, {**base, "frames": k, "no_teacher": role == "label_only",
                                                      "out": str(run_dir)})
            summary = _summary(run_dir) or distill(cfg)
            report = summary["distill"]
            if not rows and "teacher" in report:
                t = report["teacher"]
                rows.append({"model": "teacher", "frames": t["frames"], "of": t["frames"], "gmacs": t["gmacs"],
                             "top1": t["top1"], "within_pair": t["within_pair_acc"], "seed": seed,
                             "checkpoint": teacher})
            s = report["student"]
            rows.append({"model": role, "frames": k, "of": s["sampler"].get("of"), "gmacs": s["gmacs"],
                         "top1": s["top1"], "within_pair": s["within_pair_acc"], "epochs": cfg.epochs, "seed": seed,
                         "train_seconds": summary["train_seconds"], "checkpoint": summary["checkpoint"]})
            print(f"[frame_budget] k={k} {role}: top-1 {s['top1']:.3f} at {s['gmacs']:.3f} GMACs")
    return rows


def plot(rows: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.8, 4.0))
    for role, style in zip(ROLES, ("o-", "s--")):
        line = sorted((r for r in rows if r["model"] == role), key=lambda r: r["gmacs"])
        ax.plot([r["gmacs"] for r in line], [r["top1"] for r in line], style, label=role.replace("_", "-"))
        for r in line:
            ax.annotate(f"k={r['frames']}", (r["gmacs"], r["top1"]), textcoords="offset points", xytext=(4, -10),
                        fontsize=8)
    for r in rows:
        if r["model"] == "teacher":
            ax.plot([r["gmacs"]], [r["top1"]], "k*", markersize=11, label=f"teacher ({r['frames']} frames)")
            ax.axhline(0.95 * r["top1"], color="grey", lw=0.8, ls=":", label="0.95 x teacher top-1")
    ax.set_xscale("log")
    ax.set_xlabel("GMACs per clip (log scale)")
    ax.set_ylabel("validation top-1")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks frame_budget", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="dataset directory (any layout training reads)")
    p.add_argument("--frames", default="1,2,4", help="k: frames each student sees, comma-separated")
    p.add_argument("--out", default="runs/frame_budget", help="output folder (runs, JSONL, PNG)")
    p.add_argument("--teacher", default="", help="teacher checkpoint (default: train --teacher-recipe into OUT/teacher)")
    p.add_argument("--teacher-recipe", default="teacher_cpu", help="teacher recipe (training/configs/train/)")
    p.add_argument("--student-recipe", default="student_cpu", help="student recipe (training/configs/distill/)")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: the recipes')")
    args = p.parse_args(argv)
    out = Path(args.out)
    frames = sorted({int(v) for v in args.frames.split(",") if v.strip()})
    overrides = {"workers": args.workers} if args.workers is not None else {}
    rows = run(Path(args.data), frames, out, args.teacher, args.teacher_recipe, args.student_recipe, args.seed,
               overrides)
    (out / "frame_budget.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    teacher = next((r for r in rows if r["model"] == "teacher"), None)
    print(f"\n{'model':>10} {'k of N':>6} {'GMACs':>6} {'x MACs':>6} {'top-1':>6} {'x top-1':>7} {'within-pair':>11}")
    for r in rows:
        ratio = (f"{r['gmacs'] / teacher['gmacs']:.3f}", f"{r['top1'] / teacher['top1']:.3f}") if teacher else ("-", "-")
        wp = "-" if r["within_pair"] is None else f"{r['within_pair']:.3f}"
        print(f"{r['model']:>10} {r['frames']:>2} of {r['of'] or '-':<2} {r['gmacs']:>6.3f} {ratio[0]:>6} "
              f"{r['top1']:>6.3f} {ratio[1]:>7} {wp:>11}")
    title = f"frame budget ({args.student_recipe}, seed {args.seed})"
    print(f"\nwrote {out / 'frame_budget.jsonl'} and {plot(rows, out / 'frame_budget.png', title)}")
    return 0
