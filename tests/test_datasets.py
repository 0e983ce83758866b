"""Training datasets: sampling and preprocessing through sdk, flips with label swap, lists, loaders, bad input."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sdk.errors import ConfigError, DecodeError
from sdk.preprocess import Preprocess
from sdk.samplers import Sampler
from sdk.video import VideoFile
from training.data.datasets import ClipDataset, DatasetInfo, EpochSampler, make_loader, read_frame_list, read_video_csv

SAMPLER = Sampler("uniform_segments", 4)
PREP = Preprocess(size=64, resize=72)


@pytest.fixture(scope="module")
def bench(tiny_benchmark: Path):
    info = DatasetInfo.from_dir(tiny_benchmark)
    return info, read_video_csv(tiny_benchmark / "train.csv", info.labels)


def test_dataset_info_and_csv(bench):
    info, records = bench
    assert len(info.labels) >= 16 and len(info.pairs) >= 8
    assert sorted(info.hflip_map) == list(range(len(info.labels)))
    assert all(r.path.is_file() and 0 <= r.label < len(info.labels) for r in records)


def test_eval_clips_are_the_sdk_pipeline_on_the_sampled_frames(bench):
    _, records = bench
    ds = ClipDataset(records, sampler=SAMPLER, preprocess=PREP, train=False)
    clip, label = ds[3]
    assert clip.shape == (4, 3, 64, 64) and clip.dtype == torch.float32 and label == records[3].label
    with VideoFile(records[3].path) as v:
        expected = PREP(v.read_indices(SAMPLER.indices(v.num_frames)))
    np.testing.assert_array_equal(clip.numpy(), expected)
    views, _ = ClipDataset(records, sampler=SAMPLER, preprocess=PREP, train=False, num_clips=3)[3]
    assert views.shape == (3, 4, 3, 64, 64)


def test_training_randomness_is_per_seed_epoch_and_index(bench):
    _, records = bench
    ds = ClipDataset(records, sampler=SAMPLER, preprocess=PREP, train=True, seed=1)
    a, b = ds[0][0], ds[0][0]
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    ds.set_epoch(1)
    assert not torch.equal(a, ds[0][0]), "a new epoch must draw new offsets / crops"


def test_centre_crop_training_keeps_random_offsets_but_the_evaluation_crop(bench):
    """spatial_augment=False (QAT of a model trained on a feature cache): every training frame is exactly the
    evaluation transform of some frame of the video, while the temporal offsets still change per epoch."""
    _, records = bench
    ds = ClipDataset(records, sampler=SAMPLER, preprocess=PREP, train=True, seed=4, spatial_augment=False)
    with VideoFile(records[5].path) as v:
        every = PREP(v.read_indices(np.arange(v.num_frames)))
    clips = []
    for epoch in range(3):
        ds.set_epoch(epoch)
        clips.append(ds[5][0].numpy())
        for frame in clips[-1]:
            assert any(np.array_equal(frame, f) for f in every), "a training frame is not a centre-cropped video frame"
    assert any(not np.array_equal(clips[0], c) for c in clips[1:]), "offsets must still be drawn per epoch"


def test_horizontal_flip_mirrors_the_clip_and_swaps_the_label(bench):
    info, records = bench
    right = info.labels.index("moving_right")
    i = next(k for k, r in enumerate(records) if r.label == right)
    common = dict(sampler=SAMPLER, preprocess=PREP, train=True, hflip_map=info.hflip_map, seed=2)
    flipped, label_f = ClipDataset(records, flip_prob=1.0, **common)[i]
    plain, label_p = ClipDataset(records, flip_prob=0.0, **common)[i]
    assert label_p == right and info.labels[label_f] == "moving_left"
    torch.testing.assert_close(flipped, plain.flip(-1), rtol=0, atol=0)
    # Without a map there is no flipping at all (flipping would teach wrong labels on direction classes).
    _, label_n = ClipDataset(records, sampler=SAMPLER, preprocess=PREP, train=True, hflip_map=None, flip_prob=1.0)[i]
    assert label_n == right


def test_frame_folder_list_format_gives_the_same_clips(bench, tmp_path: Path):
    _, records = bench
    rec = records[0]
    folder = tmp_path / "frames" / "clip0"
    folder.mkdir(parents=True)
    with VideoFile(rec.path) as v:
        for i, frame in enumerate(v):
            cv2.imwrite(str(folder / f"img_{i + 1:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        n = v.num_frames
    (tmp_path / "list.txt").write_text(f"clip0 {n} {rec.label}\n")
    frame_records = read_frame_list(tmp_path / "list.txt", tmp_path / "frames")
    ds_frames = ClipDataset(frame_records, sampler=SAMPLER, preprocess=PREP, train=False, template="img_{:05d}.png")
    ds_video = ClipDataset([rec], sampler=SAMPLER, preprocess=PREP, train=False)
    torch.testing.assert_close(ds_frames[0][0], ds_video[0][0], rtol=0, atol=0)  # PNG is lossless
    assert ds_frames[0][1] == rec.label


def test_loader_output_does_not_depend_on_the_worker_count(bench):
    _, records = bench
    ds = ClipDataset(records[:6], sampler=SAMPLER, preprocess=PREP, train=True, seed=3)
    batches = {w: list(make_loader(ds, batch_size=3, workers=w, shuffle=True, seed=5)) for w in (0, 2)}
    assert batches[0][0][0].shape == (3, 4, 3, 64, 64)
    for (x0, y0), (x2, y2) in zip(batches[0], batches[2], strict=True):
        torch.testing.assert_close(x0, x2, rtol=0, atol=0)
        assert torch.equal(y0, y2)


def test_epoch_sampler_order_is_a_function_of_seed_and_epoch_and_ranks_partition_it():
    s = EpochSampler(10, shuffle=True, seed=4)
    first = list(s)
    assert list(s) == first and sorted(i for _, i in first) == list(range(10)) and {e for e, _ in first} == {0}
    s.set_epoch(1)
    assert [i for _, i in s] != [i for _, i in first] and {e for e, _ in s} == {1}
    ranks = [list(EpochSampler(10, shuffle=True, seed=4, rank=r, world_size=3)) for r in range(3)]
    assert all(len(r) == 4 for r in ranks)  # padded to equal length, like DistributedSampler
    assert {i for r in ranks for _, i in r} == set(range(10))


def test_bad_lists_raise_config_errors(tmp_path: Path):
    (tmp_path / "a.csv").write_text("file,class\nx.mp4,0\n")
    with pytest.raises(ConfigError, match="path,label"):
        read_video_csv(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("path,label\nx.mp4,jumping\n")
    with pytest.raises(ConfigError, match="b.csv:2"):
        read_video_csv(tmp_path / "b.csv", labels=["walking"])
    assert read_video_csv(tmp_path / "b.csv", labels=["walking", "jumping"])[0].label == 1
    (tmp_path / "list.txt").write_text("clip0 twelve 3\n")
    with pytest.raises(ConfigError, match="list.txt:1"):
        read_frame_list(tmp_path / "list.txt", tmp_path)
    with pytest.raises(ConfigError, match="labels.txt"):
        DatasetInfo.from_dir(tmp_path)
    with pytest.raises(ConfigError, match="no videos"):
        ClipDataset([], sampler=SAMPLER, preprocess=PREP, train=False)


def test_a_corrupt_video_raises_decode_error_naming_it(bench, tmp_path: Path):
    _, records = bench
    bad = tmp_path / "broken.mp4"
    data = records[0].path.read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    ds = ClipDataset([type(records[0])(bad, 0)], sampler=SAMPLER, preprocess=PREP, train=False)
    with pytest.raises(DecodeError, match="broken.mp4"):
        ds[0]
