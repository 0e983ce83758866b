"""FASTER bundles (issue 6, item 5): a ``training.faster`` row exported as clip programs + an aggregator step program,
with the schedule in the manifest, checked in each runtime; and a runtime driving the bundle from video frames alone
(what ``sdk`` and the native core do) matches the torch model.

One tiny long-video benchmark (4 segments of 4 frames), tiny random clip models, 1 epoch; the spatial FAST-GRU (the
variant with the most export surface: feature maps, 1x1 convs, BN) under the 1:3 schedule.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import sdk
from converters.export import ExportOptions, export_bundle
from converters.faster import AGGREGATOR_PARITY_STEPS
from sdk.backends import load_runner
from sdk.bundle import Bundle
from sdk.errors import BundleError, ConfigError
from sdk.manifest import MANIFEST_FILE, SCHEMA_FILE
from sdk.video import VideoFile
from training import faster
from training.data.long_video import LongVideoConfig, LongVideoDataset, generate
from training.data.synthetic import PRESETS
from training.checkpoint import load_faster
from training.models.faster import clip_outputs, schedule_mask

SEGMENTS, SEGMENT_FRAMES = 4, 4
PARITY_VIDEOS = 6  # 24 segments per clip program, one 20-step aggregator sequence


@pytest.fixture(scope="module")
def row(tmp_path_factory) -> tuple[Path, Path]:
    """``(benchmark, checkpoint)`` of a trained 1:3 fast_gru row."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("faster_export")
    base = dataclasses.replace(PRESETS["tiny"], frames=SEGMENT_FRAMES)
    cfg = LongVideoConfig(name="test", base=base, segments=SEGMENTS, span=(1, 2), train_per_class=1, val_per_class=1)
    bench = generate(root / "lv", cfg, seed=5, workers=1, progress=False)
    report = faster.run(faster.FasterConfig(
        data=str(bench), out=str(root / "run"), expensive_frames=2, expensive_size=64, expensive_width=0.35,
        cheap_frames=1, cheap_size=48, cheap_width=0.35, pretrained=False, dim=16, epochs=1, batch_size=8,
        schedules="1:3", aggregators="fast_gru"))
    torch.set_num_threads(threads)
    return bench, Path(report["rows"][0]["checkpoint"])


@pytest.fixture(scope="module")
def bundle(row, tmp_path_factory) -> Path:
    _, ckpt = row
    out = tmp_path_factory.mktemp("faster_bundle") / "faster.vbundle"
    export_bundle(ExportOptions(checkpoint=ckpt, out=out, formats=("pte", "onnx"), parity_clips=PARITY_VIDEOS,
                                threads=1))
    return out


def test_bundle_holds_the_schedule_and_every_role_per_backend(bundle):
    with Bundle(bundle) as b:
        b.verify()
        m = b.manifest
    spec = m.faster
    assert spec.schedule == "1:3" and spec.pattern == ("expensive", "cheap", "cheap", "cheap")
    assert (spec.segment_frames, spec.segments, spec.aggregator) == (SEGMENT_FRAMES, SEGMENTS, "fast_gru")
    assert [spec.role(i) for i in range(6)] == ["expensive", "cheap", "cheap", "cheap", "expensive", "cheap"]
    assert spec.clip_models["expensive"].sampler.frames == 2 and spec.clip_models["cheap"].sampler.frames == 1
    assert (spec.clip_models["expensive"].input.preprocess.size, spec.clip_models["cheap"].input.preprocess.size) \
        == (64, 48)
    assert m.sampler == spec.clip_models["expensive"].sampler  # the top level describes pattern[0]'s model
    for backend in ("executorch", "onnx"):
        exp, cheap, agg = (m.program(backend=backend, role=r) for r in ("expensive", "cheap", "aggregator"))
        assert (exp.mode, cheap.mode, agg.mode) == ("clip", "clip", "aggregate")
        assert [t.name for t in exp.outputs] == ["logits", "features"]
        assert exp.outputs[1].shape == cheap.outputs[1].shape == agg.inputs[0].shape == (1, 16, 2, 2)
        assert [t.name for t in agg.state] == ["hidden"] and agg.state[0].shape[0] == 1
        assert agg.outputs[0].shape == (1, len(m.labels))
        for p in (exp, cheap, agg):
            par = p.parity
            assert par.status == "verified" and par.max_abs_diff <= par.tolerance and par.top1_agreement == 1.0
        assert exp.parity.clips == cheap.parity.clips == PARITY_VIDEOS * SEGMENTS
        assert exp.parity.features_max_abs_diff <= exp.parity.tolerance
        assert agg.parity.clips == PARITY_VIDEOS * SEGMENTS // AGGREGATOR_PARITY_STEPS
        video = agg.details["video_parity"]
        assert video["videos"] == PARITY_VIDEOS and video["top1_agreement"] == 1.0 and video["max_abs_diff"] < 1e-4
    for p in m.programs:  # everything but dtype casts of constants inside the XNNPACK delegate
        if p.backend == "executorch":
            assert {op.split(".")[1] for op in p.details["non_delegated_ops"]} <= {"_to_dim_order_copy"}, p.id


def test_golden_vectors_reproduce_in_their_runtimes(bundle):
    """Each program run on its golden inputs gives the outputs stored at export; the aggregator's golden sequence is
    stepped from zero state."""
    with Bundle(bundle) as b:
        golden = b.golden()
        assert golden["aggregator/input/features"].shape[1:] == (2 * SEGMENTS, 1, 16, 2, 2)  # the 2 golden videos
        for p in b.manifest.programs:
            runner = load_runner(p.backend, b.path(p), threads=1)
            x = golden[f"{p.role}/input/{p.inputs[0].name}"]
            if p.mode == "clip":
                got = np.stack([runner.run([clip])[0] for clip in x])
            else:
                state, rows = [np.zeros(t.shape, np.float32) for t in p.state], []
                for step in x[0]:
                    logits, *state = runner.run([step, *state])
                    rows.append(logits[0])
                got = np.stack(rows)[None]
            np.testing.assert_allclose(got.reshape(golden[f"{p.id}/logits"].shape), golden[f"{p.id}/logits"],
                                       atol=1e-5)


def test_a_runtime_driving_the_manifest_from_decoded_frames_matches_torch(bundle, row):
    """Only the manifest, the programs and the video file: segments of ``segment_frames`` frames, each role's sampler
    and resize/crop, the role's clip program, the aggregator step. Equals the torch model on the same video -- by
    hand here, and through ``sdk.VideoClassifier``."""
    bench, ckpt = row
    loaded = load_faster(ckpt)
    dataset = {r: LongVideoDataset.from_dir(bench, "val", sampler=loaded.samplers[r], preprocess=loaded.preprocess[r],
                                            train=False) for r in ("expensive", "cheap")}
    with Bundle(bundle) as b:
        spec = b.manifest.faster
        runners = {r: load_runner("onnx", b.path(b.manifest.program(backend="onnx", role=r)), threads=1)
                   for r in ("expensive", "cheap", "aggregator")}
        state_specs = b.manifest.program(backend="onnx", role="aggregator").state
    classifier = sdk.VideoClassifier(sdk.load(bundle, backend="onnx", verify=True))
    for index in (0, 5):
        record = dataset["cheap"].records[index]
        with VideoFile(record.path) as video:
            frames = video.read_indices(range(SEGMENTS * SEGMENT_FRAMES))
        state = [np.zeros(t.shape, np.float32) for t in state_specs]
        for i in range(len(frames) // spec.segment_frames):
            role = spec.role(i)
            model = spec.clip_models[role]
            segment = frames[i * spec.segment_frames:(i + 1) * spec.segment_frames]
            picked = segment[model.sampler.indices(len(segment))]
            clip = _resize_crop(model.input.preprocess, picked)
            _, features = runners[role].run([clip])
            logits, *state = runners["aggregator"].run([features, *state])
        with torch.no_grad():
            segs = {r: dataset[r][index][0] for r in ("expensive", "cheap")}
            mask = schedule_mask("1:3", SEGMENTS)
            maps = {r: clip_outputs(loaded.clip_models[r], segs[r], 2)[2][None] for r in segs}
            expected = loaded.model(maps["expensive"], maps["cheap"], mask).numpy()
        np.testing.assert_allclose(logits, expected, atol=1e-4)
        np.testing.assert_allclose(classifier.classify(str(record.path)).logits, expected[0], atol=1e-4)  # the sdk


def _resize_crop(preprocess, frames: np.ndarray) -> np.ndarray:
    """The runtime's share of preprocessing (resize, crop; values kept in [0, 255]): the program normalises."""
    raw = dataclasses.replace(preprocess, scale=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    return np.ascontiguousarray(raw(frames), dtype=np.float32)


def test_manifest_matches_the_json_schema(bundle):
    import jsonschema

    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    jsonschema.validate(manifest, json.loads(SCHEMA_FILE.read_text()))
    manifest["faster"]["pattern"] = ["expensive", "medium"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(manifest, json.loads(SCHEMA_FILE.read_text()))


def _edited(bundle: Path, tmp_path: Path, change) -> Path:
    copy = tmp_path / "edited.vbundle"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    change(manifest)
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    return copy


@pytest.mark.parametrize("change, message", [
    (lambda m: m["faster"].update(pattern=["expensive", "medium"]), r"faster\.pattern"),
    (lambda m: m["faster"].update(segment_frames=0), r"faster\.segment_frames"),
    (lambda m: m["faster"]["clip_models"].pop("cheap"), r"the pattern uses \['cheap'\]"),
    (lambda m: m.update(programs=[p for p in m["programs"] if p["id"] != "aggregator_onnx_fp32"]),
     r"onnx fp32 programs lack the FASTER role\(s\) \['aggregator'\]"),
    (lambda m: m.pop("faster"), r"need a 'faster' section"),
    (lambda m: m["programs"][2].update(mode="clip"), r"only it, has mode 'aggregate'"),
    (lambda m: m["programs"][0]["outputs"].pop(), r"returning \(logits, features\)"),
])
def test_broken_faster_manifests_raise_bundle_errors(bundle, tmp_path, change, message):
    with pytest.raises(BundleError, match=message):
        Bundle(_edited(bundle, tmp_path, change))


def test_a_faster_checkpoint_has_no_stream_mode(row, tmp_path):
    _, ckpt = row
    with pytest.raises(ConfigError, match="drop --mode"):
        export_bundle(ExportOptions(checkpoint=ckpt, out=tmp_path / "x.vbundle", formats=("onnx",), mode="stream"))
