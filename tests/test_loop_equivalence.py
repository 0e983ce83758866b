"""The training loop computes what it claims (tests/loop_worker.py: a tiny model without batch statistics or
dropout, so that the runs compared must agree to float rounding):

* DDP really synchronises: 2 gloo processes with 4 clips each reach the weights of 1 process with batches of 8 (the
  loader gives the ranks the two halves of the single process's batch), while a process that trains on its half
  alone does not;
* a DDP run stopped mid-epoch resumes to the uninterrupted DDP run's weights, running only the steps that were left;
* gradient accumulation of 2 x 4 clips equals batches of 8.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from loop_worker import CLIPS, run

WORKER = Path(__file__).with_name("loop_worker.py")
ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 2


def _torchrun(out: Path, batch: int, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(WORKER), str(out), str(batch), *extra], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "last.pt", map_location="cpu", weights_only=True)["model"]


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def _calls(stdout: str) -> int:
    return int(stdout.rsplit("[loop_worker] loss calls: ", 1)[1].split()[0])


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("one") / "run"
    run(out, 8)
    return _weights(out)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("two") / "run"
    result = _torchrun(out, 4)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert _calls(result.stdout) == EPOCHS * CLIPS // 8  # each rank: 4 batches of 4 per epoch
    return out


def test_two_processes_reach_the_weights_of_one_with_the_global_batch(one_process, two_processes, tmp_path):
    assert _max_diff(_weights(two_processes), one_process) <= 1e-5
    # the control, so that the comparison can tell: steps of 4 clips in one process (what a rank computes when its
    # gradients are not averaged with the other's) end elsewhere
    run(tmp_path / "half", 4, epochs=1)
    assert _max_diff(_weights(tmp_path / "half"), one_process) > 1e-2


def test_a_stopped_ddp_run_resumes_to_the_uninterrupted_weights(two_processes, tmp_path):
    out, steps, stop = tmp_path / "run", EPOCHS * CLIPS // 8, 5  # stopped after the first step of epoch 2
    stopped = _torchrun(out, 4, "--stop-after", str(stop))
    assert stopped.returncode != 0
    trainer = torch.load(out / "last.pt", map_location="cpu", weights_only=True)["trainer"]
    assert (trainer["epoch"], trainer["batches_done"], trainer["world_size"]) == (1, 1, 2)
    resumed = _torchrun(out, 4, "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert _calls(resumed.stdout) == steps - stop, "the resumed run ran only the steps that were left"
    assert _max_diff(_weights(out), _weights(two_processes)) <= 1e-6


def test_gradient_accumulation_equals_the_bigger_batch(one_process, tmp_path):
    run(tmp_path / "acc", 4, accumulate=2)
    assert _max_diff(_weights(tmp_path / "acc"), one_process) <= 1e-6
