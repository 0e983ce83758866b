"""docs/own-data.md runs as written: its commands, in order, on a folder-per-class dataset converted from the
generator's output (no labels.txt; pairs named in meta.json), with CI-sized settings appended to each training
command. The promises checked on the way: the dataset check passes, the one-command main job trains and streams,
the bundle remembers the clip it was trained on, and (slow tier: the same chain as the one command, tool by tool,
~2.5 min) the step-by-step tools chain."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "own-data.md"
ONE_COMMAND = ("## 2.", "## 3.", "## 5.")  # section 1's importers need annotation files
STEP_BY_STEP = ("## 4.",)
# appended to each tool's command: the doc's recipes at CI size
TINY = {
    "training.train": ["size=64", "resize=72", "epochs=1", "batch_size=8", "workers=0", "cache_precision=fp32"],
    "training.distill": ["size=64", "resize=72", "epochs=1", "batch_size=8", "workers=0", "cache_precision=fp32"],
    "training.qat": ["epochs=1", "batch_size=8", "workers=0"],
    "training.evaluate": ["--workers", "0"],
    "edgevideo.pipeline": ["--preset", "tiny", "--workers", "0", "--stream-videos", "4"],
}


def walkthrough_commands(doc: str, sections: tuple[str, ...]) -> list[str]:
    """The ``python -m`` lines of the ```bash blocks of the walk-through ``sections``, in order."""
    commands, section, in_block = [], None, False
    for line in doc.splitlines():
        if line.startswith("## "):
            section = line
        elif line.startswith("```"):
            in_block = not in_block and line.strip() == "```bash"
        elif in_block and section and section.startswith(sections) and line.startswith("python -m "):
            commands.append(line.strip())
    return commands


def folder_per_class(benchmark: Path, root: Path) -> Path:
    """The benchmark as ROOT/{train,val}/<label>/*.mp4 (hard links), pairs named in meta.json, no labels.txt."""
    from training.data.datasets import DatasetInfo

    info = DatasetInfo.from_dir(benchmark)
    for split in ("train", "val"):
        for rec in info.records(f"{split}.csv"):
            target = root / split / info.labels[rec.label] / rec.path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(rec.path, target)
    pairs = [[info.labels[a], info.labels[b]] for a, b in info.pairs]
    (root / "meta.json").write_text(json.dumps({"pairs": pairs}))
    return root


def run_as_written(commands: list[str], data: Path, tmp_path: Path) -> list[str]:
    """Each command in ``tmp_path`` with the doc's paths pointed at ``data`` / ``tmp_path/runs`` and the CI-sized
    settings appended; their outputs. A failing command fails the test with its output's tail."""
    video = sorted((data / "val").glob("*/*.mp4"))[0]
    outputs = []
    for command in commands:
        command = re.sub(r"my_videos/val/\S+\.mp4", f"my_videos/{video.relative_to(data)}", command)
        argv = [a.replace("my_videos", str(data)).replace("runs/", f"{tmp_path}/runs/") for a in shlex.split(command)]
        argv += TINY.get(argv[2], [])
        run = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=1500, stdin=subprocess.DEVNULL)
        assert run.returncode == 0, f"{command}\n{run.stdout[-3000:]}"
        outputs.append(run.stdout)
    return outputs


def assert_remembers_the_clip(bundle: Path) -> None:
    """The bundle remembers the clip its model was trained on: the tiny videos' 16 frames at 15 fps."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["clip"]["frames"] == 16 and manifest["clip"]["fps"] == pytest.approx(15)


@pytest.mark.timeout(2400)
def test_the_own_data_walkthrough_runs_as_written(tiny_benchmark: Path, tmp_path: Path):
    data = folder_per_class(tiny_benchmark, tmp_path / "my_videos")
    out = tmp_path / "runs" / "mine"
    commands = walkthrough_commands(DOC.read_text(), ONE_COMMAND)
    tools = [shlex.split(c)[2] for c in commands]
    assert tools == ["training.data.check", "edgevideo.pipeline", "sdk", "sdk", "sdk"], tools
    outputs = run_as_written(commands, data, tmp_path)
    check, pipeline = outputs[0], outputs[1]
    assert "train" in check and "val" in check
    summary = json.loads((out / "summary.json").read_text())
    # your own data: the frame-budget row, and no label-scarce rows unless asked for
    assert [r["role"] for r in summary["models"]] == ["teacher", "baseline_tsn", "student", "student_no_teacher",
                                                      "student_k4"]
    assert "label_scarce" not in summary and not (out / "splits").exists()
    assert summary["pairs"] and "within-pair" in pipeline  # pairs named in meta.json reach the metric
    assert summary["streaming"]["windows"] >= 4 and not summary["streaming"]["videos_without_window"]
    assert_remembers_the_clip(out / "student.vbundle")
    stream = outputs[-1]
    assert re.search(r"window: 16 frames", stream), stream[:2000]


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_the_step_by_step_section_runs_as_written(tiny_benchmark: Path, tmp_path: Path):
    data = folder_per_class(tiny_benchmark, tmp_path / "my_videos")
    commands = walkthrough_commands(DOC.read_text(), STEP_BY_STEP)
    tools = [shlex.split(c)[2] for c in commands]
    assert tools == ["training.train", "training.distill", "training.qat", "training.evaluate", "converters"], tools
    run_as_written(commands, data, tmp_path)
    assert_remembers_the_clip(tmp_path / "runs" / "steps" / "mine.vbundle")
