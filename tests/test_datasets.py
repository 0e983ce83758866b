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
from training.data.datasets import (ClipDataset, DatasetInfo, EpochSampler, VideoRecord, clip_profile, make_loader,
                                    read_frame_list, read_video_csv)

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


@pytest.mark.parametrize("cores, requested, workers", [({0}, 2, 0), ({0, 1}, 2, 2), ({0, 1}, 8, 2),
                                                       (set(range(8)), 2, 2), ({3}, 0, 0)])
def test_loader_workers_fit_the_usable_cores(bench, monkeypatch, cores: set, requested: int, workers: int):
    """At most one worker per core this process may use (taskset, cpusets), none on a single core: torch would
    otherwise warn that the default 2 exceed its suggested maximum, and a worker there only adds hand-overs."""
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: cores)
    ds = ClipDataset(bench[1][:2], sampler=SAMPLER, preprocess=PREP, train=True)
    assert make_loader(ds, batch_size=2, workers=requested, shuffle=False).num_workers == workers


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


# ---------------------------------------------------------------------------------------------------- layouts
def _class_folders(root: Path, write_video) -> Path:
    """train/{jump,walk}, val/{sit,walk}; suffixes in any case; hidden and non-video files that must be skipped."""
    for rel in ("train/walk/a.mp4", "train/walk/b.MP4", "train/jump/c.webm", "val/walk/d.mov", "val/sit/e.mkv"):
        write_video(root / rel)
    (root / "train/walk/.a-copy.mp4").write_bytes(b"hidden")
    (root / "train/walk/notes.txt").write_text("not a video")
    write_video(root / ".thumbnails/ghost/f.mp4")  # a hidden folder is no split
    return root


def test_folder_per_class_layout_without_labels_txt(tmp_path: Path, write_video):
    root = _class_folders(tmp_path / "data", write_video)
    info = DatasetInfo.from_dir(root)
    assert info.labels == ["jump", "sit", "walk"], "the sorted union of the class folders of every split"
    assert info.splits() == ["train", "val"]
    train = info.records("train.csv")  # the default split name finds the folder train/
    assert [(r.path.relative_to(root).as_posix(), r.label) for r in train] == [
        ("train/jump/c.webm", 0), ("train/walk/a.mp4", 2), ("train/walk/b.MP4", 2)]
    assert info.records("train") == train and info.split_path("train.csv") == root / "train"
    assert [r.label for r in info.records("val.csv")] == [1, 2]
    with pytest.raises(ConfigError, match=r"'test.csv' not found .*splits there: train, val"):
        info.records("test.csv")


def test_labels_txt_orders_the_classes_and_a_split_file_wins_over_the_folder(tmp_path: Path, write_video):
    root = _class_folders(tmp_path / "data", write_video)
    (root / "labels.txt").write_text("walk\njump\nsit\n")
    info = DatasetInfo.from_dir(root)
    assert info.labels == ["walk", "jump", "sit"]
    assert [r.label for r in info.records("train")] == [1, 0, 0]
    (root / "train.csv").write_text("path,label\ntrain/walk/a.mp4,walk\n")
    assert [r.path.name for r in info.records("train.csv")] == ["a.mp4"] and info.splits() == ["train.csv"]
    (root / "labels.txt").write_text("walk\njump\n")
    with pytest.raises(ConfigError, match="class folder 'sit' is not one of the labels"):
        DatasetInfo.from_dir(root).records("val")
    (root / "labels.txt").write_text("walk\njump\nwalk\n")
    with pytest.raises(ConfigError, match="walk appear more than once"):
        DatasetInfo.from_dir(root)


@pytest.mark.parametrize("meta, error", [
    ({"pairs": [[0, 3]]}, "3 is neither a label name nor an index in \\[0, 3\\)"),
    ({"pairs": [["a", "d"]]}, "'d' is neither a label name"),
    ({"pairs": [[1, "b"]]}, "must name two different labels"),
    ({"pairs": [[0, 1, 2]]}, "must name two labels"),
    ({"pairs": [["a", "b"], [1, 2]]}, "label 1 is in two pairs"),
    ({"hflip_map": [1, 2, 0]}, "flips 'a' to 'b' but not back"),
    ({"hflip_map": {"a": "b", "b": "c"}}, "flips 'a' to 'b' but not back"),
    ({"hflip_map": [0, 0, 1]}, "permutation"),
])
def test_meta_json_pairs_and_flip_map_are_checked(tmp_path: Path, meta: dict, error: str):
    import json

    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=error):
        DatasetInfo.from_dir(tmp_path)


def test_meta_json_names_labels_by_name_or_index(tmp_path: Path):
    """A folder layout's label indices follow the sorted class names: meta.json may name them instead."""
    import json

    (tmp_path / "labels.txt").write_text("left\nright\nopen\nclose\n")
    (tmp_path / "meta.json").write_text(json.dumps({"pairs": [["open", "close"], [0, "right"]],
                                                    "hflip_map": {"left": "right"}}))
    info = DatasetInfo.from_dir(tmp_path)
    assert info.pairs == [(2, 3), (0, 1)] and info.hflip_map == [1, 0, 2, 3]


def test_checkpoint_entry_records_the_training_split_clip_profile(tmp_path: Path, write_video):
    for name, frames in (("a", 8), ("b", 12), ("c", 20)):
        write_video(tmp_path / "train" / "x" / f"{name}.mp4", frames=frames, fps=10)
    write_video(tmp_path / "val" / "x" / "d.mp4", frames=40, fps=25)
    entry = DatasetInfo.from_dir(tmp_path).checkpoint_entry("train.csv")
    assert entry["split"] == "train.csv" and entry["root"] == str(tmp_path)
    assert entry["clip"] == {"frames": 12, "fps": 10.0, "seconds": pytest.approx(1.2), "videos": 3}
    folders = [VideoRecord(tmp_path / "frames", 0, n) for n in (9, 30)]
    assert clip_profile(folders) == {"frames": 20, "fps": None, "seconds": None, "videos": 2}, \
        "frame folders: the list's counts, no fps or duration"
