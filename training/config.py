"""Run configuration: a dataclass of typed fields, filled from a YAML recipe and command-line overrides.

Precedence, lowest first: the dataclass defaults, the recipe (``--config NAME``: ``training/configs/TOOL/NAME.yaml``,
each tool's own recipes, or a YAML path), then flags
(``--lr 0.01``) and ``key=value`` overrides (``lr=0.01``), whichever comes later on the command line. Unknown keys and
values of the wrong type are a :class:`~sdk.errors.ConfigError` naming the key, so a typo in a recipe cannot silently
fall back to a default.

Each field says what it means once, in its metadata (:func:`option`): ``--help`` prints that description with the
default and the valid choices, and :func:`check_choices` validates recipes and overrides against the same choices. A
subclass that only changes a default (``epochs: int = 1``) keeps its base class's description. Tools without recipes
(``python -m converters export``) build their parser from the same metadata with :func:`add_options` and read it
back with :func:`options_from_args`.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
import typing
from pathlib import Path
from types import UnionType
from typing import Any, Callable, Mapping, Sequence, TypeVar, Union

import yaml

from sdk.backends import VERBOSE_ENV
from sdk.errors import ConfigError, SdkError

__all__ = ["RECIPES", "RECIPE_TOOLS", "VERBOSE_HELP", "HelpFormatter", "add_options", "check_choices", "cli_main",
           "config_from_mapping",
           "field_choices", "field_help", "load_recipe", "option", "options_from_args", "parse_config", "recipe_names", "set_verbose",
           "tool_parser"]

RECIPES = Path(__file__).parent / "configs"
C = TypeVar("C")
Choices = Union[Sequence[Any], Callable[[], Sequence[Any]]]
LONG_CHOICES = 6  # more choices than this are listed in the help text, not in the flag's metavar


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


def _metadata(cls: type, name: str) -> Mapping[str, Any]:
    """The metadata of field ``name``: the nearest class in the MRO whose field has a description."""
    for klass in cls.__mro__:
        f = getattr(klass, "__dataclass_fields__", {}).get(name)
        if f is not None and "help" in f.metadata:
            return f.metadata
    return {}


def field_help(cls: type, name: str) -> str:
    """The one-line description of ``cls``'s field ``name`` ("" when it has none)."""
    return _metadata(cls, name).get("help", "")


def field_choices(cls: type, name: str) -> tuple[Any, ...] | None:
    """The valid values of ``cls``'s field ``name``, or None when any value of its type is valid."""
    choices = _metadata(cls, name).get("choices")
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
        many = _metadata(type(config), f.name)["many"]
        if not many:
            values = [value]
        else:
            values = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else list(value)
        for v in values:
            if v not in choices:
                raise ConfigError(f"unknown {f.name} {v!r}; valid: {', '.join(map(str, choices))}")


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


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every tool's ``--help``: descriptions and examples as written, and each option's default appended to its
    description (unless it has none, or the description already states it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not text:  # an option without a description stays visibly without one
            return text
        unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "%(default)" in text or "default:" in text or unset or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


VERBOSE_HELP = ("print every log line and warning of the libraries underneath (by default the known-harmless ones "
                "are hidden: training/logs.py)")


def set_verbose(verbose: bool) -> None:
    """Apply ``--verbose``: show the hidden third-party chatter in this process and in the processes it starts."""
    if verbose:
        from training import logs

        os.environ[VERBOSE_ENV] = "1"
        logs.show_everything()


def cli_main(main: Callable[..., int]) -> Callable[..., int]:
    """A tool's ``main``: a user's mistake (an :class:`~sdk.errors.SdkError`: a bad value, a missing file, an unknown
    recipe or model) is one ``error:`` line on stderr and exit status 2, without a traceback; with ``--verbose`` the
    error is raised with its traceback."""

    @functools.wraps(main)
    def run(argv: Sequence[str] | None = None) -> int:
        try:
            return main(argv)
        except SdkError as e:
            if os.environ.get(VERBOSE_ENV):
                raise
            print(f"error: {e}", file=sys.stderr)
            return 2

    return run


def tool_parser(prog: str, description: str, example: str, *, usage: str | None = None,
                notes: str = "") -> argparse.ArgumentParser:
    """The argument parser of a ``python -m ...`` tool: :class:`HelpFormatter`, ``--verbose`` (apply it with
    :func:`set_verbose`), and an epilog with an example command and ``notes``."""
    epilog = "\n\n".join(part for part in (f"example:\n  {example}" if example else "", notes) if part)
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog, formatter_class=HelpFormatter,
                                     usage=usage)
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    return parser


def _shown(value: Any) -> str:
    """A default as one would type it in a recipe."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value in ("", {}, None):
        return "none"
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return str(value)


def _argument(cls: type, name: str, kind: type, default: Any, required: bool = False
              ) -> tuple[str, Sequence[Any] | None, str | None, bool]:
    """``(help, choices, metavar, many)`` of a field's option, from its metadata: the description, the valid choices
    (listed in the help when many, passed to argparse when few) and the default; one spelling for every parser."""
    text = field_help(cls, name)
    choices = field_choices(cls, name)
    many = bool(choices) and _metadata(cls, name)["many"]
    listed = bool(choices) and (many or len(choices) > LONG_CHOICES)
    if listed:
        text += f"; {'comma-separated, of' if many else 'one of'}: {', '.join(map(str, choices))}"
        choices = None
    if text and not required and "default:" not in text:
        text += f" (default: {_shown(default)})"
    metavar = "NAME[,NAME...]" if many else "NAME" if listed else None if choices else \
        getattr(kind, "__name__", "value").upper()
    return text.replace("%", "%%"), choices, metavar, many


def _add_field(parser: argparse.ArgumentParser, cls: type, name: str, kind: type, default: Any) -> None:
    flag = "--" + name.replace("_", "-")
    text, choices, metavar, _ = _argument(cls, name, kind, default)
    if kind is bool:  # one action, two spellings: --x sets true, --no-x false
        parser.add_argument(flag, "--no-" + flag[2:], dest=name, nargs=0, action=_BoolOverride, help=text)
    elif typing.get_origin(kind) is dict:  # a YAML/JSON mapping: --model-args '{temporal_from: 7}'
        parser.add_argument(flag, dest=name, type=_yaml_value, action=_Override, metavar="MAPPING", help=text)
    else:
        parser.add_argument(flag, dest=name, type=kind, action=_Override, choices=choices, help=text, metavar=metavar)


def parse_config(cls: type[C], argv: Sequence[str] | None, *, prog: str, description: str, example: str = "",
                 defaults: Mapping[str, Any] | None = None, extra: Sequence[tuple[str, dict]] = ()) -> tuple[C, argparse.Namespace]:
    """Parse ``--config``, one ``--flag`` per field (booleans as ``--x/--no-x``), ``--verbose`` and ``key=value``
    overrides; ``--help`` shows each field's description, default and choices, and ``example`` as the epilog.

    ``defaults`` replaces some dataclass defaults for this command (e.g. distillation's); ``extra`` adds non-config
    arguments as ``(flag, argparse kwargs)``. Returns the config and the namespace (for the extra arguments).
    """
    types = _field_types(cls)
    dataclass_defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                          for f in dataclasses.fields(cls)}
    shown_defaults = {**dataclass_defaults, **(defaults or {})}
    usage = f"{prog} [--config RECIPE] [--OPTION VALUE ...] [key=value ...]"
    parser = tool_parser(prog, description, example, usage=usage,
                         notes="every option is also a recipe key: --config takes a YAML mapping of them, and "
                               "key=value overrides (lr=0.01) may follow; the later of a flag and an override wins")
    tool = next((t for t, command in RECIPE_TOOLS.items() if command == prog), None)
    parser.add_argument("--config", metavar="RECIPE", help="YAML recipe: a path, or a built-in recipe ("
                        + ", ".join(recipe_names(tool)) + f"; training/configs/{tool or '*'}/)")
    for flag, kwargs in extra:
        parser.add_argument(flag, **kwargs)
    for name, kind in types.items():
        _add_field(parser, cls, name, kind, shown_defaults[name])
    parser.add_argument("overrides", nargs="*", action=_Override, metavar="key=value",
                        help="recipe keys as key=value (e.g. epochs=5), applied in command-line order with the flags")
    args = parser.parse_args(argv)
    set_verbose(args.verbose)
    values = _merge(cls, {}, dict(defaults or {}), f"{prog} defaults")
    if args.config:
        values = _merge(cls, values, load_recipe(args.config, tool), str(args.config))
    values = _merge(cls, values, dict(getattr(args, "overrides", None) or []), "command line")
    return cls(**values), args  # validated once, on the final values


def _optional_inner(kind: Any) -> Any:
    """``X`` of ``X | None``; any other type as it is."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return args[0] if typing.get_origin(kind) in (Union, UnionType) and len(args) == 1 else kind


def _comma_list(raw: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in raw.split(",") if v.strip())


def add_options(parser: argparse.ArgumentParser, cls: type, prefix: str = "") -> None:
    """One option per field of the dataclass ``cls``, all from its metadata (:func:`option`): the flag (``--field-name``
    or its ``flag``), its description followed by the default, its choices (``many``: a comma-separated list, read as a
    tuple) and its type (``X | None`` reads an ``X``). A field without a default is required, a boolean one is a
    switch (``--x``, plus ``--no-x`` when it defaults to true), and a field whose type is a dataclass adds that
    dataclass's options. :func:`options_from_args` builds ``cls`` back from the parsed arguments."""
    hints = _field_types(cls)
    for f in dataclasses.fields(cls):
        kind = _optional_inner(hints[f.name])
        dest = prefix + f.name
        if dataclasses.is_dataclass(kind):
            add_options(parser, kind, f"{dest}.")
            continue
        flag = _metadata(cls, f.name).get("flag", "--" + f.name.replace("_", "-"))
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if required else f.default if f.default is not dataclasses.MISSING else f.default_factory()
        text, choices, metavar, many = _argument(cls, f.name, kind, default, required)
        if kind is bool:
            parser.add_argument(flag, dest=dest, help=text, default=default,
                                action=argparse.BooleanOptionalAction if default else "store_true")
        else:
            parser.add_argument(flag, dest=dest, help=text, default=default, type=_comma_list if many else kind,
                                required=required, choices=choices, metavar=metavar)


def options_from_args(cls: type[C], args: argparse.Namespace, prefix: str = "") -> C:
    """The ``cls`` instance of the arguments parsed by a parser built with :func:`add_options` (its own checks run)."""
    hints = _field_types(cls)
    values = {}
    for f in dataclasses.fields(cls):
        kind = _optional_inner(hints[f.name])
        values[f.name] = (options_from_args(kind, args, f"{prefix}{f.name}.") if dataclasses.is_dataclass(kind)
                          else getattr(args, prefix + f.name))
    return cls(**values)


class _BoolOverride(_Override):
    def __call__(self, parser, namespace, values, option_string=None):
        positive = option_string == "--" + self.dest.replace("_", "-")  # --no-teacher is the flag of no_teacher
        super().__call__(parser, namespace, positive, option_string)
