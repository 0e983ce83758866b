"""Run configuration: a dataclass of typed fields, filled from a YAML recipe and command-line overrides.

Precedence, lowest first: the dataclass defaults, the recipe (``--config training/configs/NAME.yaml``), then flags
(``--lr 0.01``) and ``key=value`` overrides (``lr=0.01``), whichever comes later on the command line. Unknown keys and
values of the wrong type are a :class:`~sdk.errors.ConfigError` naming the key, so a typo in a recipe cannot silently
fall back to a default.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import yaml

from sdk.errors import ConfigError

__all__ = ["RECIPES", "config_from_mapping", "load_recipe", "parse_config"]

RECIPES = Path(__file__).parent / "configs"
C = TypeVar("C")


def _field_types(cls: type) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(key: str, value: Any, kind: type) -> Any:
    """``value`` as ``kind`` (bool/int/float/str, or a mapping with string keys); ints are accepted for floats, and so are strings in float syntax
    (YAML 1.1 reads ``1e-5`` without a dot as a string); nothing else is converted silently."""
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if kind is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    if typing.get_origin(kind) is dict and isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return dict(value)
    raise ConfigError(f"config key {key!r} expects {kind.__name__}, got {value!r} ({type(value).__name__})")


def _merge(cls: type, current: dict[str, Any], values: Mapping[str, Any], where: str) -> dict[str, Any]:
    types = _field_types(cls)
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(types))}")
    return {**current, **{k: _coerce(k, v, types[k]) for k, v in values.items()}}


def config_from_mapping(cls: type[C], values: Mapping[str, Any], base: C | None = None, where: str = "config") -> C:
    """A ``cls`` instance from ``base`` (default: the defaults) with ``values`` applied and type-checked."""
    current = dataclasses.asdict(base) if base is not None else {}
    return cls(**_merge(cls, current, values, where))


def load_recipe(path: str | Path) -> dict[str, Any]:
    """A YAML mapping; a bare name such as ``tam_mobilenet_v2_small`` is looked up in ``training/configs/``."""
    p = Path(path)
    if not p.exists() and not p.suffix and (RECIPES / f"{p}.yaml").is_file():
        p = RECIPES / f"{p}.yaml"
    if not p.is_file():
        available = ", ".join(sorted(q.stem for q in RECIPES.glob("*.yaml")))
        raise ConfigError(f"recipe {path} not found (built-in recipes: {available})")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"recipe {p} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {p} must be a mapping of config keys, got {type(data).__name__}")
    return data


def _yaml_value(raw: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise argparse.ArgumentTypeError(f"not valid YAML: {raw!r}") from e


class _Override(argparse.Action):
    """Collects ``--flag value`` and ``key=value`` in command-line order, so the later one wins."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = getattr(namespace, "overrides", None) or []
        if option_string is None:  # positional key=value list
            for item in values:
                key, sep, raw = item.partition("=")
                if not sep:
                    parser.error(f"expected key=value, got {item!r}")
                items.append((key.strip().replace("-", "_"), yaml.safe_load(raw) if raw else ""))
        else:
            items.append((self.dest, values))
        namespace.overrides = items


def parse_config(cls: type[C], argv: Sequence[str] | None, *, prog: str, description: str,
                 defaults: Mapping[str, Any] | None = None, extra: Sequence[tuple[str, dict]] = ()) -> tuple[C, argparse.Namespace]:
    """Parse ``--config``, one ``--flag`` per field (booleans as ``--x/--no-x``) and ``key=value`` overrides.

    ``defaults`` replaces some dataclass defaults for this command (e.g. distillation's); ``extra`` adds non-config
    arguments as ``(flag, argparse kwargs)``. Returns the config and the namespace (for the extra arguments).
    """
    types = _field_types(cls)
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", help="YAML recipe: a path, or a name in training/configs/")
    for flag, kwargs in extra:
        parser.add_argument(flag, **kwargs)
    for name, kind in types.items():
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, dest=name, nargs=0, action=_BoolOverride)
            parser.add_argument("--no-" + name.replace("_", "-"), dest=name, nargs=0, action=_BoolOverride)
        elif typing.get_origin(kind) is dict:  # a YAML/JSON mapping: --model-args '{temporal_from: 7}'
            parser.add_argument(flag, dest=name, type=_yaml_value, action=_Override, metavar="MAPPING")
        else:
            parser.add_argument(flag, dest=name, type=kind, action=_Override, metavar=kind.__name__.upper())
    parser.add_argument("overrides", nargs="*", action=_Override, metavar="key=value")
    args = parser.parse_args(argv)
    values = _merge(cls, {}, dict(defaults or {}), f"{prog} defaults")
    if args.config:
        values = _merge(cls, values, load_recipe(args.config), str(args.config))
    values = _merge(cls, values, dict(getattr(args, "overrides", None) or []), "command line")
    return cls(**values), args  # validated once, on the final values


class _BoolOverride(_Override):
    def __call__(self, parser, namespace, values, option_string=None):
        positive = option_string == "--" + self.dest.replace("_", "-")  # --no-teacher is the flag of no_teacher
        super().__call__(parser, namespace, positive, option_string)
