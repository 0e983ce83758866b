"""A FASTER bundle from a ``training.faster`` row checkpoint: what :func:`converters.export.export_bundle` calls when
the source is one (:class:`~training.checkpoint.LoadedFaster`).

Per format: the clip program of each role the schedule uses, ``(clip) -> (logits, features)`` with the trained
standardisation + projection inside (:class:`FasterClipProgram`), and the aggregator step program
``(features, *state) -> (logits, *new_state)``; ``manifest.faster`` says how to drive them. An adaptive checkpoint
(``FasterMeta.gate``) ships both clip programs, the cheap one also returning its own pooled features, and its gate as
a declared rule, ``manifest.faster.gate`` (:func:`manifest_gate`: no program; the learned gate's ``F + 2`` weights
with the standardisation folded in). The parity references live here too: the aggregator's feature sequences
(:func:`feature_sequences`) and the whole torch pipeline as training runs it (:func:`reference_videos`), so the FASTER
path reads as one piece beside the generic clip exporter.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from converters import parity as parity_mod
from converters.options import ExportOptions, check_formats, say
from converters.plan import Programs, quantize, references, representative_input
from converters.program import Normalize, to_nchw
from converters.source import raw_preprocess, split_location
from converters.writer import ExportReport, provenance, write_bundle
from sdk.backends import load_runner
from sdk.errors import ConfigError
from sdk.gate import Gate
from sdk.manifest import CLIP_ROLES, FasterClipModel, FasterGate, FasterSpec, InputSpec, Manifest, Program
from sdk.preprocess import Preprocess
from sdk.samplers import Sampler
from training.checkpoint import LoadedFaster
from training.models.aggregators import AggregatorStep
from training.models.faster import clip_outputs, schedule_mask

__all__ = ["AGGREGATOR_PARITY_STEPS", "FasterClipProgram", "chain", "export_faster_bundle", "feature_sequences",
           "long_videos", "manifest_gate", "reference_videos", "report_lines", "segment_mask"]

AGGREGATOR_PARITY_STEPS = 20  # the FASTER aggregator is checked over sequences this long (issue 6)


class FasterClipProgram(nn.Module):
    """``(clip (T, 3, H, W) float32 RGB in [0, 255]) -> (logits (1, K), features (1, D) or (1, D, S, S))``: a FASTER
    clip model (:func:`training.models.faster.clip_outputs`) followed by its trained standardisation and projection
    into the aggregator's feature space, so that the aggregator program takes either clip model's output as it comes.

    ``project`` is the role's linear layer (1x1 conv for maps); ``mean`` / ``std`` its train-split statistics. With
    ``pooled`` (the cheap program of an adaptive bundle) a third output, the clip model's own pooled features
    ``(1, F)``: what the gate reads.
    """

    def __init__(self, model: nn.Module, preprocess: Preprocess, project: nn.Module, mean: torch.Tensor,
                 std: torch.Tensor, map_size: int | None, pooled: bool = False):
        super().__init__()
        self.model, self.normalize, self.layout = model, Normalize(preprocess), preprocess.layout
        self.project, self.map_size, self.pooled = project, map_size, pooled
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("std", std.detach().clone())

    def forward(self, clip: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.normalize(to_nchw(clip, self.layout))
        pooled, logits, maps = clip_outputs(self.model, x.reshape(1, *x.shape), self.map_size)
        features = self.project(((pooled if maps is None else maps) - self.mean) / self.std)
        return (logits, features, pooled) if self.pooled else (logits, features)


def long_videos(root: Path, split: str, sampler: Sampler, preprocess: Preprocess, count: int
                ) -> tuple[list[torch.Tensor], list[int]]:
    """The segments ``(L, T, 3, H, W)`` float32 in [0, 255] of ``count`` videos of a long-video split (spread over the
    split so that every class appears) as one clip model samples them, and their labels."""
    from training.data.long_video import LongVideoDataset

    dataset = LongVideoDataset.from_dir(root, split.removesuffix(".csv"), sampler=sampler,
                                        preprocess=raw_preprocess(preprocess), train=False)
    picks = np.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().astype(int)
    items = [dataset[int(i)] for i in picks]
    return [torch.as_tensor(v) for v, _ in items], [int(label) for _, label in items]


def segment_mask(faster: LoadedFaster, cheap: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """``(L,)`` bool, True where the expensive features of one video feed the aggregator: the fixed schedule's mask,
    or the adaptive checkpoint's gate on the cheap model's ``(pooled (L, F), logits (L, K))`` of the video."""
    if faster.meta.gate is None:
        return schedule_mask(faster.meta.schedule, faster.meta.segments)
    return faster.gate_mask(*cheap)


def feature_sequences(faster: LoadedFaster, clip_programs: dict[str, nn.Module], videos: dict[str, list[torch.Tensor]]
                      ) -> list[torch.Tensor]:
    """Per video, the aggregator's input sequence ``(L, 1, ...)`` under the schedule (or the gate), from the torch
    clip programs."""
    out = []
    with torch.no_grad():
        for v in range(len(next(iter(videos.values())))):
            cheap = None
            if faster.meta.gate is not None:
                runs = [clip_programs["cheap"](s) for s in videos["cheap"][v]]
                cheap = (torch.cat([o[2] for o in runs]), torch.cat([o[0] for o in runs]))
            roles = ["expensive" if e else "cheap" for e in segment_mask(faster, cheap).tolist()]
            out.append(torch.stack([clip_programs[r](videos[r][v][i])[1] for i, r in enumerate(roles)]))
    return out


def reference_videos(faster: LoadedFaster, videos: dict[str, list[torch.Tensor]]) -> np.ndarray:
    """Logits ``(videos, K)`` of the torch FASTER pipeline on each role's raw segments ``(L, T, 3, H, W)`` in
    [0, 255], the training side's way: each role's normalisation and clip model (``clip_outputs`` on all segments),
    then ``FasterModel`` (standardisation, projection, schedule mask, aggregator). Independent of the exported clip
    programs' wrapper, so that a fault in it fails the whole-schedule check instead of being shared by both sides."""
    model, meta = faster.model, faster.meta
    map_size = meta.map_size if model.spatial else None
    norm = {r: Normalize(faster.preprocess[r]) for r in videos}
    out = []
    with torch.no_grad():
        for v in range(len(next(iter(videos.values())))):
            feats, cheap = {}, None
            for role in CLIP_ROLES:
                if role not in videos:  # a one-role schedule: the mask never picks the other role
                    shape = (meta.segments, model.in_features(role), *([map_size] * 2 if map_size else []))
                    feats[role] = torch.zeros(1, *shape)
                    continue
                clips = torch.stack([norm[role](to_nchw(s, faster.preprocess[role].layout)) for s in videos[role][v]])
                pooled, logits, maps = clip_outputs(faster.clip_models[role], clips, map_size)
                feats[role] = (pooled if maps is None else maps)[None]
                if role == "cheap":
                    cheap = (pooled, logits)
            out.append(model(feats["expensive"], feats["cheap"], segment_mask(faster, cheap))[0].numpy())
    return np.stack(out)


def chain(sequences: list[torch.Tensor], steps: int) -> list[torch.Tensor]:
    """The videos' feature sequences back to back, as a stream would feed them, cut into ``steps``-long sequences
    (a shorter remainder is dropped unless it is all there is)."""
    stream = torch.cat(sequences)
    chunks = [stream[i:i + steps] for i in range(0, len(stream) - steps + 1, steps)]
    return chunks or [stream]


def report_lines(manifest: Manifest) -> tuple[str, ...]:
    """The export report's FASTER lines: the schedule, each clip program's features parity and each backend's
    whole-schedule check."""
    spec = manifest.faster
    how = (f"cheap on every segment, expensive where the {spec.gate.kind} gate scores above {spec.gate.threshold:.4g} "
           f"(fired on {spec.gate.fire_rate:.0%} of training segments)" if spec.gate else " ".join(spec.pattern))
    lines = ["", f"FASTER {spec.schedule} ({how}), {spec.aggregator}, segments of {spec.segment_frames} frames"]
    for p in manifest.programs:
        if p.parity is not None and p.parity.features_max_abs_diff is not None:
            lines.append(f"  {p.id}: features max|diff| {p.parity.features_max_abs_diff:.2e}")
        video = p.details.get("video_parity")
        if video:
            lines.append(f"  {p.backend}: whole schedule on {video['videos']} videos (its clip programs' "
                         f"features into its aggregator) vs torch: max|diff| {video['max_abs_diff']:.2e}, "
                         f"top-1 agreement {video['top1_agreement']:.3f}, top-1 {video['top1_runtime']:.3f} "
                         f"(torch {video['top1_torch']:.3f}), expensive on {video['expensive_share']:.0%} of segments")
    return tuple(lines)


def export_faster_bundle(opts: ExportOptions, faster: LoadedFaster, started: float) -> ExportReport:
    """A FASTER bundle from a ``training.faster`` row checkpoint: the clip program of each role the schedule uses
    (``(clip) -> (logits, features)``, projection included) and the aggregator step program
    ``(features, *state) -> (logits, *new_state)``, per format, with ``manifest.faster`` saying how to drive them.

    Parity: each clip program on every segment of ``opts.parity_clips`` held-out long videos (logits and features);
    the aggregator on those videos' torch feature sequences chained and cut into ``AGGREGATOR_PARITY_STEPS``-step
    sequences (stepped from zero state; max-abs-diff over every step). Then, per backend, the whole schedule run in
    that runtime (its clip programs' features into its aggregator, one video at a time from zero state) against the
    torch pipeline as training runs it (:func:`reference_videos`, not through the clip programs): recorded as
    ``details.video_parity`` of the aggregator program. An adaptive checkpoint's whole-schedule check runs the
    bundle's declared gate (:class:`sdk.gate.Gate`) on the runtime's cheap outputs against the checkpoint's torch
    gate on torch's, and records how often the expensive model ran (``expensive_share``).
    """
    if opts.mode != "clip":
        raise ConfigError("a FASTER bundle has its own modes (clip programs + an aggregate program): drop --mode")
    formats = check_formats(opts.formats, opts.precision)
    meta = faster.meta
    adaptive = meta.gate is not None
    pattern = ["cheap"] if adaptive else meta.pattern
    gate_rule = manifest_gate(faster) if adaptive else None
    root = Path(opts.data or meta.dataset["root"])
    if not (root / "meta.json").is_file():
        raise ConfigError(f"parity needs the long-video benchmark the aggregator was trained on; {root} is not one: "
                          "pass --data DIR")
    roles = ["cheap", "expensive"] if adaptive else list(dict.fromkeys(pattern))
    count = opts.parity_clips + opts.golden_clips
    jobs, clip_programs, videos, calibration = {}, {}, {}, {}
    for role in roles:
        pre = faster.preprocess[role]
        model = faster.model
        gated = adaptive and role == "cheap"
        program = FasterClipProgram(faster.clip_models[role], pre, getattr(model, f"project_{role}"),
                                    getattr(model, f"{role}_mean"), getattr(model, f"{role}_std"),
                                    meta.map_size if model.spatial else None, pooled=gated).eval()
        clip_programs[role] = program
        videos[role], labels = long_videos(root, opts.split, faster.samplers[role], pre, count)
        segs = [s for v in videos[role] for s in v]  # every segment of every video, video-major
        n_golden = opts.golden_clips * meta.segments
        outputs = ["logits", "features", *(["pooled"] if gated else [])]
        job = Programs("clip", program, None, (segs[0],), ["clip"], outputs, (), role=role,
                       golden=[(s.numpy(),) for s in segs[:n_golden]], parity=[(s.numpy(),) for s in segs[n_golden:]])
        if opts.precision == "int8":
            train_videos, _ = long_videos(root, opts.calibration_split, faster.samplers[role], pre,
                                          max(1, opts.calibration_clips // meta.segments))
            calibration[role] = train_videos
            job.calibration = [s for v in train_videos for s in v]
        jobs[role] = job
    say(f"{len(labels)} held-out long videos from {split_location(root, opts.split)} ({opts.golden_clips} golden)")

    aggregator = faster.model.aggregator
    size = tuple(aggregator.feature_size) if aggregator.spatial else None
    zero = aggregator.initial_state(1, size)
    names = [n for n, _ in aggregator.state_specs(1, size)]
    sequences = feature_sequences(faster, clip_programs, videos)
    agg = Programs("aggregate", AggregatorStep(aggregator).eval(), None, (), ["features", *names],
                   ["logits", *[f"new_{n}" for n in names]], zero, role="aggregator")
    agg.golden = [(s.numpy(),) for s in chain(sequences[:opts.golden_clips], AGGREGATOR_PARITY_STEPS)]
    agg.parity = [(s.numpy(),) for s in chain(sequences[opts.golden_clips:], AGGREGATOR_PARITY_STEPS)]
    agg.example = representative_input(agg, sequences[0])
    if opts.precision == "int8":
        agg.calibration = feature_sequences(faster, clip_programs, calibration)
    golden: dict[str, np.ndarray] = {}
    for job in (*jobs.values(), agg):
        if job.role != "aggregator":
            job.example = representative_input(job, job.calibration[0] if job.calibration else
                                               torch.as_tensor(job.parity[0][0]))
        quantize(job, opts.precision)
        references(job, golden)

    # the whole pipeline in torch on the parity videos, not through the clip programs: each backend's reference
    parity_labels = labels[opts.golden_clips:]
    torch_videos = reference_videos(faster, {r: v[opts.golden_clips:] for r, v in videos.items()})

    def video_parity(backend: str, entries: list[Program], outputs: dict, bundle: Path) -> list[Program]:
        if any(outputs.get(r) is None for r in (*roles, "aggregator")):
            return entries
        n_videos, segments = len(parity_labels), meta.segments
        feats = {r: outputs[r].features.reshape(n_videos, segments, *outputs[r].features.shape[2:]) for r in roles}
        runner = load_runner(backend, bundle / entries[-1].file, threads=opts.threads)
        masks = (_runtime_masks(gate_rule, outputs["cheap"], n_videos, segments) if adaptive else
                 np.stack([schedule_mask(meta.schedule, segments).numpy()] * n_videos))
        seqs = [(np.stack([feats["expensive" if masks[v, i] else "cheap"][v, i] for i in range(segments)]),)
                for v in range(n_videos)]
        runtime = parity_mod.run_clips(runner.run, "aggregate", seqs, [z.numpy() for z in zero]).clips
        y = np.asarray(parity_labels)
        record = {"videos": n_videos, "max_abs_diff": float(np.abs(runtime - torch_videos).max()),
                  "expensive_share": float(masks.mean()),
                  "top1_agreement": float((runtime.argmax(-1) == torch_videos.argmax(-1)).mean()),
                  "top1_runtime": float((runtime.argmax(-1) == y).mean()),
                  "top1_torch": float((torch_videos.argmax(-1) == y).mean()),
                  "reference": "torch fp32 clip models + FASTER model"}
        say(f"{backend}: whole schedule on {n_videos} videos: max|diff| {record['max_abs_diff']:.2e}, top-1 "
            f"agreement {record['top1_agreement']:.3f} (top-1 {record['top1_runtime']:.3f} vs torch "
            f"{record['top1_torch']:.3f})")
        last = entries[-1]
        return [*entries[:-1], dataclasses.replace(last, details={**last.details, "video_parity": record})]

    def manifest(entries: list[Program]) -> dict:
        gmacs = {r: meta.clip_models[r].gmacs_per_clip for r in roles}
        clip_models = {r: FasterClipModel(faster.samplers[r], InputSpec(faster.preprocess[r]), gmacs[r])
                       for r in roles}
        spec = FasterSpec(schedule=meta.schedule, pattern=tuple(pattern), segment_frames=meta.segment_frames,
                          segments=meta.segments, aggregator=meta.aggregator, clip_models=clip_models, gate=gate_rule)
        first = clip_models[pattern[0]]
        cost = {"gmacs_per_clip": gmacs, "gmacs_per_video": meta.metrics.get("gmacs_per_video")}
        record = {"config": meta.config, "dataset": meta.dataset, "metrics": meta.metrics}
        return dict(name=opts.name or opts.out.name.removesuffix(".vbundle"), labels=meta.labels,
                    input=first.input, sampler=first.sampler, faster=spec,
                    provenance=provenance(opts, record, meta.sha256, root, cost, time.perf_counter() - started))

    report = write_bundle(opts, [*jobs.values(), agg], formats, golden, manifest, started, video_parity)
    return dataclasses.replace(report, notes=report_lines(report.manifest))


def _runtime_masks(rule: FasterGate, cheap: parity_mod.Outputs, videos: int, segments: int) -> np.ndarray:
    """``(videos, segments)``: where the bundle's declared gate fires on a runtime's cheap outputs, video by video
    from a fresh gate (as a stream starts)."""
    logits = cheap.steps.reshape(videos, segments, -1)
    pooled = cheap.pooled.reshape(videos, segments, -1)
    masks = np.zeros((videos, segments), bool)
    for v in range(videos):
        gate = Gate(rule)
        masks[v] = [gate.fires(logits[v, i], pooled[v, i]) for i in range(segments)]
    return masks


def manifest_gate(faster: LoadedFaster) -> FasterGate:
    """The adaptive checkpoint's gate as the bundle declares it: the learned gate's standardisation folded into its
    ``F + 2`` weights and bias (``w . (f - mean) / std = (w / std) . f - w . mean / std``), float64; the curve's
    finite thresholds (fire rates 0 and 1 are +-inf, which a runtime option expresses)."""
    rule = faster.meta.gate
    weights = bias = None
    if faster.gate is not None:
        w = faster.gate.linear.weight.detach().double().reshape(-1)
        mean, std = faster.gate.mean.double(), faster.gate.std.double()
        f = mean.numel()
        weights = tuple((w[:f] / std).tolist() + w[f:].tolist())
        bias = float(faster.gate.linear.bias.double() - (w[:f] * mean / std).sum())
    curve = tuple((r, t) for r, t in rule.curve if np.isfinite(t))
    return FasterGate(rule.kind, rule.threshold, rule.fire_rate, curve, weights, bias)
