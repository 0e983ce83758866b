"""See-very-little distillation: ``python -m training.distill --teacher runs/teacher/best.pt --arch tam_mobilenet_v2 --frames 2``.

A teacher that sees all N frames of its clip trains a student that sees k of them (Bhardwaj et al., "Efficient Video
Classification Using Fewer Frames", CVPR 2019). Both are decoded once: the student's frames are the positions
``Sampler(kind, k, of=N).grid_positions(N)`` of the teacher's clip, the same crop and flip -- and at deployment the same
sampler picks them from the video. The student's loss::

    ce_weight * CE(student, labels)
    + kd_weight * T^2 * KL(softmax(z(teacher) / T) || softmax(z(student) / T))
    + rep_weight * MSE(project(student representation), teacher representation)
    + inter_weight * MSE(project(student per-frame features), teacher features at the same frames)   [optional]
    + layer_weight * mean over layer_blocks of MSE(student block output, teacher's at the same frames)  [optional]

``z`` is the identity, or with ``logit_standardise`` each clip's logits z-scored (Sun et al., "Logit Standardization in
Knowledge Distillation", CVPR 2024): the student then matches the teacher's logit relations, not their range, which a
student that sees 2 of 8 frames may not be able to reach. ``layer_blocks`` match intermediate maps of the two models'
``backbone.features`` (for the TAM head: the TAM blocks' outputs) at the student's frames -- the teacher's map of a
frame has mixed in its neighbours, which the student never sees.

The cross-entropy reads labelled clips only. ``--unlabelled PATH`` (a folder of videos, or a file listing them:
:mod:`training.data.unlabelled`) adds clips nobody labelled to the training set: they teach through the teacher's
terms (KL, representations) and never through a label -- the position of someone with hours of their own footage and
a few hundred labelled clips (docs/training.md, "When distillation is worth it"). They are cached like the labelled
split (same store, same per-video keys); with ``train_split=''`` the student learns from them alone.

Representations are the pooled features before the classifier; ``project`` is a learned linear map when the widths
differ (identity otherwise). ``mode=serial`` freezes a trained teacher (eval mode: BN statistics and dropout fixed);
``mode=parallel`` trains teacher and student together, the teacher on its own cross-entropy (the student's terms see a
detached teacher, so the student cannot pull the teacher towards itself). ``no_teacher`` trains the same student on the
same data with the cross-entropy only: the baseline the distilled student must beat. ``init_from_teacher`` starts a
student of the teacher's own arch from the teacher's weights (it then only has to adapt to seeing k of the N frames);
the no-teacher baseline never gets them.

Writes the same files as ``training.train`` (``best.pt`` holds the student with its own sampler, so evaluation, QAT and
export take it like any checkpoint) and ``distill.json``: teacher and student top-1, GMACs and their ratio.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sdk.errors import ConfigError
from sdk.samplers import SEE_VERY_LITTLE_KINDS, Sampler
from training import distributed
from training.cli import cli_main, parse_config
from training.config import option
from training.data.check import check_dataset
from training.data.datasets import ClipDataset, DatasetInfo
from training.data.feature_cache import CachedClipDataset, FeatureCache, prefix_digest
from training.data.unlabelled import read_unlabelled, without
from training.checkpoint import CheckpointMeta, load_checkpoint_model
from training.frozen import FromBlock, cache_split, freeze_prefix, frozen_prefix
from training.macs import count_gmacs
from training.models import create, list_models
from training.train import Job, TrainConfig, eval_dataset, fit, validation_metrics

__all__ = ["DistillConfig", "SeeVeryLittle", "distill", "distillation_kl", "layer_matching", "main",
           "standardise_logits"]


@dataclass
class DistillConfig(TrainConfig):
    """TrainConfig keys describe the student (``arch``, ``frames`` = k, ``sampler`` = a see-very-little kind)."""

    out: str = "runs/distill"
    arch: str = option("tam_mobilenet_v2", help="the student's model, from the registry", choices=list_models)
    frames: int = option(2, help="k: the frames the student sees, picked from the teacher's N by --sampler")
    sampler: str = option("uniform_k", help="how the student's k frames are picked from the teacher's N",
                          choices=SEE_VERY_LITTLE_KINDS)
    teacher: str = option("", help="teacher checkpoint (training.train's best.pt); required unless --no-teacher or "
                                   "--teacher-arch")
    teacher_arch: str = option("", help="parallel mode: an ImageNet-initialised teacher of this registry model "
                                        "instead of a checkpoint", choices=list_models)
    teacher_frames: int = option(16, help="with --teacher-arch (or --no-teacher): the N frames the teacher sees")
    mode: str = option("serial", help="serial (frozen trained teacher) or parallel (teacher trained alongside)",
                       choices=("serial", "parallel"))
    temperature: float = option(4.0, help="softmax temperature T of the distillation term")
    ce_weight: float = option(1.0, help="weight of the cross-entropy with the labels")
    kd_weight: float = option(1.0, help="weight of T^2 x KL(teacher || student)")
    rep_weight: float = option(1.0, help="weight of the squared error between final representations")
    inter_weight: float = option(0.0, help="weight of per-frame feature matching at the student's frame positions")
    logit_standardise: bool = option(False, help="z-score each clip's student and teacher logits before the "
                                                 "temperature softmax of the KL term (logit standardisation)")
    layer_weight: float = option(0.0, help="weight of intermediate feature-map matching at --layer-blocks")
    layer_blocks: str = option("", help="comma-separated indices into backbone.features whose per-frame outputs the "
                                        "student matches to the teacher's at its frames (same shapes in both models; "
                                        "with the feature cache, blocks >= freeze), e.g. 8,12: the TAM head's blocks")
    no_teacher: bool = option(False, help="baseline: the same student and data, cross-entropy only")
    init_from_teacher: bool = option(False, help="start the student from the teacher checkpoint's weights (same "
                                                 "arch: only the frames it sees differ)")
    unlabelled: str = option("", help="unlabelled videos (a folder, searched recursively, or a .csv / list file of "
                                      "paths): the teacher's outputs on them train the student beside train_split, "
                                      "never a label term; with train_split='' the student learns from them alone")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if not self.no_teacher and not (self.teacher or self.teacher_arch):
            raise ConfigError("give the teacher: --teacher CHECKPOINT (or --teacher-arch NAME with --mode parallel), "
                              "or --no-teacher for the baseline")
        if self.teacher_arch and not self.teacher and self.mode != "parallel":
            raise ConfigError("a teacher built from --teacher-arch is untrained: it needs --mode parallel")
        if self.unlabelled and self.no_teacher:
            raise ConfigError("unlabelled videos teach only through the teacher: drop --unlabelled or --no-teacher")
        if not self.train_split and not self.unlabelled:
            raise ConfigError("train_split is empty: give a labelled split, or --unlabelled videos to learn from")
        if self.layer_weight and not self.layer_block_indices:
            raise ConfigError("layer_weight needs layer_blocks: the indices of the blocks to match, e.g. 8,12")

    @property
    def layer_block_indices(self) -> tuple[int, ...]:
        """``layer_blocks`` as integers."""
        try:
            return tuple(int(v) for v in self.layer_blocks.split(",") if v.strip())
        except ValueError:
            raise ConfigError(f"layer_blocks must be comma-separated integers, got {self.layer_blocks!r}") from None


def labelled_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """The mean cross-entropy over the clips with a label (``labels >= 0``); 0 for a batch of unlabelled clips only,
    whose label (:data:`~training.data.unlabelled.UNLABELLED`) must never be read as a class."""
    labelled = labels >= 0
    per_clip = F.cross_entropy(logits, labels.clamp_min(0), label_smoothing=label_smoothing, reduction="none")
    return (per_clip * labelled).sum() / labelled.sum().clamp_min(1)


def standardise_logits(logits: torch.Tensor) -> torch.Tensor:
    """Each row z-scored: ``(z - mean) / std``; invariant to a per-clip shift and positive scale of the logits."""
    return (logits - logits.mean(1, keepdim=True)) / (logits.std(1, keepdim=True) + 1e-7)


def distillation_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
                    standardise: bool = False) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, the mean over clips; ``standardise``: of the
    z-scored logits (:func:`standardise_logits`). The T^2 keeps its gradients' scale independent of T (Hinton et al.)."""
    if standardise:
        student_logits, teacher_logits = standardise_logits(student_logits), standardise_logits(teacher_logits)
    return F.kl_div(F.log_softmax(student_logits / temperature, 1), F.log_softmax(teacher_logits / temperature, 1),
                    reduction="batchmean", log_target=True) * temperature ** 2


def at_frames(teacher: torch.Tensor, positions: torch.Tensor, teacher_frames: int) -> torch.Tensor:
    """The teacher's ``(N, S, ...)`` per-step values at the student's frames ``positions`` ``(N, k)`` (indices into the
    teacher's ``teacher_frames`` input frames) -> ``(N, k, ...)``; a big-little teacher has one step per frame pair."""
    index = positions * teacher.shape[1] // teacher_frames
    return teacher.gather(1, index.view(*index.shape, *[1] * (teacher.ndim - 2)).expand(-1, -1, *teacher.shape[2:]))


def layer_matching(student_maps: Sequence[torch.Tensor], teacher_maps: Sequence[torch.Tensor], positions: torch.Tensor,
                   teacher_frames: int) -> torch.Tensor:
    """The mean over layers of MSE(student map, teacher map at the student's frames); maps are ``(N, T, C, H, W)``."""
    losses = []
    for s, t in zip(student_maps, teacher_maps, strict=True):
        target = at_frames(t, positions, teacher_frames)
        if s.shape != target.shape:
            raise ConfigError(f"layer_blocks: the student's map {tuple(s.shape[2:])} and the teacher's "
                              f"{tuple(target.shape[2:])} differ; match blocks of the same shape in both models")
        losses.append(F.mse_loss(s.float(), target.float()))
    return torch.stack(losses).mean()


@contextmanager
def block_outputs(model: nn.Module, blocks: Sequence[int], batch: int) -> Iterator[list[torch.Tensor]]:
    """Collects the outputs of ``model.backbone.features[i]`` for ``i`` in ``blocks`` during the ``with`` body, as
    ``(batch, T, C, H, W)`` (the models run frame-stacked ``(batch * T, C, H, W)`` activations)."""
    outputs: list[torch.Tensor] = []
    handles = [model.backbone.features[i].register_forward_hook(
        lambda _m, _i, out: outputs.append(out.unflatten(0, (batch, -1)))) for i in blocks]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def _per_frame(features: torch.Tensor) -> torch.Tensor:
    """``(N, T, F)`` per-frame features (models with a pooled map give ``(N, T, F)`` already)."""
    return features if features.ndim == 3 else features.flatten(2)


class SeeVeryLittle(nn.Module):
    """Student + (teacher) + projections; ``forward(teacher_clips, student_clips, positions, labels)`` -> loss terms.

    ``positions`` ``(N, k)`` are the student's frames as indices into the teacher's clip (for intermediate matching).
    """

    def __init__(self, student: nn.Module, teacher: nn.Module | None, cfg: DistillConfig, start: int = 0):
        super().__init__()
        self.student, self.teacher = student, teacher
        self.start = start  # > 0: inputs are cached activations of both models' (identical) frozen first blocks
        self.serial = cfg.mode == "serial"
        self.temperature = cfg.temperature
        self.weights = {"ce": cfg.ce_weight, "kd": cfg.kd_weight, "rep": cfg.rep_weight, "inter": cfg.inter_weight,
                        "layer": cfg.layer_weight}
        self.standardise = cfg.logit_standardise
        self.layer_blocks = cfg.layer_block_indices if cfg.layer_weight else ()
        if any(i < start for i in self.layer_blocks):
            raise ConfigError(f"layer_blocks {cfg.layer_blocks}: blocks below {start} are the cached frozen prefix, "
                              "which does not run in training")
        self.label_smoothing = cfg.label_smoothing
        if teacher is not None:
            if self.serial:
                teacher.requires_grad_(False)
            s, t = student.num_features, teacher.num_features
            self.project = nn.Linear(s, t) if s != t else nn.Identity()

    def train(self, mode: bool = True) -> SeeVeryLittle:
        super().train(mode)
        if self.teacher is not None and self.serial:
            self.teacher.eval()  # a frozen teacher keeps its BN statistics and no dropout
        return self

    def forward(self, teacher_clips: torch.Tensor, student_clips: torch.Tensor, positions: torch.Tensor,
                labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        batch = student_clips.shape[0]
        with block_outputs(self.student, self.layer_blocks, batch) as s_maps:
            s_feat = self.student.forward_features(student_clips, self.start)
        s_logits = self.student.forward_head(s_feat).float()
        terms = {"ce": labelled_cross_entropy(s_logits, labels, self.label_smoothing)}
        total = self.weights["ce"] * terms["ce"]
        if self.teacher is None:
            return total, s_logits, terms
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.serial), \
                block_outputs(self.teacher, self.layer_blocks, batch) as t_maps:
            t_feat = self.teacher.forward_features(teacher_clips, self.start)
            t_logits = self.teacher.forward_head(t_feat).float()
        if not self.serial:
            terms["teacher_ce"] = labelled_cross_entropy(t_logits, labels, self.label_smoothing)
            total = total + terms["teacher_ce"]
        t_logits, t_feat = t_logits.detach(), t_feat.detach()
        terms["kd"] = distillation_kl(s_logits, t_logits, self.temperature, self.standardise)
        s_rep = self.project(self.student.forward_head(s_feat, pre_logits=True).float())
        terms["rep"] = F.mse_loss(s_rep, self.teacher.forward_head(t_feat, pre_logits=True).float())
        total = total + self.weights["kd"] * terms["kd"] + self.weights["rep"] * terms["rep"]
        n_frames = teacher_clips.shape[1]
        if self.weights["inter"]:
            target = at_frames(_per_frame(t_feat).float(), positions, n_frames)
            terms["inter"] = F.mse_loss(self.project(_per_frame(s_feat).float()), target)
            total = total + self.weights["inter"] * terms["inter"]
        if self.layer_blocks:
            terms["layer"] = layer_matching(s_maps, [m.detach() for m in t_maps], positions, n_frames)
            total = total + self.weights["layer"] * terms["layer"]
        return total, s_logits, terms


def distill(cfg: DistillConfig) -> dict[str, Any]:
    """Train the student (with or without the teacher); returns the summary with teacher/student accuracy and MACs."""
    ctx = distributed.setup(cfg.device)
    torch.manual_seed(cfg.seed)  # the same initial weights (student, projection) in every run and on every rank
    try:
        return _distill(cfg, ctx)
    finally:
        distributed.teardown(ctx)


def _distill(cfg: DistillConfig, ctx: distributed.Context) -> dict[str, Any]:
    run = _Distillation(cfg, ctx)
    run.read_videos()
    run.build_teacher()
    run.build_student()
    run.freeze()
    run.build_datasets()
    summary = fit(cfg, run.job(), ctx)
    return run.report(summary)


class _Distillation:
    """One run of :func:`distill` as named steps, each keeping on ``self`` what later ones need. The steps run in this
    order, which fixes the consumption of the random generators (initial weights: teacher, student, projection)."""

    def __init__(self, cfg: DistillConfig, ctx: distributed.Context):
        self.cfg, self.ctx = cfg, ctx
        self.info = DatasetInfo.from_dir(cfg.data)
        check_dataset(self.info, [s for s in (cfg.train_split, cfg.val_split) if s], decode=False).raise_for_problems()
        self.hflip_map = self.info.hflip_map if cfg.hflip else None

    def read_videos(self) -> None:
        """The labelled training videos and the unlabelled ones (minus any that are labelled)."""
        cfg = self.cfg
        self.labelled = self.info.records(cfg.train_split) if cfg.train_split else []
        self.unlabelled = without(read_unlabelled(cfg.unlabelled), self.labelled) if cfg.unlabelled else []
        if cfg.unlabelled and not self.unlabelled:
            raise ConfigError(f"every video of {cfg.unlabelled} is in the labelled split {cfg.train_split}")

    def build_teacher(self) -> None:
        """The teacher -- a checkpoint with the student's labels and crops, or an ImageNet-initialised registry model
        -- and the two samplers: the teacher's N frames, the student's k of them. ``no_teacher`` keeps the samplers
        only (the same clips as the distilled student)."""
        cfg, info = self.cfg, self.info
        self.teacher, self.teacher_ckpt = None, None
        if cfg.teacher:
            self.teacher, self.teacher_ckpt = load_checkpoint_model(cfg.teacher, "cpu")
            if list(self.teacher_ckpt.labels) != info.labels:
                raise ConfigError(f"the teacher {cfg.teacher} was trained on other labels than those of {info.root}")
            self.teacher_sampler = self.teacher_ckpt.sampler
            if self.teacher_ckpt.preprocess != cfg.preprocess_spec:
                raise ConfigError(f"the teacher {cfg.teacher} was trained on {self.teacher_ckpt.preprocess.to_dict()}: "
                                  "set the student's size/resize/conversion to the teacher's (both see the same "
                                  "pixels)")
        elif cfg.teacher_arch:
            self.teacher = create(cfg.teacher_arch, num_classes=len(info.labels), frames=cfg.teacher_frames,
                                  pretrained=cfg.pretrained)
            self.teacher_sampler = Sampler("uniform_segments", getattr(self.teacher, "input_frames",
                                                                       cfg.teacher_frames))
        else:
            self.teacher_sampler = Sampler("uniform_segments", cfg.teacher_frames)
        if cfg.no_teacher:
            self.teacher = None
        self.student_sampler = Sampler(cfg.sampler, cfg.frames, of=self.teacher_sampler.frames)

    def build_student(self) -> None:
        """The student, from the teacher checkpoint's weights with ``init_from_teacher``; it must read exactly the
        frames it is given."""
        cfg, ckpt = self.cfg, self.teacher_ckpt
        self.student = create(cfg.arch, num_classes=len(self.info.labels), frames=cfg.frames,
                              pretrained=cfg.pretrained, **cfg.model_args)
        if cfg.init_from_teacher:
            if ckpt is None or cfg.no_teacher:
                raise ConfigError("init_from_teacher needs a teacher checkpoint (--teacher) and no no_teacher")
            teacher_args = ckpt.config.get("model_args", {})
            if (ckpt.arch, teacher_args) != (cfg.arch, cfg.model_args):
                raise ConfigError(f"init_from_teacher: the student ({cfg.arch} {cfg.model_args}) must be the teacher's "
                                  f"arch ({ckpt.arch} {teacher_args})")
            self.student.load_state_dict(self.teacher.state_dict())
        if getattr(self.student, "input_frames", cfg.frames) != cfg.frames:
            raise ConfigError(f"{cfg.arch} reads {self.student.input_frames} frames for frames={cfg.frames}: use a "
                              "student that sees exactly the sampled frames")

    def freeze(self) -> None:
        """Freeze the student's first ``freeze`` blocks; with the feature cache the teacher's too, which must equal
        them (both models then train from block ``start`` on the same cached activations)."""
        cfg, teacher = self.cfg, self.teacher
        self.start = cfg.freeze if cfg.cached else 0
        if not cfg.freeze:
            return
        prefix = freeze_prefix(self.student, cfg.freeze, per_frame=cfg.cached)
        if teacher is not None and cfg.cached:
            if prefix_digest(frozen_prefix(teacher, cfg.freeze)) != prefix_digest(prefix):
                raise ConfigError(f"the teacher's first {cfg.freeze} blocks differ from the student's (structure or "
                                  "weights): they cannot share a feature cache; set feature_cache=false")
            teacher.requires_grad_(False) if cfg.mode == "serial" else freeze_prefix(teacher, cfg.freeze)

    def build_datasets(self) -> None:
        """Training clips (the teacher's N frames with the student's k among them) and each model's validation clips,
        decoded or from the feature cache."""
        cfg, info = self.cfg, self.info
        if cfg.cached:
            train_cache, val_cache = self._training_cache(), self._cache(cfg.val_split, False)
            self.train_set = CachedClipDataset(train_cache, sampler=self.teacher_sampler, subset=self.student_sampler,
                                               train=True, hflip_map=self.hflip_map, seed=cfg.seed)
            self.val_student, self.val_teacher = (
                CachedClipDataset(val_cache, sampler=s, train=False, num_clips=cfg.eval_clips)
                for s in (self.student_sampler, self.teacher_sampler))
        else:
            self.train_set = ClipDataset(self.labelled + self.unlabelled, sampler=self.teacher_sampler,
                                         subset=self.student_sampler, preprocess=cfg.preprocess_spec, train=True,
                                         hflip_map=self.hflip_map, seed=cfg.seed, template=cfg.frame_template)
            self.val_student = eval_dataset(info, cfg, self.student_sampler)
            self.val_teacher = eval_dataset(info, cfg, self.teacher_sampler)

    def _training_cache(self) -> FeatureCache:
        """The labelled and unlabelled videos' cached activations as one store (unlabelled videos go into the
        training split's store, keyed per video like its own)."""
        parts = ([self._cache(self.cfg.train_split, True, self.labelled)] if self.labelled else []) \
            + ([self._cache("unlabelled", True, self.unlabelled)] if self.unlabelled else [])
        return replace(parts[0], files=[f for p in parts for f in p.files],
                       labels=np.concatenate([p.labels for p in parts]))

    def _cache(self, split: str, train: bool, records=None) -> FeatureCache:
        cfg = self.cfg
        return cache_split(self.student, cfg.freeze, self.info, split, cfg.preprocess_spec, train=train,
                           hflip=self.hflip_map is not None, cache_dir=cfg.cache_dir, precision=cfg.cache_precision,
                           device=self.ctx.device, workers=cfg.workers, template=cfg.frame_template, records=records)

    def job(self) -> Job:
        """What :func:`fit` trains: :class:`SeeVeryLittle`'s loss; checkpoints hold the student with its sampler."""
        cfg, info, student = self.cfg, self.info, self.student
        module = SeeVeryLittle(student, self.teacher, cfg, self.start)

        def set_training(m: nn.Module, mode: bool) -> None:
            m.train(mode)
            if cfg.freeze:
                frozen_prefix(student, cfg.freeze).eval()

        def loss(m: nn.Module, batch: Sequence[torch.Tensor]):
            teacher_clips, student_clips, positions, labels = batch
            total, logits, _ = m(teacher_clips, student_clips, positions, labels)
            return total, logits, labels

        ckpt = self.teacher_ckpt
        self.meta = CheckpointMeta(
            labels=tuple(info.labels), sampler=self.student_sampler, preprocess=cfg.preprocess_spec,
            config=asdict(cfg), dataset=info.checkpoint_entry(cfg.train_split or cfg.val_split),
            teacher={"checkpoint": cfg.teacher or None, "arch": ckpt.arch if ckpt else cfg.teacher_arch or None,
                     "sampler": self.teacher_sampler.to_dict()})
        return Job(module=module, model=student, loss=loss, train_set=self.train_set, meta=self.meta,
                   set_training=set_training,
                   validate=lambda m: validation_metrics(self._runnable(m), self.val_student, cfg, self.ctx,
                                                         info.pairs))

    def _runnable(self, model: nn.Module) -> nn.Module:
        """What validation calls: the model, or the model from its first trainable block on (cached inputs)."""
        return FromBlock(model, self.start) if self.start else model

    def report(self, summary: dict[str, Any]) -> dict[str, Any]:
        """Student (and teacher) top-1 and GMACs and their ratios: ``distill.json``, and ``summary.json`` with them."""
        cfg, best = self.cfg, summary["best"]
        student_gmacs = count_gmacs(self.student, torch.zeros(1, cfg.frames, 3, cfg.size, cfg.size,
                                                              device=self.ctx.device))
        report: dict[str, Any] = {"student": {"arch": cfg.arch, "frames": cfg.frames,
                                              "sampler": self.student_sampler.to_dict(), "gmacs": student_gmacs,
                                              "top1": best["top1"], "within_pair_acc": best.get("within_pair_acc")},
                                  "mode": "no_teacher" if cfg.no_teacher else cfg.mode,
                                  "labelled_videos": len(self.labelled), "unlabelled_videos": len(self.unlabelled)}
        if self.teacher is not None or self.teacher_ckpt is not None:
            report["teacher"] = self._teacher_report()
            report["macs_ratio"] = student_gmacs / report["teacher"]["gmacs"]
            report["top1_ratio"] = best["top1"] / max(report["teacher"]["top1"], 1e-12)
        summary["distill"] = report
        if self.ctx.is_main:
            Path(cfg.out, "distill.json").write_text(json.dumps(report, indent=2))
            (Path(cfg.out) / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def _teacher_report(self) -> dict[str, Any]:
        """The teacher's top-1 on its own validation clips (a ``no_teacher`` run loads its checkpoint) and GMACs."""
        cfg, device, n = self.cfg, self.ctx.device, self.teacher_sampler.frames
        teacher = self.teacher if self.teacher is not None else load_checkpoint_model(cfg.teacher, device)[0]
        teacher.to(device)
        metrics = validation_metrics(self._runnable(teacher.eval()), self.val_teacher, cfg, self.ctx, self.info.pairs)
        gmacs = count_gmacs(teacher, torch.zeros(1, n, 3, cfg.size, cfg.size, device=device))
        return {"arch": self.meta.teacher["arch"], "frames": n, "gmacs": gmacs, "top1": metrics["top1"],
                "within_pair_acc": metrics.get("within_pair_acc")}


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    cfg, _ = parse_config(DistillConfig, argv, prog="python -m training.distill", description=__doc__.splitlines()[0],
                          example="python -m training.distill --config student_cpu --teacher runs/teacher/best.pt "
                                  "--data my_videos --out runs/student")
    report = distill(cfg)["distill"]
    s = report["student"]
    print(f"student {s['arch']} sees {s['frames']} frames: top-1 {s['top1']:.3f}, {s['gmacs']:.3f} GMACs "
          f"({report['mode']})")
    if report["unlabelled_videos"]:
        print(f"trained on {report['labelled_videos']} labelled + {report['unlabelled_videos']} unlabelled videos")
    if "teacher" in report:
        t = report["teacher"]
        print(f"teacher {t['arch']} sees {t['frames']} frames: top-1 {t['top1']:.3f}, {t['gmacs']:.3f} GMACs; "
              f"student/teacher: top-1 {report['top1_ratio']:.3f}x at {report['macs_ratio']:.3f}x the MACs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
