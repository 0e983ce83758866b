"""The training loop (``training.train.fit``) on a tiny model without batch statistics or dropout, for checks that
compare runs exactly: DDP against one process, gradient accumulation against a bigger batch, resume after a kill.

Batch norm and dropout are what make such runs differ legitimately (per-rank batch statistics, per-rank dropout
masks), so the model is a linear map of a small conv's pooled output; the data are 32 fixed random clips. Run in
process (:func:`run`, a world of one) or under torchrun::

    torchrun --standalone --nproc_per_node 2 tests/loop_worker.py OUT BATCH [--accumulate A] [--stop-after N] [--resume]

``--stop-after N`` raises on the loss call after N optimiser steps of this process (each a checkpoint with
``checkpoint_every=1``): what a kill right after a step checkpoint leaves on disk.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training import distributed  # noqa: E402
from training.train import Job, TrainConfig, fit  # noqa: E402

CLIPS, FRAMES, SIZE, CLASSES = 32, 2, 8, 4


class Stopped(Exception):
    """Raised in place of a kill."""


class Clips(torch.utils.data.Dataset):
    """``(epoch, index) -> (clip (T, 3, S, S), label)``: the same 32 random clips in every process."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(CLIPS, FRAMES, 3, SIZE, SIZE, generator=g)
        self.y = torch.randint(CLASSES, (CLIPS,), generator=g)

    def __len__(self) -> int:
        return CLIPS

    def __getitem__(self, key: tuple[int, int]):
        return self.x[key[1]], self.y[key[1]]


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, CLASSES)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(clips.flatten(0, 1))).mean((2, 3))
        return self.fc(x.unflatten(0, clips.shape[:2]).mean(1))


def run(out: Path, batch: int, *, accumulate: int = 1, stop_after: int | None = None, resume: bool = False,
        epochs: int = 2, lr: float = 0.2) -> Tiny:
    """Train :class:`Tiny` with ``fit`` (the recipes' loop: SGD, warm-up + cosine, clipping, checkpoints)."""
    ctx = distributed.setup("cpu")
    try:
        data, model = Clips(), Tiny()
        calls = {"n": 0}

        def loss(m: nn.Module, batch_: list[torch.Tensor]):
            if stop_after is not None and calls["n"] >= stop_after * accumulate:
                raise Stopped
            calls["n"] += 1
            clips, labels = batch_
            logits = m(clips)
            return F.cross_entropy(logits, labels), logits, labels

        def validate(m: nn.Module) -> dict[str, float]:
            with torch.no_grad():
                return {"top1": (m(data.x).argmax(1) == data.y).float().mean().item()}

        cfg = TrainConfig(out=str(out), batch_size=batch, accumulate=accumulate, epochs=epochs, lr=lr, workers=0,
                          checkpoint_every=1, resume=resume, channels_last=False, label_smoothing=0.0)
        fit(cfg, Job(module=model, model=model, loss=loss, train_set=data, validate=validate), ctx)
        if ctx.is_main:
            print(f"[loop_worker] loss calls: {calls['n']}", flush=True)
        return model
    finally:
        distributed.teardown(ctx)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("batch", type=int)
    p.add_argument("--accumulate", type=int, default=1)
    p.add_argument("--stop-after", type=int, default=None)
    p.add_argument("--resume", action="store_true")
    a = p.parse_args()
    try:
        run(a.out, a.batch, accumulate=a.accumulate, stop_after=a.stop_after, resume=a.resume)
    except Stopped:
        sys.exit(3)
