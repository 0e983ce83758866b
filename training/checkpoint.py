"""Checkpoint files: written atomically, read once without executing code (``weights_only=True``), failing with typed
errors, and their metadata parsed once into a typed :class:`CheckpointMeta`.

Two kinds of model files:

- ``.pt``: a training checkpoint, ``{"model": state_dict, "config": {"arch", "frames", ...}, "labels", "sampler",
  "preprocess", ...}`` (see ``training.train``); the model is rebuilt from the registry.
- ``.pt2``: a program written by ``torch.export.save`` (e.g. after int8 quantization). It carries no metadata, so a
  sidecar ``NAME.json`` next to it holds the same keys as a checkpoint (``config``, ``labels``, ``sampler``,
  ``preprocess``) as JSON.

And a third, FASTER's (``training.faster``'s ``models/*.pt``): projections + aggregator with ``format:
"edgevideo-faster"``, its metadata a :class:`FasterMeta`, its frozen clip models referred to by path and sha256;
:func:`load_faster` rebuilds the whole thing.

A library, not a recipe: the recipes and the converters both load models through it.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sdk.errors import ConfigError, SdkError
from sdk.files import atomic_path, sha256_of
from sdk.manifest import ADAPTIVE, CLIP_ROLES
from sdk.preprocess import Preprocess
from sdk.samplers import Sampler
from training.models import create
from training.models.aggregators import create_aggregator
from training.models.faster import GATES, FasterModel, LearnedGate, gate_scores, parse_schedule
from training.models.registry import INITIAL_WEIGHT_OPTIONS

__all__ = ["FASTER_FORMAT", "FASTER_FORMAT_VERSION", "METADATA_KEYS", "CheckpointMeta", "FasterClipSource",
           "FasterGateMeta", "FasterMeta", "LoadedFaster", "atomic_save", "faster_from_checkpoint",
           "is_faster", "load_checkpoint", "load_checkpoint_model", "load_faster", "model_from_checkpoint",
           "read_checkpoint", "save_faster"]

METADATA_KEYS = ("config", "labels", "sampler", "preprocess")


@dataclass(frozen=True)
class CheckpointMeta:
    """What a classifier checkpoint (or a ``.pt2`` sidecar) says besides its weights, parsed and checked once.

    Evaluation, QAT, distillation, FASTER and the exporter read these fields instead of re-parsing the raw dict.
    ``dataset`` / ``metrics`` / ``teacher`` / ``quantization`` / ``note`` are absent from older checkpoints (empty /
    None). The writers (``train``, ``distill``, ``qat``) build one and save :meth:`to_dict`: one schema both ways.
    """

    labels: tuple[str, ...]
    sampler: Sampler
    preprocess: Preprocess
    config: Mapping[str, Any]
    dataset: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] | None = None
    teacher: Mapping[str, Any] | None = None
    quantization: Mapping[str, Any] | None = None
    note: str | None = None  # what the file holds when it is not the plain model (QAT: the fake-quantized graph)
    sha256: str = ""  # of the file it was read from

    @property
    def arch(self) -> str:
        return self.config["arch"]

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str | Path, sha256: str = "") -> CheckpointMeta:
        missing = [k for k in METADATA_KEYS if k not in raw]
        if missing:
            raise ConfigError(f"{where} lacks {', '.join(missing)}; a checkpoint needs {', '.join(METADATA_KEYS)}")
        try:
            sampler, preprocess = Sampler.from_dict(raw["sampler"]), Preprocess.from_dict(raw["preprocess"])
        except SdkError as e:
            raise ConfigError(f"{where}: {e}") from e
        return cls(labels=tuple(raw["labels"]), sampler=sampler, preprocess=preprocess, config=dict(raw["config"]),
                   dataset=dict(raw.get("dataset") or {}), metrics=raw.get("metrics"), teacher=raw.get("teacher"),
                   quantization=raw.get("quantization"), note=raw.get("note"), sha256=sha256)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready metadata entries, as a checkpoint or ``.pt2`` sidecar holds them (without ``sha256``)."""
        out = {"config": dict(self.config), "labels": list(self.labels), "sampler": self.sampler.to_dict(),
               "preprocess": self.preprocess.to_dict(), "dataset": dict(self.dataset)}
        optional = {k: getattr(self, k) for k in ("metrics", "teacher", "quantization", "note")}
        return {**out, **{k: v for k, v in optional.items() if v is not None}}


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` through :func:`sdk.files.atomic_path`: a run killed mid-write never leaves a truncated
    checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _read_bytes(path: Path) -> tuple[bytes, str]:
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist")
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


def read_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[dict[str, Any], str]:
    """``(checkpoint dict, sha256 of the file)`` from one read of the file: the exporter hashes what it loaded."""
    path = Path(path)
    data, sha256 = _read_bytes(path)
    try:
        ckpt = torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except Exception as e:  # truncated zip, pickled code, not a torch file at all
        raise ConfigError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ConfigError(f"{path} is not a checkpoint of this project (no 'model' entry)")
    return ckpt, sha256


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A checkpoint dict of this project (``model``, ``config``, ``labels``, ``sampler``, ``preprocess``, ...)."""
    return read_checkpoint(path, device)[0]


def model_from_checkpoint(ckpt: Mapping[str, Any], meta: CheckpointMeta) -> nn.Module:
    """The registry model of a ``.pt`` checkpoint, rebuilt with ``create(arch, frames=, **model_args)`` (no pretrained
    weights, no starting-weights file: :data:`~training.models.registry.INITIAL_WEIGHT_OPTIONS`) and loaded strictly."""
    cfg = meta.config
    args = {k: v for k, v in cfg.get("model_args", {}).items() if k not in INITIAL_WEIGHT_OPTIONS}
    model = create(cfg["arch"], num_classes=len(meta.labels), frames=cfg["frames"], pretrained=False, **args)
    model.load_state_dict(ckpt["model"])
    return model


def load_checkpoint_model(path: str | Path, device: str | torch.device) -> tuple[nn.Module, CheckpointMeta]:
    """``(model on device, metadata)`` from a ``.pt`` checkpoint or a ``.pt2`` exported program + sidecar JSON; the
    file is read once (``meta.sha256`` is its hash)."""
    path, device = Path(path), torch.device(device)
    if path.suffix == ".pt2":
        from training import quantize  # registers the quantized_decomposed ops an int8 program is made of

        data, sha256 = _read_bytes(path)
        sidecar = path.with_suffix(".json")
        if not sidecar.is_file():
            raise ConfigError(f"{path} is an exported program without metadata: {sidecar} is missing (it holds the "
                              f"checkpoint's {', '.join(METADATA_KEYS)} as JSON)")
        meta = CheckpointMeta.from_dict(json.loads(sidecar.read_text()), sidecar, sha256)
        program = torch.export.load(io.BytesIO(data))
        if device.type != "cpu":
            program = torch.export.passes.move_to_device_pass(program, device)
        return quantize.with_train_eval(program.module()), meta
    ckpt, sha256 = read_checkpoint(path)
    meta = CheckpointMeta.from_dict(ckpt, path, sha256)
    return model_from_checkpoint(ckpt, meta).to(device), meta


# --------------------------------------------------------------------------------------------------------------------
# FASTER checkpoints
# --------------------------------------------------------------------------------------------------------------------
FASTER_FORMAT = "edgevideo-faster"
FASTER_FORMAT_VERSION = 1


@dataclass(frozen=True)
class FasterClipSource:
    """Where a FASTER checkpoint finds one frozen clip model, and how that model sees a segment.

    Either a training checkpoint (``checkpoint``, absolute: it is the user's file) or weights written beside the
    FASTER checkpoint (``weights``; stored relative to it so that a run directory can move, resolved on reading),
    rebuilt from ``arch`` / ``frames`` / ``width``. ``sha256`` is the file's: a changed clip model is refused."""

    sampler: Sampler
    preprocess: Preprocess
    gmacs_per_clip: float
    arch: str | None
    sha256: str
    checkpoint: Path | None = None
    weights: Path | None = None
    frames: int | None = None
    width: float = 1.0

    @property
    def file(self) -> Path:
        return self.checkpoint if self.checkpoint is not None else self.weights

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], directory: Path) -> FasterClipSource:
        common = dict(sampler=Sampler.from_dict(raw["sampler"]), preprocess=Preprocess.from_dict(raw["preprocess"]),
                      gmacs_per_clip=float(raw["gmacs_per_clip"]), arch=raw.get("arch"), sha256=raw["sha256"])
        if "checkpoint" in raw:
            return cls(**common, checkpoint=Path(raw["checkpoint"]))
        return cls(**common, weights=directory / raw["weights"], frames=int(raw["frames"]),
                   width=float(raw["width"]))

    def to_dict(self, directory: Path) -> dict[str, Any]:
        out = {"sampler": self.sampler.to_dict(), "preprocess": self.preprocess.to_dict(),
               "gmacs_per_clip": self.gmacs_per_clip, "arch": self.arch, "sha256": self.sha256}
        if self.checkpoint is not None:
            return {**out, "checkpoint": str(self.checkpoint)}
        return {**out, "weights": os.path.relpath(self.weights.absolute(), directory.absolute()),
                "frames": self.frames, "width": self.width}


@dataclass(frozen=True)
class FasterGateMeta:
    """The adaptive schedule's rule as the checkpoint records it (a bundle declares it as ``sdk.manifest.FasterGate``):
    the cheap model runs on every segment, the expensive one where the gate's score
    (:func:`training.models.faster.gate_scores` of ``kind``) exceeds ``threshold``.

    One aggregator serves every threshold (it was trained on random masks), so the threshold is a run-time choice;
    ``threshold`` is the train split's score quantile at which a fraction ``fire_rate`` of segments fires, and
    ``curve`` the same for every fire rate measured (``(fire_rate, threshold)``; +inf never fires, -inf always)."""

    kind: str
    threshold: float
    fire_rate: float
    curve: tuple[tuple[float, float], ...] = ()

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> FasterGateMeta:
        if raw["kind"] not in GATES:
            raise ValueError(f"unknown gate {raw['kind']!r}; one of {GATES}")
        return cls(raw["kind"], float(raw["threshold"]), float(raw["fire_rate"]),
                   tuple((float(r), float(t)) for r, t in raw.get("curve", ())))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "threshold": self.threshold, "fire_rate": self.fire_rate,
                "curve": [list(p) for p in self.curve]}


@dataclass(frozen=True)
class FasterMeta:
    """What a FASTER checkpoint says besides its weights, parsed and checked once (:meth:`from_checkpoint`); the
    recipe writes it with :meth:`to_dict`, so reading and writing share one schema. ``config`` / ``metrics`` /
    ``dataset`` are the recipe's records (``dataset["root"]``: the long-video benchmark it was trained on)."""

    labels: tuple[str, ...]
    schedule: str  # "1:N", "expensive-only", "cheap-only", or ADAPTIVE (then ``gate`` says when the expensive runs)
    aggregator: str  # a name of training.models.aggregators
    dim: int  # the common feature space of both clip models
    dropout: float
    map_size: int | None  # side of the feature maps of a spatial aggregator; None: pooled features
    feature_size: tuple[int, ...] | None  # the aggregator's feature map size (fast_gru)
    segments: int  # L, segments per video
    segment_frames: int
    clip_models: Mapping[str, FasterClipSource]  # by role: expensive, cheap
    config: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    dataset: Mapping[str, Any] = field(default_factory=dict)
    gate: FasterGateMeta | None = None  # the adaptive schedule's rule; None for a fixed schedule
    sha256: str = ""  # of the file it was read from

    @property
    def pattern(self) -> list[str]:
        """Roles of one period of a fixed schedule: ``1:3`` -> expensive, cheap, cheap, cheap."""
        if self.gate is not None:
            raise ConfigError("an adaptive FASTER checkpoint has no fixed pattern: its gate picks the expensive "
                              "segments")
        _, n = parse_schedule(self.schedule)
        return ["cheap"] if n is None else ["expensive"] + ["cheap"] * n

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any], path: Path, sha256: str = "") -> FasterMeta:
        if not is_faster(ckpt):
            raise ConfigError(f"{path} is not a FASTER checkpoint (python -m training.faster writes them under "
                              "OUT/models/)")
        if ckpt.get("version") != FASTER_FORMAT_VERSION:
            raise ConfigError(f"{path}: FASTER checkpoint version {ckpt.get('version')} is not "
                              f"{FASTER_FORMAT_VERSION}; train it again with python -m training.faster")
        try:
            gate = None if ckpt.get("gate") is None else FasterGateMeta.from_dict(ckpt["gate"])
            schedule = ADAPTIVE if gate is not None else parse_schedule(ckpt["schedule"])[0]
            return cls(labels=tuple(ckpt["labels"]), schedule=schedule,
                       aggregator=ckpt["aggregator"], dim=int(ckpt["dim"]), dropout=float(ckpt["dropout"]),
                       map_size=ckpt["map_size"],
                       feature_size=None if ckpt["feature_size"] is None else tuple(ckpt["feature_size"]),
                       segments=int(ckpt["segments"]), segment_frames=int(ckpt["segment_frames"]),
                       clip_models={r: FasterClipSource.from_dict(c, path.parent)
                                    for r, c in ckpt["clip_models"].items()},
                       config=dict(ckpt.get("config") or {}), metrics=dict(ckpt.get("metrics") or {}),
                       dataset=dict(ckpt.get("dataset") or {}), gate=gate, sha256=sha256)
        except (KeyError, TypeError, ValueError, SdkError) as e:
            raise ConfigError(f"{path}: malformed FASTER checkpoint ({type(e).__name__}: {e}); train it again with "
                              "python -m training.faster") from e

    def to_dict(self, directory: Path) -> dict[str, Any]:
        """The checkpoint's metadata entries (without the weights), clip weights relative to ``directory``."""
        return {"format": FASTER_FORMAT, "version": FASTER_FORMAT_VERSION, "labels": list(self.labels),
                "schedule": self.schedule, "aggregator": self.aggregator, "dim": self.dim, "dropout": self.dropout,
                "map_size": self.map_size,
                "feature_size": None if self.feature_size is None else list(self.feature_size),
                "segments": self.segments, "segment_frames": self.segment_frames,
                "clip_models": {r: c.to_dict(directory) for r, c in self.clip_models.items()},
                "config": dict(self.config), "metrics": dict(self.metrics), "dataset": dict(self.dataset),
                "gate": None if self.gate is None else self.gate.to_dict()}


def is_faster(ckpt: Mapping[str, Any]) -> bool:
    """True for a checkpoint dict written by :func:`save_faster` (``training.faster``'s ``models/*.pt``)."""
    return ckpt.get("format") == FASTER_FORMAT


def save_faster(path: Path, model: FasterModel, meta: FasterMeta, gate: LearnedGate | None = None) -> Path:
    """One trained row (projections + aggregator, and the learned gate of an adaptive one) with everything needed to
    export it (:func:`load_faster`)."""
    if (gate is not None) != (meta.gate is not None and meta.gate.kind == "learned"):
        raise ValueError("a learned gate's weights go with an adaptive checkpoint whose gate is 'learned', only")
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = {"model": model.state_dict(), **({"gate_model": gate.state_dict()} if gate is not None else {})}
    atomic_save({**meta.to_dict(path.parent), **weights}, path)
    return path


@dataclass
class LoadedFaster:
    """A FASTER checkpoint, rebuilt: the frozen clip models and the trained projections + aggregator (eval mode)."""

    model: FasterModel
    clip_models: dict[str, nn.Module]
    meta: FasterMeta
    gate: LearnedGate | None = None  # the learned gate of an adaptive checkpoint whose gate kind is "learned"

    @property
    def samplers(self) -> dict[str, Sampler]:
        return {r: c.sampler for r, c in self.meta.clip_models.items()}

    @property
    def preprocess(self) -> dict[str, Preprocess]:
        return {r: c.preprocess for r, c in self.meta.clip_models.items()}

    def gate_mask(self, features: torch.Tensor, logits: torch.Tensor, threshold: float | None = None
                  ) -> torch.Tensor:
        """Where an adaptive checkpoint runs the expensive model, from the cheap model's pooled features
        ``(..., L, F)`` and logits ``(..., L, K)``: its gate's score above ``threshold`` (None: the checkpoint's)."""
        rule = self.meta.gate
        if rule is None:
            raise ConfigError("a fixed-schedule FASTER checkpoint has no gate; use its schedule's mask")
        limit = rule.threshold if threshold is None else threshold
        return gate_scores(rule.kind, features, logits, self.gate) > limit


def load_faster(path: str | Path, device: str | torch.device = "cpu") -> LoadedFaster:
    """Inverse of :func:`save_faster` (clip model files are checked against their recorded sha256)."""
    ckpt, sha256 = read_checkpoint(path, device)
    return faster_from_checkpoint(ckpt, Path(path), sha256, device)


def _clip_model(role: str, source: FasterClipSource, labels: tuple[str, ...], path: Path,
                device: str | torch.device) -> nn.Module:
    file = source.file
    if not file.is_file():
        raise ConfigError(f"the {role} clip model of {path} is missing: {file}")
    if sha256_of(file) != source.sha256:
        raise ConfigError(f"the {role} clip model {file} changed since {path} was trained (sha256 mismatch)")
    if source.checkpoint is not None:
        model, _ = load_checkpoint_model(file, device)
    else:
        kwargs: dict[str, Any] = {"pretrained": False}
        if source.width != 1.0:
            kwargs["width_mult"] = source.width
        model = create(source.arch, num_classes=len(labels), frames=source.frames, **kwargs)
        model.load_state_dict(load_checkpoint(file, device)["model"])
    return model.to(device).eval().requires_grad_(False)


def faster_from_checkpoint(ckpt: Mapping[str, Any], path: Path, sha256: str,
                           device: str | torch.device = "cpu") -> LoadedFaster:
    """:func:`load_faster` of a checkpoint already read from ``path`` (whose bytes hash to ``sha256``)."""
    meta = FasterMeta.from_checkpoint(ckpt, path, sha256)
    models = {role: _clip_model(role, c, meta.labels, path, device) for role, c in meta.clip_models.items()}
    kwargs = {"feature_size": meta.feature_size} if meta.aggregator == "fast_gru" else {}
    aggregator = create_aggregator(meta.aggregator, in_channels=meta.dim, num_classes=len(meta.labels),
                                   dropout=meta.dropout, **kwargs)
    sd = ckpt["model"]
    stats = {role: (torch.zeros(sd[f"{role}_mean"].shape), torch.ones(sd[f"{role}_std"].shape)) for role in CLIP_ROLES}
    model = FasterModel(aggregator, stats["expensive"], stats["cheap"], meta.dim)
    model.load_state_dict(sd)
    gate = None
    if meta.gate is not None and meta.gate.kind == "learned":
        if "gate_model" not in ckpt:
            raise ConfigError(f"{path}: its learned gate's weights are missing; train it again with "
                              "python -m training.faster gates=learned")
        weights = ckpt["gate_model"]
        gate = LearnedGate(torch.zeros(weights["mean"].shape), torch.ones(weights["std"].shape))
        gate.load_state_dict(weights)
        gate = gate.to(device).eval().requires_grad_(False)
    return LoadedFaster(model.to(device).eval(), models, meta, gate)
