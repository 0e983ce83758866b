"""The feature cache and partial fine-tuning (issue "Models that learn"): the cache is keyed (reused only while its key
matches), the frozen prefix gets no gradient and keeps its BN statistics, and a model run on cached activations gives
the logits it gives on decoded frames."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from sdk.errors import ConfigError
from sdk.preprocess import Preprocess
from sdk.samplers import Sampler
from training.data.datasets import ClipDataset, DatasetInfo, read_records
from training.data.feature_cache import CachedClipDataset, FeatureCache
from training.frozen import FromBlock, cache_split, freeze_prefix, set_training_frozen
from training.models import create

FREEZE, SIZE = 7, 64
PREPROCESS = Preprocess(size=SIZE, resize=72)


def _model(arch: str = "tam_head_mobilenet_v2", frames: int = 4, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create(arch, num_classes=16, frames=frames, pretrained=False)


def _cache(model, bench: Path, root: Path, split: str = "val.csv", train: bool = False, **kw) -> FeatureCache:
    return cache_split(model, FREEZE, DatasetInfo.from_dir(bench), split, kw.pop("preprocess", PREPROCESS),
                       train=train, hflip=kw.pop("hflip", False), cache_dir=root, workers=0, **kw)


def test_cache_is_reused_only_while_its_key_matches(tiny_benchmark: Path, tmp_path: Path):
    model = _model()
    first = _cache(model, tiny_benchmark, tmp_path)
    stamp = (first.path / "features.npy").stat().st_mtime_ns
    again = _cache(_model(), tiny_benchmark, tmp_path)  # same prefix weights (same seed), same everything
    assert again.path == first.path and (again.path / "features.npy").stat().st_mtime_ns == stamp
    assert len(list(tmp_path.iterdir())) == 1

    other_weights = _model(seed=1)
    assert _cache(other_weights, tiny_benchmark, tmp_path).path != first.path
    with torch.no_grad():  # BN statistics are part of the prefix's identity
        model.backbone.features[0][1].running_mean += 0.1
    assert _cache(model, tiny_benchmark, tmp_path).path not in (first.path,)
    assert _cache(_model(), tiny_benchmark, tmp_path, preprocess=Preprocess(size=48, resize=56)).path != first.path
    assert _cache(_model(), tiny_benchmark, tmp_path, precision="bf16", train=True).path != first.path

    # a changed dataset (a video rewritten) is a new key, never a silent reuse
    video = read_records(tiny_benchmark / "val.csv")[0].path
    st = video.stat()
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    try:
        assert _cache(_model(), tiny_benchmark, tmp_path).path != first.path
    finally:
        os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert not list(tmp_path.glob(".*.tmp-*")), "no half-built cache is left behind"


def test_a_killed_build_leaves_no_cache(tiny_benchmark: Path, tmp_path: Path, monkeypatch):
    import training.data.feature_cache as fc

    def boom(*_, **__):
        raise KeyboardInterrupt

    monkeypatch.setattr(fc.np.lib.format, "open_memmap", boom)
    with pytest.raises(KeyboardInterrupt):
        _cache(_model(), tiny_benchmark, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_model_on_the_cache_equals_the_model_on_decoded_frames(tiny_benchmark: Path, tmp_path: Path):
    """Evaluation splits are fp32: the trained suffix on cached activations == the whole model on decoded frames."""
    model = _model().eval()
    cache = _cache(model, tiny_benchmark, tmp_path)
    assert cache.features.dtype == np.float32
    sampler = Sampler("uniform_segments", 4)
    decoded = ClipDataset(read_records(tiny_benchmark / "val.csv", DatasetInfo.from_dir(tiny_benchmark).labels),
                          sampler=sampler, preprocess=PREPROCESS, train=False)
    cached = CachedClipDataset(cache, sampler=sampler, train=False)
    picks = [0, 5, 17, len(decoded) - 1]
    frames = torch.stack([decoded[i][0] for i in picks])
    acts = torch.stack([cached[i][0] for i in picks])
    assert [decoded[i][1] for i in picks] == [cached[i][1] for i in picks]
    with torch.no_grad():
        want, got = model(frames), FromBlock(model, FREEZE)(acts)
    assert (want - got).abs().max() <= 1e-4, (want - got).abs().max()


def test_training_items_follow_the_sampler_and_the_flip_map(tiny_benchmark: Path, tmp_path: Path):
    info = DatasetInfo.from_dir(tiny_benchmark)
    model = _model()
    cache = _cache(model, tiny_benchmark, tmp_path, split="train.csv", train=True, hflip=True)
    assert cache.views == 2 and cache.features.dtype == np.float16
    teacher, student = Sampler("uniform_segments", 8), Sampler("uniform_k", 2, of=8)
    data = CachedClipDataset(cache, sampler=teacher, subset=student, train=True, hflip_map=info.hflip_map, seed=3)
    flipped = 0
    for i in range(len(data)):
        clip, small, positions, label = data[(0, i)]
        assert clip.shape == (8, *cache.feature_shape) and small.shape == (2, *cache.feature_shape)
        torch.testing.assert_close(small, clip[positions])
        flipped += label != cache.labels[i]
        assert label in (cache.labels[i], info.hflip_map[cache.labels[i]])
    assert 0 < flipped < len(data)
    a, b = data[(0, 1)], data[(0, 1)]
    torch.testing.assert_close(a[0], b[0])  # (seed, epoch, index) decides: reproducible, resumable


def test_frozen_prefix_gets_no_gradient_and_keeps_its_bn_statistics(tiny_benchmark: Path):
    model = _model()
    prefix = freeze_prefix(model, FREEZE, per_frame=True)
    before = {k: v.clone() for k, v in prefix.state_dict().items()}
    suffix_bn = model.backbone.features[FREEZE][1]
    suffix_before = suffix_bn.running_mean.clone()
    set_training_frozen(model, True, FREEZE)
    assert not any(m.training for m in list(prefix.modules())[1:]) and model.fc.training  # [0]: the slice itself
    clips = torch.randn(2, 4, 3, SIZE, SIZE)
    model(clips).logsumexp(1).sum().backward()
    assert all(p.grad is None for p in prefix.parameters())
    assert all(p.grad is not None for p in model.backbone.features[FREEZE:].parameters())
    for k, v in prefix.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert not torch.equal(suffix_bn.running_mean, suffix_before), "the trained part does update its statistics"


def test_a_temporal_prefix_cannot_be_cached():
    model = create("tam_mobilenet_v2", num_classes=16, frames=4, pretrained=False)
    with pytest.raises(ConfigError, match="temporal"):
        freeze_prefix(model, 7, per_frame=True)
    freeze_prefix(create("tam_mobilenet_v2", num_classes=16, frames=4, pretrained=False, temporal_from=7), 7,
                  per_frame=True)


def test_cached_training_run_and_evaluation(tiny_benchmark: Path, tmp_path: Path):
    """train.py with freeze: trains on the cache (one per split, under DATA/cache unless cache_dir), keeps the prefix
    bit-exact in best.pt, and evaluate reads the fp32 cache."""
    from training.evaluate import evaluate_checkpoint
    from training.train import TrainConfig, train

    cfg = TrainConfig(data=str(tiny_benchmark), out=str(tmp_path / "run"), arch="tam_head_mobilenet_v2", frames=4,
                      size=SIZE, resize=72, freeze=FREEZE, epochs=2, batch_size=8, workers=0, pretrained=False,
                      cache_dir=str(tmp_path / "cache"), select="last", optimizer="adamw", lr=3e-3)
    summary = train(cfg)
    assert summary["best"]["epoch"] == 2
    assert len(list((tmp_path / "cache").iterdir())) == 2  # train (fp16, flipped view) and val (fp32)
    torch.manual_seed(cfg.seed)
    fresh = create(cfg.arch, num_classes=16, frames=4, pretrained=False)
    saved = torch.load(tmp_path / "run" / "best.pt", weights_only=True)["model"]
    for k, v in fresh.backbone.features[:FREEZE].state_dict().items():
        torch.testing.assert_close(saved[f"backbone.features.{k}"], v, rtol=0, atol=0)
    cached = evaluate_checkpoint(tmp_path / "run" / "best.pt", tiny_benchmark, workers=0, out=tmp_path / "e1")
    decoded = evaluate_checkpoint(tmp_path / "run" / "best.pt", tiny_benchmark, workers=0, out=tmp_path / "e2",
                                  cache=False)
    assert cached["cached"] and not decoded["cached"]
    assert cached["confusion"] == decoded["confusion"]
    assert json.loads((tmp_path / "e1" / "eval.json").read_text())["top1"] == decoded["top1"]
