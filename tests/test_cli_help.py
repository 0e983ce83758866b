"""Every ``python -m ...`` tool's ``--help`` runs and describes every option; the config-driven tools take their
descriptions, defaults and choices from the config dataclasses' field metadata (one source of truth, also used to
validate recipes and key=value overrides)."""
from __future__ import annotations

import dataclasses
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sdk.errors import ConfigError
from sdk.samplers import SEE_VERY_LITTLE_KINDS

REPO = Path(__file__).resolve().parents[1]

# (module whose main() is the tool, argv before --help, the config dataclass behind it or None)
TOOLS = [
    ("training.train", [], "training.train:TrainConfig"),
    ("training.distill", [], "training.distill:DistillConfig"),
    ("training.qat", [], "training.qat:QATConfig"),
    ("training.faster", [], "training.faster:FasterConfig"),
    ("training.evaluate", [], None),
    ("edgevideo.pipeline", [], None),
    ("training.profile", [], None),
    ("training.data.synthetic", [], None),
    ("training.data.long_video", [], None),
    ("training.data.check", [], None),
    ("training.data.importers", [], None),
    ("training.data.importers", ["ssv2"], None),
    ("training.data.importers", ["kinetics"], None),
    ("converters.__main__", [], None),
    ("converters.__main__", ["export"], None),
    ("converters.__main__", ["inspect"], None),
    ("benchmarks.__main__", [], None),
    ("benchmarks.__main__", ["decode"], None),
    ("benchmarks.__main__", ["generate"], None),
    ("benchmarks.__main__", ["probe"], None),
]
ENTRY = re.compile(r"^  (-\S.*?)(?: {2,}(.*))?$")


def _help(module: str, argv: list[str], capsys) -> str:
    main = importlib.import_module(module).main
    try:
        code = main([*argv, "--help"])
    except SystemExit as stop:
        code = stop.code
    assert code in (0, None)
    return capsys.readouterr().out


def _options(text: str) -> dict[str, str]:
    """``{option invocation: description}`` of the help's "options:" section (descriptions may wrap)."""
    entries: dict[str, str] = {}
    section, last = "", None
    for line in text.splitlines():
        if line and not line.startswith(" "):
            section, last = line, None
            continue
        if not section.startswith("options:"):
            continue
        match = ENTRY.match(line)
        if match:
            last = match.group(1).strip()
            entries[last] = (match.group(2) or "").strip()
        elif line.startswith("    ") and last is not None:
            entries[last] = f"{entries[last]} {line.strip()}".strip()
    return entries


def _config_class(spec: str | None):
    if spec is None:
        return None
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("module, argv, config", TOOLS, ids=[" ".join([m, *a]) for m, a, _ in TOOLS])
def test_help_describes_every_option(module: str, argv: list[str], config: str | None, capsys):
    text = _help(module, argv, capsys)
    options = _options(text)
    assert "-h, --help" in options, text  # the section was found and read
    undescribed = [flag for flag, description in options.items() if not description]
    assert not undescribed, f"options without a description: {undescribed}"
    if argv != ["inspect"]:  # sdk's inspect command, shared with python -m sdk, has no epilog
        assert "example" in text, "the epilog shows an example command"
    cls = _config_class(config)
    if cls is None:
        return
    assert "--verbose" in options
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        entry = next((d for k, d in options.items() if re.match(rf"{re.escape(flag)}\b(?!-)", k)), None)
        assert entry is not None, f"{flag} is missing from the help"
        assert "(default: " in entry, f"{flag} does not show its default: {entry!r}"


def test_distill_help_lists_the_sampler_choices_and_train_the_registry(capsys):
    from training.models import list_models

    distill = _options(_help("training.distill", [], capsys))
    assert f"--sampler {{{','.join(SEE_VERY_LITTLE_KINDS)}}}" in distill
    assert distill[f"--sampler {{{','.join(SEE_VERY_LITTLE_KINDS)}}}"].endswith("(default: uniform_k)")
    train = _options(_help("training.train", [], capsys))
    assert all(name in train["--arch NAME"] for name in list_models()), train["--arch NAME"]
    qat = _options(_help("training.qat", [], capsys))
    # a subclass that only changes a default keeps the base class's description, with its own default
    assert qat["--epochs INT"] == "training epochs (default: 1)"
    assert train["--epochs INT"] == "training epochs (default: 3)"


@pytest.mark.parametrize("module, argv", [("sdk.__main__", [c]) for c in ("classify", "stream", "bench", "inspect")]
                         + [("sdk.native.__main__", ["build"])], ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_sdk_commands_describe_every_argument(module: str, argv: list[str], capsys):
    """``python -m sdk ...`` and ``python -m sdk.native build``: every positional and every option has a description."""
    entries: dict[str, str] = {}
    section, last = "", None
    for line in _help(module, argv, capsys).splitlines():
        if line and not line.startswith(" "):
            section, last = line, None
        elif section.startswith(("options:", "positional arguments:")):
            match = re.match(r"^  (\S.*?)(?: {2,}(.*))?$", line)
            if match:
                last = match.group(1).strip()
                entries[last] = (match.group(2) or "").strip()
            elif line.startswith("    ") and last is not None:
                entries[last] = f"{entries[last]} {line.strip()}".strip()
    assert "-h, --help" in entries, entries
    assert not [name for name, text in entries.items() if not text], f"undescribed: {entries}"


def test_export_options_are_built_from_the_export_options_dataclass(capsys):
    """``python -m converters export``: one definition per option (ExportOptions' field metadata) gives the flag, the
    help with its choices and default, and the parsed value."""
    from converters.__main__ import build_parser
    from converters.options import FORMATS, ExportOptions
    from converters.parity import Tolerance
    from sdk.manifest import PRECISIONS
    from training.cli import options_from_args

    export = _options(_help("converters.__main__", ["export"], capsys))
    assert export[f"--precision {{{','.join(PRECISIONS)}}}"].endswith("(default: fp32)")
    to = next(text for flag, text in export.items() if flag.startswith("--to "))
    assert f"of: {', '.join(FORMATS)}" in to and to.endswith(f"(default: {','.join(FORMATS)})"), to
    assert export["--int8-min-agreement FLOAT"].endswith("(default: 0.9)")

    def parsed(*argv: str) -> ExportOptions:
        return options_from_args(ExportOptions, build_parser().parse_args(["export", "--checkpoint", "c.pt",
                                                                           "--out", "o.vbundle", *argv]))

    assert parsed() == ExportOptions(Path("c.pt"), Path("o.vbundle"))
    assert parsed("--to", "onnx,pte", "--atol-fp32", "0.01", "--int8-min-agreement", "0.5", "--calibration-split",
                  "x.csv", "--zip") == ExportOptions(Path("c.pt"), Path("o.vbundle"), formats=("onnx", "pte"),
                                                     tolerance=Tolerance(fp32=0.01, int8_min_top1=0.5),
                                                     calibration_split="x.csv", zip=True)
    with pytest.raises(ConfigError, match="unknown formats 'tf'; valid: pte, coreml, tflite, onnx"):
        parsed("--to", "onnx,tf")


def test_every_config_field_has_a_description():
    from training.config import field_help

    for spec in {config for _, _, config in TOOLS if config}:
        cls = _config_class(spec)
        missing = [f.name for f in dataclasses.fields(cls) if not field_help(cls, f.name)]
        assert not missing, f"{cls.__name__} fields without help metadata: {missing}"


def test_choices_validate_recipes_and_overrides():
    """The help's choices are what the config accepts, from a recipe or key=value as much as from a flag."""
    from training.cli import parse_config
    from training.config import field_choices
    from training.distill import DistillConfig
    from training.faster import FasterConfig
    from training.train import TrainConfig

    assert field_choices(DistillConfig, "sampler") == SEE_VERY_LITTLE_KINDS
    with pytest.raises(ConfigError, match="unknown sampler 'uniform_segments'; valid: uniform_k, random_k"):
        parse_config(DistillConfig, ["--no-teacher", "sampler=uniform_segments"], prog="t", description="")
    with pytest.raises(ConfigError, match="unknown arch 'mobilenet'; valid: .*tam_mobilenet_v2"):
        TrainConfig(arch="mobilenet")
    with pytest.raises(ConfigError, match="unknown optimizer 'adam'"):
        parse_config(TrainConfig, ["optimizer=adam"], prog="t", description="")
    with pytest.raises(ConfigError, match="unknown aggregators 'transformer'"):
        FasterConfig(data="d", aggregators="average, transformer")
    assert DistillConfig(no_teacher=True, sampler="first_middle_last_k").sampler == "first_middle_last_k"
    with pytest.raises(SystemExit):  # a flag is checked by argparse against the same choices
        parse_config(DistillConfig, ["--no-teacher", "--sampler", "dense"], prog="t", description="")


def test_training_pipeline_is_the_main_job(capsys):
    """``python -m training.pipeline`` (README, docs) still runs the main job, which lives in edgevideo.pipeline."""
    alias = subprocess.run([sys.executable, "-m", "training.pipeline", "--help"], cwd=REPO, capture_output=True,
                           text=True, timeout=300)
    assert alias.returncode == 0, alias.stderr[-2000:]
    assert alias.stdout == _help("edgevideo.pipeline", [], capsys)
