"""A registry of named architectures: ``create(name, num_classes=..., frames=...)`` builds any of them.

Model modules register their public builders with :func:`register_model`; ``training/models/__init__.py`` imports every
model module explicitly, so what is registered never depends on which modules happen to be imported elsewhere.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from sdk.errors import ConfigError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a keyword-only builder under its function name; a duplicate name is a programming error."""
    name = fn.__name__
    if name in _MODELS:
        raise RuntimeError(f"model {name!r} is registered twice")
    _MODELS[name] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_MODELS)


def create(name: str, *, num_classes: int, frames: int, **kwargs) -> nn.Module:
    """Build the registered model ``name`` for ``num_classes`` classes on clips of ``frames`` frames."""
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _MODELS[name](num_classes=num_classes, frames=frames, **kwargs)
