"""Train a clip classifier: ``python -m training.train --config teacher_cpu --data DATA [key=value ...]``.

Any registry model; sampling and preprocessing are ``sdk``'s (what the device runs). SGD (Nesterov) or AdamW with
warm-up + cosine, label smoothing, gradient clipping and accumulation; AMP and channels_last on CUDA; torchrun +
DistributedDataParallel (``torchrun --nproc_per_node N -m training.train ...``; gloo on CPU, NCCL on GPU). Every epoch
(and every ``checkpoint_every`` optimiser steps) ``last.pt`` is written atomically with the model, optimiser, scheduler,
loss scaler, data position and RNG state: ``--resume`` continues a killed run exactly where its last checkpoint was.
``best.pt`` (by validation top-1) holds the deployable model only. Metrics go to ``metrics.jsonl`` and ``curves.png``.

The loop itself (:func:`fit`) is shared with distillation and quantization-aware training: they pass a :class:`Job`.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sdk.errors import ConfigError
from sdk.preprocess import CONVERSIONS, CROP_COUNTS, Preprocess
from sdk.samplers import SAMPLER_KINDS, Sampler
from training import distributed
from training.checkpoint import CheckpointMeta, atomic_save, load_checkpoint
from training.cli import cli_main, parse_config
from training.config import check_choices, option
from training.data.check import check_dataset
from training.data.datasets import ClipDataset, DatasetInfo, make_loader
from training.data.feature_cache import CachedClipDataset
from training.evaluate import predict
from training.frozen import FromBlock, cache_split, freeze_prefix, remeasure_prefix_bn, set_training_frozen
from training.metrics import classification_metrics
from training.models import create, list_models
from training.plots import plot_curves
from training.progress import progress

__all__ = ["Job", "TrainConfig", "build_optimizer", "classifier_job", "fit", "main", "train", "warmup_cosine"]


@dataclass
class TrainConfig:
    """Every key of a recipe (``training/configs/*.yaml``) and of the command line; ``--help`` prints the
    descriptions below."""

    # data
    data: str = option("data/tiny", help="dataset directory: split files beside labels.txt (and meta.json), or "
                                         "split folders of class folders (train/<label>/*.mp4)")
    train_split: str = option("train.csv", help="training split in DATA: a .csv of videos, a TSN/bLVNet frame list "
                                                "(folder num_frames label), or a folder of class folders; a missing "
                                                "train.csv means the folder train/")
    val_split: str = option("val.csv", help="validation split in DATA (same formats; a missing val.csv means val/)")
    frame_template: str = option("img_{:05d}.jpg", help="file names inside frame folders (1-based)")
    out: str = option("runs/train", help="output directory (checkpoints, metrics.jsonl, curves.png)")
    # model and input
    arch: str = option("tsn_mobilenet_v2", help="model from the registry", choices=list_models)
    model_args: dict[str, Any] = option(default_factory=dict, help="builder options as a YAML mapping, e.g. "
                                        "'{temporal_from: 7}' (saved in the checkpoint)")
    pretrained: bool = option(True, help="start from the ImageNet weights where the model has them")
    frames: int = option(8, help="frames the model sees (big-little models read 2 x frames from the sampler)")
    sampler: str = option("uniform_segments", help="which frames of a video make a clip (sdk.samplers)",
                          choices=SAMPLER_KINDS)
    size: int = option(112, help="square crop side in pixels")
    resize: int = option(128, help="shorter video side is resized to this before cropping")
    conversion: str = option("swscale", help="how video files' decoded frames become pixels (recorded in the "
                                             "checkpoint and bundle; the sdk reads files the same way): swscale "
                                             "(libswscale's RGB) or camera (the camera frames' BT.601 fixed-point "
                                             "path: the pixels a device's camera gives, bit for bit)",
                             choices=CONVERSIONS)
    hflip: bool = option(True, help="horizontal-flip augmentation, only where the dataset says how labels change "
                                    "(meta.json hflip_map)")
    # partial fine-tuning (README "Models that learn")
    freeze: int = option(0, help="freeze backbone.features[:FREEZE] (no gradient, BN statistics kept); 0 trains "
                                 "everything")
    feature_cache: bool = option(True, help="with freeze > 0: run the frozen blocks once per frame, cache their "
                                            "output on disk and train the rest on it (frozen blocks must be "
                                            "per-frame)")
    cache_dir: str = option("", help="feature cache directory, outside the dataset; one array per video, keyed by "
                                     "the video file, preprocessing and prefix, so splits share cached videos and a "
                                     "changed one is recomputed (default: $EDGEVIDEO_FEATURE_CACHE or "
                                     "~/.cache/edgevideo/features)")
    cache_precision: str = option("fp32", help="compute of the frozen blocks for the training cache (bf16: autocast)",
                                  choices=("fp32", "bf16"))
    prefix_bn: str = option("keep", help="BN statistics of the frozen blocks: keep (as built) or remeasure (on 64 "
                                         "training videos)", choices=("keep", "remeasure"))
    select: str = option("best", help="which epoch best.pt holds: the best validation top-1, or the last",
                         choices=("best", "last"))
    # optimisation
    epochs: int = option(3, help="training epochs")
    batch_size: int = option(8, help="clips per batch and process (effective batch = batch_size x accumulate x "
                                     "processes)")
    accumulate: int = option(1, help="micro-batches per optimiser step (gradient accumulation)")
    optimizer: str = option("sgd", help="sgd (Nesterov, momentum 0.9) or adamw", choices=("sgd", "adamw"))
    lr: float = option(0.01, help="peak learning rate (after warm-up; cosine decay to zero)")
    weight_decay: float = option(5e-4, help="weight decay (not on norms and biases)")
    warmup_epochs: float = option(0.5, help="linear warm-up length in epochs")
    label_smoothing: float = option(0.1, help="label smoothing of the cross-entropy")
    clip_grad: float = option(20.0, help="max gradient norm; 0 disables clipping")
    # evaluation
    val_every: int = option(1, help="validate every this many epochs (and after the last one): many short epochs "
                                    "on a small dataset spend most of their time validating otherwise")
    eval_clips: int = option(1, help="validation views along time per video")
    eval_crops: int = option(1, help="validation crops per clip (1: centre, 3: left/centre/right)",
                             choices=CROP_COUNTS)
    # system
    workers: int = option(2, help="DataLoader worker processes, at most one per usable core and none on a single "
                                  "core (0: load in the main process)")
    device: str = option("auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    amp: bool = option(True, help="mixed precision on CUDA (bf16 where supported, else fp16 with loss scaling); no "
                                  "effect on CPU")
    channels_last: bool = option(True, help="channels-last memory format (faster convolutions on CUDA and x86)")
    sync_bn: bool = option(False, help="SyncBatchNorm across processes (CUDA only)")
    checkpoint_every: int = option(0, help="also write last.pt every this many optimiser steps (0: at epoch ends "
                                           "only)")
    resume: bool = option(False, help="continue from OUT/last.pt when it exists")
    seed: int = option(0, help="seed of the initial weights, data order and augmentation")

    def __post_init__(self) -> None:
        check_choices(self)
        for name in ("epochs", "batch_size", "accumulate", "frames", "size", "eval_clips", "val_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        negative = [name for name in ("lr", "weight_decay", "label_smoothing", "warmup_epochs")
                    if not getattr(self, name) >= 0]  # not >=: NaN is refused too
        if negative:
            raise ConfigError(", ".join(f"{name} {getattr(self, name)}" for name in negative)
                              + ": must be >= 0 (lr 0 trains nothing: it keeps the starting weights)")
        if self.workers < 0 or self.checkpoint_every < 0 or self.freeze < 0:
            raise ConfigError("workers, checkpoint_every and freeze must be >= 0")
        if self.cached and self.eval_crops != 1:
            raise ConfigError("a feature cache holds centre crops only: eval_crops must be 1 with freeze > 0 "
                              "(or set feature_cache=false)")
        if self.prefix_bn == "remeasure" and not self.freeze:
            raise ConfigError("prefix_bn=remeasure re-measures the frozen blocks' BN statistics: it needs freeze > 0")

    @property
    def cached(self) -> bool:
        """Train on a feature cache of the frozen blocks."""
        return self.freeze > 0 and self.feature_cache

    @property
    def preprocess_spec(self) -> Preprocess:
        return Preprocess(size=self.size, resize=self.resize, conversion=self.conversion)

    def sampler_spec(self, input_frames: int | None = None) -> Sampler:
        """The data side's sampler: ``input_frames`` (a big-little model's 2T) when the model reads more than ``frames``."""
        return Sampler(self.sampler, input_frames or self.frames)


@dataclass
class Job:
    """What one run trains and how; :func:`fit` does the rest (optimiser, schedule, AMP, DDP, checkpoints, resume, logs).

    Attributes:
        module: everything with trained parameters (moved to the device, wrapped in DDP under torchrun).
        model: the deployable model inside ``module`` -- what ``best.pt`` holds (the same object for plain training).
        loss: ``(module, batch) -> (loss, logits, labels)`` on a batch already on the device.
        train_set: the training dataset (its loader is made here: sampler, workers, resume position).
        validate: ``(model) -> metrics`` with at least ``top1``; runs on every rank and must agree across ranks.
        meta: saved in every checkpoint beside the weights (:meth:`CheckpointMeta.to_dict`); ``None`` saves the
            run's config only.
        set_training: switches train/eval mode (exported quantization graphs need their own functions).
    """

    module: nn.Module
    model: nn.Module
    loss: Callable[[nn.Module, Sequence[torch.Tensor]], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    train_set: ClipDataset
    validate: Callable[[nn.Module], dict[str, float]]
    meta: CheckpointMeta | None = None
    set_training: Callable[[nn.Module, bool], None] = lambda m, mode: m.train(mode)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """No weight decay on norms and biases (1-D parameters)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Linear warm-up to the base learning rate, then a cosine down to zero at ``total_steps``."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def _to_device(batch: Sequence[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    return [t.to(device, non_blocking=True) for t in batch]


def _rng_state() -> dict[str, Any]:
    """Torch's generators (dropout, ...): data randomness derives from (seed, epoch, index) and needs no state."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


_RESUME_MUST_MATCH = ("arch", "frames", "sampler", "size", "batch_size", "accumulate", "data", "train_split", "seed")


def _check_resumable(saved: dict[str, Any], cfg: dict[str, Any], world_size: int, saved_world: int, path: Path) -> None:
    diff = [k for k in _RESUME_MUST_MATCH if k in saved and saved[k] != cfg.get(k)]
    if saved_world != world_size:
        diff.append(f"processes ({saved_world} -> {world_size})")
    if diff:
        raise ConfigError(f"cannot resume from {path}: the run's {', '.join(diff)} changed; resume with the original "
                          "settings or start a new run in another --out")


def _rewrite_metrics(path: Path, epochs_done: int) -> None:
    """Drop rows of epochs that the checkpoint does not include (written just before a kill)."""
    if path.is_file():
        rows = [r for r in path.read_text().splitlines() if r.strip() and json.loads(r)["epoch"] <= epochs_done]
        path.write_text("".join(r + "\n" for r in rows))


def fit(cfg: TrainConfig, job: Job, ctx: distributed.Context) -> dict[str, Any]:
    """The training loop: epochs of (accumulated) optimiser steps, validation, checkpoints; returns the summary."""
    run = _Fit(cfg, job, ctx)
    run.place_model()
    run.build_loader()
    run.build_optimisation()
    run.resume_or_start()
    run.train()
    return run.summarise()


class _Fit:
    """One run of :func:`fit`: its state (model, data, optimisation, position in the data) and one method per step.
    The steps run in this order, which fixes the consumption of the random generators (runs are bit-reproducible)."""

    def __init__(self, cfg: TrainConfig, job: Job, ctx: distributed.Context):
        self.cfg, self.job, self.ctx = cfg, job, ctx
        self.out, self.device = Path(cfg.out), ctx.device
        self.cuda = self.device.type == "cuda"
        self.last, self.metrics_path = self.out / "last.pt", self.out / "metrics.jsonl"
        self.epoch, self.batches_done, self.best = 0, 0, {"top1": -1.0}
        if ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed + ctx.rank)  # dropout differs between ranks, and is reproducible

    def place_model(self) -> None:
        """``job.module`` on the device (channels-last); ``self.module``, what the forward runs, wraps it in DDP."""
        cfg, ctx = self.cfg, self.ctx
        self.job.module.to(self.device)
        if cfg.channels_last:
            self.job.module.to(memory_format=torch.channels_last)  # faster convolutions on CUDA and on x86 CPUs alike
        self.module: nn.Module = self.job.module
        if ctx.distributed:
            if cfg.sync_bn and self.cuda:
                self.module = nn.SyncBatchNorm.convert_sync_batchnorm(self.module)
            self.module = DistributedDataParallel(self.module, device_ids=[self.device.index] if self.cuda else None)

    def build_loader(self) -> None:
        """The shuffled training loader; a feature cache is read in-process (memory-mapped, no decoding: workers would
        only copy it)."""
        cfg, train_set = self.cfg, self.job.train_set
        workers = 0 if isinstance(train_set, CachedClipDataset) else cfg.workers
        self.loader = make_loader(train_set, batch_size=cfg.batch_size, workers=workers, shuffle=True,
                                  drop_last=len(train_set) >= cfg.batch_size * self.ctx.world_size,
                                  distributed=self.ctx.distributed, pin_memory=self.cuda, seed=cfg.seed)
        self.batches_per_epoch = len(self.loader)

    def build_optimisation(self) -> None:
        """Optimiser, warm-up + cosine schedule over the run's optimiser steps, and AMP (loss scaling for fp16)."""
        cfg = self.cfg
        steps_per_epoch = math.ceil(self.batches_per_epoch / cfg.accumulate)
        self.optimizer = build_optimizer(self.job.module, cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmup_cosine(
            cfg.epochs * steps_per_epoch, max(1, int(cfg.warmup_epochs * steps_per_epoch))))
        self.amp_dtype = torch.bfloat16 if self.cuda and torch.cuda.is_bf16_supported() else torch.float16
        self.use_amp = cfg.amp and self.cuda
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.use_amp and self.amp_dtype == torch.float16)

    def resume_or_start(self) -> None:
        """Continue from ``last.pt`` with ``--resume``; refuse to overwrite a run without it; write ``config.json``."""
        cfg, ctx, last = self.cfg, self.ctx, self.last
        if cfg.resume and last.is_file():
            self._load_trainer_state(load_checkpoint(last, self.device))
            if ctx.is_main:
                _rewrite_metrics(self.metrics_path, self.epoch)
                print(f"[resume] {last}: epoch {self.epoch + 1}, batch {self.batches_done}/{self.batches_per_epoch}")
        elif cfg.resume and ctx.is_main:
            print(f"[resume] no {last} yet: starting a new run")
        elif last.is_file() and ctx.is_main:
            raise ConfigError(f"{self.out} already holds a run (last.pt): pass --resume to continue it, or choose "
                              "another --out")
        if ctx.is_main:
            (self.out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))

    def _load_trainer_state(self, ckpt: dict[str, Any]) -> None:
        trainer = ckpt["trainer"]
        # the run's own settings: a job's meta may put another "config" at the top (QAT: the fp32 model's)
        _check_resumable(trainer.get("config", ckpt["config"]), asdict(self.cfg), self.ctx.world_size,
                         trainer["world_size"], self.last)
        self.job.module.load_state_dict(trainer["module"])
        self.optimizer.load_state_dict(trainer["optimizer"])
        self.scheduler.load_state_dict(trainer["scheduler"])
        self.scaler.load_state_dict(trainer["scaler"])
        self.epoch, self.batches_done, self.best = trainer["epoch"], trainer["batches_done"], trainer["best"]
        _set_rng_state(trainer["rng"][self.ctx.rank])

    def train(self) -> None:
        """The remaining epochs, each followed by validation, its metrics row and checkpoints."""
        self.start = time.perf_counter()
        while self.epoch < self.cfg.epochs:
            self.end_epoch(*self.train_epoch())
            self.ctx.barrier()

    def train_epoch(self) -> tuple[int, float, int]:
        """One epoch's batches from the data position (mid-epoch after a resume); returns this rank's clips seen,
        loss sum and correct predictions."""
        cfg = self.cfg
        self.job.set_training(self.job.module, True)
        self.loader.sampler.set_epoch(self.epoch, start=self.batches_done * cfg.batch_size)
        seen, loss_sum, correct = 0, 0.0, 0
        # the epoch's metrics row is its summary: the bar itself does not stay
        bar = progress(self.loader, desc=f"epoch {self.epoch + 1}/{cfg.epochs}", unit="batch", leave=False,
                       disable=not self.ctx.is_main, initial=self.batches_done, total=self.batches_per_epoch)
        for batch in bar:
            loss, logits, labels = self.train_batch(batch)
            seen += len(labels)
            loss_sum += loss.item() * len(labels)
            correct += (logits.argmax(1) == labels).sum().item()
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}",
                            lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
        bar.close()
        return seen, loss_sum, correct

    def train_batch(self, batch: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Forward and backward of one micro-batch, then the optimiser step where its accumulation group ends (the
        last group of an epoch may be short); DDP synchronises gradients on that micro-batch only."""
        cfg = self.cfg
        group_start = self.batches_done - self.batches_done % cfg.accumulate
        group = min(cfg.accumulate, self.batches_per_epoch - group_start)
        steps_now = (self.batches_done + 1 - group_start) == group
        sync = steps_now or not self.ctx.distributed
        with self.module.no_sync() if not sync else contextlib.nullcontext():
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
                loss, logits, labels = self.job.loss(self.module, _to_device(batch, self.device))
            self.scaler.scale(loss / group).backward()
        self.batches_done += 1
        if steps_now:
            self.optimizer_step()
        return loss, logits, labels

    def optimizer_step(self) -> None:
        """Clip, step, schedule; every ``checkpoint_every`` steps ``last.pt`` (not at an epoch's end: that one
        follows validation)."""
        cfg = self.cfg
        if cfg.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.job.module.parameters(), cfg.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if cfg.checkpoint_every and self.scheduler.last_epoch % cfg.checkpoint_every == 0 \
                and self.batches_done < self.batches_per_epoch:
            self.checkpoint(self.last, trainer_state=True)

    def end_epoch(self, seen: int, loss_sum: float, correct: int) -> None:
        """Validate (every ``val_every`` epochs and after the last), append the epoch's metrics row (all ranks'
        training statistics), keep ``best.pt`` and write ``last.pt``."""
        cfg, ctx = self.cfg, self.ctx
        self.job.set_training(self.job.module, False)
        validated = (self.epoch + 1) % cfg.val_every == 0 or self.epoch + 1 == cfg.epochs
        val = self.job.validate(self.job.model) if validated else {}
        train_stats = distributed.gather_objects(ctx, (seen, loss_sum, correct))
        seen_all = sum(s[0] for s in train_stats)
        self.epoch, self.batches_done = self.epoch + 1, 0
        row = {"epoch": self.epoch, "train_loss": sum(s[1] for s in train_stats) / max(1, seen_all),
               "train_acc": sum(s[2] for s in train_stats) / max(1, seen_all),
               "lr": self.scheduler.get_last_lr()[0], "elapsed_s": round(time.perf_counter() - self.start, 1),
               **{f"val_{k}": v for k, v in val.items()}}
        if val and (val["top1"] > self.best["top1"] or cfg.select == "last"):
            self.best = {**val, "epoch": self.epoch}
            self.checkpoint(self.out / "best.pt", trainer_state=False)
        if ctx.is_main:
            with self.metrics_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        self.checkpoint(self.last, trainer_state=True)

    def checkpoint(self, path: Path, trainer_state: bool) -> None:
        """The deployable model with the job's meta; with ``trainer_state`` also everything a resume needs (every
        rank's RNG state is gathered, so every rank must call this)."""
        rngs = distributed.gather_objects(self.ctx, _rng_state()) if trainer_state else None
        if not self.ctx.is_main:
            return
        meta = self.job.meta.to_dict() if self.job.meta is not None else {}
        state = {"model": self.job.model.state_dict(), "config": asdict(self.cfg), "epoch": self.epoch, **meta}
        if trainer_state:
            state["trainer"] = {
                "module": self.job.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "epoch": self.epoch,
                "batches_done": self.batches_done, "best": self.best, "rng": rngs,
                "world_size": self.ctx.world_size, "config": asdict(self.cfg)}
        atomic_save(state, path)

    def summarise(self) -> dict[str, Any]:
        """The run's summary (``summary.json``) and ``curves.png``."""
        out, ctx = self.out, self.ctx
        summary = {"best": self.best, "checkpoint": str(out / "best.pt"), "last": str(self.last),
                   "train_seconds": round(time.perf_counter() - self.start, 1), "device": str(self.device),
                   "processes": ctx.world_size, "train_clips": len(self.job.train_set),
                   "val_clips": self.best.get("n")}
        if ctx.is_main:
            if self.metrics_path.is_file():
                plot_curves(self.metrics_path, out / "curves.png")
            (out / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary


def validation_metrics(model: nn.Module, dataset: ClipDataset, cfg: TrainConfig, ctx: distributed.Context,
                       pairs: Sequence[tuple[int, int]] = ()) -> dict[str, float]:
    """Top-1/top-5 (and pair metrics) of ``model`` on ``dataset``, each rank predicting its share of the clips."""
    loader = make_loader(dataset, batch_size=cfg.batch_size, workers=0, shuffle=False, distributed=ctx.distributed,
                         pad=False, pin_memory=ctx.device.type == "cuda")
    scores, labels = predict(model, loader, ctx.device, desc="val") if len(loader.sampler) else (None, None)
    shares = [s for s in distributed.gather_objects(ctx, (scores, labels)) if s[0] is not None]
    return classification_metrics(torch.cat([s[0] for s in shares]).clamp_min(1e-12).log(),
                                  torch.cat([s[1] for s in shares]), pairs)


def eval_dataset(info: DatasetInfo, cfg: TrainConfig, sampler: Sampler, split: str | None = None) -> ClipDataset:
    """The validation clips of ``split`` with the multi-view settings of ``cfg``."""
    return ClipDataset(info.records(split or cfg.val_split), sampler=sampler, preprocess=cfg.preprocess_spec,
                       train=False, num_clips=cfg.eval_clips, num_crops=cfg.eval_crops, template=cfg.frame_template)


def classifier_job(cfg: TrainConfig, ctx: distributed.Context) -> Job:
    """Plain supervised training of ``cfg.arch`` with cross-entropy (label smoothing); with ``freeze`` the first
    blocks are frozen, and with ``feature_cache`` too the rest trains on their cached output (:mod:`training.frozen`)."""
    info = DatasetInfo.from_dir(cfg.data)
    check_dataset(info, [cfg.train_split, cfg.val_split], decode=False).raise_for_problems()
    model = create(cfg.arch, num_classes=len(info.labels), frames=cfg.frames, pretrained=cfg.pretrained,
                   **cfg.model_args)
    sampler = cfg.sampler_spec(getattr(model, "input_frames", cfg.frames))
    hflip_map = info.hflip_map if cfg.hflip else None
    if cfg.freeze:
        freeze_prefix(model, cfg.freeze, per_frame=cfg.cached)
        if cfg.prefix_bn == "remeasure":
            remeasure_prefix_bn(model, cfg.freeze, info, cfg.train_split, cfg.preprocess_spec, sampler,
                                template=cfg.frame_template)
    if cfg.cached:
        train_cache, val_cache = (cache_split(model, cfg.freeze, info, split, cfg.preprocess_spec, train=train,
                                              hflip=hflip_map is not None, cache_dir=cfg.cache_dir,
                                              precision=cfg.cache_precision, device=ctx.device, workers=cfg.workers,
                                              template=cfg.frame_template)
                                  for split, train in ((cfg.train_split, True), (cfg.val_split, False)))
        train_set = CachedClipDataset(train_cache, sampler=sampler, train=True, hflip_map=hflip_map, seed=cfg.seed)
        val_set = CachedClipDataset(val_cache, sampler=sampler, train=False, num_clips=cfg.eval_clips)
        module: nn.Module = FromBlock(model, cfg.freeze)
    else:
        train_set = ClipDataset(info.records(cfg.train_split), sampler=sampler,
                                preprocess=cfg.preprocess_spec, train=True, template=cfg.frame_template,
                                hflip_map=hflip_map, seed=cfg.seed)
        val_set = eval_dataset(info, cfg, sampler)
        module = model
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    def loss(m: nn.Module, batch: Sequence[torch.Tensor]):
        clips, labels = batch
        logits = m(clips).float()
        return criterion(logits, labels), logits, labels

    meta = CheckpointMeta(labels=tuple(info.labels), sampler=sampler, preprocess=cfg.preprocess_spec,
                          config=asdict(cfg), dataset=info.checkpoint_entry(cfg.train_split))
    return Job(module=module, model=model, loss=loss, train_set=train_set, meta=meta,
               validate=lambda m: validation_metrics(module if cfg.cached else m, val_set, cfg, ctx, info.pairs),
               set_training=lambda m, mode: set_training_frozen(m, mode, cfg.freeze))


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train and validate every epoch (one process, or one of torchrun's); returns the summary on every rank."""
    ctx = distributed.setup(cfg.device)
    torch.manual_seed(cfg.seed)  # the same initial weights in every run and on every rank
    try:
        job = classifier_job(cfg, ctx)
        return fit(cfg, job, ctx)
    finally:
        distributed.teardown(ctx)


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    return parse_config(TrainConfig, argv, prog="python -m training.train", description=__doc__.splitlines()[0],
                        example="python -m training.train --config teacher_cpu --data my_videos --out runs/teacher "
                                "epochs=20")[0]


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    summary = train(parse_args(argv))
    b = summary["best"]
    print(f"best val top-1 {b['top1']:.3f} (epoch {b.get('epoch')}, {summary['val_clips']} clips)"
          + (f", within-pair {b['within_pair_acc']:.3f}" if "within_pair_acc" in b else "")
          + f" -> {summary['checkpoint']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
