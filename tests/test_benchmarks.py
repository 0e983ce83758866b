"""The benchmark CLIs run end to end (figures are printed, never asserted: tests do not time things)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmarks.__main__ import main as bench_main


def test_probe_runs_and_caches_features(tiny_benchmark: Path, tmp_path: Path, capsys):
    data = tmp_path / "tiny"
    shutil.copytree(tiny_benchmark, data)  # the probe writes its feature cache into the dataset folder
    args = ["probe", "--data", str(data), "--frames", "4", "--size", "64", "--steps", "5", "--workers", "0"]
    assert bench_main(args) == 0
    out = capsys.readouterr().out
    assert "average" in out and "ordered" in out and "within-pair" in out
    assert sorted(p.name for p in data.glob("probe-features-*.npz")) == [
        "probe-features-train-T4-S64.npz", "probe-features-val-T4-S64.npz"]


def test_unknown_benchmark_prints_usage(capsys):
    assert bench_main(["nope"]) == 2
    assert "usage" in capsys.readouterr().out


@pytest.mark.slow
def test_small_benchmark_needs_frame_order(tmp_path_factory):
    """The benchmark's reason to exist, measured (~6 min on 2 cores): on `small` (seed 0, 480 val clips), a probe on
    order-blind averaged features stays at within-pair chance while the same features in time order beat it.
    Measured 0.496 vs 0.729; the bounds leave ~4 standard errors (sd of a 480-clip proportion ~0.023) of room."""
    from benchmarks.probe import run_probes
    from training.data.synthetic import generate

    data = generate(tmp_path_factory.mktemp("bench") / "small", preset="small", seed=0, progress=False)
    results = run_probes(data)
    assert 0.40 <= results["average"]["within_pair_acc"] <= 0.60
    assert results["ordered"]["within_pair_acc"] >= 0.65
    assert results["average"]["pair_acc"] > 2 / 8  # the frames do tell *which* action: well above pair chance 1/8
