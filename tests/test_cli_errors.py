"""A user's mistake on a training tool's command line is one ``error:`` line naming the problem, exit status 2, no
traceback, before anything expensive; ``--verbose`` shows the traceback."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# (tool, arguments; DATA is the tiny benchmark, what the error line must say)
MISTAKES = [
    ("training.train", ["--arch", "resnet_9000"], "unknown arch 'resnet_9000'"),
    ("training.train", ["--frames", "0"], "frames must be >= 1"),
    ("training.train", ["lrr=0.1"], "unknown key(s) lrr"),
    ("training.train", ["--lr", "-1"], "lr -1.0: must be >= 0"),
    ("training.train", ["--config", "student_cpu"], "is a recipe of python -m training.distill"),
    ("training.train", ["--config", "teacher_cpux"], "recipe teacher_cpux not found"),
    ("training.train", ["--data", "DATA", "--train-split", "nope.csv"], "split 'nope.csv' not found"),
    ("training.train", ["--data", "DATA/../no_such_dataset"], "does not exist"),
    ("training.distill", ["--data", "DATA", "--teacher", "missing/best.pt"], "missing/best.pt does not exist"),
    ("training.qat", ["--data", "DATA"], "give the fp32 model"),
]


def _run(tool: str, args: list[str], data: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    argv = [a.replace("DATA", str(data)) for a in args]
    return subprocess.run([sys.executable, "-m", tool, *argv, "--out", str(tmp_path / "out")], cwd=REPO,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("tool, args, message", MISTAKES, ids=[" ".join([t, *a]) for t, a, _ in MISTAKES])
def test_a_mistake_is_one_error_line(tool: str, args: list[str], message: str, tiny_benchmark: Path, tmp_path: Path):
    run = _run(tool, args, tiny_benchmark, tmp_path)
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], run.stderr[-2000:]
    assert "Traceback" not in run.stderr + run.stdout
    assert not (tmp_path / "out" / "last.pt").exists()


def test_verbose_shows_the_traceback(tiny_benchmark: Path, tmp_path: Path):
    run = _run("training.train", ["--frames", "0", "--verbose"], tiny_benchmark, tmp_path)
    assert run.returncode != 0 and "Traceback" in run.stderr and "frames must be >= 1" in run.stderr
