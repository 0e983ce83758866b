"""The profiler: counted peak memory, MACs against known figures, the CLI with --compare."""
from __future__ import annotations

import re

import torch

from training.profile import PeakMemory, main, measure


def test_peak_memory_counts_live_storages():
    x = torch.randn(256, 256)  # created outside: not counted
    mb = 256 * 256 * 4
    with PeakMemory() as mem:
        y = x @ x
        z = y + 1
        del y  # freed: the next allocation reuses the budget
        w = z * 2
    assert mem.peak == 2 * mb and mem.current == 2 * mb
    del z, w


def test_mobilenet_v2_macs_match_the_published_figure():
    """MobileNetV2 1.0 at 224x224: 300M multiply-adds per frame (Sandler et al., Table 3), so 8 frames ~2.4 GMACs."""
    profile, _, _ = measure("tsn_mobilenet_v2", frames=8, size=224, num_classes=1000)
    assert abs(profile.gmacs / 8 - 0.300) / 0.300 < 0.03
    assert 3.4 < profile.params_m < 3.6  # 3.5M parameters with a 1000-class head
    assert profile.train_peak_mb > profile.params_m * 4  # parameters + gradients + activations


def test_cli_compare_prints_ratios(capsys):
    assert main(["--compare", "tsn_mobilenet_v2", "tsn_mobilenet_v2", "--frames", "2", "--size", "64",
                 "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert "ratios to tsn_mobilenet_v2" in out and "gmacs 1.00x" in out


def test_cli_per_model_frames(capsys):
    assert main(["--compare", "tsn_mobilenet_v2:2", "tsn_mobilenet_v2:4", "--size", "64", "--no-latency"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"gmacs (1\.9\d|2\.0\d)x", out) and "latency_ms" not in out  # ~2x: the head is per clip
