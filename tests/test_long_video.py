"""Tests of the FASTER long-video benchmark (training.data.long_video) and the scene renderer it uses.

What makes it a benchmark: the annotated action segments hold the labelled action (the base renderer's, pixel for
pixel where the object is), every other segment is the object-free idle twin of the same continuous scene, a video
of the second class of a pair is a forward video played backwards, and everything is a function of the seed.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import av
import cv2  # noqa: F401  (installed by scripts/env.sh: a missing one fails, never skips)
import skimage  # noqa: F401  (installed by scripts/env.sh: a missing one fails, never skips)

from sdk.errors import ConfigError, DecodeError
from sdk.preprocess import Preprocess
from sdk.samplers import Sampler
from sdk.video import VideoFile
from training.data import long_video as lv
from training.data import writer
from training.data.datasets import DatasetInfo, VideoRecord, make_loader
from training.data.long_video import (
    LongVideoConfig,
    LongVideoDataset,
    action_layout,
    generate,
    render_video,
    video_seed,
)
from training.data.synthetic import (
    CLASSES,
    HFLIP_MAP,
    PAIRS,
    PRESETS,
    SCENE_ANNOTATION_KEYS,
    clip_seed,
    render_clip,
    render_scene,
)

REPO = Path(__file__).resolve().parents[1]
BASE = dataclasses.replace(PRESETS["tiny"], frames=8)  # 128 px wide: the encoder is deterministic there
CFG = LongVideoConfig(name="test", base=BASE, segments=3, span=(1, 2), train_per_class=1, val_per_class=1)
SAMPLER = Sampler("uniform_segments", 4)
PREP = Preprocess(size=64, resize=72)
IDX = {c: i for i, c in enumerate(CLASSES)}


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def without_run_facts(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if k not in ("wall_time_s", "workers")}


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    """32 videos of 3 segments x 8 frames, written by 2 worker processes."""
    return generate(tmp_path_factory.mktemp("lv") / "bench", CFG, seed=0, workers=2, progress=False)


# ------------------------------------------------------------------------------------------------- dataset on disk
def test_layout_csv_and_meta(bench: Path):
    meta = json.loads((bench / "meta.json").read_text())
    assert meta["generator"] == lv.GENERATOR_NAME and meta["seed"] == 0 and meta["preset"] == "test"
    assert (meta["segments"], meta["segment_frames"], meta["frames"]) == (3, 8, 24)
    assert meta["config"]["base"]["frames"] == 8 and meta["config"]["span"] == [1, 2]
    info = DatasetInfo.from_dir(bench)  # the existing reader: labels, pairs, flip map
    assert info.labels == list(CLASSES) and info.pairs == list(PAIRS) and info.hflip_map == list(HFLIP_MAP)
    npz = np.load(bench / "annotations.npz")
    for split in ("train", "val"):
        with open(bench / f"{split}.csv", newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["path", "label"]
        rows = rows[1:]
        videos = meta["videos"][split]
        assert len(rows) == len(videos) == meta["counts"][split] == len(CLASSES)
        assert [(v["path"], v["label"]) for v in videos] == [(p, int(lab)) for p, lab in rows]
        for v in videos:
            with VideoFile(bench / v["path"]) as src:
                assert (src.num_frames, src.width, src.height) == (24, BASE.width, BASE.height)
            seg = v["action_segments"]
            assert 1 <= len(seg) <= 2 and seg == list(range(seg[0], seg[0] + len(seg))) and seg[-1] < 3
            assert v["action_frames"] == [8 * seg[0], 8 * (seg[-1] + 1)]
            assert set(v["motion_segments"]) <= set(seg)
            assert v["action_frames"][0] <= v["motion_frames"][0] < v["motion_frames"][1] <= v["action_frames"][1]
        present = npz[f"{split}_present"]
        assert present.shape == (len(CLASSES), 24) and list(npz[f"{split}_path"]) == [r[0] for r in rows]
        for v, pres in zip(videos, present):
            a, b = v["action_frames"]
            assert pres[a:b].all() and not pres[:a].any() and not pres[b:].any()


def test_same_seed_same_files_and_frames_regardless_of_workers(bench: Path, tmp_path: Path):
    again = generate(tmp_path / "again", CFG, seed=0, workers=1, progress=False)
    for name in ("train.csv", "val.csv", "labels.txt"):
        assert (again / name).read_bytes() == (bench / name).read_bytes(), name
    assert without_run_facts(json.loads((again / "meta.json").read_text())) == \
        without_run_facts(json.loads((bench / "meta.json").read_text()))
    a, b = np.load(again / "annotations.npz"), np.load(bench / "annotations.npz")
    assert sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)
    paths = sorted(p.relative_to(bench) for p in (bench / "videos").rglob("*.mp4"))
    assert len(paths) == 2 * len(CLASSES)
    for rel in paths:
        assert np.array_equal(decode(again / rel), decode(bench / rel)), rel


def test_a_different_seed_gives_different_videos(bench: Path):
    ss0, ss1 = video_seed(0, "train", 3, 0), video_seed(1, "train", 3, 0)
    other, _, _ = render_video(3, ss1, CFG)
    assert np.abs(other.astype(np.float64) - decode(bench / "videos/train/moving_up_000000.mp4")).mean() > 10
    layouts = {s: [action_layout(CFG, video_seed(s, "val", lab, 0)) for lab in range(16)] for s in (0, 1)}
    assert layouts[0] != layouts[1]
    assert not np.array_equal(render_video(3, ss0, CFG)[0], render_video(3, video_seed(0, "val", 3, 0), CFG)[0])


def test_video_seeds_never_replay_base_clip_seeds():
    """A long video's scene must not reuse the random stream of a base training clip (same sprite, background)."""
    long_keys = {tuple(video_seed(0, s, lab, i).spawn_key) for s in ("train", "val") for lab in range(16)
                 for i in range(3)}
    clip_keys = {tuple(clip_seed(0, s, lab, i).spawn_key) for s in ("train", "val") for lab in range(16)
                 for i in range(3)}
    assert not long_keys & clip_keys
    scene, _ = render_scene(0, lv._sub(video_seed(0, "train", 0, 0), 1), BASE, 8, (0, 8))
    assert not np.array_equal(scene, render_clip(0, clip_seed(0, "train", 0, 0), BASE)[0])


def test_decoded_video_is_the_in_memory_render(bench: Path):
    for split, label, index in [("train", 0, 0), ("val", 13, 0)]:
        frames, _, _ = render_video(label, video_seed(0, split, label, index), CFG)
        dec = decode(bench / lv._relpath(split, label, index)).astype(np.float64)
        psnr = 10 * np.log10(255.0 ** 2 / np.mean((dec - frames) ** 2))
        assert psnr > 24, psnr


# --------------------------------------------------------------------------------------------- content semantics
@pytest.mark.parametrize("label", range(16))
def test_action_segments_hold_the_action_and_idle_segments_no_object(bench: Path, label: int):
    """Frames of idle segments are exactly the object-free twin's; each action segment shows the object; the
    annotations on disk are the render's."""
    T = CFG.segment_frames
    ss = video_seed(0, "val", label, 0)
    frames, ann, where = render_video(label, ss, CFG)
    idle, idle_ann, idle_where = render_video(label, ss, CFG, idle=True)
    assert idle_where == where and not idle_ann["present"].any()
    meta = json.loads((bench / "meta.json").read_text())
    assert meta["videos"]["val"][label]["action_segments"] == list(where.action_segments)
    assert meta["videos"]["val"][label]["motion_frames"] == list(where.motion_frames)
    a, b = where.action_frames
    assert np.array_equal(frames[:a], idle[:a]) and np.array_equal(frames[b:], idle[b:])
    assert (ann["present"][a:b] == 1).all() and not ann["present"][:a].any() and not ann["present"][b:].any()
    assert (ann["visible"][:a] == 0).all() and (ann["visible"][b:] == 0).all()
    # the object is there: noise, camera and distractors are the same draws as the twin's, so every differing pixel
    # is the object's (or the cover's occluder's); each action segment shows it, and so does every frame where the
    # annotations say it is seen
    changed = (frames != idle).any(axis=-1).reshape(len(frames), -1).sum(axis=1)
    seen = ann["visible"] * ann["opacity"] > 0.25
    assert seen[a:b].any() and (changed[seen] >= 20).all(), (label, changed[seen])
    for s in where.action_segments:
        assert changed[s * T:(s + 1) * T].max() >= 20, (label, s)
    assert set(where.motion_segments) <= set(where.action_segments)
    # the labelled action runs in the window: progress 0 -> 1 for a forward class, 1 -> 0 when played backwards
    prog = ann["progress"][a:b]
    ends = (prog[0], prog[-1])
    assert ends == ((1.0, 0.0) if label % 2 else (0.0, 1.0))
    assert np.all(np.diff(prog) <= 0) if label % 2 else np.all(np.diff(prog) >= 0)


def test_motion_direction_follows_the_label():
    for index in range(3):
        for name, sign in [("moving_right", 1), ("moving_left", -1)]:
            _, ann, where = render_video(IDX[name], video_seed(5, "train", IDX[name], index), CFG)
            m0, m1 = where.motion_frames
            assert sign * (ann["world_x"][m1 - 1] - ann["world_x"][m0]) > 0.3 * BASE.width
        for name, sign in [("rotating_cw", 1), ("rotating_ccw", -1)]:
            _, ann, where = render_video(IDX[name], video_seed(5, "train", IDX[name], index), CFG)
            m0, m1 = where.motion_frames
            assert sign * (ann["angle"][m1 - 1] - ann["angle"][m0]) > 100


def test_a_one_segment_scene_is_the_base_clip():
    """The action of a scene is the existing renderer's: a window over a whole clip-length scene is render_clip."""
    for label in (0, 5, 10, 13):
        f1, a1 = render_clip(label, 17, BASE)
        f2, a2 = render_scene(label, 17, BASE, BASE.frames, (0, BASE.frames))
        assert np.array_equal(f1, f2) and all(np.array_equal(a1[k], a2[k]) for k in a1)
        assert set(a2) == set(SCENE_ANNOTATION_KEYS)


def test_second_class_of_a_pair_is_the_forward_video_reversed():
    n = CFG.frames
    for a, b in PAIRS[::3]:
        ss = video_seed(2, "train", b, 1)
        fb, ab, where = render_video(b, ss, CFG)
        i, j = where.action_frames
        fa, aa = render_scene(a, lv._sub(ss, 1), BASE, n, (n - j, n - i))
        assert np.array_equal(fb, fa[::-1])
        assert all(np.array_equal(ab[k], aa[k][::-1]) for k in aa)


def test_layout_law_is_uniform_and_mirror_symmetric():
    cfg = LongVideoConfig(name="law", base=BASE, segments=4, span=(1, 2), train_per_class=0, val_per_class=0)
    draws = [action_layout(cfg, video_seed(0, "train", 0, i)) for i in range(2000)]
    counts = np.bincount([k for _, k in draws], minlength=3)[1:]
    assert abs(counts[0] - counts[1]) < 150
    firsts = {k: np.bincount([s for s, kk in draws if kk == k], minlength=cfg.segments - k + 1) for k in (1, 2)}
    for k, c in firsts.items():  # first segment uniform, so the mirrored first segment L - k - first is too
        assert len(c) == cfg.segments - k + 1 and c.min() > 0.75 * c.mean()


# ------------------------------------------------------------------------------------------------- the dataset
def test_eval_items_are_the_sdk_pipeline_per_segment(bench: Path):
    ds = LongVideoDataset.from_dir(bench, "val", sampler=SAMPLER, preprocess=PREP, train=False)
    assert len(ds) == len(CLASSES) and ds.hflip_map is None
    clips, label = ds[5]
    assert clips.shape == (3, 4, 3, 64, 64) and clips.dtype == torch.float32 and label == ds.records[5].label == 5
    with VideoFile(ds.records[5].path) as v:
        for s in range(3):
            expected = PREP(v.read_indices(8 * s + SAMPLER.indices(8)))
            np.testing.assert_array_equal(clips[s].numpy(), expected)
    assert ds.segment_indices(24).tolist() == [[1, 3, 5, 7], [9, 11, 13, 15], [17, 19, 21, 23]]
    meta = json.loads((bench / "meta.json").read_text())
    assert np.flatnonzero(ds.action_mask(5)).tolist() == meta["videos"]["val"][5]["action_segments"]
    thwc = LongVideoDataset.from_dir(bench, "val", sampler=SAMPLER, preprocess=dataclasses.replace(PREP, layout="THWC"),
                                     train=False)
    assert thwc[5][0].shape == (3, 4, 64, 64, 3)


def test_training_items_random_per_seed_epoch_index_and_flip_maps_the_label(bench: Path):
    ds = LongVideoDataset.from_dir(bench, "train", sampler=SAMPLER, preprocess=PREP, train=True, seed=3)
    a, b = ds[(0, 2)], ds[(0, 2)]
    assert torch.equal(a[0], b[0]) and a[1] == b[1]
    assert not torch.equal(a[0], ds[(1, 2)][0]), "a new epoch draws new offsets / crops"
    right = IDX["moving_right"]
    i = next(k for k, r in enumerate(ds.records) if r.label == right)
    common = {"sampler": SAMPLER, "preprocess": PREP, "train": True, "seed": 4}
    flipped, lab_f = LongVideoDataset.from_dir(bench, "train", flip_prob=1.0, **common)[i]
    plain, lab_p = LongVideoDataset.from_dir(bench, "train", hflip=False, **common)[i]
    assert lab_p == right and lab_f == IDX["moving_left"]
    torch.testing.assert_close(flipped, plain.flip(-1), rtol=0, atol=0)
    loader = make_loader(ds, batch_size=4, workers=0, shuffle=True, seed=1)
    clips, labels = next(iter(loader))
    assert clips.shape == (4, 3, 4, 3, 64, 64) and labels.shape == (4,)


# ------------------------------------------------------------------------------------------------- bad input
def test_bad_dataset_input_raises_typed_errors(bench: Path, tmp_path: Path):
    kw = {"sampler": SAMPLER, "preprocess": PREP, "train": False}
    with pytest.raises(ConfigError, match="labels.txt"):
        LongVideoDataset.from_dir(tmp_path / "missing", **kw)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "labels.txt").write_text("a\nb\n")
    (foreign / "meta.json").write_text(json.dumps({"generator": "training.data.synthetic"}))
    with pytest.raises(ConfigError, match="not a long-video dataset"):
        LongVideoDataset.from_dir(foreign, **kw)
    with pytest.raises(ConfigError, match="split"):
        LongVideoDataset.from_dir(bench, "test", **kw)
    good = LongVideoDataset.from_dir(bench, "val", **kw).records[0]
    bad = tmp_path / "broken.mp4"
    data = good.path.read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(DecodeError, match="broken.mp4"):
        LongVideoDataset([VideoRecord(bad, 0)], segments=3, **kw)[0]
    with pytest.raises(ConfigError, match="expected 4 segments x 8 frames"):
        LongVideoDataset([good], segments=4, segment_frames=8, **kw)[0]
    with pytest.raises(ConfigError, match="segments"):
        LongVideoDataset([good], segments=0, **kw)
    with pytest.raises(ConfigError, match="no videos"):
        LongVideoDataset([], segments=3, **kw)


def test_config_validation():
    with pytest.raises(ConfigError, match="span"):
        LongVideoConfig(name="x", base="tiny", segments=2, span=(1, 3), train_per_class=1, val_per_class=1)
    with pytest.raises(ConfigError, match="segments"):
        LongVideoConfig(name="x", base="tiny", segments=0, span=(1, 1), train_per_class=1, val_per_class=1)
    with pytest.raises(ConfigError, match="base preset"):
        LongVideoConfig(name="x", base="huge", segments=2, span=(1, 1), train_per_class=1, val_per_class=1)
    with pytest.raises(ConfigError, match="unknown preset"):
        generate("/nonexistent/never", "huge")
    with pytest.raises(ValueError, match="action window"):
        render_scene(0, 0, BASE, 16, (15, 17))
    assert lv.PRESETS["tiny"].base is PRESETS["tiny"] and lv.PRESETS["small"].frames == 8 * 32


def test_overwrite_protection_and_interrupted_run(tmp_path: Path, monkeypatch):
    sub = dataclasses.replace(CFG, train_per_class=1, val_per_class=0, segments=2, span=(1, 1))
    out = generate(tmp_path / "d", sub, seed=0, workers=1, progress=False)
    with pytest.raises(FileExistsError, match="overwrite"):
        generate(out, sub, seed=1, workers=1, progress=False)
    assert lv.main(["--out", str(out), "--quiet"]) == 2
    generate(out, sub, seed=1, workers=1, progress=False, overwrite=True)
    assert json.loads((out / "meta.json").read_text())["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"], "no partial / old directories left behind"

    calls = []
    real = writer.write_mp4

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(writer, "write_mp4", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path / "e", sub, workers=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_cli_module_entry_point(tmp_path: Path):
    """`python -m training.data.long_video` with worker processes (the __main__ module re-import path)."""
    out = tmp_path / "cli"
    r = subprocess.run([sys.executable, "-m", "training.data.long_video", "--preset", "tiny", "--out", str(out),
                        "--seed", "0", "--workers", "2", "--train-per-class", "1", "--val-per-class", "0", "--quiet"],
                       cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert len(list((out / "videos" / "train").glob("*.mp4"))) == len(CLASSES)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["preset"] == "tiny" and meta["frames"] == 4 * 16 and meta["counts"] == {"train": 16, "val": 0}


# ------------------------------------------------------------------------------------------------- persistent action
PCFG = LongVideoConfig(name="ptest", base=BASE, segments=5, span=(3, 4), shots=(1, 2), train_per_class=0,
                       val_per_class=1)


def test_brief_event_presets_unchanged_by_the_persistent_regime():
    """meta.json's config of the brief-event presets (what cached datasets and feature caches key on) is the one
    written before persistent presets existed."""
    import hashlib

    dump = json.dumps([lv.PRESETS[n].to_dict() for n in ("tiny", "small", "full")], sort_keys=True).encode()
    assert hashlib.sha256(dump).hexdigest() == "ba943a665c18a3ba43c31cd18adb4ace6eab48b5cc1d2126266c826e66d962ed"
    assert not lv.PRESETS["small"].persistent and lv.PRESETS["persistent_small"].persistent
    with pytest.raises(ConfigError, match="shots"):
        dataclasses.replace(PCFG, shots=(0, 2))
    with pytest.raises(ConfigError, match="brief-event"):
        lv.shot_layout(CFG, 0)


def test_persistent_shots_cover_the_video_with_the_action_on_most_segments():
    lengths = set()
    for i in range(300):
        shots = lv.shot_layout(PCFG, video_seed(0, "train", 0, i))
        assert [s[0] for s in shots] == list(np.cumsum([0] + [s[1] for s in shots[:-1]]))  # contiguous from 0
        assert sum(s[1] for s in shots) == PCFG.segments
        action = [s for s in shots if not s[2]]
        idle = [s for s in shots if s[2]]
        assert PCFG.span[0] <= sum(s[1] for s in action) <= PCFG.span[1] and len(idle) <= 1
        assert all(1 <= s[1] <= PCFG.shots[1] for s in action)
        lengths.update(s[1] for s in action)
    assert lengths == {1, 2}


def test_persistent_video_is_shots_of_independent_scenes_and_reverses_as_a_whole():
    for a, b in PAIRS[::4]:
        ss = video_seed(1, "val", a, 2)
        fa, anna, where = render_video(a, ss, PCFG)
        fb, annb, _ = render_video(b, ss, PCFG)
        assert np.array_equal(fb, fa[::-1]) and np.array_equal(annb["present"], anna["present"][::-1])
        T = BASE.frames
        for i, (first, n, idle) in enumerate(lv.shot_layout(PCFG, ss)):
            scene, ann = render_scene(a, lv._sub(ss, 1 + i), BASE, n * T, (0, n * T), idle=idle)
            assert np.array_equal(fa[first * T:(first + n) * T], scene)  # its own scene: seed child 1 + i
            assert ann["present"].all() != idle
            if n == 1 and not idle:
                assert np.array_equal(scene, render_clip(a, lv._sub(ss, 1 + i), BASE)[0])  # a base clip
        present = anna["present"].reshape(PCFG.segments, T).all(1)
        assert tuple(np.flatnonzero(present)) == where.action_segments
        assert present.sum() >= PCFG.span[0]


def test_persistent_dataset_records_its_shots(tmp_path: Path):
    out = generate(tmp_path / "p", PCFG, seed=0, workers=1, progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["config"]["shots"] == [1, 2] and "shots" in meta["scene"]
    ds = LongVideoDataset.from_dir(out, "val", sampler=SAMPLER, preprocess=PREP, train=False)
    npz = np.load(out / "annotations.npz")
    for i, v in enumerate(meta["videos"]["val"]):
        played = v["shots"]
        assert sum(n for _, n, _ in played) == PCFG.segments
        action = [s for first, n, idle in played if not idle for s in range(first, first + n)]
        assert action == v["action_segments"] == list(np.flatnonzero(ds.action_mask(i)))
        assert list(np.flatnonzero(npz["val_present"][i].reshape(PCFG.segments, -1).all(1))) == action
    assert np.array_equal(decode(out / meta["videos"]["val"][3]["path"]).shape, (PCFG.frames, 128, 128, 3))
