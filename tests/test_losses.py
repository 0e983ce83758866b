"""Loss and schedule units against numbers computed by hand (plain ``math``, not the torch functions the code uses):
the see-very-little distillation loss (CE + T^2 KL + REP + inter, the standardised KL, intermediate-layer matching),
label smoothing, warm-up + cosine; and a few optimiser steps of the training recipe reduce its loss."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from sdk.errors import ConfigError
from training.distill import DistillConfig, SeeVeryLittle, distillation_kl, layer_matching
from training.models import create
from training.train import TrainConfig, build_optimizer, warmup_cosine


class Given(nn.Module):
    """Per-frame features are the input itself ``(N, T, F)``; the head averages them over time and applies ``fc``."""

    def __init__(self, weight: list[list[float]]):
        super().__init__()
        self.fc = nn.Linear(len(weight[0]), len(weight), bias=False)
        self.fc.weight.data = torch.tensor(weight)
        self.num_features = len(weight[0])

    def forward_features(self, clips: torch.Tensor, start: int = 0) -> torch.Tensor:
        return clips

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = features.mean(1)
        return pooled if pre_logits else self.fc(pooled)


def _log_softmax(logits: list[float], t: float = 1.0) -> list[float]:
    z = [v / t for v in logits]
    lse = math.log(sum(math.exp(v) for v in z))
    return [v - lse for v in z]


def _ce(logits: list[float], label: int, smoothing: float = 0.0) -> float:
    logp = _log_softmax(logits)
    return -(1 - smoothing) * logp[label] - smoothing * sum(logp) / len(logp)


# two clips; the student sees 1 frame, the teacher 2; features of size 2, 3 classes
S_FRAMES = [[[1.0, 0.0]], [[0.0, 2.0]]]
T_FRAMES = [[[2.0, 0.0], [0.0, 2.0]], [[0.0, 1.0], [0.0, 3.0]]]
S_W = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
T_W = [[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]]
LABELS = [0, 2]
POSITIONS = [[1], [0]]  # the student's frame is the teacher's frame 1 of clip 0 and frame 0 of clip 1


def _by_hand(temperature: float, smoothing: float, inter_weight: float) -> dict[str, float]:
    def logits(frames, w):
        pooled = [sum(f[i] for f in frames) / len(frames) for i in range(2)]
        return [sum(w_i * p for w_i, p in zip(row, pooled)) for row in w], pooled

    terms = {"ce": 0.0, "kd": 0.0, "rep": 0.0, "inter": 0.0}
    for s_frames, t_frames, label, (pos,) in zip(S_FRAMES, T_FRAMES, LABELS, POSITIONS):
        s_logits, s_pooled = logits(s_frames, S_W)
        t_logits, t_pooled = logits(t_frames, T_W)
        terms["ce"] += _ce(s_logits, label, smoothing) / 2  # mean over the batch
        log_pt, log_ps = _log_softmax(t_logits, temperature), _log_softmax(s_logits, temperature)
        kl = sum(math.exp(a) * (a - b) for a, b in zip(log_pt, log_ps))
        terms["kd"] += kl / 2 * temperature ** 2  # "batchmean", times T^2
        terms["rep"] += sum((a - b) ** 2 for a, b in zip(s_pooled, t_pooled)) / 4  # mean over 2 x 2 values
        terms["inter"] += sum((a - b) ** 2 for a, b in zip(s_frames[0], t_frames[pos])) / 4
    terms["total"] = terms["ce"] + terms["kd"] + terms["rep"] + inter_weight * terms["inter"]
    return terms


@pytest.mark.parametrize("smoothing,inter_weight", [(0.0, 0.0), (0.1, 0.5)])
def test_distillation_loss_by_hand(smoothing: float, inter_weight: float) -> None:
    cfg = DistillConfig(teacher="given", temperature=2.0, inter_weight=inter_weight, label_smoothing=smoothing)
    loss = SeeVeryLittle(Given(S_W), Given(T_W), cfg)
    total, logits, terms = loss(torch.tensor(T_FRAMES), torch.tensor(S_FRAMES), torch.tensor(POSITIONS),
                                torch.tensor(LABELS))
    expected = _by_hand(2.0, smoothing, inter_weight)
    assert expected["kd"] > 0.1 and expected["rep"] > 0.1 and expected["inter"] > 0.1  # every term matters here
    for name in ("ce", "kd", "rep") + (("inter",) if inter_weight else ()):
        assert terms[name].item() == pytest.approx(expected[name], rel=1e-6), name
    assert total.item() == pytest.approx(expected["total"], rel=1e-6)
    assert logits.tolist() == [[1.0, 0.0, 1.0], [0.0, 2.0, 2.0]]


def _standardised(logits: list[float]) -> list[float]:
    mean = sum(logits) / len(logits)
    std = math.sqrt(sum((v - mean) ** 2 for v in logits) / (len(logits) - 1))
    return [(v - mean) / std for v in logits]


def test_standardised_kl_by_hand_and_blind_to_each_clips_logit_shift_and_scale() -> None:
    """Logit standardisation: T^2 KL of the z-scored logits (by hand), unchanged when each clip's student (or teacher)
    logits are shifted and scaled by its own amounts -- which the plain KL is not."""
    student = torch.tensor([[1.0, 0.0, 3.0], [0.5, 2.0, -1.0]])
    teacher = torch.tensor([[2.0, -1.0, 4.0], [0.0, 1.0, 0.0]])
    kl = 0.0
    for s, t in zip(student.tolist(), teacher.tolist()):
        log_pt, log_ps = _log_softmax(_standardised(t), 2.0), _log_softmax(_standardised(s), 2.0)
        kl += sum(math.exp(a) * (a - b) for a, b in zip(log_pt, log_ps)) / 2 * 4.0
    assert kl > 0.01
    assert distillation_kl(student, teacher, 2.0, standardise=True).item() == pytest.approx(kl, rel=1e-5)

    scale, shift = torch.tensor([[3.0], [0.2]]), torch.tensor([[-5.0], [7.0]])
    for s, t in ((student * scale + shift, teacher), (student, teacher * scale + shift)):
        assert distillation_kl(s, t, 2.0, standardise=True).item() == pytest.approx(kl, rel=1e-5)
        assert distillation_kl(s, t, 2.0).item() != pytest.approx(distillation_kl(student, teacher, 2.0).item(),
                                                                  rel=1e-2)


def test_layer_matching_reads_the_teachers_maps_at_the_students_frames() -> None:
    """Zero when the student's maps are the teacher's at its frames (the other frames differ), growing with a
    perturbation; a big-little teacher (one step per frame pair) is read at step ``position // 2``."""
    torch.manual_seed(0)
    teacher = [torch.randn(2, 4, 3, 2, 2), torch.randn(2, 4, 5, 1, 1)]
    positions = torch.tensor([[3, 0], [1, 2]])
    student = [t[torch.arange(2)[:, None], positions] for t in teacher]
    assert layer_matching(student, teacher, positions, 4).item() == 0.0
    assert layer_matching(student, teacher, positions.flip(1), 4).item() > 0.5  # wrong frames
    noise = [torch.randn_like(s) for s in student]
    small, large = (layer_matching([s + e * n for s, n in zip(student, noise)], teacher, positions, 4).item()
                    for e in (0.1, 0.2))
    assert 0 < small < large
    assert small == pytest.approx(sum((0.1 * n).pow(2).mean().item() for n in noise) / 2, rel=1e-5)
    # two steps for 4 input frames: frames 0, 1 -> step 0, frames 2, 3 -> step 1
    steps = [t[:, :2] for t in teacher]
    pair_student = [t[torch.arange(2)[:, None], torch.tensor([[1, 0], [0, 1]])] for t in steps]
    assert layer_matching(pair_student, steps, positions, 4).item() == 0.0


def _tam_head(frames: int) -> torch.nn.Module:
    return create("tam_head_mobilenet_v2", num_classes=3, frames=frames, pretrained=True)


def test_layer_term_matches_the_tam_blocks_of_both_models() -> None:
    """Through the models' hooks: a student that is the teacher (same weights, same frames) gives 0; frames read in
    the wrong order, or a perturbed student, do not; blocks of the cached prefix are refused."""
    torch.manual_seed(0)
    teacher, student = _tam_head(2).eval(), _tam_head(2).eval()
    student.load_state_dict(teacher.state_dict())
    cfg = DistillConfig(teacher="given", layer_weight=2.0, layer_blocks="8,12")
    loss = SeeVeryLittle(student, teacher, cfg).eval()
    clips, labels = torch.randn(2, 2, 3, 32, 32), torch.tensor([0, 1])
    in_order, reversed_ = torch.tensor([[0, 1], [0, 1]]), torch.tensor([[1, 0], [1, 0]])
    with torch.no_grad():
        total, _, terms = loss(clips, clips, in_order, labels)
        assert terms["layer"].item() == pytest.approx(0.0, abs=1e-10)
        assert loss(clips, clips, reversed_, labels)[2]["layer"].item() > 1e-3
        for p in student.backbone.features[12].parameters():
            p.add_(0.1 * torch.randn_like(p))
        perturbed_total, _, perturbed = loss(clips, clips, in_order, labels)
    assert perturbed["layer"].item() > 1e-4
    value = {k: v.item() for k, v in perturbed.items()}
    assert perturbed_total.item() == pytest.approx(value["ce"] + value["kd"] + value["rep"] + 2.0 * value["layer"],
                                                   rel=1e-5)
    with pytest.raises(ConfigError, match="cached frozen prefix"):
        SeeVeryLittle(student, teacher, cfg, start=9)
    with pytest.raises(ConfigError, match="layer_blocks"):
        DistillConfig(teacher="given", layer_weight=1.0)


def test_warmup_then_cosine_by_hand() -> None:
    f = warmup_cosine(total_steps=10, warmup_steps=2)
    cos = [0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(9)]  # 8 steps of cosine after 2 of warm-up
    assert [f(s) for s in range(12)] == pytest.approx([0.5, 1.0, *cos, 0.0], abs=1e-12)
    assert f(6) == pytest.approx(0.5)


def test_training_loss_has_the_label_smoothing_and_a_few_steps_reduce_it(tiny_benchmark: Path) -> None:
    """The recipe's own loss (``classifier_job``) on real clips of the benchmark is the label-smoothed cross-entropy
    of its logits, and five optimiser steps (``build_optimizer``) on one batch lower it."""
    from training import distributed
    from training.train import classifier_job

    cfg = TrainConfig(data=str(tiny_benchmark), arch="tsn_mobilenet_v2", pretrained=False, frames=2, size=32,
                      resize=36, label_smoothing=0.2, lr=0.005, workers=0)
    torch.manual_seed(0)
    job = classifier_job(cfg, distributed.setup("cpu"))
    items = [job.train_set[(0, i)] for i in range(8)]
    batch = [torch.stack([c for c, _ in items]), torch.tensor([label for _, label in items])]
    optimizer = build_optimizer(job.module, cfg)
    job.module.train()
    losses = []
    for _ in range(5):
        loss, logits, labels = job.loss(job.module, batch)
        if not losses:  # the first step: the loss is the smoothed CE of these logits, by hand
            by_hand = sum(_ce(row, int(y), 0.2) for row, y in zip(logits.tolist(), labels.tolist())) / len(labels)
            assert loss.item() == pytest.approx(by_hand, rel=1e-5)
            assert by_hand != pytest.approx(sum(_ce(r, int(y)) for r, y in zip(logits.tolist(), labels.tolist())) / 8,
                                            rel=1e-3)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
