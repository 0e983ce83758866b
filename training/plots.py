"""Plots a person would rather look at than read: training curves from ``metrics.jsonl``, confusion matrices."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np


def plot_curves(metrics_jsonl: str | Path, png: str | Path) -> Path:
    """Loss (left) and accuracies (right) per epoch; headless (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in Path(metrics_jsonl).read_text().splitlines() if line.strip()]
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], marker="o", label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.legend()
    for key, label in [("train_acc", "train top-1"), ("val_top1", "val top-1"), ("val_pair_acc", "val pair"),
                       ("val_within_pair_acc", "val within-pair")]:
        kept = [(r["epoch"], r[key]) for r in rows if key in r]  # validation may skip epochs (val_every)
        if kept:
            ax_acc.plot(*zip(*kept), marker="o", label=label)
    if any("val_within_pair_acc" in r for r in rows):
        ax_acc.axhline(0.5, color="grey", linestyle=":", label="within-pair chance")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylim(0, 1)
    ax_acc.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return Path(png)


def plot_confusion(conf: np.ndarray, labels: Sequence[str], png: str | Path,
                   pairs: Sequence[tuple[int, int]] = ()) -> Path:
    """Row-normalised confusion matrix (rows = true class) with class names, each reversal pair's 2x2 block outlined
    so that direction errors (inside a box, off the diagonal) stand apart from action errors; headless (Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    conf = np.asarray(conf, np.float64)
    rates = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    n = len(labels)
    side = max(5.0, 0.45 * n + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    for (i, j), rate in np.ndenumerate(rates):
        if rate >= 0.005:
            ax.text(j, i, f"{100 * rate:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if rate > 0.6 else "black")
    for a, b in pairs:
        # Adjacent classes form one 2x2 block; otherwise the pair's four cells are outlined one by one.
        boxes = [(min(a, b), min(a, b), 2)] if abs(a - b) == 1 else [(r, c, 1) for r in (a, b) for c in (a, b)]
        for r, c, k in boxes:
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), k, k, fill=False, edgecolor="tab:orange", linewidth=1.2))
    ax.set_xticks(range(n), labels, rotation=60, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion (% of each true class)" + (", reversal pairs outlined" if pairs else ""))
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return Path(png)


def plot_accuracy_vs_macs(rows: Sequence[dict], png: str | Path, chance: float | None = None) -> Path:
    """Top-1 (filled) and within-pair accuracy (hollow) against GMACs per clip, one colour per model row (``role``,
    ``gmacs``, ``top1_fp32``, ``within_pair_fp32``, optional ``top1_int8``: a cross)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, r in enumerate(rows):
        colour = f"C{i}"
        label = f"{r['role']} ({r['frames']} frames)"
        ax.scatter(r["gmacs"], r["top1_fp32"], color=colour, s=60, label=f"{label}: top-1")
        if r.get("within_pair_fp32") is not None:
            ax.scatter(r["gmacs"], r["within_pair_fp32"], facecolors="none", edgecolors=colour, s=60,
                       label=f"{label}: within-pair")
        if r.get("top1_int8") is not None:
            ax.scatter(r["gmacs"], r["top1_int8"], color=colour, marker="x", s=60, label=f"{label}: int8 top-1")
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="within-pair chance")
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="top-1 chance")
    ax.set_xscale("log")
    ax.set_xlabel("GMACs per clip (log)")
    ax.set_ylabel("accuracy (validation)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return Path(png)
