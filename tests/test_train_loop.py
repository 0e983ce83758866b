"""The training loop's guarantees: recipes + overrides, exact resume after a kill, torchrun DDP, distillation."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sdk.errors import ConfigError
from sdk.preprocess import Preprocess
from sdk.samplers import Sampler
from training.cli import parse_config
from training.config import RECIPE_TOOLS, load_recipe, recipe_names
from training.data.datasets import ClipDataset, read_records
from training.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
# A run small enough for CI: random init, 2 frames of 32 px, 8 steps per epoch on the tiny benchmark.
TINY_RUN = ["--arch", "tsn_mobilenet_v2", "--no-pretrained", "--frames", "2", "--size", "32", "--resize", "36",
            "--batch-size", "8", "--workers", "0", "--optimizer", "sgd", "--lr", "0.05"]


def _run(module: str, args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def _finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_recipe_and_overrides(tmp_path: Path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("arch: tam_mobilenet_v2\nlr: 0.1\nepochs: 4\nhflip: false\n")
    cfg, _ = parse_config(TrainConfig, ["--config", str(recipe), "--lr", "0.02", "epochs=7"], prog="t", description="")
    assert (cfg.arch, cfg.lr, cfg.epochs, cfg.hflip) == ("tam_mobilenet_v2", 0.02, 7, False)
    cfg, _ = parse_config(TrainConfig, ["--config", str(recipe), "lr=0.5", "--lr", "0.03"], prog="t", description="")
    assert cfg.lr == 0.03, "the later of --flag and key=value wins"
    recipe.write_text("lr: 0.1\nlearning_rate: 3\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        parse_config(TrainConfig, ["--config", str(recipe)], prog="t", description="")
    with pytest.raises(ConfigError, match="epochs"):
        parse_config(TrainConfig, ["epochs=three"], prog="t", description="")
    # YAML 1.1 reads 1e-5 (no dot) as a string: a float key still takes it, and the flag form agrees
    assert parse_config(TrainConfig, ["lr=1e-5"], prog="t", description="")[0].lr == 1e-5
    assert parse_config(TrainConfig, ["--lr", "1e-5"], prog="t", description="")[0].lr == 1e-5
    with pytest.raises(ConfigError, match="lr"):
        parse_config(TrainConfig, ["lr=fast"], prog="t", description="")
    with pytest.raises(ConfigError, match="eval_crops"):
        parse_config(TrainConfig, ["eval_crops=2"], prog="t", description="")
    from training.distill import DistillConfig

    assert parse_config(DistillConfig, ["--no-teacher"], prog="t", description="")[0].no_teacher is True
    assert parse_config(TrainConfig, ["--no-hflip"], prog="t", description="")[0].hflip is False


def test_builtin_recipes_parse_with_their_tool():
    """Every recipe of training/configs/TOOL/ is a valid config of that tool (unknown keys and bad values fail), and
    is listed in that tool's --config help; a recipe given to the wrong tool says which tool it belongs to."""
    from training.distill import DistillConfig
    from training.faster import FasterConfig
    from training.qat import QATConfig

    classes = {"train": TrainConfig, "distill": DistillConfig, "qat": QATConfig, "faster": FasterConfig}
    required = {"distill": ["--no-teacher"], "qat": ["checkpoint=x.pt"], "faster": ["data=data/long_small"]}
    assert set(classes) == set(RECIPE_TOOLS)
    for tool, cls in classes.items():
        names = recipe_names(tool)
        assert names, f"training/configs/{tool}/ has recipes"
        for name in names:
            parse_config(cls, ["--config", name, *required.get(tool, [])], prog=RECIPE_TOOLS[tool], description="")
    assert {"teacher_cpu", "teacher_gpu", "baseline_cpu", "baseline_gpu"} <= set(recipe_names("train"))
    assert {"student_cpu", "student_gpu"} <= set(recipe_names("distill"))
    assert {"qat_cpu", "qat_gpu"} <= set(recipe_names("qat"))
    with pytest.raises(ConfigError, match="recipe student_cpu is a recipe of python -m training.distill"):
        parse_config(TrainConfig, ["--config", "student_cpu"], prog=RECIPE_TOOLS["train"], description="")
    with pytest.raises(ConfigError, match="not found.*teacher_cpu"):
        parse_config(TrainConfig, ["--config", "teacher_cpux"], prog=RECIPE_TOOLS["train"], description="")


def test_main_job_runs_the_named_recipes():
    """The main job's stages are the named recipes (one source of truth): `small` is exactly the CPU recipes with
    paths and seed added, `full` the GPU ones, `tiny` the CPU ones with main_job.yaml's overrides."""
    from edgevideo.pipeline import resolve_stages

    for preset, scale in (("small", "cpu"), ("full", "gpu"), ("tiny", "cpu")):
        stages = resolve_stages(preset, None, Path("/data"), Path("/out"), 3, {"workers": None})
        assert stages.recipes == {"teacher": f"teacher_{scale}", "baseline_tsn": f"baseline_{scale}",
                                  "student": f"student_{scale}", "qat": f"qat_{scale}"}
        for stage, cfg in (("teacher", stages.teacher), ("baseline_tsn", stages.baseline_tsn),
                           ("student", stages.student), ("student_no_teacher", stages.student_no_teacher),
                           ("qat", stages.qat)):
            recipe = load_recipe(stages.recipes["student" if stage.startswith("student") else stage])
            changed = {k for k, v in recipe.items() if getattr(cfg, k) != v}
            if preset == "tiny":
                assert changed <= {"size", "resize", "batch_size", "epochs", "cache_precision"}, (stage, changed)
            else:
                assert not changed, (preset, stage, changed)
            assert (cfg.data, cfg.seed, cfg.out) == ("/data", 3, f"/out/{stage if stage != 'qat' else 'int8'}")
    small = resolve_stages("small", None, Path("/data"), Path("/out"), 0, {"epochs": 4, "student_epochs": 5})
    assert (small.teacher.epochs, small.baseline_tsn.epochs, small.student.epochs, small.qat.epochs) == (4, 4, 5, 1)
    assert small.student.teacher == "/out/teacher/best.pt" and small.student_no_teacher.no_teacher
    gpu = resolve_stages("small", "gpu", Path("/data"), Path("/out"), 0, {})
    assert (gpu.teacher.freeze, gpu.teacher.size) == (0, 224)
    # --conversion reaches every trained stage and its Preprocess (QAT takes its checkpoint's when it runs)
    camera = resolve_stages("small", None, Path("/data"), Path("/out"), 0, {"conversion": "camera"})
    assert all(cfg.preprocess_spec.conversion == "camera"
               for cfg in (camera.teacher, camera.baseline_tsn, camera.student, camera.student_no_teacher,
                           *camera.extra.values()))
    assert small.teacher.conversion == "swscale"


def test_main_job_comparison_rows_are_the_recipes_with_one_change_each():
    """The frame-budget student is the shipped student's recipe at another k; the label-scarce rows are the teacher and
    student recipes on the labelled CSV (as many optimiser steps as the full run), the distilled one with the other
    videos unlabelled and the quarter-label teacher; none of them when switched off."""
    from edgevideo.pipeline import resolve_stages

    stages = resolve_stages("small", None, Path("/data"), Path("/out"), 0, {})
    assert list(stages.extra) == ["student_k4", "teacher_25pct", "student_unlabelled", "student_25pct_no_teacher"]
    labelled, unlabelled = "/out/splits/labelled_25pct.csv", "/out/splits/unlabelled_25pct.csv"
    expect = {"student_k4": {"frames": 4},  # distilled from the shipped student's teacher
              "teacher_25pct": {"train_split": labelled, "epochs": 40},
              "student_unlabelled": {"train_split": labelled, "unlabelled": unlabelled,
                                     "teacher": "/out/teacher_25pct/best.pt"},
              "student_25pct_no_teacher": {"train_split": labelled, "no_teacher": True, "teacher": "", "epochs": 48}}
    for role, cfg in stages.extra.items():
        recipe = load_recipe(stages.recipe_of(role))
        base = stages.teacher if role.startswith("teacher") else stages.student
        changed = {k: getattr(cfg, k) for k in vars(base) if getattr(cfg, k) != getattr(base, k) and k != "out"}
        assert changed == expect[role], role
        assert cfg.out == f"/out/{role}" and all(getattr(cfg, k) == v for k, v in recipe.items() if k not in changed)
    assert (stages.label_scarce.labelled, stages.label_scarce.unlabelled) == (Path(labelled), Path(unlabelled))
    off = resolve_stages("small", None, Path("/data"), Path("/out"), 0, {"compare_frames": [], "labelled_fraction": 0})
    assert off.extra == {} and off.label_scarce is None
    four = resolve_stages("small", None, Path("/data"), Path("/out"), 0, {"student_frames": 4, "compare_frames": [2, 4],
                                                                          "labelled_fraction": 0.1})
    assert (four.student.frames, four.student_no_teacher.frames) == (4, 4)
    assert [r for r in four.extra if r.startswith("student_k")] == ["student_k2"]  # the shipped k is not repeated
    assert four.extra["student_unlabelled"].frames == 4 and four.extra["teacher_10pct"].epochs == 100
    for bad, message in (({"compare_frames": [16]}, "at most 8"), ({"labelled_fraction": 1.5}, "in \\(0, 1\\)")):
        with pytest.raises(ConfigError, match=message):
            resolve_stages("small", None, Path("/data"), Path("/out"), 0, bad)


def test_distillation_dataset_gives_the_student_a_subset_of_the_teacher_clip(tiny_benchmark: Path):
    teacher, student = Sampler("uniform_segments", 8), Sampler("random_k", 2, of=8)
    ds = ClipDataset(read_records(tiny_benchmark / "train.csv"), sampler=teacher, subset=student,
                     preprocess=Preprocess(size=32, resize=36), train=True, seed=0)
    clip, small, positions, _ = ds[(0, 3)]
    assert clip.shape == (8, 3, 32, 32) and small.shape == (2, 3, 32, 32) and positions.shape == (2,)
    assert torch.equal(small, clip[positions])
    again = ds[(0, 3)]
    assert torch.equal(again[2], positions), "positions derive from (seed, epoch, index)"
    with pytest.raises(ConfigError, match="of=8"):
        ClipDataset(ds.records, sampler=teacher, subset=Sampler("uniform_k", 2, of=16), preprocess=ds.preprocess,
                    train=True)


def test_a_killed_run_resumes_to_the_same_weights(tiny_benchmark: Path, tmp_path: Path):
    """Kill -9 mid-epoch (right after a step checkpoint), resume: the final weights equal an uninterrupted run's."""
    common = ["--data", str(tiny_benchmark), *TINY_RUN, "--epochs", "2", "checkpoint_every=1"]
    reference = _run("training.train", [*common, "--out", str(tmp_path / "ref")])
    killed = tmp_path / "killed"
    proc = _run("training.train", [*common, "--out", str(killed)])
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        last = killed / "last.pt"
        if last.is_file():
            trainer = torch.load(last, map_location="cpu", weights_only=True)["trainer"]
            if trainer["epoch"] == 1 and trainer["batches_done"] > 0:  # mid second epoch
                break
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = torch.load(killed / "last.pt", map_location="cpu", weights_only=True)["trainer"]
    assert state["epoch"] < 2

    out = _finish(_run("training.train", [*common, "--out", str(killed), "--resume"]))
    assert "[resume]" in out
    _finish(reference)
    a, b = _weights(tmp_path / "ref" / "last.pt"), _weights(killed / "last.pt")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6, msg=k)
    rows = [json.loads(r) for r in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2], "no duplicate metric rows after the resume"
    ref_rows = [json.loads(r) for r in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["val_top1"] == ref_rows[-1]["val_top1"]


def test_starting_over_an_existing_run_needs_resume(tiny_benchmark: Path, tmp_path: Path, capsys):
    from training.train import main, parse_args, train

    out = tmp_path / "run"
    out.mkdir()
    torch.save({"model": {}}, out / "last.pt")
    args = ["--data", str(tiny_benchmark), "--out", str(out), *TINY_RUN, "--epochs", "1"]
    with pytest.raises(ConfigError, match="--resume"):
        train(parse_args(args))
    assert main(args) == 2 and "--resume" in capsys.readouterr().err  # the command line: one error line


def test_torchrun_two_processes_on_cpu(tiny_benchmark: Path, tmp_path: Path):
    """DDP with gloo: two ranks split the data; rank 0 writes a checkpoint a single process can evaluate."""
    from training.evaluate import evaluate_checkpoint

    out = tmp_path / "ddp"
    args = ["--nproc_per_node", "2", "--standalone", "-m", "training.train", "--data", str(tiny_benchmark),
            "--out", str(out), *TINY_RUN, "--epochs", "1", "--batch-size", "4"]
    log = _finish(_run("torch.distributed.run", args))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["val_n"] == 32, "validation gathers every clip exactly once"
    trainer = torch.load(out / "last.pt", map_location="cpu", weights_only=True)["trainer"]
    assert trainer["world_size"] == 2 and len(trainer["rng"]) == 2
    assert log.count("epoch=1 ") == 1, "only rank 0 logs"
    result = evaluate_checkpoint(out / "best.pt", tiny_benchmark, workers=0, out=tmp_path / "eval")
    assert result["n"] == 32


@pytest.mark.parametrize("mode", ["serial", "parallel", "no_teacher", "init_from_teacher"])
def test_distillation_modes(tiny_benchmark: Path, tmp_path: Path, mode: str):
    from training.distill import main as distill_main
    from training.train import main as train_main

    teacher = tmp_path / "teacher"
    base = ["--data", str(tiny_benchmark), *TINY_RUN, "--epochs", "1"]
    train_main([*base, "--out", str(teacher), "--frames", "4"])
    args = [*base, "--out", str(tmp_path / mode), "--teacher", str(teacher / "best.pt"), "--sampler", "random_k",
            "--frames", "1", "inter_weight=0.5"]
    args += {"serial": [], "parallel": ["--mode", "parallel"], "no_teacher": ["--no-teacher"],
             "init_from_teacher": ["init_from_teacher=true", "lr=0"]}[mode]
    assert distill_main(args) == 0
    report = json.loads((tmp_path / mode / "distill.json").read_text())
    assert report["mode"] == {"no_teacher": "no_teacher", "parallel": "parallel"}.get(mode, "serial")
    assert report["student"]["frames"] == 1 and report["teacher"]["frames"] == 4
    assert 0.2 < report["macs_ratio"] < 0.3  # 1 of 4 frames through the same backbone
    ckpt = torch.load(tmp_path / mode / "best.pt", map_location="cpu", weights_only=True)
    assert Sampler.from_dict(ckpt["sampler"]) == Sampler("random_k", 1, of=4)
    assert not any(k.startswith("teacher") for k in ckpt["model"]), "best.pt is the student alone"
    if mode == "init_from_teacher":  # lr 0: the student's parameters are still the teacher's
        from training.checkpoint import load_checkpoint_model

        student, _ = load_checkpoint_model(tmp_path / mode / "best.pt", "cpu")
        t0 = _weights(teacher / "best.pt")
        assert all(torch.equal(p, t0[n]) for n, p in student.named_parameters())
    if mode == "serial":
        t0 = _weights(teacher / "best.pt")
        t1 = torch.load(tmp_path / mode / "last.pt", map_location="cpu", weights_only=True)["trainer"]["module"]
        for k, v in t0.items():
            assert torch.equal(t1["teacher." + k], v), f"a serial teacher is frozen ({k})"
