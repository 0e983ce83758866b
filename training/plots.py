"""Plots a person would rather look at than read: training curves from ``metrics.jsonl``."""
from __future__ import annotations

import json
from pathlib import Path


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
        if key in rows[0]:
            ax_acc.plot(epochs, [r[key] for r in rows], marker="o", label=label)
    if "val_within_pair_acc" in rows[0]:
        ax_acc.axhline(0.5, color="grey", linestyle=":", label="within-pair chance")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylim(0, 1)
    ax_acc.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return Path(png)
