"""FASTER aggregators (training/models/aggregators.py): interface, FAST-GRU equations, order sensitivity, gradients, and
the exported step program (XNNPACK delegation; a 20-step .pte stream against eager)."""
from __future__ import annotations

import numpy as np
import pytest

import torch

import torch.nn.functional as F
from torch import nn

from sdk.errors import ConfigError
from training.models.aggregators import (
    AGGREGATORS,
    Aggregator,
    AggregatorStep,
    FastGRU,
    _register,
    create_aggregator,
    list_aggregators,
)

C, K, HW, BATCH, STEPS = 8, 5, (3, 3), 3, 4
NAMES = ["average", "fast_gru", "fast_gru_pooled", "gru", "lstm"]
RECURRENT = [n for n in NAMES if n != "average"]


def settle_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so that eval-mode BN is not the identity."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.3)
    return model


def build(name: str, seed: int = 0) -> Aggregator:
    torch.manual_seed(seed)
    kwargs = {"feature_size": HW} if name == "fast_gru" else {}
    return settle_bn(create_aggregator(name, in_channels=C, num_classes=K, **kwargs), seed).eval()


def sequence(model: Aggregator, batch: int = BATCH, steps: int = STEPS, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, steps, *model.feature_shape(1)[1:], generator=g)


# ---- interface -------------------------------------------------------------------------------------------------------
def test_registry():
    assert list_aggregators() == sorted(NAMES) == sorted(AGGREGATORS)
    with pytest.raises(ConfigError, match="fast_gru_pooled"):
        create_aggregator("fast-gru", in_channels=C, num_classes=K)
    with pytest.raises(RuntimeError, match="twice"):
        _register(AGGREGATORS["gru"])
    model = create_aggregator("fast_gru_pooled", in_channels=C, num_classes=K, reduction=2)
    assert model.reduced_channels == 4
    model.reset_classifier(K + 2)
    assert model(torch.randn(2, 3, C)).shape == (2, K + 2)


@pytest.mark.parametrize("name", NAMES)
def test_shapes_state_specs_and_forward_equals_stepping(name):
    model = build(name)
    specs = model.state_specs(BATCH)
    expected = {
        "average": [("mean", (BATCH, C)), ("count", (BATCH, 1))],
        "gru": [("hidden", (BATCH, C))],
        "lstm": [("hidden", (BATCH, C)), ("cell", (BATCH, C))],
        "fast_gru": [("hidden", (BATCH, C, *HW))],
        "fast_gru_pooled": [("hidden", (BATCH, C))],
    }[name]
    assert specs == expected
    state = model.initial_state(BATCH)
    assert [tuple(s.shape) for s in state] == [shape for _, shape in specs]
    assert all(s.dim() <= 4 and not s.any() for s in state)

    seq = sequence(model)
    with torch.no_grad():
        stepped = []
        for t in range(STEPS):
            features = seq[:, t]
            logits, *state = model.step(features, *state)
            assert logits.shape == (BATCH, K)
            assert [tuple(s.shape) for s in state] == [shape for _, shape in specs]
            stepped.append(logits)
        per_step = model(seq, all_steps=True)
        video = model(seq)
        pooled = model.forward_features(seq)
    assert per_step.shape == (BATCH, STEPS, K) and video.shape == (BATCH, K)
    torch.testing.assert_close(per_step, torch.stack(stepped, 1), rtol=0, atol=0)
    torch.testing.assert_close(video, stepped[-1], rtol=0, atol=0)
    torch.testing.assert_close(model.forward_head(pooled), video)
    with pytest.raises(ValueError, match="state tensor"):
        model.step(seq[:, 0])
    with pytest.raises(ValueError, match="sequence"):
        model(seq[:, 0])


@pytest.mark.parametrize("name", NAMES)
def test_step_is_pure(name):
    model = build(name)
    features, *_ = model.example_inputs(2)
    state = [s + 0.5 for s in model.initial_state(2)]
    before = [t.clone() for t in (features, *state)]
    with torch.no_grad():
        first = model.step(features, *state)
        second = model.step(features, *state)
    for a, b in zip(before, (features, *state)):
        assert torch.equal(a, b), "step modified an input"
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_spatial_fast_gru_follows_the_feature_map_size():
    model = build("fast_gru")
    seq = torch.randn(2, 3, C, 5, 4)
    assert model(seq).shape == (2, K)
    assert model.state_specs(2, (5, 4)) == [("hidden", (2, C, 5, 4))]


# ---- equations -------------------------------------------------------------------------------------------------------
def _bn(y: torch.Tensor, bn: nn.Module) -> torch.Tensor:
    shape = (1, -1) + (1,) * (y.dim() - 2)
    return ((y - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps)
            * bn.weight.view(shape) + bn.bias.view(shape))


def _proj(x: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    if x.dim() == 4:
        return F.conv2d(x, layer.weight, layer.bias)
    return F.linear(x, layer.weight, layer.bias)


@pytest.mark.parametrize("name", ["fast_gru", "fast_gru_pooled"])
def test_fast_gru_equations(name):
    """One step re-computed from the module's parameters with the documented equations."""
    model = build(name, seed=3)
    assert isinstance(model, FastGRU) and model.reduced_channels == C // 4
    features, h = model.example_inputs(2)
    h = torch.rand_like(h) * 2  # a non-zero previous state (h >= 0 always, ReLU candidate)

    x_red = torch.relu(_bn(_proj(features, model.reduce_x[0]), model.reduce_x[1]))
    h_red = torch.relu(_bn(_proj(h, model.reduce_h[0]), model.reduce_h[1]))
    assert x_red.shape[1] == h_red.shape[1] == model.reduced_channels
    both = torch.cat([x_red, h_red], 1)
    r = torch.sigmoid(_proj(both, model.reset_gate))
    z = torch.sigmoid(_proj(both, model.update_gate))
    assert r.shape == z.shape == h.shape  # gates expanded back to the hidden width
    n = torch.relu(_bn(_proj(x_red, model.candidate_x) + r * _proj(h_red, model.candidate_h), model.candidate_bn))
    h_new = (1 - z) * n + z * h
    pooled = h_new.mean((2, 3)) if h_new.dim() == 4 else h_new
    logits = pooled @ model.fc.weight.T + model.fc.bias

    with torch.no_grad():
        out_logits, out_h = model.step(features, h)
    torch.testing.assert_close(out_h, h_new, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out_logits, logits, rtol=1e-5, atol=1e-6)
    assert (out_h >= 0).all()
    # both gates matter: saturating the update gate keeps the old state, and the reset gate changes the candidate
    with torch.no_grad():
        model.update_gate.bias.fill_(50.0)
        torch.testing.assert_close(model.step(features, h)[1], h, rtol=0, atol=1e-6)
        model.update_gate.bias.fill_(-50.0)
        open_reset = model.step(features, h)[1]
        model.reset_gate.bias.fill_(-50.0)
        assert (model.step(features, h)[1] - open_reset).abs().max() > 1e-3


def test_gru_and_lstm_match_torch_cells():
    """The hand-written cells have exactly the equations of nn.GRUCell / nn.LSTMCell (weights mapped one to one)."""
    x, h, c = torch.randn(2, C), torch.randn(2, C), torch.randn(2, C)
    model = build("gru")
    cell = nn.GRUCell(C, C)
    with torch.no_grad():
        (w_xr, w_hr), (w_xz, w_hz) = (g.weight.split([C, C], 1) for g in (model.reset_gate, model.update_gate))
        cell.weight_ih.copy_(torch.cat([w_xr, w_xz, model.candidate_x.weight]))
        cell.weight_hh.copy_(torch.cat([w_hr, w_hz, model.candidate_h.weight]))
        cell.bias_ih.copy_(torch.cat([model.reset_gate.bias, model.update_gate.bias, model.candidate_x.bias]))
        cell.bias_hh.copy_(torch.cat([torch.zeros(2 * C), model.candidate_h.bias]))
        torch.testing.assert_close(model.step(x, h)[1], cell(x, h))

    model = build("lstm")
    cell = nn.LSTMCell(C, C)
    gates = (model.input_gate, model.forget_gate, model.cell_gate, model.output_gate)  # nn.LSTMCell order i, f, g, o
    with torch.no_grad():
        cell.weight_ih.copy_(torch.cat([g.weight[:, :C] for g in gates]))
        cell.weight_hh.copy_(torch.cat([g.weight[:, C:] for g in gates]))
        cell.bias_ih.copy_(torch.cat([g.bias for g in gates]))
        cell.bias_hh.zero_()
        _, h_new, c_new = model.step(x, h, c)
        ref_h, ref_c = cell(x, (h, c))
    torch.testing.assert_close(h_new, ref_h)
    torch.testing.assert_close(c_new, ref_c)


def test_average_is_the_mean_of_the_clip_features():
    model = build("average")
    seq = sequence(model, steps=7)
    with torch.no_grad():
        torch.testing.assert_close(model(seq), model.fc(seq.mean(1)))
        _, _, count = model.step(seq[:, 0], *model.initial_state(BATCH))
    assert torch.equal(count, torch.ones(BATCH, 1))


# ---- behaviour -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_order_sensitivity(name):
    model = build(name)
    seq = sequence(model, steps=5)
    with torch.no_grad():
        forward, backward = model(seq), model(seq.flip(1))
    if name in RECURRENT:
        assert (forward - backward).abs().max() > 1e-3, "a recurrent aggregator ignored the clip order"
    else:
        torch.testing.assert_close(forward, backward)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name):
    model = build(name).train()
    seq = sequence(model, batch=BATCH, steps=3)
    labels = torch.arange(BATCH) % K
    F.cross_entropy(model(seq), labels).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"{pname} has a zero or non-finite gradient"


# ---- export ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lowered():
    """Each aggregator's step program lowered once to XNNPACK: name -> (model, edge manager, report)."""
    from converters.delegation import lower_to_xnnpack

    out = {}
    for name in NAMES:
        model = build(name, seed=5)
        edge, report = lower_to_xnnpack(AggregatorStep(model), model.example_inputs(1))
        out[name] = (model, edge, report)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_step_program_is_fully_delegated(lowered, name):
    _, _, report = lowered[name]
    assert report.delegate_calls >= 1
    assert not report.unexpected, f"{name}: ops left outside XNNPACK: {report}"


@pytest.mark.parametrize("name", ["fast_gru", "fast_gru_pooled"])
def test_pte_stream_matches_eager(lowered, name, tmp_path):
    from sdk.backends import load_runner

    model, edge, _ = lowered[name]
    path = tmp_path / f"{name}_step.pte"
    with open(path, "wb") as f:
        edge.to_executorch().write_to_file(f)
    runner = load_runner("executorch", path, threads=1)

    g = torch.Generator().manual_seed(7)
    state_ref = model.initial_state(1)
    state_pte = [s.numpy() for s in state_ref]
    worst = 0.0
    for _ in range(20):
        features = torch.randn(model.feature_shape(1), generator=g) * 2
        with torch.no_grad():
            logits_ref, *state_ref = model.step(features, *state_ref)
        logits_pte, *state_pte = runner.run([features.numpy(), *state_pte])
        for ref, got in zip((logits_ref, *state_ref), (logits_pte, *state_pte)):
            assert got.shape == tuple(ref.shape) and got.dtype == np.float32
            worst = max(worst, float(np.abs(got - ref.numpy()).max()))
    assert float(np.abs(state_pte[0]).max()) > 0.1, "the state stayed near zero: the test would prove nothing"
    print(f"{name}: 20-step .pte vs eager max-abs-diff {worst:.2e}")
    assert worst <= 1e-4
