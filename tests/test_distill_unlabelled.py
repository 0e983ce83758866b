"""Distillation on unlabelled videos (issue 28): an unlabelled clip never contributes a label term (a student that
learns only from unlabelled clips and a random teacher stays at chance, even when the file listing them carries
labels), and unlabelled clips are cached like the labelled split (same store, same per-video keys: nothing is
computed again)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from sdk.errors import ConfigError
from training.data.unlabelled import UNLABELLED, read_unlabelled, without
from training.distill import DistillConfig, SeeVeryLittle, labelled_cross_entropy

SMALL = dict(arch="tam_head_mobilenet_v2", size=64, resize=72, freeze=7, workers=0,
             batch_size=16, optimizer="adamw", select="last", hflip=False)


class Linear(nn.Module):
    """Features are the clip averaged over time; a linear classifier on them."""

    def __init__(self, classes: int = 3, width: int = 4):
        super().__init__()
        self.fc, self.num_features = nn.Linear(width, classes), width

    def forward_features(self, clips: torch.Tensor, start: int = 0) -> torch.Tensor:
        return clips

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = features.mean(1)
        return pooled if pre_logits else self.fc(pooled)


def test_unlabelled_clips_have_no_label_term() -> None:
    """The cross-entropy is the mean over the labelled clips only; a batch of unlabelled clips has none, so what the
    student learns from it does not depend on anything but the teacher."""
    torch.manual_seed(0)
    logits, labels = torch.randn(4, 3), torch.tensor([2, UNLABELLED, 0, UNLABELLED])
    expected = nn.functional.cross_entropy(logits[[0, 2]], labels[[0, 2]], label_smoothing=0.1)
    assert labelled_cross_entropy(logits, labels, 0.1).item() == pytest.approx(expected.item(), rel=1e-6)

    loss = SeeVeryLittle(Linear(), Linear(), DistillConfig(teacher="given"))
    t_clips, s_clips = torch.randn(4, 4, 4), torch.randn(4, 2, 4)
    positions = torch.tensor([[0, 2]] * 4)
    total, _, terms = loss(t_clips, s_clips, positions, torch.full((4,), UNLABELLED))
    assert terms["ce"].item() == 0.0
    assert total.item() == pytest.approx((terms["kd"] + terms["rep"]).item(), rel=1e-6)


def test_reading_unlabelled_videos(tmp_path: Path, write_video) -> None:
    """A folder is searched recursively (hidden entries skipped); a CSV needs only a path column; labelled videos are
    not listed twice; a missing path is a typed error."""
    a = write_video(tmp_path / "cam" / "day1" / "a.mp4")
    b = write_video(tmp_path / "cam" / "b.webm")
    write_video(tmp_path / "cam" / ".trash" / "c.mp4")
    (tmp_path / "cam" / "notes.txt").write_text("not a video")
    records = read_unlabelled(tmp_path / "cam")
    assert [r.path for r in records] == [b, a] and {r.label for r in records} == {UNLABELLED}
    (tmp_path / "list.csv").write_text("path\ncam/b.webm\n")
    assert [r.path for r in read_unlabelled(tmp_path / "list.csv")] == [tmp_path / "cam" / "b.webm"]
    assert [r.path for r in without(records, read_unlabelled(tmp_path / "list.csv"))] == [a]
    with pytest.raises(ConfigError, match="not found"):
        read_unlabelled(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="do not exist"):
        (tmp_path / "gone.csv").write_text("path\ncam/gone.mp4\n")
        read_unlabelled(tmp_path / "gone.csv")
    with pytest.raises(ConfigError, match="no-teacher"):
        DistillConfig(no_teacher=True, unlabelled=str(tmp_path / "cam"))


def test_student_of_a_random_teacher_on_unlabelled_clips_stays_at_chance(tiny_benchmark: Path, tmp_path: Path,
                                                                         monkeypatch) -> None:
    """A random teacher (ImageNet features, an untrained classifier: lr 0) and unlabelled clips listed in a CSV that
    *does* carry their labels: the student, scored on those same clips, stays near chance (1/16) -- the labels never
    reach it, while the same student trained on them memorises them. The teacher run cached these videos as its
    training split: the distillation computes only the scoring clips' (fp32) features, none for the unlabelled clips
    (they are keyed like labelled ones), and a second run computes nothing."""
    import training.data.feature_cache as fc
    from training.distill import distill
    from training.train import TrainConfig, train

    cache = tmp_path / "cache"
    teacher = TrainConfig(data=str(tiny_benchmark), out=str(tmp_path / "teacher"), frames=4, epochs=1, lr=0.0,
                          cache_dir=str(cache), **SMALL)
    train(teacher)
    computed, compute = [], fc._compute
    monkeypatch.setattr(fc, "_compute", lambda *a, **kw: computed.append((kw["desc"], kw["dtype"])) or compute(*a, **kw))
    common = dict(data=str(tiny_benchmark), teacher=str(tmp_path / "teacher" / "best.pt"), frames=2,
                  val_split="train.csv", cache_dir=str(cache), epochs=12, lr=0.01, weight_decay=0.0, **SMALL)
    student = distill(DistillConfig(out=str(tmp_path / "student"), train_split="",
                                    unlabelled=str(tiny_benchmark / "train.csv"), **common))
    assert student["distill"]["labelled_videos"] == 0 and student["distill"]["unlabelled_videos"] == 64
    assert computed == [("cache train", "float32")], "only the scoring clips' features are new"
    labelled = distill(DistillConfig(out=str(tmp_path / "labelled"), **common))  # the positive control
    assert len(computed) == 1, "a second run computes no feature"
    assert labelled["best"]["top1"] >= 0.5, "the control must be able to memorise the labels"
    assert student["best"]["top1"] <= 0.2, f"unlabelled clips leaked their labels: {student['best']['top1']:.3f}"


def test_frame_budget_reads_finished_runs_and_tabulates_every_k(tmp_path: Path, monkeypatch) -> None:
    """``python -m benchmarks frame_budget`` resumes: finished runs are read, not trained again; one row per model
    (the teacher once, then distilled and label-only per k) and the plot."""
    import json

    import training.distill
    from benchmarks import frame_budget

    teacher = {"arch": "t", "frames": 8, "gmacs": 0.3, "top1": 0.8, "within_pair_acc": 0.9}
    for k, role, top1 in ((1, "distilled", 0.5), (1, "label_only", 0.4), (4, "distilled", 0.78), (4, "label_only", 0.7)):
        run = tmp_path / f"k{k}_{role}"
        run.mkdir()
        student = {"frames": k, "sampler": {"of": 8}, "gmacs": 0.3 * k / 8, "top1": top1, "within_pair_acc": 0.8}
        (run / "summary.json").write_text(json.dumps({"distill": {"student": student, "teacher": teacher},
                                                      "train_seconds": 1.0, "checkpoint": str(run / "best.pt")}))
    monkeypatch.setattr(training.distill, "distill", lambda cfg: pytest.fail(f"{cfg.out} was trained again"))
    assert frame_budget.main(["--data", "unused", "--teacher", "t.pt", "--frames", "4,1", "--out", str(tmp_path)]) == 0
    rows = [json.loads(line) for line in (tmp_path / "frame_budget.jsonl").read_text().splitlines()]
    assert [(r["model"], r["frames"], r["top1"]) for r in rows] == [
        ("teacher", 8, 0.8), ("distilled", 1, 0.5), ("label_only", 1, 0.4), ("distilled", 4, 0.78),
        ("label_only", 4, 0.7)]
    assert (tmp_path / "frame_budget.png").stat().st_size > 0
