"""Tests of ``python -m training.faster``: schedules, the MACs accounting, the feature cache, the outputs.

The whole pipeline runs once on a 32-video long-video benchmark with tiny random clip models (1 epoch); accuracies of
such models mean nothing and are only checked to be in [0, 1].
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

import av  # noqa: F401  (installed by scripts/env.sh: a missing one fails, never skips)
import cv2  # noqa: F401  (installed by scripts/env.sh: a missing one fails, never skips)
import skimage  # noqa: F401  (installed by scripts/env.sh: a missing one fails, never skips)
import matplotlib  # noqa: F401  (installed by scripts/env.sh: a missing one fails, never skips)

from sdk.errors import ConfigError
from training import faster
from training.checkpoint import load_faster
from training.config import config_from_mapping, load_recipe
from training.data.long_video import LongVideoConfig, generate
from training.data.synthetic import PRESETS
from training.faster import FasterConfig
from training.models.faster import clip_outputs, parse_schedule, schedule_mask

SEGMENTS = 4
SCHEDULES = ["expensive-only", "1:1", "1:3", "1:7", "cheap-only"]
AGGREGATORS = ["average", "gru", "fast_gru_pooled", "fast_gru"]
SMALL_MODELS = {"expensive_frames": 2, "expensive_size": 64, "expensive_width": 0.35, "cheap_frames": 1,
                "cheap_size": 48, "cheap_width": 0.35, "pretrained": False, "dim": 16, "epochs": 1,
                "batch_size": 8}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two intra-op threads on two cores loaded by other jobs run these tiny convs ~8x slower than one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _copy_cache(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.glob("features_*.pt"):
        shutil.copy(f, dst / f.name)


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    base = dataclasses.replace(PRESETS["tiny"], frames=4)
    cfg = LongVideoConfig(name="test", base=base, segments=SEGMENTS, span=(1, 2), train_per_class=1,
                          val_per_class=1)
    return generate(tmp_path_factory.mktemp("faster") / "lv", cfg, seed=3, workers=1, progress=False)


@pytest.fixture(scope="module")
def first_run(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("faster_out")
    cfg = FasterConfig(data=str(bench), out=str(out), **SMALL_MODELS)
    return cfg, faster.run(cfg)


# ---- schedules ------------------------------------------------------------------------------------------------------
def test_schedule_masks():
    assert schedule_mask("expensive-only", 5).tolist() == [True] * 5
    assert schedule_mask("cheap-only", 5).tolist() == [False] * 5
    assert schedule_mask("1:1", 5).tolist() == [True, False, True, False, True]
    assert schedule_mask("1:3", 8).tolist() == [True, False, False, False, True, False, False, False]
    assert schedule_mask("1:7", 4).tolist() == [True, False, False, False]
    assert schedule_mask("1:2", 7).tolist() == [True, False, False, True, False, False, True]
    for n in (1, 3, 7):
        for length in (1, 4, 8, 16, 17):
            assert int(schedule_mask(f"1:{n}", length).sum()) == math.ceil(length / (n + 1))


def test_parse_schedule_names_and_errors():
    assert parse_schedule("expensive") == ("expensive-only", 0)
    assert parse_schedule(" Cheap-Only ") == ("cheap-only", None)
    assert parse_schedule("1:03") == ("1:3", 3)
    for bad in ("1:0", "2:3", "1:", "1:-1", "1:x", "every-other", ""):
        with pytest.raises(ConfigError):
            parse_schedule(bad)


def test_config_errors(bench, tmp_path, capsys):
    with pytest.raises(ConfigError, match="bad schedule"):
        FasterConfig(data=str(bench), schedules="1:3,1:0")
    with pytest.raises(ConfigError, match="duplicates"):
        FasterConfig(data=str(bench), schedules="1:3,1:03")
    with pytest.raises(ConfigError, match="unknown aggregator"):
        FasterConfig(data=str(bench), aggregators="average,transformer")
    with pytest.raises(ConfigError, match="map_size"):
        FasterConfig(data=str(bench), map_size=-1)
    with pytest.raises(ConfigError, match="larger than the smaller feature map"):
        faster.run(FasterConfig(data=str(bench), out=str(tmp_path / "o"), **{**SMALL_MODELS, "map_size": 3}))
    with pytest.raises(ConfigError, match="data="):
        FasterConfig()
    with pytest.raises(ConfigError, match="does not exist"):
        faster.run(FasterConfig(data=str(tmp_path / "missing"), out=str(tmp_path / "o")))
    assert faster.main([f"data={bench}", "epochs=0"]) == 2  # the command line: one error line, no traceback
    assert "epochs" in capsys.readouterr().err


def test_recipe_parses():
    recipe = load_recipe("faster_small")
    cfg = config_from_mapping(FasterConfig, {**recipe, "data": "x"})
    assert cfg.schedule_list == SCHEDULES and cfg.aggregator_list == AGGREGATORS and cfg.cheap_size == 48


# ---- the pipeline ---------------------------------------------------------------------------------------------------
def test_every_row_and_outputs(first_run):
    cfg, report = first_run
    rows = {(r["schedule"], r["aggregator"]): r for r in report["rows"]}
    assert set(rows) == {(s, a) for s in SCHEDULES for a in AGGREGATORS}
    n_val = report["dataset"]["videos"]["val"]
    for r in rows.values():  # a top-1 is a count of correctly classified validation videos, over all of them
        correct = r["top1"] * n_val
        assert 0 <= round(correct) <= n_val and abs(correct - round(correct)) < 1e-4
        assert math.isfinite(r["train_loss"])
    out = Path(cfg.out)
    for name in ("faster.json", "faster_table.md", "accuracy_vs_macs.png", "config.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert json.loads((out / "faster.json").read_text())["rows"] == json.loads(json.dumps(report["rows"]))
    table = (out / "faster_table.md").read_text()
    assert table.count("\n| ") == len(rows) + 2 + 2 - 1  # header, separator, rows, two clip-model-alone lines
    assert (out / "accuracy_vs_macs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["dataset"]["segments"] == SEGMENTS and report["dataset"]["seed"] == 3
    assert report["map_size"] == 2  # 64 px and 48 px MobileNetV2 maps are both 2x2
    assert report["clip_model_alone"]["expensive"]["top1"] is None  # random model: untrained head, no fake number


def test_macs_follow_from_the_schedule(first_run):
    _, report = first_run
    e = report["clip_models"]["expensive"]["gmacs_per_clip"]
    c = report["clip_models"]["cheap"]["gmacs_per_clip"]
    assert e > c > 0
    for r in report["rows"]:
        _, n = parse_schedule(r["schedule"])
        n_e = 0 if n is None else math.ceil(SEGMENTS / (n + 1))
        assert r["expensive_clips"] == n_e
        agg = r["aggregator_gmacs"]
        assert agg["step"] > 0
        assert agg["per_video"] == pytest.approx(n_e * agg["projection_expensive"]
                                                 + (SEGMENTS - n_e) * agg["projection_cheap"] + SEGMENTS * agg["step"])
        assert r["gmacs_per_video"] == pytest.approx(n_e * e + (SEGMENTS - n_e) * c + agg["per_video"])
    for a in AGGREGATORS:
        macs = [next(r for r in report["rows"] if r["schedule"] == s and r["aggregator"] == a)["gmacs_per_video"]
                for s in SCHEDULES]
        assert macs == sorted(macs, reverse=True) and macs[0] > macs[-1]
        rows = [r for r in report["rows"] if r["aggregator"] == a]
        assert rows[0]["macs_ratio"] == pytest.approx(1.0)
        assert all(0 < r["macs_ratio"] <= 1.0 + 1e-9 for r in rows)


def test_features_cached_reused_and_invalidated(first_run, tmp_path):
    cfg, report = first_run
    out = Path(cfg.out)
    assert not any(report["clip_models"][role]["features_cached"][s] for role in ("expensive", "cheap")
                   for s in ("train", "val"))
    for role in ("expensive", "cheap"):
        for split in ("train", "val"):
            data = torch.load(out / f"features_{role}_{split}.pt", weights_only=True)
            assert data["features"].shape[:2] == (len(data["labels"]), SEGMENTS)
    _copy_cache(out, tmp_path)  # the module's cache stays as the first run left it
    quick = {"out": str(tmp_path), "schedules": "1:1", "aggregators": "average"}
    again = faster.run(dataclasses.replace(cfg, **quick))
    assert all(again["clip_models"][r]["features_cached"] == {"train": True, "val": True}
               for r in ("expensive", "cheap"))
    changed = faster.run(dataclasses.replace(cfg, cheap_size=64, **quick))
    assert changed["clip_models"]["expensive"]["features_cached"] == {"train": True, "val": True}
    assert changed["clip_models"]["cheap"]["features_cached"] == {"train": False, "val": False}
    assert changed["clip_models"]["cheap"]["gmacs_per_clip"] > report["clip_models"]["cheap"]["gmacs_per_clip"]
    (tmp_path / "features_expensive_val.pt").write_bytes(b"not a torch file")  # truncated/foreign: recomputed
    broken = faster.run(dataclasses.replace(cfg, cheap_size=64, **quick))
    assert broken["clip_models"]["expensive"]["features_cached"] == {"train": True, "val": False}
    assert broken["rows"][0]["top1"] == changed["rows"][0]["top1"]


def test_deterministic_by_seed(first_run, tmp_path):
    cfg, report = first_run
    _copy_cache(Path(cfg.out), tmp_path)
    quick = {"out": str(tmp_path), "schedules": "1:3", "aggregators": "gru"}
    a = faster.run(dataclasses.replace(cfg, **quick))["rows"][0]
    b = faster.run(dataclasses.replace(cfg, **quick))["rows"][0]
    ref = next(r for r in report["rows"] if r["schedule"] == "1:3" and r["aggregator"] == "gru")
    assert a["train_loss"] == b["train_loss"] == ref["train_loss"] and a["top1"] == ref["top1"]


def test_cli_prints_the_table(first_run, capsys, tmp_path):
    cfg, _ = first_run
    _copy_cache(Path(cfg.out), tmp_path)
    args = [f"{k}={v}" for k, v in SMALL_MODELS.items()]
    assert faster.main([f"data={cfg.data}", f"out={tmp_path}", "schedules=1:7,cheap-only", "aggregators=average",
                        *args]) == 0
    printed = capsys.readouterr().out
    assert "| 1:7 | average |" in printed and "| cheap-only | average |" in printed


def test_map_path_features_equal_the_models_own(first_run, tmp_path):
    """Features taken from the backbone maps (fast_gru runs) are the models' forward_features, pooled."""
    cfg, _ = first_run
    plain = faster.run(dataclasses.replace(cfg, out=str(tmp_path), schedules="1:1", aggregators="average"))
    assert plain["map_size"] is None and not plain["clip_models"]["expensive"]["features_cached"]["val"]
    for role in ("expensive", "cheap"):
        a = torch.load(Path(cfg.out) / f"features_{role}_val.pt", weights_only=True)
        b = torch.load(tmp_path / f"features_{role}_val.pt", weights_only=True)
        assert a["maps"].shape[-3:] == (a["features"].shape[-1], 2, 2) and b["maps"] is None
        torch.testing.assert_close(a["features"], b["features"], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(a["logits"], b["logits"], rtol=1e-4, atol=1e-5)
    # maps asked for on a cache without them: recomputed
    again = faster.run(dataclasses.replace(cfg, out=str(tmp_path), schedules="1:1", aggregators="fast_gru"))
    assert again["clip_models"]["cheap"]["features_cached"] == {"train": False, "val": False}


# ---- checkpoints ----------------------------------------------------------------------------------------------------
def test_row_checkpoints_rebuild_the_trained_models(first_run, bench):
    """Every row leaves a checkpoint; load_faster rebuilds the clip models (same features as the cache) and the
    projections + aggregator (same val top-1 as the report)."""
    from training.data.long_video import LongVideoDataset

    cfg, report = first_run
    for row in report["rows"]:
        assert Path(row["checkpoint"]).is_file()
    row = next(r for r in report["rows"] if (r["schedule"], r["aggregator"]) == ("1:3", "fast_gru"))
    loaded = load_faster(row["checkpoint"])
    assert loaded.meta.pattern == ["expensive", "cheap", "cheap", "cheap"]
    assert loaded.meta.segment_frames == 4 and loaded.meta.segments == SEGMENTS
    cached = {role: torch.load(Path(cfg.out) / f"features_{role}_val.pt", weights_only=True)
              for role in ("expensive", "cheap")}
    with torch.no_grad():
        pred = loaded.model(cached["expensive"]["maps"], cached["cheap"]["maps"], schedule_mask("1:3", SEGMENTS))
    assert float((pred.argmax(1) == cached["expensive"]["labels"]).float().mean()) == pytest.approx(row["top1"])
    for role in ("expensive", "cheap"):
        video = LongVideoDataset.from_dir(bench, "val", sampler=loaded.samplers[role],
                                          preprocess=loaded.preprocess[role], train=False)[0][0]
        with torch.no_grad():
            features, logits, maps = clip_outputs(loaded.clip_models[role], torch.as_tensor(video), 2)
        torch.testing.assert_close(features, cached[role]["features"][0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(logits, cached[role]["logits"][0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(maps, cached[role]["maps"][0], rtol=1e-4, atol=1e-5)


def test_load_faster_refuses_changed_clip_weights(first_run, tmp_path):
    cfg, report = first_run
    run_dir = tmp_path / "moved"
    shutil.copytree(cfg.out, run_dir)  # relative references: a moved run still loads
    ckpt = run_dir / "models" / Path(report["rows"][0]["checkpoint"]).name
    load_faster(ckpt)
    weights = run_dir / "clip_cheap.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="changed since"):
        load_faster(ckpt)
    with pytest.raises(ConfigError, match="not a FASTER checkpoint"):
        load_faster(run_dir / "clip_expensive.pt")
