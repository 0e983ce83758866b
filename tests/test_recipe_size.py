"""Recipes read as short lists of named steps (issue 32): no function of a recipe module is over 60 lines.

A long function hides its steps; a step of its own has a name, a docstring and a length one can review. Lines count
from ``def`` to the last line of the body (docstring included, decorators not), nested functions and methods too.
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPES = ("training/train.py", "training/distill.py", "training/qat.py", "training/faster.py",
           "training/evaluate.py", "edgevideo/pipeline.py")
MAX_LINES = 60


def long_functions(source: str, name: str) -> list[str]:
    """``name:line function (N lines)`` for every function of ``source`` longer than :data:`MAX_LINES`."""
    return [f"{name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(ast.parse(source, filename=name))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_LINES]


def test_no_recipe_function_is_over_60_lines() -> None:
    too_long = [entry for recipe in RECIPES for entry in long_functions((REPO / recipe).read_text(), recipe)]
    assert not too_long, f"functions over {MAX_LINES} lines (split them into named steps):\n" + "\n".join(too_long)


def test_the_count_includes_the_docstring_and_stops_at_60() -> None:
    """The counter itself: a 61-line function (def, docstring, 59 statements) is reported, a 60-line one is not."""
    body = '    """Doc."""\n' + "".join(f"    x{i} = {i}\n" for i in range(58))
    source = f"def fits():\n{body}\n\nclass C:\n    def long(self):\n{body.replace('    ', '        ')}        y = 0\n"
    assert long_functions(source, "probe.py") == ["probe.py:64 long (61 lines)"]
