"""A user's mistake on any command line of the product (training tools, data tools, the main job, the exporter, the
sdk) is one ``error:`` line naming the problem and the fix, exit status 2, no traceback, before anything expensive
(nothing is written); ``--verbose`` shows the traceback."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_converters import make_checkpoint
from training.checkpoint import atomic_save, load_checkpoint

REPO = Path(__file__).resolve().parents[1]

# (tool, arguments, what the one error line must say). Placeholders: DATA the tiny benchmark, OUT an empty folder,
# CKPT a 2-frame checkpoint of DATA's labels, OTHER a checkpoint of other labels, VIDEO one of DATA's videos.
MISTAKES = [
    ("training.train", ["--arch", "resnet_9000"], "unknown arch 'resnet_9000'"),
    ("training.train", ["--frames", "0"], "frames must be >= 1"),
    ("training.train", ["lrr=0.1"], "unknown key(s) lrr"),
    ("training.train", ["--lr", "-1"], "lr -1.0: must be >= 0"),
    ("training.train", ["--config", "student_cpu"], "is a recipe of python -m training.distill"),
    ("training.train", ["--config", "teacher_cpux"], "recipe teacher_cpux not found"),
    ("training.train", ["--data", "DATA", "--train-split", "nope.csv"], "split 'nope.csv' not found"),
    ("training.train", ["--data", "DATA/../no_such_dataset"], "does not exist"),
    ("training.train", ["--data", "DATA", "--freeze", "99"], "freeze must be in [1, 18]"),
    ("training.distill", ["--data", "DATA", "--teacher", "missing/best.pt"], "missing/best.pt does not exist"),
    ("training.distill", ["--data", "DATA", "--teacher", "OTHER"], "was trained on other labels"),
    ("training.distill", ["--data", "DATA", "--teacher", "CKPT", "--size", "64"],
     "set the student's size/resize/conversion to the teacher's"),
    ("training.distill", ["--data", "DATA", "--teacher", "CKPT", "--size", "32", "--resize", "36", "--conversion",
                          "camera"], "set the student's size/resize/conversion to the teacher's"),
    ("training.distill", ["--data", "DATA", "--teacher", "CKPT", "--frames", "8", "--size", "32", "--resize", "36"],
     "give the student at most 2 frames, or a teacher that sees more"),
    ("training.qat", ["--data", "DATA"], "give the fp32 model"),
    ("training.qat", ["--data", "DATA", "--checkpoint", "missing.pt"], "checkpoint missing.pt does not exist"),
    ("training.evaluate", ["--data", "DATA", "--checkpoint", "missing.pt"], "checkpoint missing.pt does not exist"),
    ("training.evaluate", ["--data", "DATA", "--checkpoint", "OTHER"], "labels differ from the"),
    ("training.evaluate", ["--data", "DATA", "--checkpoint", "CKPT", "--split", "nope.csv"],
     "split 'nope.csv' not found"),
    ("training.faster", ["--data", "DATA/../no_long_videos"], "generate one with python -m training.data.long_video"),
    ("training.data.check", ["DATA/../no_such_dataset"], "does not exist"),
    ("training.data.importers", ["ssv2", "--annotations", "OUT/none", "--videos", "OUT/none", "--out", "OUT/ds"],
     "--annotations must hold the files"),
    ("edgevideo.pipeline", ["--data", "DATA/../no_such_dataset"], "does not exist"),
    ("edgevideo.pipeline", ["--data", "DATA", "--unlabelled", "DATA/../no_such_footage"],
     "no_such_footage not found: pass a folder of videos"),
    ("converters", ["export", "--checkpoint", "missing.pt", "--out", "OUT/x.vbundle"], "missing.pt does not exist"),
    ("converters", ["export", "--checkpoint", "CKPT", "--out", "OUT/x.vbundle", "--to", "pte,jpeg"],
     "unknown formats 'jpeg'; valid: pte, coreml, tflite, onnx"),
    ("sdk", ["classify", "missing.mp4", "--bundle", "OUT/none.vbundle"], "video missing.mp4 does not exist"),
    ("sdk", ["classify", "VIDEO", "--bundle", "OUT/none.vbundle"], "none.vbundle does not exist"),
]
WRITES_OUT = {"training.train", "training.distill", "training.qat", "training.faster", "edgevideo.pipeline"}


@pytest.fixture(scope="module")
def places(tiny_benchmark: Path, tmp_path_factory) -> dict[str, Path]:
    where = tmp_path_factory.mktemp("mistakes")
    ckpt = make_checkpoint(where / "tam2.pt", tiny_benchmark, "tam_mobilenet_v2", 2)
    other = load_checkpoint(ckpt)
    other["labels"] = [f"other_{label}" for label in other["labels"]]
    atomic_save(other, where / "other.pt")
    video = sorted(tiny_benchmark.rglob("*.mp4"))[0]
    return {"DATA": tiny_benchmark, "CKPT": ckpt, "OTHER": where / "other.pt", "VIDEO": video}


def _run(tool: str, args: list[str], places: dict[str, Path], out: Path) -> subprocess.CompletedProcess:
    argv = list(args)
    for name, path in {**places, "OUT": out}.items():
        argv = [a.replace(name, str(path)) if a.startswith(name) else a for a in argv]
    if tool in WRITES_OUT:
        argv += ["--out", str(out / "run")]
    out.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", tool, *argv], cwd=REPO, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("tool, args, message", MISTAKES, ids=[" ".join([t, *a]) for t, a, _ in MISTAKES])
def test_a_mistake_is_one_error_line(tool: str, args: list[str], message: str, places, tmp_path: Path):
    run = _run(tool, args, places, tmp_path / "out")
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], run.stderr[-2000:]
    assert "Traceback" not in run.stderr + run.stdout
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()], "a mistake must write nothing"


@pytest.mark.parametrize("tool, args", [("training.train", ["--frames", "0", "--verbose"]),
                                        ("sdk", ["classify", "missing.mp4", "--bundle", "x.vbundle", "--verbose"])])
def test_verbose_shows_the_traceback(tool: str, args: list[str], places, tmp_path: Path):
    run = _run(tool, args, places, tmp_path / "out")
    assert run.returncode != 0 and "Traceback" in run.stderr, run.stderr[-2000:]
