"""Offline evaluation: three-crop views, multi-view clips, confusion metrics and plot, the CLI on .pt and .pt2 files,
the shuffled-frames (order-blind) check."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sdk.errors import ConfigError
from sdk.preprocess import Preprocess
from sdk.samplers import Sampler
from training.data.datasets import ClipDataset, DatasetInfo, read_video_csv
from training.checkpoint import load_checkpoint_model
from training.evaluate import default_out, evaluate_checkpoint, evaluation_report, main, predict, shuffle_frames
from training.metrics import confusion_matrix, pair_confusion, per_class_accuracy
from training.models import create

SAMPLER = Sampler("uniform_segments", 4)
PREP = Preprocess(size=64, resize=72)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------------- crops
def test_one_crop_is_the_eval_transform_and_three_crops_have_its_shape():
    frames = np.random.default_rng(0).integers(0, 256, (3, 40, 60, 3), dtype=np.uint8)
    spec = Preprocess(size=32, resize=36)
    np.testing.assert_array_equal(spec.crops(frames, 1), spec(frames)[None])
    three = spec.crops(frames, 3)
    assert three.shape == (3, 3, 3, 32, 32) and three.dtype == np.float32
    np.testing.assert_array_equal(three[1], spec(frames), "the middle crop is the centre crop on a wide frame")
    assert not np.array_equal(three[0], three[1]) and not np.array_equal(three[1], three[2])
    assert Preprocess(size=32, resize=36, layout="THWC").crops(frames, 3).shape == (3, 3, 32, 32, 3)
    assert spec.crops(frames[0], 3).shape == (3, 3, 32, 32), "a single frame gives (crops, C, H, W)"
    with pytest.raises(ConfigError, match="num_crops"):
        spec.crops(frames, 2)


def test_three_crops_sit_at_the_start_centre_and_end_of_the_longer_side():
    # Columns encode their x: a 10x20 frame (no resize) gives crops of columns 0..9, 5..14, 10..19.
    wide = np.repeat(np.arange(20, dtype=np.uint8)[None, :, None], 10, axis=0).repeat(3, axis=2)
    spec = Preprocess(size=10, resize=10, mean=(0, 0, 0), std=(1, 1, 1), scale=1.0, layout="THWC")
    for crop, start in zip(spec.crops(wide, 3), (0, 5, 10)):
        np.testing.assert_array_equal(crop[0, :, 0], np.arange(start, start + 10))
    tall = wide.transpose(1, 0, 2)  # rows encode y: the crops move down
    for crop, start in zip(spec.crops(tall, 3), (0, 5, 10)):
        np.testing.assert_array_equal(crop[:, 0, 0], np.arange(start, start + 10))
    square = np.repeat(np.arange(12, dtype=np.uint8)[None, :, None], 12, axis=0).repeat(3, axis=2)
    square_spec = Preprocess(size=10, resize=12, mean=(0, 0, 0), std=(1, 1, 1), scale=1.0, layout="THWC")
    assert [int(c[0, 0, 0]) for c in square_spec.crops(square, 3)] == [0, 1, 2], "square frames: along the width"


def test_multi_view_dataset_is_clip_major(tiny_benchmark: Path):
    info = DatasetInfo.from_dir(tiny_benchmark)
    records = read_video_csv(tiny_benchmark / "val.csv", info.labels)[:1]
    views, label = ClipDataset(records, sampler=SAMPLER, preprocess=PREP, train=False, num_clips=2, num_crops=3)[0]
    clips, _ = ClipDataset(records, sampler=SAMPLER, preprocess=PREP, train=False, num_clips=2)[0]
    assert views.shape == (6, 4, 3, 64, 64) and label == records[0].label
    torch.testing.assert_close(views[1], clips[0], rtol=0, atol=0)  # clip 0, centre crop
    torch.testing.assert_close(views[4], clips[1], rtol=0, atol=0)  # clip 1, centre crop
    one, _ = ClipDataset(records, sampler=SAMPLER, preprocess=PREP, train=False)[0]
    assert one.shape == (4, 3, 64, 64)


# ---------------------------------------------------------------------------------------------------- metrics
LABELS = np.array([0, 0, 0, 1, 1, 2, 2, 3])
PRED = np.array([0, 1, 2, 1, 1, 2, 3, 0])
PAIRS = [(0, 1), (2, 3)]


def test_confusion_per_class_and_pair_blocks_on_a_hand_made_example():
    conf = confusion_matrix(PRED, LABELS, 4)
    assert conf.dtype == np.int64
    np.testing.assert_array_equal(conf, [[1, 1, 1, 0], [0, 2, 0, 0], [0, 0, 1, 1], [1, 0, 0, 0]])
    np.testing.assert_allclose(per_class_accuracy(conf), [1 / 3, 1.0, 0.5, 0.0])
    assert np.isnan(per_class_accuracy(confusion_matrix(PRED, LABELS, 5))[4]), "no clips: unknown, not 0"
    assert pair_confusion(conf, PAIRS) == [
        {"pair": [0, 1], "confusion": [[1, 1], [0, 2]], "n": 5, "outside": 1},
        {"pair": [2, 3], "confusion": [[1, 1], [0, 0]], "n": 3, "outside": 1},
    ]


def test_evaluation_report_is_json_ready_and_names_classes():
    scores = torch.nn.functional.one_hot(torch.from_numpy(PRED), 4).float() * 0.6 + 0.1
    report = evaluation_report(scores, torch.from_numpy(LABELS), ["a", "b", "c", "d"], PAIRS)
    assert report["n"] == 8 and report["top1"] == pytest.approx(4 / 8) and report["pair_acc"] == pytest.approx(6 / 8)
    assert report["per_class_accuracy"] == pytest.approx({"a": 1 / 3, "b": 1.0, "c": 0.5, "d": 0.0})
    assert report["pair_confusion"][1]["names"] == ["c", "d"]
    assert json.loads(json.dumps(report)) == report


# ---------------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def checkpoint(tiny_benchmark: Path, tmp_path_factory) -> Path:
    """A randomly initialised tsn_mobilenet_v2 in the training checkpoint format."""
    labels = DatasetInfo.from_dir(tiny_benchmark).labels
    torch.manual_seed(0)
    model = create("tsn_mobilenet_v2", num_classes=len(labels), frames=4, pretrained=False)
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    torch.save({"model": model.state_dict(), "config": {"arch": "tsn_mobilenet_v2", "frames": 4, "size": 64,
                                                        "resize": 72},
                "labels": labels, "epoch": 0, "metrics": {}, "sampler": SAMPLER.to_dict(),
                "preprocess": PREP.to_dict()}, path)
    return path


def test_cli_multi_view_writes_report_and_plot(checkpoint: Path, tiny_benchmark: Path, capsys):
    assert main(["--checkpoint", str(checkpoint), "--data", str(tiny_benchmark), "--clips", "2", "--crops", "3",
                 "--workers", "0", "--device", "cpu"]) == 0
    out = default_out(checkpoint, tiny_benchmark, "val.csv", 2, 3)
    assert out.parent == checkpoint.parent and out.name.startswith(f"eval-best-{tiny_benchmark.name}-")
    assert out.name.endswith("-val-2x3")
    result = json.loads((out / "eval.json").read_text())
    n = len(read_video_csv(tiny_benchmark / "val.csv"))
    assert result["n"] == n and (result["clips"], result["crops"], result["split"]) == (2, 3, "val.csv")
    assert {"checkpoint", "top1", "top5", "pair_acc", "within_pair_acc", "per_class_accuracy", "confusion",
            "pair_confusion"} <= set(result)
    assert np.asarray(result["confusion"]).sum() == n and len(result["pair_confusion"]) == 8
    assert (out / "confusion.png").read_bytes()[:8] == PNG_MAGIC
    printed = capsys.readouterr().out
    assert "within-pair" in printed and "worst:" in printed
    assert f"-> {out / 'eval.json'}" in printed, "the CLI says where the evaluation went"


def test_evaluating_on_another_dataset_never_replaces_an_evaluation(checkpoint: Path, tiny_benchmark: Path,
                                                                     tmp_path: Path):
    """The same checkpoint on its benchmark and on a copy elsewhere (the same files, so the same numbers) lands in
    two directories; an explicit --out holding the other evaluation is refused before any work."""
    import shutil

    other = shutil.copytree(tiny_benchmark, tmp_path / "other", ignore=shutil.ignore_patterns("cache"))
    common = dict(workers=0, device="cpu", clips=1, crops=1)
    first = evaluate_checkpoint(checkpoint, tiny_benchmark, **common)
    before = (Path(first["out"]) / "eval.json").read_text()
    second = evaluate_checkpoint(checkpoint, other, **common)
    assert Path(first["out"]) != Path(second["out"]) and Path(second["out"]).parent == checkpoint.parent
    assert (Path(first["out"]) / "eval.json").read_text() == before
    assert json.loads((Path(second["out"]) / "eval.json").read_text())["data"] == str(other)
    with pytest.raises(ConfigError, match=f"holds another evaluation .*data '{tiny_benchmark}'"):
        evaluate_checkpoint(checkpoint, other, out=first["out"], **common)
    assert (Path(first["out"]) / "eval.json").read_text() == before
    again = evaluate_checkpoint(checkpoint, tiny_benchmark, out=first["out"], **common)  # the same one: redone
    assert again["top1"] == first["top1"]


class ReadsOrder(torch.nn.Module):
    """Class 0 when a clip's values rise from its first frame to its last, class 1 when they fall."""

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        rise = (clips[:, -1] - clips[:, 0]).flatten(1).mean(1)
        return torch.stack([rise, -rise], 1)


def test_shuffled_frames_bring_an_order_reading_model_to_within_pair_chance():
    """Each clip keeps its own frames, in a random (seeded) order: a model that reads the order is exact on ordered
    clips and at within-pair chance on shuffled ones."""
    frames = torch.arange(2.0).view(1, 2, 1, 1, 1).expand(200, 2, 1, 2, 2)
    labels = torch.arange(200) % 2
    offsets = torch.arange(200.0).view(-1, 1, 1, 1, 1)  # every clip its own values
    clips = torch.where(labels.view(-1, 1, 1, 1, 1) == 0, frames, frames.flip(1)) + offsets
    shuffled = shuffle_frames(clips, torch.Generator().manual_seed(0))
    assert torch.equal(shuffled.sort(1).values, clips.sort(1).values)  # the same frames per clip
    loader = [(clips[i:i + 50], labels[i:i + 50]) for i in range(0, 200, 50)]
    for seed, lo, hi in ((None, 1.0, 1.0), (0, 0.35, 0.65)):
        scores, y = predict(ReadsOrder(), loader, torch.device("cpu"), shuffle_seed=seed)
        within_pair = evaluation_report(scores, y, ["up", "down"], [(0, 1)])["within_pair_acc"]
        assert lo <= within_pair <= hi, (seed, within_pair)


def test_cli_shuffle_frames_is_an_evaluation_of_its_own(checkpoint: Path, tiny_benchmark: Path):
    """--shuffle-frames lands beside the ordered evaluation, says so, and leaves an order-blind TSN's scores as
    they are."""
    common = ["--checkpoint", str(checkpoint), "--data", str(tiny_benchmark), "--workers", "0", "--device", "cpu"]
    assert main(common) == 0 and main(common + ["--shuffle-frames"]) == 0
    ordered, shuffled = (json.loads((default_out(checkpoint, tiny_benchmark, "val.csv", 1, 1, s) / "eval.json")
                                    .read_text()) for s in (False, True))
    assert (ordered["shuffle_frames"], shuffled["shuffle_frames"]) == (False, True)
    assert shuffled["confusion"] == ordered["confusion"]


def test_exported_program_with_sidecar_matches_the_eager_model(checkpoint: Path, tiny_benchmark: Path,
                                                               tmp_path: Path):
    model, ckpt = load_checkpoint_model(checkpoint, "cpu")
    example = torch.randn(2, 4, 3, 64, 64)
    program = torch.export.export(model.eval(), (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    pt2 = tmp_path / "model.pt2"
    torch.export.save(program, str(pt2))
    with pytest.raises(ConfigError, match="model.json"):
        load_checkpoint_model(pt2, "cpu")
    pt2.with_suffix(".json").write_text(json.dumps({k: ckpt.to_dict()[k] for k in ("config", "labels", "sampler", "preprocess")}))
    common = dict(workers=0, device="cpu", batch_size=8)
    exported = evaluate_checkpoint(pt2, tiny_benchmark, out=tmp_path / "pt2", **common)
    eager = evaluate_checkpoint(checkpoint, tiny_benchmark, out=tmp_path / "pt", **common)
    assert exported["n"] == eager["n"] and exported["top1"] == eager["top1"]
    assert exported["pair_acc"] == eager["pair_acc"]


def test_bad_inputs_are_typed_errors(checkpoint: Path, tiny_benchmark: Path, tmp_path: Path, capsys):
    with pytest.raises(ConfigError, match="does not exist"):
        evaluate_checkpoint(tmp_path / "missing.pt", tiny_benchmark)
    with pytest.raises(ConfigError, match="split"):
        evaluate_checkpoint(checkpoint, tiny_benchmark, split="nope.csv", workers=0, device="cpu")
    with pytest.raises(ConfigError, match="crops"):
        evaluate_checkpoint(checkpoint, tiny_benchmark, crops=2)
    assert main(["--checkpoint", str(tmp_path / "missing.pt"), "--data", str(tiny_benchmark)]) == 2
    assert "error:" in capsys.readouterr().err
