"""Building the small frozen spec dataclasses (sampler, preprocessing, ...) from manifest JSON, strictly."""
from __future__ import annotations

from typing import Any, Mapping, TypeVar

from sdk.errors import ConfigError

T = TypeVar("T")


def spec_from_dict(cls: type[T], spec: Mapping[str, Any], what: str) -> T:
    """``cls(**spec)``, but a non-mapping or an unknown key raises :class:`ConfigError`: a manifest typo must not pass."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{what} spec must be a mapping, got {type(spec).__name__}")
    fields = cls.__dataclass_fields__  # type: ignore[attr-defined]
    unknown = set(spec) - set(fields)
    if unknown:
        raise ConfigError(f"unknown {what} field(s) {sorted(unknown)}; valid: {sorted(fields)}")
    return cls(**spec)
