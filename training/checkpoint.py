"""Checkpoint files: written atomically, read once without executing code (``weights_only=True``), failing with typed
errors, and their metadata parsed once into a typed :class:`CheckpointMeta`.

Two kinds of model files:

- ``.pt``: a training checkpoint, ``{"model": state_dict, "config": {"arch", "frames", ...}, "labels", "sampler",
  "preprocess", ...}`` (see ``training.train``); the model is rebuilt from the registry.
- ``.pt2``: a program written by ``torch.export.save`` (e.g. after int8 quantization). It carries no metadata, so a
  sidecar ``NAME.json`` next to it holds the same keys as a checkpoint (``config``, ``labels``, ``sampler``,
  ``preprocess``) as JSON.

A library, not a recipe: the recipes and the converters both load models through it.
"""
from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sdk.errors import ConfigError, SdkError
from sdk.files import atomic_path
from sdk.preprocess import Preprocess
from sdk.samplers import Sampler
from training.models import create
from training.models.registry import INITIAL_WEIGHT_OPTIONS

__all__ = ["METADATA_KEYS", "CheckpointMeta", "atomic_save", "load_checkpoint", "load_checkpoint_model",
           "model_from_checkpoint", "read_checkpoint"]

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
