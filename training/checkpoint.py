"""Checkpoint files: written atomically, read without executing code (``weights_only=True``), failing with typed errors."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from sdk.errors import ConfigError

__all__ = ["atomic_save", "load_checkpoint"]


def atomic_save(obj: Any, path: str | Path) -> None:
    """Write to a temporary file, fsync, and rename: a run killed mid-write never leaves a truncated checkpoint."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A checkpoint dict written by this project (``model``, ``config``, ``labels``, ``sampler``, ``preprocess``, ...)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # truncated zip, pickled code, not a torch file at all
        raise ConfigError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ConfigError(f"{path} is not a checkpoint of this project (no 'model' entry)")
    return ckpt
