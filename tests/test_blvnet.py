"""bLVNet-TAM (official-checkpoint compatible) and the ResNet-50 baselines TSN / TSM: shapes, keys, loader, MACs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from sdk.errors import ConfigError
from sdk.preprocess import Preprocess
from sdk.samplers import Sampler
from training.checkpoint import CheckpointMeta, model_from_checkpoint
from training.models import blvnet, resnet  # noqa: F401  (registers blvnet_tam_*, tsn_resnet50, tsm_resnet50)
from training.models.blvnet import BLVNetTAM, load_imagenet_blresnet, load_official_checkpoint
from training.models.registry import create, list_models

# Names and shapes read from the official IBM/bLVNet-TAM model (bLVNet_TAM, depth 50, alpha 2, beta 4, groups 16,
# blending_frames 3, dropout 0.5, 400 classes), state_dict() of the wrapper.
OFFICIAL_R50_8x2_SAMPLE = [
    ("baseline_model.conv1.weight", (64, 3, 7, 7)),
    ("baseline_model.l_conv0.weight", (32, 64, 3, 3)),
    ("baseline_model.l_conv2.weight", (64, 32, 1, 1)),
    ("baseline_model.bl_init.weight", (64, 64, 1, 1)),
    ("baseline_model.bn_bl_init.running_var", (64,)),
    ("baseline_model.tam.prev.weight", (64, 1, 1, 1)),
    ("baseline_model.layer1.tam.next.weight", (64, 1, 1, 1)),
    ("baseline_model.layer1.big.0.downsample.1.weight", (256, 64, 1, 1)),
    ("baseline_model.layer1.big.1.conv3.weight", (256, 64, 1, 1)),
    ("baseline_model.layer1.little.0.conv1.weight", (32, 64, 1, 1)),
    ("baseline_model.layer1.little.0.downsample.0.weight", (128, 64, 1, 1)),
    ("baseline_model.layer1.little_e.0.weight", (256, 128, 1, 1)),
    ("baseline_model.layer1.little_e.1.num_batches_tracked", ()),
    ("baseline_model.layer1.fusion.0.conv2.weight", (64, 64, 3, 3)),
    ("baseline_model.layer2.big.2.bn3.weight", (512,)),
    ("baseline_model.layer3.big.4.conv1.weight", (256, 1024, 1, 1)),
    ("baseline_model.layer3.little.0.conv3.weight", (512, 128, 1, 1)),
    ("baseline_model.layer3.fusion.0.bn3.running_mean", (1024,)),
    ("baseline_model.layer4.0.tam.curr.weight", (1024, 1, 1, 1)),
    ("baseline_model.layer4.0.downsample.1.weight", (2048, 1024, 1, 1)),
    ("baseline_model.layer4.2.tam.prev.weight", (2048, 1, 1, 1)),
    ("baseline_model.layer4.2.conv3.weight", (2048, 512, 1, 1)),
    ("new_fc.weight", (400, 2048)),
    ("new_fc.bias", (400,)),
]


def _meta_model(name: str, **kw):
    with torch.device("meta"):
        return create(name, **kw)


def _randomise_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BN affine + statistics (the official init zeroes every block's last BN)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model


def _calibrate_bn(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Random BN affine, then running statistics from one batch (else a random-init deep net's output is ~constant)."""
    _randomise_bn(model)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


def test_registered():
    assert {"blvnet_tam_r50", "blvnet_tam_r101", "tsn_resnet50", "tsm_resnet50"} <= set(list_models())


@pytest.fixture(scope="module")
def small_blvnet():
    torch.manual_seed(0)
    model = create("blvnet_tam_r50", num_classes=5, frames=2, dropout=0.5)
    with torch.no_grad():
        model.new_fc.weight.normal_(0, 0.05)
    return _calibrate_bn(model, torch.randn(4, 4, 3, 64, 64))


def test_blvnet_shapes(small_blvnet):
    x = torch.randn(2, 4, 3, 64, 64)  # frames=T=2 -> clips of 2T=4 frames
    with torch.no_grad():
        feats = small_blvnet.forward_features(x)
        logits = small_blvnet(x)
    assert feats.shape == (2, 2, small_blvnet.num_features) and small_blvnet.num_features == 2048
    assert logits.shape == (2, 5) and small_blvnet.input_frames == 4
    assert small_blvnet.forward_head(feats, pre_logits=True).shape == (2, 2048)
    torch.testing.assert_close(small_blvnet.forward_head(feats), logits)
    with pytest.raises(ConfigError, match="expects clips of 4 frames"):
        small_blvnet(torch.randn(1, 2, 3, 64, 64))


def test_blvnet_r101_odd_sizes():
    model = create("blvnet_tam_r101", num_classes=3, frames=1, blending_frames=5).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 2, 3, 72, 72)).shape == (1, 3)  # 9 -> 5 -> nearest back to 9 in layer3


def test_official_key_names_and_shapes():
    state = _meta_model("blvnet_tam_r50", num_classes=400, frames=8).state_dict()
    for key, shape in OFFICIAL_R50_8x2_SAMPLE:
        assert key in state, key
        assert tuple(state[key].shape) == shape, key
    assert len(state) == 449  # the official wrapper's state_dict has 449 entries (R50, kernel 3)
    assert not any(k.startswith("baseline_model.fc.") for k in state)
    assert len(_meta_model("blvnet_tam_r101", num_classes=400, frames=8).state_dict()) == 791
    five = _meta_model("blvnet_tam_r50", num_classes=400, frames=8, blending_frames=5).state_dict()
    assert "baseline_model.layer2.tam.blending_layers.4.weight" in five


def test_loader_accepts_wrappers_and_prefixes(tmp_path):
    torch.manual_seed(1)
    src = _randomise_bn(BLVNetTAM(4, 1), seed=1).eval()
    bare = src.state_dict()
    prefixed = {"module." + k: v for k, v in bare.items()}
    variants = {"bare": bare, "wrapped": {"state_dict": bare, "epoch": 3}, "module": prefixed,
                "wrapped_module": {"state_dict": prefixed, "best_prec1": 0.5}}
    for name, state in variants.items():
        dst = BLVNetTAM(4, 1).eval()
        torch.save(state, tmp_path / f"{name}.pth.tar")
        report = load_official_checkpoint(dst, tmp_path / f"{name}.pth.tar")
        assert report.ok and len(report.loaded) == 449, name
        for key, value in dst.state_dict().items():
            assert torch.equal(value, bare[key]), (name, key)
    x = torch.randn(1, 2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x), rtol=0, atol=0)


def test_loader_maps_dropout_free_official_head():
    """An official model trained with dropout 0 keeps its classifier as ``baseline_model.fc``."""
    src = BLVNetTAM(4, 1)
    state = {("baseline_model.fc." + k[len("new_fc."):] if k.startswith("new_fc.") else k): v
             for k, v in src.state_dict().items()}
    dst = BLVNetTAM(4, 1)
    load_official_checkpoint(dst, state)
    torch.testing.assert_close(dst.new_fc.weight, src.new_fc.weight)


def test_loader_reports_mismatches_by_key(tmp_path):
    state = dict(BLVNetTAM(4, 1).state_dict())
    del state["baseline_model.layer1.tam.prev.weight"]
    state["baseline_model.extra.weight"] = torch.zeros(1)
    state["new_fc.weight"] = torch.zeros(7, 2048)
    dst = BLVNetTAM(4, 1)
    before = dst.new_fc.weight.clone()
    with pytest.raises(ConfigError) as err:
        load_official_checkpoint(dst, state)
    msg = str(err.value)
    assert "baseline_model.layer1.tam.prev.weight" in msg and "baseline_model.extra.weight" in msg
    assert "new_fc.weight" in msg and "[7, 2048]" in msg
    torch.testing.assert_close(dst.new_fc.weight, before)  # strict: nothing loaded
    report = load_official_checkpoint(dst, state, strict=False)
    assert report.missing == ["baseline_model.layer1.tam.prev.weight"]
    assert report.unexpected == ["baseline_model.extra.weight"]
    assert report.shape_mismatch == {"new_fc.weight": ((7, 2048), (4, 2048))}
    assert len(report.loaded) == 449 - 2
    with pytest.raises(ConfigError, match="not found"):
        load_official_checkpoint(dst, tmp_path / "nope.pth")
    with pytest.raises(ConfigError, match="no bLVNet-TAM weights"):
        create("blvnet_tam_r50", num_classes=4, frames=1, pretrained=True)


IMAGENET_R50_KEYS = Path(__file__).parent / "data" / "blresnet50_a2_b4_imagenet_keys.json"


def _imagenet_blresnet50(seed: int = 0) -> dict[str, torch.Tensor]:
    """A checkpoint laid out like IBM/BigLittleNet's ImageNet-bLResNet-50-a2-b4.pth.tar (key names and shapes read
    from that code into tests/data; random values), wrapped and ``module.``-prefixed as that file is."""
    g = torch.Generator().manual_seed(seed)
    keys = json.loads(IMAGENET_R50_KEYS.read_text())["keys"]
    state = {f"module.{k}": torch.randn(shape, generator=g) if shape else torch.tensor(7) for k, shape in keys.items()}
    return {"state_dict": state, "epoch": 100}


def test_imagenet_blresnet_backbone_init(tmp_path):
    """``imagenet_weights=`` (a model arg, so ``--model-args '{imagenet_weights: PATH}'``) fills every backbone
    parameter from the ImageNet bLResNet; the TAMs and the video classifier keep their own initialisation."""
    ckpt = _imagenet_blresnet50()
    torch.save(ckpt, tmp_path / "imagenet.pth.tar")
    torch.manual_seed(3)
    fresh = BLVNetTAM(5, 2).state_dict()
    torch.manual_seed(3)
    model = create("blvnet_tam_r50", num_classes=5, frames=2, imagenet_weights=tmp_path / "imagenet.pth.tar")
    state = model.state_dict()
    loaded = {"baseline_model." + k[len("module."):]: v for k, v in ckpt["state_dict"].items() if ".fc." not in k}
    assert len(loaded) == 426
    for key, value in state.items():
        expected = loaded.get(key, fresh[key])  # not in the ImageNet file: TAMs and new_fc, as initialised
        assert torch.equal(value, expected), key
    assert sum("tam" in k.split(".") for k in state) == 21 and state["new_fc.weight"].shape == (5, 2048)

    # a checkpoint of the trained model names the file in its config; rebuilding it for its own weights (evaluate,
    # QAT, export, maybe on another machine) must not need that file any more
    (tmp_path / "imagenet.pth.tar").unlink()
    meta = CheckpointMeta(labels=tuple("abcde"), sampler=Sampler("uniform_segments", 4), preprocess=Preprocess(64),
                          config={"arch": "blvnet_tam_r50", "frames": 2,
                                  "model_args": {"imagenet_weights": str(tmp_path / "imagenet.pth.tar")}})
    rebuilt = model_from_checkpoint({"model": state}, meta)
    assert all(torch.equal(v, state[k]) for k, v in rebuilt.state_dict().items())


def test_imagenet_blresnet_refuses_another_network():
    state = _imagenet_blresnet50()["state_dict"]
    model = BLVNetTAM(5, 2)
    before = model.baseline_model.conv1.weight.clone()
    for broken, names in [({k: v for k, v in state.items() if k != "module.layer2.little_e.1.running_var"},
                           "missing 1: baseline_model.layer2.little_e.1.running_var"),
                          ({**state, "module.layer1.big.0.conv2.weight": torch.zeros(64, 64, 1, 1)},
                           "baseline_model.layer1.big.0.conv2.weight checkpoint [64, 64, 1, 1]"),
                          ({**state, "module.layer1.tam.prev.weight": torch.zeros(64, 1, 1, 1)},
                           "unexpected 1: baseline_model.layer1.tam.prev.weight")]:
        with pytest.raises(ConfigError, match="not an ImageNet bLResNet-50") as err:
            load_imagenet_blresnet(model, broken)
        assert names in str(err.value)
    assert torch.equal(model.baseline_model.conv1.weight, before)  # nothing loaded
    with pytest.raises(ConfigError, match="exclude each other"):
        create("blvnet_tam_r50", num_classes=4, frames=1, weights_path="a.pth", imagenet_weights="b.pth")
    with pytest.raises(ConfigError, match="not found"):
        create("blvnet_tam_r50", num_classes=4, frames=1, imagenet_weights="/nonexistent/imagenet.pth.tar")


def _swap_pairs(x: torch.Tensor) -> torch.Tensor:
    """Reverse the order of the (little, big) frame pairs, keeping each pair's roles: (0 1)(2 3) -> (2 3)(0 1)."""
    n, t2 = x.shape[:2]
    return x.reshape(n, t2 // 2, 2, *x.shape[2:]).flip(1).reshape(x.shape)


def test_tam_makes_blvnet_frame_order_sensitive(small_blvnet):
    x = torch.randn(2, 4, 3, 64, 64)
    with torch.no_grad():
        a, b = small_blvnet(x), small_blvnet(_swap_pairs(x))
    assert (a - b).abs().max() > 1e-2 * a.abs().max()
    assert (a[0] - a[1]).abs().max() > 1e-2 * a.abs().max()  # and input-dependent at all
    # With every TAM reduced to the identity (curr = 1, prev = next = 0) the model is a per-pair TSN: order-invariant.
    ident = create("blvnet_tam_r50", num_classes=5, frames=2).eval()
    ident.load_state_dict(small_blvnet.state_dict())
    with torch.no_grad():
        for m in ident.modules():
            if isinstance(m, blvnet.TAM):
                m.prev.weight.zero_(), m.next.weight.zero_(), m.curr.weight.fill_(1.0)
        a, b = ident(x), ident(_swap_pairs(x))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_tsn_and_tsm_resnet50():
    torch.manual_seed(0)
    x = torch.randn(1, 4, 3, 64, 64)
    tsn = _calibrate_bn(create("tsn_resnet50", num_classes=3, frames=4), torch.randn(2, 4, 3, 64, 64))
    tsm = create("tsm_resnet50", num_classes=3, frames=4).eval()
    tsm.load_state_dict(tsn.state_dict())  # same parameters: the shift has none
    with torch.no_grad():
        assert tsn(x).shape == (1, 3)
        torch.testing.assert_close(tsn(x), tsn(x.flip(1)), rtol=1e-4, atol=1e-5)
        a, b = tsm(x), tsm(x.flip(1))
    assert (a - b).abs().max() > 1e-4
    state = tsn.state_dict()
    assert tuple(state["backbone.layer1.0.downsample.0.weight"].shape) == (256, 64, 1, 1)  # torchvision names
    assert tuple(state["backbone.layer4.2.bn3.running_var"].shape) == (2048,)
    assert tuple(state["backbone.layer3.5.conv2.weight"].shape) == (256, 256, 3, 3)
    assert not any(k.startswith("backbone.fc.") for k in state)
    assert tsm.backbone.layer2[0].shift.fold == 256 // 8
    with pytest.raises(ConfigError, match="no ImageNet ResNet weights"):
        create("tsm_resnet50", num_classes=3, frames=4, pretrained=True)


def test_resnet_weights_path(tmp_path):
    src = resnet.ResNet(50)
    torch.save({"state_dict": {"module." + k: v for k, v in src.state_dict().items()}}, tmp_path / "r50.pth")
    model = create("tsn_resnet50", num_classes=3, frames=2, weights_path=tmp_path / "r50.pth")
    torch.testing.assert_close(model.backbone.layer4[2].conv3.weight, src.layer4[2].conv3.weight)


def _gmacs(name: str, frames: int, clip_frames: int) -> float:
    with torch.device("meta"):
        model = create(name, num_classes=400, frames=frames).eval()
        x = torch.empty(1, clip_frames, 3, 224, 224)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / 2 / 1e9


def test_macs_match_published_figures():
    assert _gmacs("blvnet_tam_r50", 8, 16) == pytest.approx(23.9, rel=0.03)
    assert _gmacs("tsn_resnet50", 16, 16) == pytest.approx(65.4, rel=0.03)
    assert _gmacs("tsm_resnet50", 16, 16) == pytest.approx(65.4, rel=0.03)  # the shift is free


def test_blvnet_exports():
    model = create("blvnet_tam_r50", num_classes=3, frames=1).eval()
    x = torch.randn(1, 2, 3, 64, 64)
    program = torch.export.export(model, (x,))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert not any("index" in t or "roll" in t or "conv3d" in t or "copy_" in t for t in targets), targets
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x))
