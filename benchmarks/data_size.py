"""How much data a task needs: the teacher recipe trained on n training videos per class, for several n, each scored
on the whole validation split.

    python -m benchmarks data_size --data runs/demo/data-small-seed0 --per-class 8,15,30,60,120 --out runs/data_size

Subsets are nested (the n = 8 videos of a class are among its n = 15) and drawn with ``--seed``; each is a CSV split
under ``--out`` pointing at the dataset's videos, so the dataset folder is only read. With ``--min-steps`` a small
subset trains for more epochs, so that every run takes at least that many optimiser steps: the comparison is then
about the data, not about a shorter run. Writes ``data_size.jsonl`` (one row per n), ``data_size.png`` and a table.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Sequence

from training.config import config_from_mapping, load_recipe
from training.data.datasets import DatasetInfo
from training.data.subsets import nested_subsets, write_split

VALIDATIONS = 10  # validation passes per run (a long run on a small subset would otherwise mostly validate)


def run(data: Path, per_class: Sequence[int], out: Path, recipe: str, seed: int, min_steps: int,
        overrides: dict[str, Any]) -> list[dict[str, Any]]:
    from training.train import TrainConfig, train

    info = DatasetInfo.from_dir(data)
    base = config_from_mapping(TrainConfig, {**load_recipe(recipe, "train"), "data": str(info.root), **overrides})
    subsets = nested_subsets(info.records(base.train_split), per_class, seed)
    rows = []
    for n, records in subsets.items():
        steps_per_epoch = math.ceil(len(records) / base.batch_size)
        epochs = max(base.epochs, math.ceil(min_steps / steps_per_epoch))
        split = write_split(records, info.labels, out / f"train_n{n}.csv")
        cfg = config_from_mapping(TrainConfig, {"train_split": str(split), "out": str(out / f"n{n}"),
                                                "epochs": epochs, "val_every": max(1, epochs // VALIDATIONS),
                                                "seed": seed, "resume": True}, base=base)
        summary_file = Path(cfg.out) / "summary.json"
        summary = json.loads(summary_file.read_text()) if summary_file.is_file() else train(cfg)
        best = summary["best"]
        rows.append({"per_class": n, "train_videos": len(records), "epochs": epochs,
                     "steps": epochs * steps_per_epoch, "top1": best["top1"],
                     "within_pair": best.get("within_pair_acc"), "val_videos": summary["val_clips"],
                     "recipe": recipe, "seed": seed, "checkpoint": summary["checkpoint"]})
        print(f"[data_size] n={n}/class ({len(records)} videos, {epochs} epochs): top-1 {best['top1']:.3f}")
    return rows


def plot(rows: Sequence[dict[str, Any]], path: Path, chance: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    x = [r["per_class"] for r in rows]
    ax.plot(x, [r["top1"] for r in rows], "o-", label="top-1")
    if all(r["within_pair"] is not None for r in rows):
        ax.plot(x, [r["within_pair"] for r in rows], "s--", label="within-pair")
    ax.axhline(chance, color="grey", lw=0.8, ls=":", label="chance (top-1)")
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(x, [str(v) for v in x])
    ax.set_xlabel("training videos per class")
    ax.set_ylabel("validation accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"{rows[0]['recipe']}: accuracy vs training data")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks data_size", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="dataset directory (any layout training reads)")
    p.add_argument("--per-class", default="8,15,30,60,120", help="training videos per class, comma-separated")
    p.add_argument("--out", default="runs/data_size", help="output folder (subset splits, runs, JSONL, PNG)")
    p.add_argument("--recipe", default="teacher_cpu", help="training recipe (training/configs/train/)")
    p.add_argument("--seed", type=int, default=0, help="subset draw and training seed")
    p.add_argument("--min-steps", type=int, default=0,
                   help="train each subset for at least this many optimiser steps (more epochs for small subsets)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: the recipe's)")
    args = p.parse_args(argv)
    out = Path(args.out)
    per_class = sorted({int(v) for v in args.per_class.split(",") if v.strip()})
    overrides = {"workers": args.workers} if args.workers is not None else {}
    rows = run(Path(args.data), per_class, out, args.recipe, args.seed, args.min_steps, overrides)
    (out / "data_size.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    labels = DatasetInfo.from_dir(args.data).labels
    print(f"\n{'per class':>9} {'videos':>6} {'epochs':>6} {'steps':>6} {'top-1':>6} {'within-pair':>11}")
    for r in rows:
        wp = "-" if r["within_pair"] is None else f"{r['within_pair']:.3f}"
        print(f"{r['per_class']:>9} {r['train_videos']:>6} {r['epochs']:>6} {r['steps']:>6} {r['top1']:>6.3f} {wp:>11}")
    print(f"\nwrote {out / 'data_size.jsonl'} and {plot(rows, out / 'data_size.png', 1 / len(labels))}")
    return 0
