"""The big-little TAM head (issue 20 item 2): the thinned ImageNet little trunk is a real copy of the ImageNet trunk,
the model on cached trunk outputs equals the model on decoded frames (each trunk on its own frames), and the frozen
prefix's BN statistics can be re-measured on the data, deterministically."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from sdk.errors import ConfigError
from sdk.preprocess import Preprocess
from sdk.samplers import Sampler
from training.data.datasets import ClipDataset, DatasetInfo, read_records
from training.data.feature_cache import CachedClipDataset
from training.frozen import FromBlock, cache_split, frozen_prefix, remeasure_prefix_bn
from training.models import create
from training.models.bl_tam_head import _little_trunk, thin_imagenet_trunk
from training.models.mobilenet_v2 import MobileNetV2

SIZE = 64
PREPROCESS = Preprocess(size=SIZE, resize=72)


def _randomised_trunk(seed: int = 0) -> nn.Sequential:
    """A MobileNetV2 ``features[:7]`` with random weights *and* random BN parameters/statistics."""
    torch.manual_seed(seed)
    trunk = nn.Sequential(*MobileNetV2().features[:7]).eval()
    for m in trunk.modules():
        if isinstance(m, nn.BatchNorm2d):
            for t in (m.weight, m.bias, m.running_mean):
                nn.init.normal_(t.data, 0.0, 0.5)
            m.running_var.data.uniform_(0.5, 2.0)
    return trunk


def _model(frames: int = 2) -> nn.Module:
    """A random model with BN statistics measured on random clips (a fresh one's features are ~1e-4) and a merge
    that counts (it starts at zero)."""
    torch.manual_seed(0)
    model = create("bl_tam_head_mobilenet_v2", num_classes=16, frames=frames, pretrained=False)
    nn.init.normal_(model.backbone.features[1].project[1].weight)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
    with torch.no_grad():
        model.train()(torch.rand(4, model.input_frames, 3, SIZE, SIZE) * 4 - 2)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    return model.eval()


def test_full_width_thinning_reproduces_the_trunk_exactly():
    """alpha=1, beta=0 keeps every channel and block: the copy must compute what the original computes."""
    full = _randomised_trunk()
    little = _little_trunk(1.0, 0).eval()
    thin_imagenet_trunk(little, full)
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(little(x), full(x), rtol=0, atol=0)


def test_half_width_thinning_keeps_the_strongest_filters():
    full = _randomised_trunk()
    little = _little_trunk(0.5, 1).eval()
    thin_imagenet_trunk(little, full)
    stem_norms = full[0][0].weight.abs().flatten(1).sum(1)
    kept = stem_norms.topk(little[0][0].out_channels).indices.sort().values
    torch.testing.assert_close(little[0][0].weight, full[0][0].weight[kept], rtol=0, atol=0)
    torch.testing.assert_close(little[0][1].running_var, full[0][1].running_var[kept], rtol=0, atol=0)
    # stages keep their first blocks: 1 + 1 + 2 blocks after the stem, the residual one copied from the stage's 2nd
    assert len(little) == 5 and little[4].use_res_connect and not little[3].use_res_connect
    dw_little, dw_full = little[4].conv[1][0].weight, full[5].conv[1][0].weight
    assert all(any(torch.equal(row, other) for other in dw_full) for row in dw_little)


def test_model_on_cached_trunks_equals_model_on_frames(tiny_benchmark: Path, tmp_path: Path):
    model = _model(frames=2)
    info = DatasetInfo.from_dir(tiny_benchmark)
    cache = cache_split(model, 1, info, "val.csv", PREPROCESS, train=False, hflip=False, cache_dir=tmp_path, workers=0)
    assert cache.feature_shape == (32 + 4 * 16, SIZE // 16, SIZE // 16)  # big + little folded 2x2, at half resolution
    sampler = Sampler("uniform_segments", model.input_frames)
    decoded = ClipDataset(read_records(tiny_benchmark / "val.csv", info.labels), sampler=sampler,
                          preprocess=PREPROCESS, train=False)
    cached = CachedClipDataset(cache, sampler=sampler, train=False)
    picks = [0, 3, len(decoded) - 1]
    frames = torch.stack([decoded[i][0] for i in picks])
    acts = torch.stack([cached[i][0] for i in picks])
    with torch.no_grad():
        want, got = model.forward_features(frames), FromBlock(model, 1).model.forward_features(acts, 1)
        swapped = model.forward_features(frames.flip(1))  # pairs swap big and little: other features
    scale = want.abs().max()
    assert scale > 0.1 and (want - got).abs().max() <= 1e-5 * scale, (want - got).abs().max()
    assert (want - swapped).abs().max() > 1e-2 * scale


def test_input_is_checked():
    model = _model(frames=2)
    with pytest.raises(ValueError, match="4 input frames"):
        model(torch.zeros(1, 2, 3, SIZE, SIZE))
    with pytest.raises(ValueError, match="multiple of 16"):
        model(torch.zeros(1, 4, 3, 72, 72))
    with pytest.raises(ValueError, match="little_init"):
        create("bl_tam_head_mobilenet_v2", num_classes=4, frames=2, pretrained=False, little_init="zeros")


def test_remeasured_bn_statistics_are_the_data_statistics(tiny_benchmark: Path):
    info = DatasetInfo.from_dir(tiny_benchmark)
    model = _model(frames=2)
    sampler = Sampler("uniform_segments", model.input_frames)
    stem = frozen_prefix(model, 1)[0].little[0]
    before = stem[1].running_mean.clone()
    remeasure_prefix_bn(model, 1, info, "train.csv", PREPROCESS, sampler, videos=6)
    data = ClipDataset(read_records(tiny_benchmark / "train.csv", info.labels)[:6], sampler=sampler,
                       preprocess=PREPROCESS, train=False)
    frames = torch.cat([data[i][0] for i in range(len(data))])
    with torch.no_grad():
        pre_bn = stem[0](frames)
    torch.testing.assert_close(stem[1].running_mean, pre_bn.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(stem[1].running_mean, before)
    assert not frozen_prefix(model, 1)[0].training and stem[1].momentum == 0.1  # eval mode and momentum restored
    again = _model(frames=2)
    remeasure_prefix_bn(again, 1, info, "train.csv", PREPROCESS, sampler, videos=6)
    for (k, a), b in zip(frozen_prefix(model, 1).state_dict().items(), frozen_prefix(again, 1).state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)


def test_prefix_bn_needs_frozen_blocks():
    from training.train import TrainConfig
    with pytest.raises(ConfigError, match="freeze"):
        TrainConfig(prefix_bn="remeasure")
    with pytest.raises(ConfigError, match="valid: keep, remeasure"):
        TrainConfig(prefix_bn="recompute", freeze=1)
