"""Classification metrics, including the ones the time-reversal benchmark is about."""
from __future__ import annotations

from typing import Sequence

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
