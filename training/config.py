"""Run configuration: a dataclass of typed fields, filled from a YAML recipe and overrides, every value checked.

A recipe is a built-in one of its tool (``training/configs/TOOL/NAME.yaml``, :func:`load_recipe`) or a YAML path.
Unknown keys and values of the wrong type are a :class:`~sdk.errors.ConfigError` naming the key, so a typo in a recipe
cannot silently fall back to a default.

Each field says what it means once, in its metadata (:func:`option`): its description and valid choices, against
which :func:`check_choices` validates recipes and overrides, and from which :mod:`training.cli` builds ``--help``. A
subclass that only changes a default (``epochs: int = 1``) keeps its base class's description. Nothing here parses a
command line, so a job that fills configs itself (the main job, the benchmarks) reads them without argparse.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar, Union

import yaml

from sdk.errors import ConfigError

__all__ = ["RECIPES", "RECIPE_TOOLS", "check_choices", "config_from_mapping", "field_choices", "field_help",
           "field_metadata", "field_types", "load_recipe", "merge_values", "option", "recipe_names"]

RECIPES = Path(__file__).parent / "configs"
C = TypeVar("C")
Choices = Union[Sequence[Any], Callable[[], Sequence[Any]]]


def option(default: Any = dataclasses.MISSING, *, help: str, choices: Choices | None = None, many: bool = False,
           default_factory: Any = dataclasses.MISSING, flag: str | None = None) -> Any:
    """A dataclass field that carries its one-line description and, optionally, its valid ``choices`` (a sequence,
    or a callable such as a registry's ``list_models`` evaluated when needed); ``many``: the value is a
    comma-separated list of choices (a sequence of them in a dataclass built by :func:`options_from_args`);
    ``flag``: its command-line spelling in :func:`add_options` when it is not ``--field-name``."""
    metadata: dict[str, Any] = {"help": help}
    if choices is not None:
        metadata["choices"], metadata["many"] = choices, many
    if flag is not None:
        metadata["flag"] = flag
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def field_metadata(cls: type, name: str) -> Mapping[str, Any]:
    """The metadata of field ``name``: the nearest class in the MRO whose field has a description."""
    for klass in cls.__mro__:
        f = getattr(klass, "__dataclass_fields__", {}).get(name)
        if f is not None and "help" in f.metadata:
            return f.metadata
    return {}


def field_help(cls: type, name: str) -> str:
    """The one-line description of ``cls``'s field ``name`` ("" when it has none)."""
    return field_metadata(cls, name).get("help", "")


def field_choices(cls: type, name: str) -> tuple[Any, ...] | None:
    """The valid values of ``cls``'s field ``name``, or None when any value of its type is valid."""
    choices = field_metadata(cls, name).get("choices")
    if choices is None:
        return None
    return tuple(choices() if callable(choices) else choices)


def check_choices(config: Any) -> None:
    """Raise :class:`ConfigError` for a field whose value is not one of its choices (an empty string means unset)."""
    for f in dataclasses.fields(config):
        choices = field_choices(type(config), f.name)
        value = getattr(config, f.name)
        if choices is None or value == "":
            continue
        many = field_metadata(type(config), f.name)["many"]
        if not many:
            values = [value]
        else:
            values = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else list(value)
        for v in values:
            if v not in choices:
                raise ConfigError(f"unknown {f.name} {v!r}; valid: {', '.join(map(str, choices))}")


def field_types(cls: type) -> dict[str, type]:
    """Each field of the dataclass ``cls`` and its type (annotations resolved)."""
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


def merge_values(cls: type, current: dict[str, Any], values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``current`` (field values of ``cls``) with ``values`` applied, each key known and each value coerced to its
    field's type; ``where`` (a recipe, the command line) names the source in the error. No instance is built, so the
    class's own checks run once, on the final values."""
    types = field_types(cls)
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(types))}")
    return {**current, **{k: _coerce(k, v, types[k]) for k, v in values.items()}}


def config_from_mapping(cls: type[C], values: Mapping[str, Any], base: C | None = None, where: str = "config") -> C:
    """A ``cls`` instance from ``base`` (default: the defaults) with ``values`` applied and type-checked."""
    current = dataclasses.asdict(base) if base is not None else {}
    return cls(**merge_values(cls, current, values, where))


RECIPE_TOOLS = {"train": "python -m training.train", "distill": "python -m training.distill",
                "qat": "python -m training.qat", "faster": "python -m training.faster"}


def recipe_names(tool: str | None = None) -> list[str]:
    """The built-in recipes of ``tool`` (a folder of ``training/configs/``: train, distill, qat, faster), or of all."""
    folders = [RECIPES / tool] if tool else [RECIPES / t for t in RECIPE_TOOLS]
    return sorted(q.stem for folder in folders for q in folder.glob("*.yaml"))


def _recipe_file(name: str, tool: str | None) -> Path:
    """The file of a built-in recipe: ``training/configs/TOOL/NAME.yaml``; a recipe of another tool is an error that
    names the tool it belongs to."""
    owners = [t for t in RECIPE_TOOLS if (RECIPES / t / f"{name}.yaml").is_file()]
    if owners and (tool is None or tool in owners):
        return RECIPES / (tool or owners[0]) / f"{name}.yaml"
    if owners:
        raise ConfigError(f"recipe {name} is a recipe of {RECIPE_TOOLS[owners[0]]}, not of {RECIPE_TOOLS[tool]} "
                          f"(this tool's recipes: {', '.join(recipe_names(tool)) or 'none'})")
    available = ", ".join(recipe_names(tool))
    raise ConfigError(f"recipe {name} not found: give a YAML file or one of the built-in recipes ({available})")


def load_recipe(path: str | Path, tool: str | None = None) -> dict[str, Any]:
    """A YAML mapping from a file, or a bare name such as ``teacher_cpu``: a built-in recipe of ``tool`` in
    ``training/configs/TOOL/`` (any tool's when ``tool`` is None)."""
    p = Path(path)
    if not p.exists() and not p.suffix and p.parent == Path("."):
        p = _recipe_file(p.name, tool)
    if not p.is_file():
        raise ConfigError(f"recipe {path} not found: give a YAML file or one of the built-in recipes "
                          f"({', '.join(recipe_names(tool))})")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"recipe {p} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {p} must be a mapping of config keys, got {type(data).__name__}")
    return data
