"""Train a clip classifier: ``python -m training.train --data DIR --arch tsn_mobilenet_v2 --epochs 3``.

A first end-to-end path (the training issue extends it with YAML recipes, DDP and resumable state): any registry model,
sampling and preprocessing from ``sdk``, SGD (Nesterov) or AdamW with warm-up + cosine, label smoothing, gradient
clipping, AMP on CUDA, channels_last, tqdm progress, ``metrics.jsonl`` + ``curves.png``, atomic ``last.pt`` / ``best.pt``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from tqdm import tqdm

from sdk.preprocess import Preprocess
from sdk.samplers import Sampler
from training.data.datasets import ClipDataset, DatasetInfo, make_loader, read_records
from training.metrics import classification_metrics
from training.models import create, list_models
from training.plots import plot_curves


@dataclass
class TrainConfig:
    data: str = "data/tiny"
    train_split: str = "train.csv"  # .csv of videos, or a TSN/bLVNet frame list (folder num_frames label)
    val_split: str = "val.csv"
    frame_template: str = "img_{:05d}.jpg"  # file names inside frame folders (1-based)
    out: str = "runs/train"
    arch: str = "tsn_mobilenet_v2"
    pretrained: bool = True
    frames: int = 8
    sampler: str = "uniform_segments"
    size: int = 112
    resize: int = 128
    epochs: int = 3
    batch_size: int = 8
    optimizer: str = "sgd"
    lr: float = 0.01
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.5
    label_smoothing: float = 0.1
    clip_grad: float = 20.0
    hflip: bool = True  # only where the dataset says how labels change (meta.json hflip_map)
    workers: int = 2
    eval_clips: int = 1
    device: str = "auto"
    seed: int = 0

    @property
    def sampler_spec(self) -> Sampler:
        return Sampler(self.sampler, self.frames)

    @property
    def preprocess_spec(self) -> Preprocess:
        return Preprocess(size=self.size, resize=self.resize)


def atomic_save(obj: Any, path: Path) -> None:
    """Write to a temporary file and rename: a run killed mid-write never leaves a truncated checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """No weight decay on norms and biases (1-D parameters)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; valid: sgd, adamw")


def warmup_cosine(total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, pairs: Sequence[tuple[int, int]] = (),
             desc: str = "val") -> dict[str, float]:
    """Metrics over a loader; multi-view batches ``(N, V, T, C, H, W)`` average the views' softmax scores."""
    model.eval()
    all_scores, all_labels = [], []
    for clips, labels in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True):
        clips = clips.to(device, non_blocking=True)
        if clips.ndim == 6:
            n, v = clips.shape[:2]
            scores = model(clips.flatten(0, 1)).float().softmax(-1).unflatten(0, (n, v)).mean(1)
        else:
            scores = model(clips).float().softmax(-1)
        all_scores.append(scores.cpu())
        all_labels.append(labels)
    return classification_metrics(torch.cat(all_scores).log(), torch.cat(all_labels), pairs)


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train and validate every epoch; returns the best validation metrics and the output paths."""
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))

    info = DatasetInfo.from_dir(cfg.data)
    common = dict(sampler=cfg.sampler_spec, preprocess=cfg.preprocess_spec, template=cfg.frame_template)
    train_set = ClipDataset(read_records(info.root / cfg.train_split, info.labels), train=True,
                            hflip_map=info.hflip_map if cfg.hflip else None, seed=cfg.seed, **common)
    val_set = ClipDataset(read_records(info.root / cfg.val_split, info.labels), train=False,
                          num_clips=cfg.eval_clips, **common)
    cuda = device.type == "cuda"
    train_loader = make_loader(train_set, batch_size=cfg.batch_size, workers=cfg.workers, shuffle=True,
                               drop_last=len(train_set) > cfg.batch_size, pin_memory=cuda, seed=cfg.seed)
    val_loader = make_loader(val_set, batch_size=cfg.batch_size, workers=cfg.workers, shuffle=False, pin_memory=cuda)

    model = create(cfg.arch, num_classes=len(info.labels), frames=cfg.frames, pretrained=cfg.pretrained).to(device)
    model = model.to(memory_format=torch.channels_last)  # faster convolutions on CUDA and on x86 CPUs alike
    optimizer = build_optimizer(model, cfg)
    steps_per_epoch = len(train_loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(cfg.epochs * steps_per_epoch, max(1, int(cfg.warmup_epochs * steps_per_epoch))))
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    amp_dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=cuda and amp_dtype == torch.float16)  # fp16 needs loss scaling

    best: dict[str, Any] = {"top1": -1.0}
    metrics_file = (out / "metrics.jsonl").open("a")
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        train_loader.sampler.set_epoch(epoch)
        seen, loss_sum, correct = 0, 0.0, 0
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", dynamic_ncols=True)
        for clips, labels in bar:
            clips, labels = clips.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=cuda):
                logits = model(clips)
                loss = criterion(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            seen += len(labels)
            loss_sum += loss.item() * len(labels)
            correct += (logits.argmax(1) == labels).sum().item()
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        val = evaluate(model, val_loader, device, info.pairs)
        row = {"epoch": epoch + 1, "train_loss": loss_sum / max(1, seen), "train_acc": correct / max(1, seen),
               "lr": scheduler.get_last_lr()[0], "elapsed_s": round(time.perf_counter() - start, 1),
               **{f"val_{k}": v for k, v in val.items()}}
        metrics_file.write(json.dumps(row) + "\n")
        metrics_file.flush()
        print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        state = {"model": model.state_dict(), "config": asdict(cfg), "labels": info.labels, "epoch": epoch + 1,
                 "metrics": val, "sampler": cfg.sampler_spec.to_dict(), "preprocess": cfg.preprocess_spec.to_dict()}
        atomic_save(state, out / "last.pt")
        if val["top1"] > best["top1"]:
            best = {**val, "epoch": epoch + 1}
            atomic_save(state, out / "best.pt")
    metrics_file.close()
    plot_curves(out / "metrics.jsonl", out / "curves.png")
    summary = {"best": best, "checkpoint": str(out / "best.pt"), "train_seconds": round(time.perf_counter() - start, 1),
               "device": str(device), "train_clips": len(train_set), "val_clips": len(val_set)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """Every TrainConfig field is a flag (``--batch-size 16``; booleans as ``--hflip`` / ``--no-hflip``)."""
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.splitlines()[0])
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            kind = {"int": int, "float": float, "str": str}[f.type if isinstance(f.type, str) else f.type.__name__]
            choices = list_models() if f.name == "arch" else None
            parser.add_argument(flag, type=kind, default=f.default, choices=choices)
    return TrainConfig(**vars(parser.parse_args(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    summary = train(parse_args(argv))
    b = summary["best"]
    print(f"best val top-1 {b['top1']:.3f} (epoch {b['epoch']}, {summary['val_clips']} clips)"
          + (f", within-pair {b['within_pair_acc']:.3f}" if "within_pair_acc" in b else "")
          + f" -> {summary['checkpoint']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
