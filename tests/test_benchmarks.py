"""The benchmark CLIs run end to end (figures are printed, never asserted: tests do not time things)."""
from __future__ import annotations

import shutil
from pathlib import Path

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
