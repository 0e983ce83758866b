"""Classification metrics, including the ones the time-reversal benchmark is about."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor,
                           pairs: Sequence[tuple[int, int]] = ()) -> dict[str, float]:
    """Top-1 / top-5 accuracy, and with reversal ``pairs``:

    - ``pair_acc``: the prediction is in the true class's pair (the *what*, which frame averaging can see);
    - ``within_pair_acc``: the true class scores above its time-reversed partner (the *direction*; chance is 50%,
      and a frame-order-invariant model cannot beat it).
    """
    logits, labels = logits.float().cpu(), labels.cpu()
    n = len(labels)
    top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
    out = {
        "n": n,
        "top1": (top5[:, 0] == labels).float().mean().item(),
        "top5": (top5 == labels[:, None]).any(1).float().mean().item(),
    }
    if pairs:
        partner = torch.arange(logits.shape[1])
        for a, b in pairs:
            partner[a], partner[b] = b, a
        pred = top5[:, 0]
        out["pair_acc"] = ((pred == labels) | (pred == partner[labels])).float().mean().item()
        rows = torch.arange(n)
        out["within_pair_acc"] = (logits[rows, labels] > logits[rows, partner[labels]]).float().mean().item()
    return out


def confusion_matrix(pred: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray,
                     num_classes: int) -> np.ndarray:
    """``(C, C)`` int64 counts: row = true class, column = predicted class."""
    pred, labels = np.asarray(pred, np.int64).reshape(-1), np.asarray(labels, np.int64).reshape(-1)
    counts = np.bincount(labels * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def per_class_accuracy(conf: np.ndarray) -> np.ndarray:
    """Recall of each class from a confusion matrix; NaN for a class with no clips (unknown, not 0)."""
    totals = conf.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(conf) / totals, np.nan)


def pair_confusion(conf: np.ndarray, pairs: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
    """Per reversal pair ``(a, b)``: the 2x2 confusion restricted to ``a`` and ``b`` (rows = true ``a``, ``b``), and
    ``outside``, how many of the pair's clips were predicted as some other class.

    The 2x2 block separates the two failure modes that ``top1`` mixes up: missing the direction (off-diagonal) and
    missing the action (outside).
    """
    out = []
    for a, b in pairs:
        block = conf[np.ix_([a, b], [a, b])]
        total = int(conf[[a, b]].sum())
        out.append({"pair": [int(a), int(b)], "confusion": block.tolist(), "n": total,
                    "outside": total - int(block.sum())})
    return out
