"""The bundle remembers its training clip (issue 26): ``manifest.clip`` is parsed and validated (Python, JSON Schema,
the native core), written at export from the checkpoint's ``dataset["clip"]``, shown by ``inspect``, and sets the
default stream window -- the clip's seconds at the source's frame rate, else its frames -- in ``sdk.StreamClassifier``,
the native core (``NativeStream``, ``--native``) and the Jetson app, by one rule written once in Python and once in
C++ that agree. A bundle without the section keeps the old 32-frame default and says so once.

Bundles: the tiny ``.pte`` bundles of ``tests/test_native_bundles.py`` (the ``native_bundles`` session fixture), with
a ``clip`` section written into a copy's manifest (the manifest is not hashed). Videos: 30 fps and 60 fps H.264 files
of 54, 90, 120 and 150 frames, none of them the synthetic benchmark's 32.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

import executorch  # noqa: F401  (the core links its C++ runtime; a missing wheel fails, never skips)

import sdk
from apps.jetson.app import run as jetson_run
from sdk.__main__ import main as sdk_main
from sdk.bundle import Bundle
from sdk.classifier import DEFAULT_WINDOW, StreamClassifier, VideoClassifier, choose_window, default_window
from sdk.errors import BundleError, ConfigError
from sdk.manifest import MANIFEST_FILE, SCHEMA_FILE, Manifest, TrainingClip
from sdk.native import default_window as native_default_window
from sdk.native import load_library
from sdk.native.stream import NativeStream, NativeVideoClassifier
from sdk.preprocess import Preprocess
from sdk.samplers import Sampler
from test_native import native_dir  # noqa: F401  (the session build of the core)
from test_native_bundles import video
from tests.runtime_helpers import write_video

CLIP = {"frames": 54, "fps": 30.0, "seconds": 1.8, "videos": 12}  # a real 2 s camera clip's length
ATOL = 1e-5  # native vs Python ExecuTorch, as tests/test_native.py


def with_clip(bundle: Path, root: Path, clip: dict | None) -> Path:
    """A copy of ``bundle`` whose manifest records ``clip`` (None: none, as bundles before schema 1.2)."""
    out = root / bundle.name
    shutil.copytree(bundle, out)
    raw = json.loads((out / MANIFEST_FILE).read_text())
    raw.pop("clip", None)
    if clip is not None:
        raw["clip"] = clip
    (out / MANIFEST_FILE).write_text(json.dumps(raw))
    return out


@pytest.fixture(scope="module")
def clip54(native_bundles, tmp_path_factory) -> Path:
    return with_clip(native_bundles["clip"], tmp_path_factory.mktemp("clip54"), CLIP)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clip-videos")
    return {name: write_video(root / f"{name}.mp4", video(n, seed=n), fps=fps)
            for name, n, fps in (("54@30", 54, 30), ("90@30", 90, 30), ("120@60", 120, 60), ("150@30", 150, 30))}


def sdk_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sdk" and r.levelno == logging.WARNING]


# ----------------------------------------------------------------------------------------------------- the manifest
def test_clip_section_parses_validates_and_round_trips(native_bundles) -> None:
    import jsonschema  # a test dependency (pyproject [test])

    schema = json.loads(SCHEMA_FILE.read_text())
    raw = json.loads((native_bundles["clip"] / MANIFEST_FILE).read_text())
    old = Manifest.parse(raw)
    assert old.clip is None and "clip" not in old.to_dict()  # older bundles still load, and write back unchanged
    for clip in (CLIP, {"frames": 54}, {"frames": 54, "fps": None, "seconds": None, "videos": None}):
        m = Manifest.parse({**raw, "clip": clip})
        assert m.clip == TrainingClip(**{"fps": None, "seconds": None, "videos": None, **clip})
        assert Manifest.parse(json.loads(json.dumps(m.to_dict()))) == m
        jsonschema.validate(m.to_dict(), schema)
    bad = [{"frames": 0}, {"frames": 54.0}, {"frames": True}, {"fps": 30}, {"frames": 54, "fps": 0},
           {"frames": 54, "fps": -30.0}, {"frames": 54, "seconds": "1.8"}, {"frames": 54, "videos": 0},
           {"frames": 54, "sampler": {}}, [54]]
    for clip in bad:
        with pytest.raises(BundleError, match="clip"):
            Manifest.parse({**raw, "clip": clip})
        if clip != {"frames": 54.0}:  # JSON Schema integers include 54.0
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate({**raw, "clip": clip}, schema)


def test_native_core_reads_the_clip_section_strictly(native_bundles, native_dir, tmp_path) -> None:
    lib = load_library(native_dir)
    raw = json.loads((native_bundles["clip"] / MANIFEST_FILE).read_text())
    assert native_default_window(lib, {**raw, "clip": CLIP}, 30.0) == 54
    for clip in ({"frames": 0}, {"frames": 54.0}, {"fps": 30}, {"frames": 54, "fps": 0}, {"frames": 54, "fps": None,
                 "seconds": "1.8"}, {"frames": 54, "videos": 0}, {"frames": 54, "sampler": {}}):
        with pytest.raises(BundleError, match="clip"):
            native_default_window(lib, {**raw, "clip": clip}, 30.0)


# ---------------------------------------------------------------------------------------------------------- the rule
def _manifest(raw: dict, clip: dict | None, **sampler) -> dict:
    out = {k: v for k, v in raw.items() if k != "clip"}
    if clip is not None:
        out["clip"] = clip
    if sampler:
        out["sampler"] = Sampler(**sampler).to_dict()
    return out


def test_default_window_rule(native_bundles) -> None:
    raw = json.loads((native_bundles["clip"] / MANIFEST_FILE).read_text())

    def window(clip, fps, **sampler):
        return default_window(Manifest.parse(_manifest(raw, clip, **sampler)), fps)

    assert window(CLIP, None).frames == 54 and "source's frame rate is unknown" in window(CLIP, None).reason
    assert [window(CLIP, fps).frames for fps in (30, 29.97, 25, 60, 120)] == [54, 54, 45, 108, 216]
    assert window(CLIP, 60).reason == "the training clip's 1.80 s at the source's 60 fps"
    assert [window(CLIP, fps).frames for fps in (0, -30, math.nan, math.inf, True)] == [54] * 5  # unknown rates
    assert window({"frames": 54}, 60).frames == 54  # frame folders: no seconds, the frame count
    assert window({"frames": 54, "seconds": 1.75}, 30).frames == 53  # 52.5 rounds half up (round() would say 52)
    assert window({"frames": 1, "seconds": 0.001}, 30).frames == 1
    old = window(None, 60)
    assert old.frames == DEFAULT_WINDOW and "does not record" in old.warning and "--window" in old.warning
    assert window(None, None, kind="dense", frames=8, stride=5).frames == 36  # at least the sampler's span
    with pytest.raises(ConfigError, match="frame rate right"):
        window({"frames": 54, "seconds": 1e6}, 90000)
    faster = Manifest.parse(json.loads((native_bundles["faster"] / MANIFEST_FILE).read_text()))
    assert default_window(faster, 60).frames == 8 and choose_window(faster, 54).frames == 8  # FASTER: its segment
    given = choose_window(Manifest.parse(_manifest(raw, CLIP)), 20, 60)
    assert (given.frames, given.reason, given.warning) == (20, "given", None)
    with pytest.raises(ConfigError, match="window"):
        choose_window(Manifest.parse(raw), 0)


def test_native_rule_agrees_with_python(native_bundles, native_dir) -> None:
    """One rule written twice (sdk.classifier.default_window, ev::default_window): the same window for every clip and
    source rate tried, half-way roundings and unknown rates included."""
    lib = load_library(native_dir)
    raw = json.loads((native_bundles["clip"] / MANIFEST_FILE).read_text())
    rng = np.random.default_rng(0)
    clips = [CLIP, None, {"frames": 54}, {"frames": 90, "fps": 30.0, "seconds": 3.0}, {"frames": 7, "seconds": 1.75},
             {"frames": 3, "seconds": 0.0005}]
    clips += [{"frames": int(rng.integers(1, 400)), "fps": float(rng.uniform(5, 60)),
               "seconds": float(rng.uniform(0.1, 12))} for _ in range(40)]
    rates = [None, 0.0, 1.0, 24.0, 25.0, 29.97, 30.0, 59.94, 60.0, 240.0, *rng.uniform(1, 120, 8).tolist()]
    compared = 0
    for clip in clips:
        for fps in rates:
            for sampler in ({}, {"kind": "dense", "frames": 8, "stride": 5}):
                m = _manifest(raw, clip, **sampler)
                assert native_default_window(lib, m, fps) == default_window(Manifest.parse(m), fps).frames, (clip, fps)
                compared += 1
    half_way = {"frames": 54, "seconds": 1.75}
    assert native_default_window(lib, _manifest(raw, half_way), 30.0) == 53
    with pytest.raises(ConfigError, match="frame rate"):
        native_default_window(lib, _manifest(raw, {"frames": 54, "seconds": 1e6}), 90000.0)
    assert compared == len(clips) * len(rates) * 2


# ------------------------------------------------------------------------------------------- streams: Python, native
def _py_stream(bundle: Path, source, **kw) -> tuple[StreamClassifier, list]:
    model = sdk.load(bundle, backend="executorch", precision="fp32")
    clf = StreamClassifier(model, **kw)
    return clf, list(clf.run(source))


def test_stream_window_is_the_training_clip_in_python_and_native(clip54, videos, native_dir, caplog) -> None:
    with sdk.VideoFile(videos["90@30"]) as v:
        frames = v.read_indices(range(v.num_frames))
    with caplog.at_level(logging.WARNING, logger="sdk"):
        clf, preds = _py_stream(clip54, videos["90@30"])
        assert clf.window == 54 and clf.window_reason == "the training clip's 1.80 s at the source's 30 fps"
        assert [p.frame_index for p in preds] == [53] and preds[0].ok  # 90 frames: one 54-frame window, a tail
        model = sdk.load(clip54, backend="executorch", precision="fp32")
        whole = VideoClassifier(model).classify(frames[:54])  # window 0 = classify of its 54 frames
        np.testing.assert_array_equal(preds[0].logits, whole.logits)
        with NativeStream(clip54, precision="fp32", library=native_dir) as nat:
            assert nat.window == 54  # without a source: the clip's frames
            nat_preds = list(nat.run(videos["90@30"]))
        assert nat.window == 54 and [p.frame_index for p in nat_preds] == [53]
        assert np.abs(nat_preds[0].logits - preds[0].logits).max() <= ATOL
        no_source = StreamClassifier(model)
        assert no_source.window == 54 and "unknown" in no_source.window_reason
    assert sdk_warnings(caplog) == []  # a 30 fps source, a bundle that records its clip: nothing to warn about


def test_a_60fps_source_spans_the_same_seconds(clip54, videos, native_dir, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="sdk"):
        clf, preds = _py_stream(clip54, videos["120@60"])
        assert clf.window == 108 and clf.fps == 60.0 and [p.frame_index for p in preds] == [107]
        warned = sdk_warnings(caplog)
        assert len(warned) == 1 and "60 fps" in warned[0] and "30 fps videos" in warned[0]
        caplog.clear()
        with NativeStream(clip54, precision="fp32", library=native_dir) as nat:
            nat_preds = list(nat.run(videos["120@60"]))
            assert nat.window == 108 and nat.classifier.window == 108
        assert [p.frame_index for p in nat_preds] == [107]
        assert np.abs(nat_preds[0].logits - preds[0].logits).max() <= ATOL
        assert len(sdk_warnings(caplog)) == 1
        caplog.clear()
        # a camera at a known rate (push-driven apps), and an explicit window that a source's rate never changes
        assert StreamClassifier(sdk.load(clip54, backend="executorch"), fps=60).window == 108
        clf, preds = _py_stream(clip54, videos["120@60"], window=30)
        assert clf.window == 30 and clf.window_reason == "given" and len(preds) == 4


def test_a_bundle_without_clip_keeps_the_old_default_and_warns_once(native_bundles, videos, native_dir, caplog,
                                                                    capsys) -> None:
    old = native_bundles["clip"]
    with caplog.at_level(logging.WARNING, logger="sdk"):
        clf, preds = _py_stream(old, videos["90@30"])
        assert clf.window == DEFAULT_WINDOW and [p.frame_index for p in preds] == [31, 63]
        with NativeStream(old, precision="fp32", library=native_dir) as nat:
            assert nat.window == DEFAULT_WINDOW and len(list(nat.run(videos["90@30"]))) == 2
        warned = sdk_warnings(caplog)
        assert len(warned) == 2 and all("does not record" in w and "--window" in w for w in warned)
        caplog.clear()
        for native in ([], ["--native", "--library", str(native_dir)]):
            assert sdk_main(["stream", str(videos["90@30"]), "--bundle", str(old), "--precision", "fp32",
                             *native]) == 0
            err = capsys.readouterr().err  # what the tool tells the person is on stderr; stdout is predictions
            assert "window: 32 frames (default: the bundle does not record its training clip)" in err
            warned = sdk_warnings(caplog)
            assert len(warned) == 1 and "pass --window" in warned[0]
            caplog.clear()
            assert sdk_main(["stream", str(videos["90@30"]), "--bundle", str(old), "--window", "54", *native]) == 0
            assert "window: 54 frames (given)" in capsys.readouterr().err and sdk_warnings(caplog) == []


def test_cli_stream_says_which_window_and_why(clip54, videos, native_dir, capsys, caplog) -> None:
    for native in ([], ["--native", "--library", str(native_dir)]):
        with caplog.at_level(logging.WARNING, logger="sdk"):
            assert sdk_main(["stream", str(videos["120@60"]), "--bundle", str(clip54), "--precision", "fp32",
                             *native]) == 0
        out, err = capsys.readouterr()
        assert "window: 108 frames (the training clip's 1.80 s at the source's 60 fps)" in err
        assert "[model 0]" in out and "[model 1]" not in out
        assert len(sdk_warnings(caplog)) == 1  # the frame rate, once
        caplog.clear()


# ------------------------------------------------------------------------------------------- classify: the warnings
@pytest.mark.parametrize("native", [False, True])
def test_classify_warns_once_about_length_and_frame_rate(clip54, videos, native_dir, native, caplog) -> None:
    if native:
        clf = NativeVideoClassifier(clip54, precision="fp32", library=native_dir)
    else:
        clf = VideoClassifier(sdk.load(clip54, backend="executorch", precision="fp32"))
    expected = {"54@30": [], "90@30": [],  # 1.8 s and 3 s: within 2x of the 1.8 s training clip
                "150@30": ["is 5.0 s long and the model was trained on 1.8 s clips", "python -m sdk stream"],
                "120@60": ["runs at 60 fps and the model was trained on 30 fps videos"]}
    for name, parts in expected.items():
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="sdk"):
            pred = clf.classify(videos[name])
        assert pred.ok and list(pred.warnings) == sdk_warnings(caplog), name
        assert len(pred.warnings) == (1 if parts else 0) and all(p in pred.warnings[0] for p in parts), pred.warnings
    with sdk.VideoFile(videos["150@30"]) as v:  # frames without a rate: compared in frames (150 vs 54)
        frames = v.read_indices(range(v.num_frames))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sdk"):
        pred = clf.classify(frames[:20])
    assert len(pred.warnings) == 1
    assert "the video is 20 frames long" in pred.warnings[0] and "54-frame clips" in pred.warnings[0]
    if native:
        clf.close()


# -------------------------------------------------------------------------------------- the Jetson app, inspect
@pytest.mark.parametrize("native", [False, True])
def test_jetson_app_uses_the_same_window(clip54, videos, native_dir, native, tmp_path, capsys) -> None:
    summary = jetson_run(clip54, str(videos["120@60"]), out=tmp_path / "a.mp4", headless=True, backend="executorch",
                         native=native, library=native_dir if native else None, quiet=True)
    assert summary["window"] == 108 and summary["frames"] == 120 and summary["predictions"] == 1
    assert "window: 108 frames (the training clip's 1.80 s at the source's 60 fps)" in capsys.readouterr().out


def test_inspect_shows_the_clip(clip54, native_bundles, capsys) -> None:
    assert sdk_main(["inspect", str(clip54)]) == 0
    assert "clip     trained on 54 frames (1.80 s, 30 fps, median of 12 videos)" in capsys.readouterr().out
    assert sdk_main(["inspect", str(native_bundles["clip"])]) == 0
    assert "clip     not recorded" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------- export writes it
def _checkpoint_meta(clip: dict | None) -> dict:
    """A checkpoint's metadata as the training side writes it, with ``dataset["clip"]`` when given."""
    from training.checkpoint import CheckpointMeta

    dataset = {"root": "/data/mine", "preset": None, "seed": 0, **({"clip": clip} if clip is not None else {})}
    return CheckpointMeta(labels=("a", "b", "c", "d"), sampler=Sampler("uniform_segments", 4),
                          preprocess=Preprocess(size=32, resize=36), config={"arch": "x", "frames": 4},
                          dataset=dataset).to_dict()


def test_writer_records_the_checkpoint_clip(native_bundles, monkeypatch, tmp_path) -> None:
    """``write_bundle`` puts the checkpoint's ``dataset["clip"]`` (carried by :func:`provenance`) into the manifest,
    also from a QAT ``.pt2``'s JSON sidecar (training/qat.py keeps the input checkpoint's ``dataset``); the programs'
    lowering is stubbed (the real one is the slow test below)."""
    from converters import writer
    from converters.options import ExportOptions, check_formats
    from sdk.manifest import InputSpec
    from training.checkpoint import CheckpointMeta

    program = Manifest.parse(json.loads((native_bundles["clip"] / MANIFEST_FILE).read_text())).programs[0]
    monkeypatch.setattr(writer, "_lower", lambda *args: [program])

    def export(meta: dict, out: Path) -> Manifest:
        opts = ExportOptions(tmp_path / "int8_qat.pt2", out, formats=["pte"])
        fields = dict(name="mine", labels=("a", "b", "c", "d"), input=InputSpec(Preprocess(size=32, resize=36)),
                      sampler=Sampler("uniform_segments", 4),
                      provenance=writer.provenance(opts, meta, "0" * 64, tmp_path, {}, 1.0))
        report = writer.write_bundle(opts, [], check_formats(["pte"], "fp32"), {}, lambda entries: fields, 0.0)
        return Manifest.parse(json.loads((report.bundle / MANIFEST_FILE).read_text()))

    sidecar = json.loads(json.dumps(_checkpoint_meta(CLIP)))  # what quantize.save_program writes, read back
    assert export(CheckpointMeta.from_dict(sidecar, "int8_qat.json").to_dict(), tmp_path / "a.vbundle").clip == \
        TrainingClip(**CLIP)
    assert export(_checkpoint_meta(None), tmp_path / "b.vbundle").clip is None  # a checkpoint before the record
    with pytest.raises(ConfigError, match="dataset.clip"):
        export(_checkpoint_meta({"frames": "54"}), tmp_path / "c.vbundle")


@pytest.mark.slow
def test_export_records_the_checkpoint_clip(tiny_benchmark: Path, tmp_path: Path) -> None:
    """The real export (``converters.export``, ONNX) of a checkpoint whose dataset records its clip (~45 s)."""
    import torch

    from converters.export import ExportOptions, export_bundle
    from test_converters import make_checkpoint
    from training.checkpoint import atomic_save

    path = make_checkpoint(tmp_path / "tam2.pt", tiny_benchmark, "tam_mobilenet_v2", 2)
    ckpt = torch.load(path, weights_only=True)
    ckpt["dataset"]["clip"] = CLIP
    atomic_save(ckpt, path)
    report = export_bundle(ExportOptions(path, tmp_path / "b.vbundle", formats=["onnx"], parity_clips=2))
    with Bundle(report.bundle) as b:
        assert b.manifest.clip == TrainingClip(**CLIP)
    assert json.loads((report.bundle / MANIFEST_FILE).read_text())["clip"] == CLIP
