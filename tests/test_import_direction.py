"""Dependencies point one way: ``sdk <- training <- converters <- edgevideo`` (the main job), and inside training
``training.models <- training's libraries (training.checkpoint, training.macs, ...) <- training's recipes``.

Every module's imports are read from its source (``ast``, nothing is imported), including the ones inside functions:
a lazy import is still an arrow. Libraries that a lower layer needs live in that layer (``training.checkpoint``,
``training.models``, ``training.macs``), never in a recipe.

* ``training/models/`` only builds modules: it imports nothing of training outside ``training.models`` (a model
  module reading checkpoints -- ``training.models.faster`` importing ``training.checkpoint`` -- points up: the
  checkpoint library builds models, not the other way round).
* ``converters/`` may use training's libraries, not its recipes. A recipe is a command-line job of training
  (:data:`RECIPES`). ``training.profile`` is one -- ``python -m training.profile`` measures models -- so the MACs
  counting the exporter needs is the library ``training.macs``, which the profiling tool imports too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAIN_JOB = "edgevideo"
# training's recipes (command-line jobs): converters may use training's libraries, not these
RECIPES = ("training.train", "training.distill", "training.qat", "training.evaluate", "training.faster",
           "training.pipeline", "training.profile")


def imported_modules(path: Path) -> set[str]:
    """Absolute module names ``path`` imports (``from a.b import c`` yields ``a.b`` and ``a.b.c``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _is(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def violations(package: str, forbidden) -> list[str]:
    """``file: module`` for every import under ``package/`` that ``forbidden(module)`` rejects."""
    found = []
    for path in sorted((REPO / package).rglob("*.py")):
        for name in sorted(imported_modules(path)):
            if forbidden(name):
                found.append(f"{path.relative_to(REPO)}: {name}")
    return found


RULES = {
    "sdk": lambda name: _is(name, "training") or _is(name, "converters") or _is(name, MAIN_JOB),
    "training": lambda name: _is(name, "converters") or _is(name, MAIN_JOB),
    "training/models": lambda name: _is(name, "training") and not _is(name, "training.models"),
    "converters": lambda name: _is(name, MAIN_JOB) or any(_is(name, recipe) for recipe in RECIPES),
}


@pytest.mark.parametrize("package", sorted(RULES))
def test_imports_point_down(package: str):
    assert (REPO / package / "__init__.py").is_file()
    bad = violations(package, RULES[package])
    assert not bad, f"{package}/ imports a layer above it or a recipe:\n" + "\n".join(bad)


def test_the_reader_sees_lazy_and_from_imports(tmp_path: Path):
    src = tmp_path / "m.py"
    src.write_text("import os\n\ndef f():\n    from converters.export import export_bundle\n    import edgevideo.pipeline\n")
    assert imported_modules(src) >= {"os", "converters.export", "converters.export.export_bundle", "edgevideo.pipeline"}
