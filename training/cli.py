"""The command line of every ``python -m`` tool: one ``--help`` style, ``--verbose``, and a user's mistake as one
``error:`` line instead of a traceback.

A tool with recipes (train, distill, qat, faster) gets its whole parser from its config dataclass
(:func:`parse_config`): one ``--flag`` per field, with the description, default and choices of the field's
:func:`~training.config.option` metadata. Precedence, lowest first: the dataclass defaults, the recipe (``--config
NAME``), then flags (``--lr 0.01``) and ``key=value`` overrides (``lr=0.01``), whichever comes later on the command
line. Tools without recipes (``python -m converters export``) build their parser from the same metadata with
:func:`add_options` and read it back with :func:`options_from_args`; the others start from :func:`tool_parser`. The
configuration itself (fields, types, recipes) is :mod:`training.config`, which imports nothing of this module.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
import typing
from types import UnionType
from typing import Any, Callable, Mapping, Sequence, TypeVar, Union

import yaml

from sdk.backends import VERBOSE_ENV
from sdk.errors import SdkError
from training.config import (RECIPE_TOOLS, field_choices, field_help, field_metadata, field_types, load_recipe,
                             merge_values, recipe_names)

__all__ = ["VERBOSE_HELP", "HelpFormatter", "add_options", "cli_main", "options_from_args", "parse_config",
           "set_verbose", "tool_parser"]

C = TypeVar("C")
LONG_CHOICES = 6  # more choices than this are listed in the help text, not in the flag's metavar


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
    many = bool(choices) and field_metadata(cls, name)["many"]
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
    types = field_types(cls)
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
    values = merge_values(cls, {}, dict(defaults or {}), f"{prog} defaults")
    if args.config:
        values = merge_values(cls, values, load_recipe(args.config, tool), str(args.config))
    values = merge_values(cls, values, dict(getattr(args, "overrides", None) or []), "command line")
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
    hints = field_types(cls)
    for f in dataclasses.fields(cls):
        kind = _optional_inner(hints[f.name])
        dest = prefix + f.name
        if dataclasses.is_dataclass(kind):
            add_options(parser, kind, f"{dest}.")
            continue
        flag = field_metadata(cls, f.name).get("flag", "--" + f.name.replace("_", "-"))
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
    hints = field_types(cls)
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
