"""A registry of named architectures: ``create(name, num_classes=..., frames=...)`` builds any of them.

Model modules register their public builders with :func:`register_model`; ``training/models/__init__.py`` imports every
model module explicitly, so what is registered never depends on which modules happen to be imported elsewhere.
"""
from __future__ import annotations

import inspect
from typing import Callable

from torch import nn

from sdk.errors import ConfigError

_MODELS: dict[str, Callable[..., nn.Module]] = {}

# Builder options that only name a file of starting weights: a model rebuilt to receive a checkpoint's own weights
# drops them (the file may be gone, and reading it would be wasted).
INITIAL_WEIGHT_OPTIONS = ("weights_path", "imagenet_weights")


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
    builder = _MODELS[name]
    options = inspect.signature(builder).parameters
    unknown = sorted(set(kwargs) - set(options))
    if unknown and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in options.values()):
        valid = sorted(k for k, p in options.items() if p.kind is inspect.Parameter.KEYWORD_ONLY
                       and k not in ("num_classes", "frames"))
        raise ConfigError(f"{name} has no option(s) {', '.join(unknown)}; its options: {', '.join(valid)}")
    return builder(num_classes=num_classes, frames=frames, **kwargs)
