"""The adaptive FASTER schedule (``training.faster`` with ``gates=``): the cheap model on every segment, the expensive one
where a gate on the cheap model's outputs fires, the aggregator on whichever features ran.

Promises checked: a gate that never fires is the cheap-only schedule and one that always fires the expensive-only
schedule (predictions exactly, MACs by the formula), per-video masks act video by video, the gate scores mean what they
say, and a run writes the curve. Aggregators here train on random features for a few epochs: their accuracy means
nothing, only the equalities do.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sdk.errors import ConfigError
from training import faster
from training.checkpoint import load_faster
from training.data.long_video import LongVideoConfig, generate
from training.data.synthetic import PRESETS
from training.faster import ClipFeatures, FasterConfig
from training.models.faster import FIRST_CHANGE, feature_change, gate_mask, gate_scores, schedule_mask

VIDEOS, SEGMENTS, CLASSES = 24, 6, 4
AGGREGATORS = ["average", "gru", "fast_gru_pooled", "fast_gru"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _features(seed: int, dim: int) -> ClipFeatures:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(VIDEOS) % CLASSES
    feats = torch.randn(VIDEOS, SEGMENTS, dim, generator=g) + labels.view(-1, 1, 1).float()
    maps = torch.randn(VIDEOS, SEGMENTS, dim, 2, 2, generator=g)
    logits = torch.randn(VIDEOS, SEGMENTS, CLASSES, generator=g) * 3
    return ClipFeatures(feats, logits, maps, labels, [f"v{i}" for i in range(VIDEOS)], "k", False)


@pytest.fixture(scope="module")
def feats() -> dict[str, dict[str, ClipFeatures]]:
    return {"expensive": {"train": _features(0, 12), "val": _features(1, 12)},
            "cheap": {"train": _features(2, 8), "val": _features(3, 8)}}


@pytest.fixture(scope="module")
def cfg() -> FasterConfig:
    return FasterConfig(data="unused", dim=8, epochs=3, batch_size=8, gates="confidence,change,learned")


@pytest.fixture(scope="module")
def trained(feats, cfg) -> dict[str, faster.FasterModel]:
    """One random-mask (adaptive) aggregator per name, trained: BN statistics and weights are not the initial ones."""
    return {name: faster.train_row(name, None, feats, CLASSES, cfg, torch.device("cpu"), 2)[0].eval()
            for name in AGGREGATORS}


@pytest.fixture(scope="module")
def gate(feats, cfg):
    return faster.train_gate(feats["cheap"]["train"], feats["expensive"]["train"], cfg.gate_margin, 0, epochs=20)


def _inputs(feats, model, split="val"):
    return tuple(faster._inputs(feats[role][split], model.spatial) for role in ("expensive", "cheap"))


def test_a_gate_that_never_fires_is_cheap_only_and_one_that_always_fires_is_expensive_only(feats, trained, gate):
    va = feats["cheap"]["val"]
    gmacs = {"expensive": 0.3, "cheap": 0.02}
    for name, model in trained.items():
        x_e, x_c = _inputs(feats, model)
        with torch.no_grad():
            cheap_only = model(x_e, x_c, schedule_mask("cheap-only", SEGMENTS))
            expensive_only = model(x_e, x_c, schedule_mask("expensive-only", SEGMENTS))
        assert not torch.equal(cheap_only, expensive_only)  # the two ends differ, so equality below means something
        agg = faster.aggregator_gmacs(model, schedule_mask("cheap-only", SEGMENTS))
        for kind in ("confidence", "change", "learned"):
            scores = gate_scores(kind, va.features, va.logits, gate if kind == "learned" else None)
            never, mask = faster.gated_predict(model, x_e, x_c, scores, math.inf)
            assert not mask.any() and torch.equal(never, cheap_only), (name, kind)
            assert faster.gated_gmacs(mask, gmacs["expensive"], gmacs["cheap"], agg) == pytest.approx(
                SEGMENTS * gmacs["cheap"] + agg["per_video"])  # the cheap-only schedule's own MACs
            always, mask = faster.gated_predict(model, x_e, x_c, scores, -math.inf)
            assert mask.all() and torch.equal(always, expensive_only), (name, kind)
            expensive_agg = faster.aggregator_gmacs(model, schedule_mask("expensive-only", SEGMENTS))["per_video"]
            assert faster.gated_gmacs(mask, gmacs["expensive"], gmacs["cheap"], agg) == pytest.approx(
                SEGMENTS * gmacs["expensive"] + expensive_agg + SEGMENTS * (gmacs["cheap"] + agg["projection_cheap"]))


def test_the_curve_ends_at_the_two_fixed_schedules(feats, trained, gate):
    """Fire rate 0 is cheap-only and fire rate 1 expensive-only, whatever the scores' range (thresholds +-inf)."""
    model = trained["gru"]
    x_e, x_c = _inputs(feats, model)
    labels = feats["cheap"]["val"].labels
    with torch.no_grad():
        top1 = {s: float((model(x_e, x_c, schedule_mask(s, SEGMENTS)).argmax(1) == labels).float().mean())
                for s in ("cheap-only", "expensive-only")}
    agg = faster.aggregator_gmacs(model, schedule_mask("cheap-only", SEGMENTS))
    for kind in ("confidence", "change", "learned"):
        pts = faster.adaptive_curve(model, feats, kind, gate, False, {"expensive": 0.3, "cheap": 0.02}, agg)
        assert [p["train_fire_rate"] for p in pts] == list(faster.FIRE_RATES)
        assert (pts[0]["val_fire_rate"], pts[0]["top1"]) == (0.0, top1["cheap-only"])
        assert (pts[-1]["val_fire_rate"], pts[-1]["top1"]) == (1.0, top1["expensive-only"])
        macs = [p["gmacs_per_video"] for p in pts]
        assert macs == sorted(macs)  # more firing never costs less


def test_per_video_masks_act_video_by_video(feats, trained):
    masks = faster.random_masks(VIDEOS, SEGMENTS, torch.Generator().manual_seed(5))
    assert 0 < int(masks.sum()) < masks.numel()
    for name, model in trained.items():
        x_e, x_c = _inputs(feats, model)
        with torch.no_grad():
            together = model(x_e, x_c, masks)
            for i in range(0, VIDEOS, 5):
                alone = model(x_e[i:i + 1], x_c[i:i + 1], masks[i])
                torch.testing.assert_close(together[i:i + 1], alone, rtol=1e-5, atol=1e-6, msg=name)


def test_gate_scores_mean_what_they_say():
    f = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [0.0, 3.0]]])
    assert feature_change(f).tolist() == [[FIRST_CHANGE, 0.0, 1.0, 0.0]]  # same direction: 0; orthogonal: 1
    logits = torch.tensor([[[10.0, 0.0], [0.0, 0.0], [0.0, 10.0], [1.0, 0.0]]])
    conf = gate_scores("confidence", f, logits)
    assert conf[0, 1] == pytest.approx(0.5) and conf[0, 0] < 1e-3 and conf.argmax() == 1
    assert gate_mask(torch.tensor([0.1, 0.5, 0.9]), 0.5).tolist() == [False, False, True]


@pytest.fixture(scope="module")
def gated_run(tmp_path_factory) -> tuple[FasterConfig, dict]:
    tmp = tmp_path_factory.mktemp("gated")
    base = dataclasses.replace(PRESETS["tiny"], frames=4)
    lv = LongVideoConfig(name="test", base=base, segments=4, span=(1, 2), train_per_class=1, val_per_class=1)
    root = generate(tmp / "lv", lv, seed=3, workers=1, progress=False)
    cfg = FasterConfig(data=str(root), out=str(tmp / "out"), expensive_frames=2, expensive_size=48,
                       expensive_width=0.35, cheap_frames=1, cheap_size=32, cheap_width=0.35, pretrained=False,
                       dim=8, epochs=1, batch_size=8, schedules="expensive-only,cheap-only", aggregators="gru",
                       gates="change,learned", gate_fire_rate=0.5)
    return cfg, faster.run(cfg)


def test_a_run_with_gates_writes_the_curve(gated_run):
    cfg, report = gated_run
    out = Path(cfg.out)
    saved = json.loads((out / "faster.json").read_text())["adaptive"]["aggregators"]["gru"]
    assert set(saved["curves"]) == {"change", "learned"}
    pts = saved["curves"]["change"]["points"]
    e_only = next(r for r in report["rows"] if r["schedule"] == "expensive-only")
    assert pts[-1]["macs_ratio"] > 1 > pts[0]["macs_ratio"]  # always firing also pays for the cheap model
    assert saved["expensive_only_top1"] == e_only["top1"]
    assert (out / "faster_adaptive.png").stat().st_size > 0
    assert "Adaptive schedule" in (out / "faster_table.md").read_text()
    with pytest.raises(Exception, match="gates"):
        FasterConfig(data=cfg.data, gates="confidence,sometimes")
    with pytest.raises(ConfigError, match="gate_fire_rate"):
        FasterConfig(data=cfg.data, gates="change", gate_fire_rate=0.3)


def test_adaptive_checkpoints_keep_the_gate_and_its_threshold(gated_run):
    """Every (aggregator, gate) is a checkpoint: load_faster rebuilds the aggregator and the gate, whose mask at the
    saved threshold on the cached val features is the curve's point at ``gate_fire_rate`` (fire rate and top-1);
    thresholds +-inf are the cheap-only / expensive-only schedules of the loaded model."""
    cfg, report = gated_run
    cached = {r: torch.load(Path(cfg.out) / f"features_{r}_val.pt", weights_only=True) for r in ("expensive", "cheap")}
    x_e, x_c, labels = cached["expensive"]["features"], cached["cheap"]["features"], cached["cheap"]["labels"]
    for kind, curve in report["adaptive"]["aggregators"]["gru"]["curves"].items():
        loaded = load_faster(curve["checkpoint"])
        rule = loaded.meta.gate
        at = next(p for p in curve["points"] if p["train_fire_rate"] == 0.5)
        assert (rule.kind, rule.threshold, rule.fire_rate) == (kind, at["threshold"], 0.5)
        assert [t for _, t in rule.curve] == [p["threshold"] for p in curve["points"]]
        assert (loaded.gate is not None) == (kind == "learned")
        mask = loaded.gate_mask(x_c, cached["cheap"]["logits"])
        assert 0 < at["val_fire_rate"] < 1 and float(mask.float().mean()) == at["val_fire_rate"]
        with torch.no_grad():
            top1 = float((loaded.model(x_e, x_c, mask).argmax(1) == labels).float().mean())
            for threshold, schedule in ((math.inf, "cheap-only"), (-math.inf, "expensive-only")):
                gated = loaded.model(x_e, x_c, loaded.gate_mask(x_c, cached["cheap"]["logits"], threshold))
                assert torch.equal(gated, loaded.model(x_e, x_c, schedule_mask(schedule, 4))), (kind, schedule)
        assert top1 == at["top1"]


def test_the_bundles_declared_gate_scores_like_the_checkpoints_torch_gate(gated_run):
    """What an adaptive bundle ships (``manifest_gate``: the learned gate's standardisation folded into its weights)
    run by the runtime's gate (numpy, segment by segment, reset per video) scores every val segment like the
    checkpoint's torch gate, so both fire on the same segments."""
    from converters.faster import manifest_gate
    from sdk.gate import Gate
    from training.models.faster import gate_scores

    cfg, report = gated_run
    cheap = torch.load(Path(cfg.out) / "features_cheap_val.pt", weights_only=True)
    for kind, curve in report["adaptive"]["aggregators"]["gru"]["curves"].items():
        loaded = load_faster(curve["checkpoint"])
        rule = manifest_gate(loaded)
        assert (rule.weights is not None) == (kind == "learned") and rule.threshold == loaded.meta.gate.threshold
        expected = gate_scores(kind, cheap["features"], cheap["logits"], loaded.gate).numpy()
        for v in range(len(cheap["labels"])):
            gate = Gate(rule)
            got = [gate.score(cheap["logits"][v, i].numpy(), cheap["features"][v, i].numpy())
                   for i in range(cheap["logits"].shape[1])]
            np.testing.assert_allclose(got, expected[v], rtol=1e-4, atol=1e-5, err_msg=kind)
        fires = [[Gate(rule).fires(cheap["logits"][v, 0].numpy(), cheap["features"][v, 0].numpy())]
                 for v in range(len(cheap["labels"]))]
        assert fires == loaded.gate_mask(cheap["features"], cheap["logits"])[:, :1].tolist()
