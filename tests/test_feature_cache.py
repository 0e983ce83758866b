"""The feature cache and partial fine-tuning (issue "Models that learn"): the cache is keyed (reused only while its key
matches), lives outside the dataset and holds each video once whatever splits list it, the frozen prefix gets no
gradient and keeps its BN statistics, and a model run on cached activations gives the logits it gives on decoded
frames."""
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
from training.data.feature_cache import CACHE_ENV, CachedClipDataset, FeatureCache, default_cache_dir
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


def _stamps(cache: FeatureCache) -> list[int]:
    return [f.stat().st_mtime_ns for f in cache.files]


def test_cache_is_reused_only_while_its_key_matches(tiny_benchmark: Path, tmp_path: Path):
    model = _model()
    first = _cache(model, tiny_benchmark, tmp_path)
    stamps = _stamps(first)
    again = _cache(_model(), tiny_benchmark, tmp_path)  # same prefix weights (same seed), same everything
    assert again.path == first.path and again.files == first.files and _stamps(again) == stamps
    assert len(list(tmp_path.iterdir())) == 1 and len(set(first.files)) == len(first) == 32

    other_weights = _model(seed=1)
    assert _cache(other_weights, tiny_benchmark, tmp_path).path != first.path
    with torch.no_grad():  # BN statistics are part of the prefix's identity
        model.backbone.features[0][1].running_mean += 0.1
    assert _cache(model, tiny_benchmark, tmp_path).path not in (first.path,)
    assert _cache(_model(), tiny_benchmark, tmp_path, preprocess=Preprocess(size=48, resize=56)).path != first.path
    assert _cache(_model(), tiny_benchmark, tmp_path, precision="bf16", train=True).path != first.path

    # a changed video is a new entry (only that one is recomputed), never a silent reuse
    video = read_records(tiny_benchmark / "val.csv")[0].path
    st = video.stat()
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    try:
        changed = _cache(_model(), tiny_benchmark, tmp_path)
    finally:
        os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert changed.path == first.path and changed.files[0] != first.files[0] and changed.files[1:] == first.files[1:]
    assert not list(tmp_path.rglob(".*.tmp-*")), "no half-written video is left behind"


def test_the_conversion_has_its_own_store_of_its_own_pixels(tiny_benchmark: Path, tmp_path: Path):
    """A run reading video files with the camera conversion gets its own store, computed from the camera pixels: a
    swscale store served to it would silently break the training = device pixel promise. The premise: the two
    conversions' pixels differ on these videos."""
    from sdk.video import VideoFile

    model = _model()
    camera_pre = Preprocess(size=SIZE, resize=72, conversion="camera")
    swscale, camera = _cache(model, tiny_benchmark, tmp_path), _cache(model, tiny_benchmark, tmp_path,
                                                                      preprocess=camera_pre)
    assert camera.path != swscale.path and camera.key["preprocess"]["conversion"] == "camera"
    video = read_records(tiny_benchmark / "val.csv")[0].path
    pixels = {c: VideoFile(video, conversion=c).read_indices([0, 1]) for c in ("swscale", "camera")}
    assert not np.array_equal(pixels["swscale"], pixels["camera"])
    assert not np.array_equal(camera.video(0), swscale.video(0))
    # the camera store holds the prefix's output on the camera pixels (fp32 cache: the same arithmetic)
    with VideoFile(video, conversion="camera") as v:
        frames = torch.from_numpy(camera_pre(v.read_indices(range(v.num_frames))))
    with torch.no_grad():
        want = model.backbone.features[:FREEZE].eval()(frames.contiguous(memory_format=torch.channels_last))
    np.testing.assert_allclose(np.asarray(camera.video(0)[0], np.float32), want.numpy(), rtol=0, atol=1e-4)
    # and the decoded-frame datasets (training without a cache, evaluation, QAT) read the camera pixels too
    records, sampler = read_records(tiny_benchmark / "val.csv", DatasetInfo.from_dir(tiny_benchmark).labels)[:1], \
        Sampler("uniform_segments", 2)
    items = {c: ClipDataset(records, sampler=sampler, preprocess=Preprocess(size=SIZE, resize=72, conversion=c),
                            train=False)[0][0] for c in ("swscale", "camera")}
    assert not torch.equal(items["swscale"], items["camera"])
    with VideoFile(video, conversion="camera") as v:
        want_clip = camera_pre(v.read_indices(sampler.multi_view(v.num_frames, 1).reshape(-1)))
    torch.testing.assert_close(items["camera"], torch.from_numpy(want_clip), rtol=0, atol=0)


def test_a_killed_build_keeps_the_finished_videos_only_and_the_next_build_does_the_rest(tiny_benchmark: Path,
                                                                                       tmp_path: Path, monkeypatch):
    import training.data.feature_cache as fc

    saves, kill_at = [], [3]
    real_save = np.save

    def save(path, array):
        saves.append(path)
        if kill_at and len(saves) == kill_at[0]:
            raise KeyboardInterrupt  # killed while writing the third video
        real_save(path, array)

    monkeypatch.setattr(fc.np, "save", save)
    with pytest.raises(KeyboardInterrupt):
        _cache(_model(), tiny_benchmark, tmp_path)
    [store] = tmp_path.iterdir()
    assert len(list(store.rglob("*.npy"))) == 2 and not list(store.rglob(".*.tmp-*"))
    saves.clear()
    kill_at.clear()
    cache = _cache(_model(), tiny_benchmark, tmp_path)
    assert len(saves) == len(cache) - 2, "the finished videos are not computed again"


def test_splits_that_share_videos_compute_them_once(tiny_benchmark: Path, tmp_path: Path, monkeypatch):
    """A second split file over some of the same videos (here in another dataset directory, as an importer writes
    one) reads the cached videos: nothing is decoded."""
    import shutil

    import training.data.feature_cache as fc

    model = _model()
    val = _cache(model, tiny_benchmark, tmp_path / "cache")
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(tiny_benchmark / "labels.txt", other)
    rows = read_records(tiny_benchmark / "val.csv")[::3]
    (other / "subset.csv").write_text("path,label\n" + "".join(f"{r.path},{r.label}\n" for r in rows))
    monkeypatch.setattr(fc._DecodedVideos, "__getitem__", lambda *_: pytest.fail("a cached video was decoded"))
    subset = cache_split(model, FREEZE, DatasetInfo.from_dir(other), "subset.csv", PREPROCESS, train=False,
                         hflip=False, cache_dir=tmp_path / "cache", workers=0)
    assert subset.files == val.files[::3] and list(subset.labels) == [r.label for r in rows]


def test_model_on_the_cache_equals_the_model_on_decoded_frames(tiny_benchmark: Path, tmp_path: Path):
    """Evaluation splits are fp32: the trained suffix on cached activations == the whole model on decoded frames."""
    model = _model().eval()
    cache = _cache(model, tiny_benchmark, tmp_path)
    assert cache.dtype == cache.video(0).dtype == np.float32
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
    assert cache.views == 2 and cache.video(0).dtype == np.float16 and cache.video(0).shape[0] == 2
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
    """train.py with freeze: trains on the cache (one store per dtype and views, in cache_dir), keeps the prefix
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


def test_the_default_cache_directory_is_outside_the_dataset(monkeypatch, feature_cache_dir: Path):
    assert default_cache_dir() == feature_cache_dir, "the suite's caches go to a temporary directory"
    monkeypatch.delenv(CACHE_ENV)
    assert default_cache_dir() == Path.home() / ".cache" / "edgevideo" / "features"


def test_a_read_only_folder_dataset_trains_and_evaluates_with_the_cache_elsewhere(tiny_benchmark: Path,
                                                                                tmp_path: Path, monkeypatch):
    """A dataset in the folder-per-class layout (no labels.txt), write permission removed: train (frozen prefix on the
    feature cache) and evaluate it; the caches go to the default cache directory and nothing in the dataset changes
    (compared file by file too: as root, removed permissions do not stop a write)."""
    import shutil
    import stat

    from training.evaluate import evaluate_checkpoint
    from training.train import TrainConfig, train

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    info = DatasetInfo.from_dir(tiny_benchmark)
    data = tmp_path / "data"
    for split in ("train", "val"):
        for i, r in enumerate(read_records(tiny_benchmark / f"{split}.csv", info.labels)):
            (data / split / info.labels[r.label]).mkdir(parents=True, exist_ok=True)
            shutil.copy(r.path, data / split / info.labels[r.label] / f"{i}.mp4")
    tree = [data, *data.rglob("*")]
    for p in tree:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = sorted((str(p), p.stat().st_mtime_ns) for p in tree)
    try:
        cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), arch="tam_head_mobilenet_v2", frames=4,
                          size=SIZE, resize=72, freeze=FREEZE, epochs=1, batch_size=8, workers=0, pretrained=False,
                          optimizer="adamw", lr=3e-3)
        summary = train(cfg)
        result = evaluate_checkpoint(tmp_path / "run" / "best.pt", data, workers=0)
        assert summary["train_clips"] == 64 and result["cached"] and result["n"] == 32
        assert sorted((str(p), p.stat().st_mtime_ns) for p in [data, *data.rglob("*")]) == before
    finally:
        for p in tree:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
    assert len(list((tmp_path / "cache").glob("*/key.json"))) == 2  # the training and the evaluation store
