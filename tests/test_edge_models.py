"""Edge models: TAM / TSM MobileNetV2, causal streaming form, big-little MobileNetV2 with TAM."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from training.models import bl_mobilenet, tam_mobilenet  # noqa: F401  (register the edge models)
from training.models.registry import create, list_models
from training.models.temporal import TAM, CausalTAM

N, T, K, S = 2, 5, 6, 32
CLIP_MODELS = ["tam_mobilenet_v2", "tam_mobilenet_v2_causal", "tam_mobilenet_v2_causal_expanded", "tsm_mobilenet_v2",
               "tsm_mobilenet_v2_online"]
CAUSAL_MODELS = ["tam_mobilenet_v2_causal", "tam_mobilenet_v2_causal_expanded", "tsm_mobilenet_v2_online",
                 "tam_head_mobilenet_v2_causal"]
STATES = {"tam_mobilenet_v2_causal": 7, "tam_head_mobilenet_v2_causal": 3}  # temporal blocks; the others: 10


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tiny convs are faster on one thread, and much faster on a loaded 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def clip(frames: int = T, seed: int = 0, size: int = S) -> torch.Tensor:
    return torch.randn(N, frames, 3, size, size, generator=torch.Generator().manual_seed(seed))


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial temporal taps and head, BN statistics calibrated on random clips (so activations neither die nor
    saturate and the outputs depend on the input): the equalities below are then not vacuous. Returns eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (TAM, CausalTAM)):
                for p in m.parameters():
                    p.copy_(0.5 + 0.5 * torch.randn(p.shape, generator=g))
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the calibration pass
                if m.weight.abs().sum() > 0:  # keep zero-initialised merge scales at zero
                    m.weight.copy_(0.5 + 0.5 * torch.rand(m.weight.shape, generator=g))
        model.fc.weight.copy_(torch.randn(model.fc.weight.shape, generator=g) / model.num_features ** 0.5)
        frames = getattr(model, "input_frames", model.frames)
        model.train()
        model(torch.randn(2, frames, 3, S, S, generator=g))
    return model.eval()


def build(name: str, frames: int = T, **kw) -> nn.Module:
    return create(name, num_classes=K, frames=frames, pretrained=False, **kw)


def test_registered():
    assert set(CLIP_MODELS + ["bl_mobilenet_v2_tam", "bl_mobilenet_v2_tam_causal"]) <= set(list_models())


@pytest.mark.parametrize("name", CLIP_MODELS)
def test_shapes_and_per_frame_logits(name: str):
    model = randomize(build(name))
    x = clip()
    with torch.no_grad():
        logits, feats, frames = model(x), model.forward_features(x), model.forward_frames(x)
    assert logits.shape == (N, K) and feats.shape == (N, T, model.num_features) and frames.shape == (N, T, K)
    assert model.frames == T
    torch.testing.assert_close(frames.mean(1), logits, rtol=0, atol=1e-5)
    assert model.forward_head(feats, pre_logits=True).shape == (N, model.num_features)
    with pytest.raises(ValueError, match="frames"):
        model(clip(frames=T + 1))


@pytest.mark.parametrize("name,taps", [("tam_mobilenet_v2", 3), ("tam_mobilenet_v2_causal", 2),
                                       ("tam_mobilenet_v2_causal_expanded", 3)])
def test_tam_is_identity_at_init_so_equals_tsn(name: str, taps: int):
    """Exact at init on signed inputs too: the causal model's linear TAM sits on the (signed) block input."""
    torch.manual_seed(0)
    tsn = build("tsn_mobilenet_v2").eval()
    tam = build(name).eval()
    missing, unexpected = tam.load_state_dict(tsn.state_dict(), strict=False)
    assert not unexpected and missing and all(".temporal." in k for k in missing)
    assert len(missing) == STATES.get(name, 10) * taps  # one TAM per temporal block
    x = clip()
    with torch.no_grad():
        torch.testing.assert_close(tam(x), tsn(x), rtol=0, atol=1e-6)
        torch.testing.assert_close(tam.forward_features(x), tsn.forward_features(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name,kw",
                         [(n, {}) for n in CAUSAL_MODELS] + [("tam_mobilenet_v2_causal", {"kernel": 3})],
                         ids=CAUSAL_MODELS + ["tam_mobilenet_v2_causal_kernel3"])
def test_streaming_equals_offline(name: str, kw: dict):
    model = randomize(build(name, **kw))
    x = clip(seed=1)
    with torch.no_grad():
        offline_frames, offline_feats, offline = model.forward_frames(x), model.forward_features(x), model(x)
        spec = model.state_specs(S, S, batch=N)
        state = model.initial_state(S, S, batch=N)
        assert len(state) == len(spec) == STATES.get(name, 10)
        for s, (sname, shape) in zip(state, spec):
            assert s.ndim == 4 and tuple(s.shape) == shape and sname.startswith("state_")
            assert torch.count_nonzero(s) == 0
        assert len({sname for sname, _ in spec}) == len(spec)
        logits, feats = [], []
        for t in range(T):
            out_logits, out_feats, *new_state = model.step(x[:, t], *state)
            assert len(new_state) == len(state)
            assert all(a.shape == b.shape and b.ndim <= 4 for a, b in zip(state, new_state))
            state = tuple(new_state)
            logits.append(out_logits)
            feats.append(out_feats)
        logits, feats = torch.stack(logits, 1), torch.stack(feats, 1)
    assert offline.abs().max() > 1e-2  # not a vacuous comparison
    torch.testing.assert_close(feats, offline_feats, rtol=0, atol=1e-5)
    torch.testing.assert_close(logits, offline_frames, rtol=0, atol=1e-5)
    torch.testing.assert_close(logits.mean(1), offline, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", CAUSAL_MODELS)
def test_causal_output_ignores_future_frames(name: str):
    model = randomize(build(name))
    x = clip(seed=2)
    y = x.clone()
    y[:, 3:] = torch.randn_like(y[:, 3:])
    with torch.no_grad():
        a, b = model.forward_frames(x), model.forward_frames(y)
    torch.testing.assert_close(a[:, :3], b[:, :3], rtol=0, atol=1e-6)
    assert (a[:, 3:] - b[:, 3:]).abs().max() > 1e-4


@pytest.mark.parametrize("name", ["tam_mobilenet_v2", "tsm_mobilenet_v2"])
def test_offline_models_cannot_stream(name: str):
    model = build(name)
    assert not model.causal
    with pytest.raises(RuntimeError, match="stream"):
        model.initial_state(S, S)


@pytest.mark.parametrize("name", CLIP_MODELS + ["bl_mobilenet_v2_tam"])
def test_temporal_models_are_not_time_reversal_invariant(name: str):
    model = randomize(build(name, frames=4))
    if name == "bl_mobilenet_v2_tam":
        for proj in model.merges:
            nn.init.ones_(proj[1].weight)
    x = clip(frames=model.input_frames if hasattr(model, "input_frames") else 4, seed=3)
    with torch.no_grad():
        a, b = model(x), model(x.flip(1))
    assert (a - b).abs().max() > 1e-4


def test_big_little_shapes_and_design():
    model = randomize(build("bl_mobilenet_v2_tam", frames=4))
    assert all(torch.count_nonzero(proj[1].weight) == 0 for proj in model.merges)
    assert model.frames == 4 and model.input_frames == 8
    x = clip(frames=8, seed=4)
    with torch.no_grad():
        logits, feats, frames = model(x), model.forward_features(x), model.forward_frames(x)
    assert logits.shape == (N, K) and feats.shape == (N, 4, model.num_features) and frames.shape == (N, 4, K)
    torch.testing.assert_close(frames.mean(1), logits, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="2\\*frames"):
        model(clip(frames=4))
    with pytest.raises(ValueError, match="multiple of 32"):
        model(torch.randn(1, 8, 3, 63, 70))

    # merge BN scale starts at zero: the model is TAM-MobileNetV2 on the 2x-downsampled big frames (odd indices)
    tam = build("tam_mobilenet_v2", frames=4).eval()
    tam.load_state_dict({("backbone." + k.removeprefix("big.")) if k.startswith("big.") else k: v
                         for k, v in model.state_dict().items() if k.startswith(("big.", "fc."))}, strict=True)
    big_frames = torch.nn.functional.avg_pool2d(x[:, 1::2].flatten(0, 1), 2).unflatten(0, (N, 4))
    with torch.no_grad():
        torch.testing.assert_close(model(x), tam(big_frames), rtol=0, atol=1e-5)
        # ... and the little frames (even indices) matter once the merges are non-zero
        for proj in model.merges:
            nn.init.ones_(proj[1].weight)
        y = x.clone()
        y[:, 0::2] = torch.randn_like(y[:, 0::2])
        assert (model(x) - model(y)).abs().max() > 1e-4


def test_pretrained_loads_imagenet_backbone():
    from training.models.mobilenet_v2 import imagenet_weights_path

    ref = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
    for name in ["tam_mobilenet_v2_causal", "bl_mobilenet_v2_tam"]:
        model = create(name, num_classes=K, frames=2, pretrained=True)
        backbone = model.big if name.startswith("bl_") else model.backbone
        sd = backbone.state_dict()
        for key in ("features.0.0.weight", "features.2.conv.0.0.weight", "features.18.1.running_var"):
            torch.testing.assert_close(sd[key], ref[key], rtol=0, atol=0)


def test_big_little_causal_streams_frame_pairs():
    model = build("bl_mobilenet_v2_tam_causal", frames=4)
    for proj in model.merges:
        nn.init.ones_(proj[1].weight)
    model = randomize(model)
    assert model.causal and not build("bl_mobilenet_v2_tam", frames=4).causal
    x = clip(frames=8, seed=5)
    y = x.clone()
    y[:, 4:] = torch.randn_like(y[:, 4:])  # change pairs 2 and 3 (input frames 4..7)
    with torch.no_grad():
        offline_frames, offline = model.forward_frames(x), model(x)
        changed = model.forward_frames(y)
        spec = model.state_specs(S, S, batch=N)
        state = model.initial_state(S, S, batch=N)
        assert len(state) == len(spec) == 10
        assert all(s.ndim == 4 and tuple(s.shape) == shape and not s.any() for s, (_, shape) in zip(state, spec))
        logits = []
        for t in range(4):
            out, _, *state = model.step(torch.cat([x[:, 2 * t], x[:, 2 * t + 1]], 1), *state)
            logits.append(out)
        logits = torch.stack(logits, 1)
    assert offline.abs().max() > 1e-2
    torch.testing.assert_close(logits, offline_frames, rtol=0, atol=1e-5)
    torch.testing.assert_close(logits.mean(1), offline, rtol=0, atol=1e-5)
    torch.testing.assert_close(changed[:, :2], offline_frames[:, :2], rtol=0, atol=1e-6)
    assert (changed[:, 2:] - offline_frames[:, 2:]).abs().max() > 1e-4
    # ImageNet init is preserved: with identity-initialised TAMs the pretrained TAM-MobileNetV2 is the pretrained TSN
    tam = create("tam_mobilenet_v2", num_classes=K, frames=2, pretrained=True).eval()
    tsn = create("tsn_mobilenet_v2", num_classes=K, frames=2, pretrained=True).eval()
    x = clip(frames=2, seed=6)
    with torch.no_grad():
        torch.testing.assert_close(tam.forward_features(x), tsn.forward_features(x), rtol=0, atol=1e-5)
