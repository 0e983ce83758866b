"""A FASTER bundle of *trained* clip models keeps the whole schedule's predictions in every runtime.

Parity on fresh networks proves little: a random MobileNetV2 with unmeasured BN statistics gives nearly the same output
for every input, so a program that mixed up segments, roles or the features' standardisation could still match. Here
both clip models are trained the product's way (``training.train``: ImageNet trunk frozen and cached, TAM head trained
until it fits the tiny benchmark's training clips), the 1:3 FAST-GRU (pooled) row is trained on their features
(``training.faster``), and the bundle must reproduce the torch pipeline's logits on every validation long video --
whose predictions differ from video to video -- in the exporter's own check and through ``sdk.VideoClassifier`` from
the video files.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import sdk
from converters.export import ExportOptions, export_bundle
from sdk.bundle import Bundle
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


@pytest.fixture(scope="module")
def trained(tiny_benchmark: Path, tmp_path_factory) -> dict:
    """Two clip models trained on the tiny benchmark, the long-video benchmark, the trained 1:3 row and its bundle."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("faster_trained")
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
        aggregators="fast_gru_pooled"))
    row = report["rows"][0]
    assert row["train_loss"] < 0.9 * np.log(16), f"the aggregator did not train: {row}"
    ckpt = Path(row["checkpoint"])
    bundle = root / "faster.vbundle"
    videos = json.loads((bench / "meta.json").read_text())["counts"]["val"]
    export_bundle(ExportOptions(checkpoint=ckpt, out=bundle, formats=tuple(FORMATS), parity_clips=videos - 1,
                                golden_clips=1, threads=1))
    torch.set_num_threads(threads)
    return {"bench": bench, "checkpoint": ckpt, "bundle": bundle}


@pytest.fixture(scope="module")
def torch_logits(trained) -> tuple[list[Path], np.ndarray]:
    """Every validation video's path and its logits from the torch pipeline (each role's sampler and preprocessing,
    the clip models, projections, FAST-GRU), the reference the bundle must reproduce."""
    loaded = load_faster(trained["checkpoint"])
    data = {r: LongVideoDataset.from_dir(trained["bench"], "val", sampler=loaded.samplers[r],
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


def test_the_exporter_checks_the_whole_schedule_per_runtime(trained):
    with Bundle(trained["bundle"]) as b:
        for backend in FORMATS.values():
            record = b.manifest.program(backend=backend, role="aggregator").details["video_parity"]
            assert record["videos"] == 15 and record["reference"].startswith("torch fp32")
            assert record["max_abs_diff"] < ATOL and record["top1_agreement"] == 1.0, (backend, record)


@pytest.mark.parametrize("backend", FORMATS.values())
def test_sdk_from_video_files_equals_torch_on_every_validation_video(trained, torch_logits, backend):
    """Decoding, segmenting, each role's frame sampling and resize/crop, the clip programs and the aggregator steps,
    as the device runs them, on all 16 validation long videos."""
    paths, expected = torch_logits
    classifier = sdk.VideoClassifier(sdk.load(trained["bundle"], backend=backend, verify=True))
    got = np.stack([classifier.classify(str(p)).logits for p in paths])
    np.testing.assert_allclose(got, expected, atol=ATOL)
    assert (got.argmax(-1) == expected.argmax(-1)).all()
