"""Our bLVNet-TAM against the official implementation (github IBM/bLVNet-TAM), through logits it computed.

The official code cannot be part of this repository, but what it computes is a fact: ``tests/data/
blvnet_official_logits.npz`` holds the official model's logits for seed-generated weights (:func:`seeded_state`)
and inputs (:func:`seeded_clips`), for ResNet-50 and ResNet-101 at two frame counts. Our model, given the same
weights under the same key names (the official ``state_dict`` layout, ``baseline_model.*`` / ``new_fc.*``), must
reproduce them to 1e-4 of the logits' scale.

How the file was made (once; the official code was read and run outside the repository, never committed)::

    git clone https://github.com/IBM/bLVNet-TAM /tmp/blvnet_official   # commit feadcd3
    cd /work/main && PYTHONPATH=/tmp/blvnet_official:tests python - <<'EOF'
    import numpy as np, torch
    from core.models import bLVNet_TAM
    from test_blvnet_official import CASES, SIZE, fingerprint, seeded_clips, seeded_state
    out = {}
    for depth, frames in CASES:                     # frames = T; the model reads 2T frames (T little + T big)
        official = bLVNet_TAM(dict(depth=depth, alpha=2, beta=4, groups=2 * frames, blending_frames=3,
                                   input_channels=3, imagenet_blnet_pretrained=False, dropout=0.5, num_classes=10,
                                   pretrained=False, dataset="test", partial_freeze_bn=False,
                                   blending_method="sum")).eval()
        state = seeded_state(official.state_dict(), seed=depth + frames)
        official.load_state_dict(state)
        x = seeded_clips(frames, seed=frames)        # (2, 2T, 3, SIZE, SIZE)
        with torch.no_grad():
            logits = official(x.reshape(2, -1, SIZE, SIZE))   # the official input: frames stacked on channels
        key = f"r{depth}_t{frames}"
        out[key] = logits.numpy()
        out[key + "_fingerprint"] = np.array([fingerprint(state), float(x.double().sum())])
    np.savez("tests/data/blvnet_official_logits.npz", **out)
    EOF

The fingerprints (sums of the generated weights and inputs) tell a change of the generators apart from a change of
the model.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.models.blvnet import load_official_checkpoint
from training.models.registry import create

DATA = Path(__file__).with_name("data") / "blvnet_official_logits.npz"
CASES = [(50, 2), (50, 4), (101, 2), (101, 4)]  # (depth, T)
SIZE, CLASSES = 64, 10


def seeded_state(template: Mapping[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Weights for every entry of ``template`` (a bLVNet-TAM ``state_dict`` in the official layout), drawn in sorted
    key order from one generator: conv / linear weights N(0, 2 / fan_in), batch-norm scales U(0.5, 1) except the
    last of each bottleneck (``bn3``, U(0.1, 0.3): damped residual branches keep a 101-layer random net
    well-conditioned), shifts, biases and running means N(0, 0.1), running variances U(0.5, 1.5); integer counters
    are kept."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key in sorted(template):
        t = template[key]
        if not t.is_floating_point():
            out[key] = t.clone()
        elif key.endswith("running_var"):
            out[key] = torch.rand(t.shape, generator=g) + 0.5
        elif t.ndim >= 2:
            out[key] = torch.randn(t.shape, generator=g) * math.sqrt(2 / t[0].numel())
        elif key.endswith("bn3.weight"):
            out[key] = torch.rand(t.shape, generator=g) * 0.2 + 0.1
        elif key.endswith("weight"):
            out[key] = torch.rand(t.shape, generator=g) * 0.5 + 0.5
        else:
            out[key] = torch.randn(t.shape, generator=g) * 0.1
    return out


def seeded_clips(frames: int, seed: int) -> torch.Tensor:
    """``(2, 2T, 3, SIZE, SIZE)``: 4x4 noise upsampled (large structures, so that pooled features differ between
    clips; pixel noise averages away)."""
    x = torch.randn(2 * 2 * frames, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False).reshape(2, 2 * frames, 3, SIZE,
                                                                                             SIZE)


def fingerprint(state: Mapping[str, torch.Tensor]) -> float:
    return float(sum(v.double().sum() for v in state.values() if v.is_floating_point()))


@pytest.mark.parametrize("depth,frames", CASES)
def test_logits_equal_the_official_implementation(depth: int, frames: int) -> None:
    recorded = np.load(DATA)
    key = f"r{depth}_t{frames}"
    model = create(f"blvnet_tam_r{depth}", num_classes=CLASSES, frames=frames, dropout=0.5).eval()
    state = seeded_state(model.state_dict(), seed=depth + frames)
    x = seeded_clips(frames, seed=frames)
    want_weights, want_input = recorded[key + "_fingerprint"]
    assert fingerprint(state) == pytest.approx(want_weights, rel=1e-9), "the weight generator changed"
    assert float(x.double().sum()) == pytest.approx(want_input, rel=1e-9), "the input generator changed"
    assert load_official_checkpoint(model, state).ok
    with torch.no_grad():
        logits = model(x).numpy()
    official = recorded[key]
    scale = np.abs(official).max()
    assert np.abs(official[0] - official[1]).max() > 0.03 * scale, "the recorded logits ignore the input"
    assert np.abs(logits - official).max() <= 1e-4 * scale, (np.abs(logits - official).max(), scale)
