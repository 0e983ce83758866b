"""Int8 by quantization-aware training: ``python -m training.qat --checkpoint runs/student/best.pt --epochs 1``.

PT2E with XNNPACK's scheme (symmetric, per-channel weights; ``training.quantize``): the trained fp32 model is exported,
fake-quantized (``is_qat=True``), fine-tuned for a few epochs with the same loop as ``training.train`` (so resume, logs
and checkpoints work alike), converted to int8 and saved with ``torch.export.save`` (``int8_qat.pt2`` + a JSON sidecar
with labels, sampler, preprocessing and metrics; ``python -m training.evaluate --checkpoint int8_qat.pt2`` reads it).
For comparison the same model is also quantized post-training (calibration only, ``int8_ptq.pt2``).

Model, sampler and preprocessing come from the checkpoint; of the training keys, data, optimiser, schedule, epochs,
batch size and workers apply. QAT runs on decoded frames through the whole network (the fake-quantized trunk too);
blocks the fp32 run had frozen keep their weights (``train_frozen`` to fine-tune them), batch norm keeps its
running statistics (``train_bn`` for batch statistics), and a model trained on a feature cache is fine-tuned on the
centre crops it was trained on (``crop``). ``qat.json`` holds fp32 vs PTQ vs QAT top-1. One process: the fake-quant graph is not
run under DistributedDataParallel here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from sdk.errors import ConfigError
from training import distributed, quantize
from training.checkpoint import CheckpointMeta, load_checkpoint, load_checkpoint_model
from training.cli import cli_main, parse_config
from training.config import option
from training.data.check import check_dataset
from training.data.datasets import ClipDataset, DatasetInfo, make_loader
from training.train import Job, TrainConfig, fit, validation_metrics

__all__ = ["QATConfig", "main", "quantize_checkpoint"]


@dataclass
class QATConfig(TrainConfig):
    """TrainConfig's data, optimiser, schedule and system keys; model, sampler and preprocessing come from the
    checkpoint."""

    checkpoint: str = option("", help="the fp32 model: training.train / training.distill best.pt")
    out: str = "runs/qat"
    epochs: int = 1
    optimizer: str = "adamw"
    # fine-tuning a trained model: 1e-4 moved the student 1.5-2 points below fp32 in one epoch, 1e-5 kept it at fp32
    # (README "Models that learn")
    lr: float = 1e-5
    weight_decay: float = 0.0
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    channels_last: bool = option(False, help="channels-last memory format (the exported graph keeps the layout it "
                                             "was traced with)")
    freeze_observers_after: int = option(0, help="epochs with moving quantization ranges, then fixed ones (0: never "
                                                 "freeze)")
    per_channel: bool = option(True, help="per-channel weight quantization (else per-tensor)")
    calibration_batches: int = option(16, help="batches calibrated for PTQ and for QAT's starting ranges")
    ptq: bool = option(True, help="also quantize post-training (int8_ptq.pt2), for comparison")
    train_bn: bool = option(False, help="batch norm normalises with batch statistics during QAT (else running "
                                        "statistics)")
    train_frozen: bool = option(False, help="also fine-tune the blocks the fp32 run had frozen (its checkpoint's "
                                            "freeze)")
    crop: str = option("auto", help="training crop: multi_scale (training.train's augmentation), centre (the "
                                    "evaluation crop), or auto: centre when the fp32 run trained on a feature cache "
                                    "(it only ever saw centre crops), else multi_scale",
                       choices=("auto", "multi_scale", "centre"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.checkpoint:
            raise ConfigError("give the fp32 model: --checkpoint runs/.../best.pt")
        if self.calibration_batches < 1:
            raise ConfigError("calibration_batches must be >= 1")


def _calibration_batches(dataset: ClipDataset, cfg: QATConfig, device: torch.device):
    loader = make_loader(dataset, batch_size=cfg.batch_size, workers=cfg.workers, shuffle=True, seed=cfg.seed)
    for i, (clips, _) in enumerate(loader):
        if i >= cfg.calibration_batches:
            break
        yield clips.to(device)


def quantize_checkpoint(cfg: QATConfig) -> dict[str, Any]:
    """PTQ and QAT of ``cfg.checkpoint``; returns the report written to ``OUT/qat.json``."""
    ctx = distributed.setup(cfg.device)
    if ctx.distributed:
        raise ConfigError("training.qat runs in one process (launch it with python -m, not torchrun)")
    torch.manual_seed(cfg.seed)
    run = _Quantization(cfg, ctx)
    run.build_datasets()
    run.measure_fp32()
    if run.cfg.ptq:
        run.quantize_post_training()
    graph = run.prepare_qat()
    summary = fit(run.cfg, run.qat_job(graph), ctx)
    run.convert_qat(graph, summary)
    return run.write_report()


class _Quantization:
    """One run of :func:`quantize_checkpoint` as named steps; ``report`` collects what ``qat.json`` holds. The steps
    run in this order, which fixes the consumption of the random generators."""

    def __init__(self, cfg: QATConfig, ctx: distributed.Context):
        """The fp32 model and its checkpoint; ``cfg`` takes the checkpoint's crop sizes and conversion (what its data
        side uses)."""
        self.ctx = ctx
        self.info = DatasetInfo.from_dir(cfg.data)
        check_dataset(self.info, [cfg.train_split, cfg.val_split], decode=False).raise_for_problems()
        self.model, self.ckpt = load_checkpoint_model(cfg.checkpoint, ctx.device)
        if list(self.ckpt.labels) != self.info.labels:
            raise ConfigError(f"{cfg.checkpoint} was trained on other labels than those of {self.info.root}")
        self.sampler, self.preprocess = self.ckpt.sampler, self.ckpt.preprocess
        self.cfg = replace(cfg, size=self.preprocess.size, resize=self.preprocess.resize_to,
                           conversion=self.preprocess.conversion)
        self.out = Path(self.cfg.out)

    def build_datasets(self) -> None:
        """Validation clips, undistorted training clips to calibrate on, and the example input of the exports."""
        cfg, sampler, preprocess = self.cfg, self.sampler, self.preprocess
        self.train_records = self.info.records(cfg.train_split)
        self.val_set = ClipDataset(self.info.records(cfg.val_split), sampler=sampler, preprocess=preprocess,
                                   train=False, num_clips=cfg.eval_clips, num_crops=cfg.eval_crops,
                                   template=cfg.frame_template)
        self.calib_set = ClipDataset(self.train_records, sampler=sampler, preprocess=preprocess, train=False,
                                     template=cfg.frame_template)
        self.example = torch.zeros(2, sampler.frames, 3, preprocess.size, preprocess.size, device=self.ctx.device)

    def measure_fp32(self) -> None:
        """The fp32 model's metrics, and the checkpoint meta that every program saved here carries."""
        cfg, ckpt = self.cfg, self.ckpt
        self.out.mkdir(parents=True, exist_ok=True)
        self.model.eval()
        self.report: dict[str, Any] = {
            "checkpoint": cfg.checkpoint, "arch": ckpt.arch, "lr": cfg.lr, "frames": self.sampler.frames,
            "scheme": {"quantizer": "XNNPACKQuantizer", "symmetric": True, "per_channel": cfg.per_channel}}
        self.report["fp32"] = self._validate(self.model)
        self.meta = CheckpointMeta(labels=tuple(self.info.labels), sampler=self.sampler, preprocess=self.preprocess,
                                   config=dict(ckpt.config), dataset=dict(ckpt.dataset))

    def quantize_post_training(self) -> None:
        """PTQ for comparison: calibrate, convert, measure and save ``int8_ptq.pt2``."""
        cfg = self.cfg
        ptq = quantize.prepare(self.model, self.example, qat=False, per_channel=cfg.per_channel)
        seen = quantize.calibrate(ptq, _calibration_batches(self.calib_set, cfg, self.ctx.device), progress=True)
        ptq = quantize.convert(ptq)
        self.report["int8_ptq"] = {**self._validate(ptq), "calibration_clips": seen}
        quantize.save_program(ptq, self.example, self.out / "int8_ptq.pt2",
                              replace(self.meta, metrics=self.report["int8_ptq"], quantization={"method": "ptq"})
                              .to_dict())

    def prepare_qat(self) -> nn.Module:
        """The fake-quantized graph, from calibrated ranges; the blocks the fp32 run had frozen stay frozen unless
        ``train_frozen`` (the exported graph keeps the model's parameter names)."""
        cfg = self.cfg
        graph = quantize.prepare(self.model, self.example, qat=True, per_channel=cfg.per_channel)
        quantize.calibrate(graph, _calibration_batches(self.calib_set, cfg, self.ctx.device))
        frozen = 0 if cfg.train_frozen else int(self.ckpt.config.get("freeze", 0))
        if frozen:
            prefix = tuple(f"backbone.features.{i}." for i in range(frozen))
            for name, param in graph.named_parameters():
                if name.startswith(prefix):
                    param.requires_grad_(False)
        return graph

    def qat_job(self, graph: nn.Module) -> Job:
        """Fine-tuning ``graph`` with cross-entropy on the crops the fp32 model trained on; observers freeze after
        ``freeze_observers_after`` epochs."""
        cfg, fp32_cfg = self.cfg, self.ckpt.config
        self.crop = cfg.crop if cfg.crop != "auto" else (
            "centre" if fp32_cfg.get("freeze", 0) and fp32_cfg.get("feature_cache", True) else "multi_scale")
        train_set = ClipDataset(self.train_records, sampler=self.sampler, preprocess=self.preprocess, train=True,
                                seed=cfg.seed, hflip_map=self.info.hflip_map if cfg.hflip else None,
                                template=cfg.frame_template, spatial_augment=self.crop == "multi_scale")
        criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

        def loss(m: nn.Module, batch: Sequence[torch.Tensor]):
            clips, labels = batch
            logits = m(clips).float()
            return criterion(logits, labels), logits, labels

        epochs_seen = {"n": 0}

        def set_training(m: nn.Module, training: bool) -> None:
            if training and cfg.freeze_observers_after and epochs_seen["n"] >= cfg.freeze_observers_after:
                quantize.freeze_observers(m)
            quantize.set_training(m, training, batch_norm=cfg.train_bn)
            epochs_seen["n"] += int(not training)

        return Job(module=graph, model=graph, loss=loss, train_set=train_set, set_training=set_training,
                   validate=self._validate,
                   meta=replace(self.meta, note="fake-quantized PT2E graph state: see int8_qat.pt2 for the int8 "
                                                "program"))

    def convert_qat(self, graph: nn.Module, summary: dict[str, Any]) -> None:
        """The best fine-tuned graph converted to int8, measured and saved as ``int8_qat.pt2``."""
        cfg = self.cfg
        graph.load_state_dict(load_checkpoint(self.out / "best.pt")["model"])
        int8 = quantize.convert(graph)
        self.report["qat_fake_quant"], self.report["crop"] = summary["best"], self.crop
        self.report["int8_qat"] = self._validate(int8)
        quantize.save_program(int8, self.example, self.out / "int8_qat.pt2",
                              replace(self.meta, metrics=self.report["int8_qat"], quantization={
                                  "method": "qat", "epochs": cfg.epochs, "lr": cfg.lr, "crop": self.crop}).to_dict())

    def write_report(self) -> dict[str, Any]:
        """Top-1 drops against fp32, the programs' files and sizes: ``qat.json``."""
        report, out = self.report, self.out
        report["top1_drop_points"] = {k: 100 * (report["fp32"]["top1"] - report[k]["top1"])
                                      for k in ("int8_qat", "int8_ptq") if k in report}
        report["files"] = {k: str(out / f"{k}.pt2") for k in ("int8_qat", "int8_ptq") if k in report}
        report["bytes"] = {"fp32_state_dict": sum(t.numel() * t.element_size()
                                                  for t in self.model.state_dict().values()),
                           **{k: Path(v).stat().st_size for k, v in report["files"].items()}}
        (out / "qat.json").write_text(json.dumps(report, indent=2))
        return report

    def _validate(self, model: nn.Module) -> dict[str, float]:
        return validation_metrics(model, self.val_set, self.cfg, self.ctx, self.info.pairs)


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    cfg, _ = parse_config(QATConfig, argv, prog="python -m training.qat", description=__doc__.splitlines()[0],
                          example="python -m training.qat --config qat_cpu --checkpoint runs/student/best.pt "
                                  "--data my_videos --out runs/int8")
    report = quantize_checkpoint(cfg)
    print(f"{'model':<12} {'top-1':>7} {'within-pair':>12}")
    for key in ("fp32", "int8_ptq", "int8_qat"):
        if key in report:
            m = report[key]
            print(f"{key:<12} {m['top1']:>7.3f} {m.get('within_pair_acc', float('nan')):>12.3f}")
    print("top-1 drop (points): " + ", ".join(f"{k} {v:+.1f}" for k, v in report["top1_drop_points"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
