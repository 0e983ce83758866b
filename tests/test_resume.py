"""Resume that cannot be faked, for the three recipes on the shared loop (training.train.fit): plain training,
distillation and quantization-aware training.

A run stopped mid-epoch (the loss raises right after a step checkpoint: what a kill leaves on disk; the SIGKILL
itself is tests/test_train_loop.py) and resumed must (1) start from the checkpoint's weights -- the whole state its
first step sees (weights, BN statistics, a teacher, quantization observers) equals the checkpoint's, which differs
from the initial one, so a restart from scratch cannot pass -- and (2) run only the steps that were left. For plain
training it must also (3) end at the uninterrupted run's weights, and (4) end elsewhere when the checkpoint's weights
are changed (a run that ignored the checkpoint would end at the same weights either way). (3) and (4) add one full
run each; distillation and QAT resume through the same ``fit`` code, so they are checked on plain training only.
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from training.checkpoint import load_checkpoint
from training.data.datasets import read_records
from training.train import fit as real_fit

# One epoch of 4 steps (the tiny benchmark's 64 training clips in batches of 16), stopped after 3: a mid-epoch
# checkpoint. Crossing an epoch boundary after a kill is tests/test_train_loop.py's subject.
EPOCHS, BATCH, STOP = 1, 16, 3
COMMON = dict(pretrained=False, frames=2, size=32, resize=36, batch_size=BATCH, workers=0, optimizer="sgd", lr=0.05,
              epochs=EPOCHS, checkpoint_every=1)


class Stopped(Exception):
    """Raised by the probe in place of a kill, or once ``fit`` has returned (what a recipe does after its training
    loop -- QAT's conversion and export, distillation's teacher evaluation -- is not under test here)."""


@dataclasses.dataclass
class Probe:
    """Wraps ``fit`` of a recipe module: counts loss calls, keeps the weights the first step sees, and raises
    :class:`Stopped` on the loss call after ``stop_after`` (or when ``fit`` returns)."""

    stop_after: int | None = None
    calls: int = 0
    first: dict[str, torch.Tensor] | None = None

    def install(self, monkeypatch, recipe) -> None:
        """Replace ``recipe.fit`` (a later install replaces an earlier one's wrapper, it does not wrap it)."""
        def fit(cfg, job, ctx):
            def loss(m, batch):
                if self.first is None:
                    self.first = {k: v.detach().clone() for k, v in job.module.state_dict().items()}
                if self.stop_after is not None and self.calls >= self.stop_after:
                    raise Stopped
                self.calls += 1
                return job_loss(m, batch)

            job_loss = job.loss
            real_fit(cfg, dataclasses.replace(job, loss=loss), ctx)
            raise Stopped

        monkeypatch.setattr(recipe, "fit", fit)


def _trainer(out: Path) -> dict[str, Any]:
    return load_checkpoint(out / "last.pt")["trainer"]


def _final(out: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(out / "last.pt")["model"]


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a if a[k].is_floating_point())


@pytest.fixture(scope="module")
def recipes(tiny_benchmark: Path, tmp_path_factory):
    """``(kind -> (module with fit, run(out, resume) -> None), the plain run's output)``: the plain run is the train
    recipe's uninterrupted reference, the distillation teacher and the QAT starting point."""
    from training import distill, qat, train

    teacher = tmp_path_factory.mktemp("resume") / "teacher"
    train.train(train.TrainConfig(data=str(tiny_benchmark), out=str(teacher), arch="tsn_mobilenet_v2", **COMMON))
    runs: dict[str, tuple[Any, Callable[[Path, bool], Any]]] = {
        "train": (train, lambda out, resume: train.train(train.TrainConfig(
            data=str(tiny_benchmark), out=str(out), arch="tsn_mobilenet_v2", resume=resume, **COMMON))),
        "distill": (distill, lambda out, resume: distill.distill(distill.DistillConfig(
            data=str(tiny_benchmark), out=str(out), arch="tsn_mobilenet_v2", teacher=str(teacher / "best.pt"),
            sampler="random_k", resume=resume, **{**COMMON, "frames": 1}))),
        "qat": (qat, lambda out, resume: qat.quantize_checkpoint(qat.QATConfig(
            checkpoint=str(teacher / "best.pt"), data=str(tiny_benchmark), out=str(out), epochs=EPOCHS,
            batch_size=BATCH, workers=0, lr=1e-3, checkpoint_every=1, calibration_batches=1, ptq=False,
            resume=resume))),
    }
    return runs, teacher


@pytest.mark.parametrize("kind", ["train", "distill", "qat"])
def test_resume_continues_from_the_checkpoint(kind: str, recipes, tiny_benchmark: Path, tmp_path: Path,
                                              monkeypatch) -> None:
    runs, plain = recipes
    recipe, run = runs[kind]
    total = EPOCHS * (len(read_records(tiny_benchmark / "train.csv")) // BATCH)
    assert total == 4

    stopped = tmp_path / "stopped"
    probe = Probe(stop_after=STOP)
    probe.install(monkeypatch, recipe)
    with pytest.raises(Stopped):
        run(stopped, False)
    initial = probe.first
    saved = _trainer(stopped)
    assert (saved["epoch"], saved["batches_done"], saved["scheduler"]["last_epoch"]) == (0, STOP, STOP)
    assert _max_diff(saved["module"], initial) > 1e-3, "the checkpoint holds trained weights"
    tampered = tmp_path / "tampered"
    shutil.copytree(stopped, tampered)

    probe = Probe()
    probe.install(monkeypatch, recipe)
    with pytest.raises(Stopped):
        run(stopped, True)
    assert _max_diff(probe.first, saved["module"]) == 0, "the first resumed step saw the checkpoint's state"
    assert probe.calls == total - STOP, "only the steps left were run"
    assert _trainer(stopped)["scheduler"]["last_epoch"] == total
    if kind != "train":
        return

    reference = _final(plain)  # the uninterrupted run: the recipes fixture's plain training
    assert _max_diff(_final(stopped), reference) <= 1e-6
    ckpt = load_checkpoint(tampered / "last.pt")
    g = torch.Generator().manual_seed(0)
    for value in ckpt["trainer"]["module"].values():
        if value.is_floating_point() and value.ndim >= 2:  # conv and linear weights (not BN statistics)
            value.add_(torch.randn(value.shape, generator=g) * 1e-2)
    torch.save(ckpt, tampered / "last.pt")
    Probe().install(monkeypatch, recipe)
    with pytest.raises(Stopped):
        run(tampered, True)
    assert _max_diff(_final(tampered), reference) > 1e-3, "a changed checkpoint must change the resumed run"
