"""One backend table (``sdk.backends.table.BACKENDS``): nothing else spells out the backend names, and every part that
reads them -- manifest, JSON Schema, runtime order and availability, runner modules, exporter formats, the CLI --
agrees with it.

The scan reads each product module's source (``ast``, nothing is imported) for a tuple, list, set or dict literal
holding three or more of the backend names: such a literal is a second copy of the table, which drifts.
"""
from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

import sdk.runtime
from converters.options import FORMATS
from sdk.__main__ import main as sdk_main
from sdk.backends import Runner, load_runner
from sdk.backends.table import BACKENDS, auto_rank
from sdk.errors import BundleError, ConfigError
from sdk.manifest import PRECISIONS, SCHEMA_FILE, Program, TensorSpec
from sdk.runtime import PRECISION_ORDER, first_choice, is_available

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "sdk" / "backends" / "table.py"
PRODUCT = ("sdk", "training", "converters", "edgevideo", "benchmarks", "apps")


def literal_strings(node: ast.AST) -> set[str] | None:
    """The string constants of a tuple / list / set literal or of a dict literal's keys and values, else None."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        items = node.elts
    elif isinstance(node, ast.Dict):
        items = [*(k for k in node.keys if k is not None), *node.values]
    else:
        return None
    return {i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)}


def name_lists(source: str, where: str) -> list[str]:
    """``where:line`` of every literal in ``source`` that names three or more backends."""
    return [f"{where}:{node.lineno}" for node in ast.walk(ast.parse(source, where))
            if len((literal_strings(node) or set()) & set(BACKENDS)) >= 3]


def test_the_scan_finds_a_list_of_backend_names() -> None:
    source = 'ORDER = ("coreml", "executorch", "tflite")\nRUNTIMES = {"onnx": 1, "tflite": 2, "coreml": 3}\nONE = "onnx"'
    assert name_lists(source, "x.py") == ["x.py:1", "x.py:2"]


def test_no_product_module_spells_out_the_backend_names() -> None:
    found = [hit for package in PRODUCT for path in sorted((REPO / package).rglob("*.py")) if path != TABLE
             for hit in name_lists(path.read_text(), str(path.relative_to(REPO)))]
    assert not found, f"read the backend names from sdk.backends.table.BACKENDS instead of listing them: {found}"


def _program(backend: str) -> dict:
    return Program(id=f"clip_{backend}_fp32", backend=backend, precision="fp32", mode="clip", file="programs/p",
                   sha256="0" * 64, size_bytes=1, inputs=(TensorSpec("clip", (2, 3, 8, 8)),),
                   outputs=(TensorSpec("logits", (1, 3)),)).to_dict()


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_manifest_accepts_each_row(backend: str) -> None:
    assert Program.parse(_program(backend), "programs[0]").backend == backend


def test_the_manifest_refuses_other_names_listing_the_table() -> None:
    with pytest.raises(BundleError, match=f"'tensorrt' is not one of {', '.join(BACKENDS)}$"):
        Program.parse(_program("tensorrt"), "programs[0]")


def test_the_json_schema_lists_the_table() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    assert sorted(schema["$defs"]["program"]["properties"]["backend"]["enum"]) == sorted(BACKENDS)


def test_auto_tries_the_rows_in_table_order(monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = SimpleNamespace(programs=[SimpleNamespace(backend=b, precision="fp32") for b in reversed(BACKENDS)])
    names = list(BACKENDS)
    for i, name in enumerate(names):
        monkeypatch.setattr(sdk.runtime, "is_available", lambda b, usable=names[i:]: b in usable)
        assert first_choice(manifest) == (name, "fp32")
        assert auto_rank(name) == i


@pytest.mark.parametrize("system", ["Linux", "Darwin", "Windows"])
def test_availability_follows_each_rows_package_and_platforms(monkeypatch: pytest.MonkeyPatch, system: str) -> None:
    monkeypatch.setattr(sdk.runtime.platform, "system", lambda: system)
    probed = []
    monkeypatch.setattr(sdk.runtime.importlib.util, "find_spec", lambda name: probed.append(name) or object())
    assert [b for b in BACKENDS if is_available(b)] == [b.name for b in BACKENDS.values() if b.runs_on(system)]
    assert set(probed) == {b.package for b in BACKENDS.values() if b.runs_on(system)}
    assert ("coreml" in sdk.runtime.available_backends()) == (system == "Darwin")


@pytest.mark.parametrize("refuse", [is_available, lambda name: load_runner(name, "x")])
def test_unknown_names_are_refused_listing_the_table(refuse) -> None:
    with pytest.raises(ConfigError, match=f"unknown backend 'tensorrt'; valid: {', '.join(BACKENDS)}$"):
        refuse("tensorrt")


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_rows_runner_module_runs_that_backend(backend: str) -> None:
    module = importlib.import_module(BACKENDS[backend].runner_module)
    runners = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, Runner) and v is not Runner]
    assert callable(module.load) and [r.backend for r in runners] == [backend]


def test_each_row_exports_and_runs_manifest_precisions() -> None:
    for row in BACKENDS.values():
        assert set(row.precisions) <= set(PRECISIONS) == set(PRECISION_ORDER), row


def test_the_exporter_formats_are_rows_of_the_table() -> None:
    assert sorted(f.backend for f in FORMATS.values()) == sorted(BACKENDS)
    assert all(f.precisions == BACKENDS[f.backend].precisions for f in FORMATS.values())


def test_the_cli_lists_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        sdk_main(["classify", "--help"])
    assert f"auto (default), {', '.join(BACKENDS)}" in " ".join(capsys.readouterr().out.split())
