"""A FASTER bundle of *trained* clip models keeps the whole schedule's predictions in every runtime.

Parity on fresh networks proves little: a random MobileNetV2 with unmeasured BN statistics gives nearly the same output
for every input, so a program that mixed up segments, roles or the features' standardisation could still match. Here
both clip models are trained the product's way (``training.train``: ImageNet trunk frozen and cached, TAM head trained
until it fits the tiny benchmark's training clips), the 1:3 FAST-GRU (pooled) row is trained on their features
(``training.faster``), and the bundle must reproduce the torch pipeline's logits on every validation long video --
whose predictions differ from video to video -- in the exporter's own check and through ``sdk.VideoClassifier`` from
the video files. The same run's adaptive checkpoint (learned gate) is exported too, and streamed frame by frame it
must equal the torch gated reference (the checkpoint's own gate on the torch cheap model's outputs), with the gate
firing on some segments and not others; thresholds +-inf must give the cheap-only / expensive-only pipelines.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch

import sdk
from converters.export import ExportOptions, export_bundle
from sdk.bundle import Bundle
from sdk.manifest import MANIFEST_FILE, SCHEMA_FILE
from training import faster
from training.data.long_video import LongVideoConfig, LongVideoDataset, generate
from training.data.synthetic import PRESETS
from training.checkpoint import load_faster
from training.models.faster import clip_outputs, schedule_mask
from training.train import main as train_main

SEGMENTS, SEGMENT_FRAMES, SCHEDULE = 4, 8, "1:3"
CLIP_MODELS = {"expensive": 4, "cheap": 1}  # frames each role's TAM-head model sees of a segment
FORMATS = {"pte": "executorch", "onnx": "onnx"}  # export format -> runtime backend
ATOL = 1e-4


def train_and_export(tiny_benchmark: Path, root: Path) -> dict:
    """Two clip models trained on the tiny benchmark, the long-video benchmark, the trained 1:3 row and its bundle,
    and the same run's adaptive (learned gate) checkpoint and its bundle (.pte for the native core, .onnx): the
    session's ``faster_trained`` fixture (conftest.py), shared with tests/test_native.py."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    checkpoints = {}
    for role, frames in CLIP_MODELS.items():
        out = root / role
        assert train_main(["--data", str(tiny_benchmark), "--out", str(out), "--arch", "tam_head_mobilenet_v2",
                           "--frames", str(frames), "--size", "64", "--resize", "72", "--freeze", "7",
                           "--cache-precision", "fp32", "--epochs", "8", "--batch-size", "8", "--optimizer", "adamw",
                           "--lr", "3e-3", "--select", "last", "--no-hflip", "--workers", "0"]) == 0
        last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
        assert last["train_acc"] >= 0.5, f"the {role} clip model did not learn its training clips: {last}"
        checkpoints[role] = out / "best.pt"
    base = dataclasses.replace(PRESETS["tiny"], frames=SEGMENT_FRAMES)
    cfg = LongVideoConfig(name="test", base=base, segments=SEGMENTS, span=(1, 2), train_per_class=2, val_per_class=1)
    bench = generate(root / "lv", cfg, seed=5, workers=1, progress=False)
    report = faster.run(faster.FasterConfig(
        data=str(bench), out=str(root / "faster"), expensive=str(checkpoints["expensive"]),
        cheap=str(checkpoints["cheap"]), dim=32, epochs=40, batch_size=8, schedules=SCHEDULE,
        aggregators="fast_gru_pooled", gates="learned", gate_fire_rate=0.5))
    row = report["rows"][0]
    assert row["train_loss"] < 0.9 * np.log(16), f"the aggregator did not train: {row}"
    ckpt = Path(row["checkpoint"])
    bundle = root / "faster.vbundle"
    videos = json.loads((bench / "meta.json").read_text())["counts"]["val"]
    export_bundle(ExportOptions(checkpoint=ckpt, out=bundle, formats=tuple(FORMATS), parity_clips=videos - 1,
                                golden_clips=1, threads=1))
    gated_ckpt = Path(report["adaptive"]["aggregators"]["fast_gru_pooled"]["curves"]["learned"]["checkpoint"])
    gated = root / "gated.vbundle"
    export_bundle(ExportOptions(checkpoint=gated_ckpt, out=gated, formats=tuple(FORMATS), parity_clips=videos - 1,
                                golden_clips=1, threads=1))
    torch.set_num_threads(threads)
    return {"bench": bench, "checkpoint": ckpt, "bundle": bundle, "gated_checkpoint": gated_ckpt, "gated": gated}


@pytest.fixture(scope="module")
def torch_logits(faster_trained) -> tuple[list[Path], np.ndarray]:
    """Every validation video's path and its logits from the torch pipeline (each role's sampler and preprocessing,
    the clip models, projections, FAST-GRU), the reference the bundle must reproduce."""
    loaded = load_faster(faster_trained["checkpoint"])
    data = {r: LongVideoDataset.from_dir(faster_trained["bench"], "val", sampler=loaded.samplers[r],
                                         preprocess=loaded.preprocess[r], train=False) for r in CLIP_MODELS}
    mask = schedule_mask(SCHEDULE, SEGMENTS)
    logits = []
    with torch.no_grad():
        for i in range(len(data["cheap"].records)):
            feats = {r: clip_outputs(loaded.clip_models[r], data[r][i][0])[0][None] for r in CLIP_MODELS}
            logits.append(loaded.model(feats["expensive"], feats["cheap"], mask)[0].numpy())
    return [r.path for r in data["cheap"].records], np.stack(logits)


def test_the_trained_pipeline_tells_videos_apart(torch_logits):
    """What makes the parity below worth something: the reference is not one answer for every video."""
    _, logits = torch_logits
    assert len(set(logits.argmax(-1).tolist())) >= 3
    assert (logits - logits.mean(0)).std() > 1000 * ATOL


def test_the_exporter_checks_the_whole_schedule_per_runtime(faster_trained):
    with Bundle(faster_trained["bundle"]) as b:
        for backend in FORMATS.values():
            record = b.manifest.program(backend=backend, role="aggregator").details["video_parity"]
            assert record["videos"] == 15 and record["reference"].startswith("torch fp32")
            assert record["max_abs_diff"] < ATOL and record["top1_agreement"] == 1.0, (backend, record)


@pytest.mark.parametrize("backend", FORMATS.values())
def test_sdk_from_video_files_equals_torch_on_every_validation_video(faster_trained, torch_logits, backend):
    """Decoding, segmenting, each role's frame sampling and resize/crop, the clip programs and the aggregator steps,
    as the device runs them, on all 16 validation long videos."""
    paths, expected = torch_logits
    classifier = sdk.VideoClassifier(sdk.load(faster_trained["bundle"], backend=backend, verify=True))
    got = np.stack([classifier.classify(str(p)).logits for p in paths])
    np.testing.assert_allclose(got, expected, atol=ATOL)
    assert (got.argmax(-1) == expected.argmax(-1)).all()


# ---- the adaptive schedule, shipped ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gated_reference(faster_trained) -> dict:
    """Per validation video, the torch logits of the adaptive checkpoint under its own gate (the reference) and under
    the two fixed ends, and where its gate fired."""
    loaded = load_faster(faster_trained["gated_checkpoint"])
    data = {r: LongVideoDataset.from_dir(faster_trained["bench"], "val", sampler=loaded.samplers[r],
                                         preprocess=loaded.preprocess[r], train=False) for r in CLIP_MODELS}
    out = {"gated": [], "cheap-only": [], "expensive-only": [], "masks": []}
    with torch.no_grad():
        for i in range(len(data["cheap"].records)):
            runs = {r: clip_outputs(loaded.clip_models[r], data[r][i][0]) for r in CLIP_MODELS}
            mask = loaded.gate_mask(runs["cheap"][0], runs["cheap"][1])
            out["masks"].append(mask.numpy())
            for name, m in (("gated", mask), ("cheap-only", schedule_mask("cheap-only", SEGMENTS)),
                            ("expensive-only", schedule_mask("expensive-only", SEGMENTS))):
                out[name].append(loaded.model(runs["expensive"][0][None], runs["cheap"][0][None], m)[0].numpy())
    return {"paths": [r.path for r in data["cheap"].records], **{k: np.stack(v) for k, v in out.items()}}


def _stream(bundle: Path, paths: list[Path], threshold: float | None = None) -> tuple[np.ndarray, sdk.LatencyStats]:
    """Each video streamed frame by frame from its file (a fresh stream per video): its last segment's logits."""
    classifier = sdk.StreamClassifier(sdk.load(bundle, backend="onnx", verify=True), gate_threshold=threshold)
    logits = []
    for path in paths:
        classifier.reset()
        predictions = [p for p in classifier.run(str(path)) if p.error is None]
        assert len(predictions) == SEGMENTS
        logits.append(predictions[-1].logits)
    return np.stack(logits), classifier.stats


def test_the_gated_bundle_streams_the_torch_gated_reference(faster_trained, gated_reference):
    """The gate is in the bundle (a declared rule), the runtime runs it on every segment and the expensive model
    where it fires: streamed logits equal torch's gated pipeline on every validation video, and the stats say how
    often the expensive model ran -- as often as torch's gate fired, on some segments but not all."""
    with Bundle(faster_trained["gated"]) as b:
        spec = b.manifest.faster
        record = b.manifest.program(backend="onnx", role="aggregator").details["video_parity"]
    assert (spec.schedule, spec.pattern, spec.gate.kind) == ("adaptive", ("cheap",), "learned")
    manifest = json.loads((faster_trained["gated"] / MANIFEST_FILE).read_text())
    jsonschema.validate(manifest, json.loads(SCHEMA_FILE.read_text()))  # what other languages read, too
    assert record["max_abs_diff"] < ATOL and record["top1_agreement"] == 1.0, record
    masks = gated_reference["masks"]
    assert 0 < masks.mean() < 1, "the gate must fire on some segments and not on others for this to mean anything"
    got, stats = _stream(faster_trained["gated"], gated_reference["paths"])
    expected = gated_reference["gated"]
    assert (got.argmax(-1) == expected.argmax(-1)).mean() == 1.0
    assert np.abs(got - expected).max() <= ATOL
    assert (stats.segments, stats.expensive_segments) == (masks.size, int(masks.sum()))
    classifier = sdk.VideoClassifier(sdk.load(faster_trained["gated"], backend="onnx"))  # whole files: the same numbers
    whole = np.stack([classifier.classify(str(p)).logits for p in gated_reference["paths"]])
    assert np.abs(whole - expected).max() <= ATOL and classifier.stats.expensive_segments == int(masks.sum())


def test_a_gate_that_never_fires_is_cheap_only_and_one_that_always_fires_is_expensive_only(faster_trained,
                                                                                           gated_reference):
    paths = gated_reference["paths"]
    assert np.abs(gated_reference["cheap-only"] - gated_reference["expensive-only"]).max() > 1000 * ATOL
    for threshold, schedule, share in ((math.inf, "cheap-only", 0.0), (-math.inf, "expensive-only", 1.0)):
        got, stats = _stream(faster_trained["gated"], paths, threshold)
        np.testing.assert_allclose(got, gated_reference[schedule], atol=ATOL, err_msg=schedule)
        assert stats.expensive_share == share
    with pytest.raises(sdk.ConfigError, match="gate_threshold applies to adaptive FASTER bundles"):
        sdk.StreamClassifier(sdk.load(faster_trained["bundle"], backend="onnx"), gate_threshold=0.5)
