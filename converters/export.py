"""Checkpoint -> verified bundle: ``python -m converters export --checkpoint CKPT --to pte,coreml,tflite,onnx ...``.

A straight line of named steps, each printed:

1. **Source** (:mod:`converters.source`): a ``.pt`` checkpoint (``training.train`` / ``training.distill``: fp32 model +
   labels, sampler, preprocessing), an int8 ``.pt2`` from ``training.qat`` (exports as int8 directly, clip mode), or a
   FASTER row checkpoint of ``training.faster`` (:func:`export_faster_bundle`); read once.
2. **Plan** (:mod:`converters.plan`): :class:`~converters.program.ClipProgram` or, for causal models,
   :class:`StreamProgram`, with its held-out parity and golden inputs.
3. **Quantize**: for int8 from a ``.pt``, post-training calibration (PT2E, XNNPACK scheme) on ``calibration_clips``
   training clips; then the torch references.
4. **Lower** each format of the table (:mod:`converters.options`: ``to_pte``, ``to_coreml``, ``to_tflite``,
   ``to_onnx``), and 5. **Parity** (:mod:`converters.parity`): each program in its real runtime on the golden inputs
   and on ``parity_clips`` held-out benchmark clips against the torch reference; beyond the tolerance the format
   fails. Core ML cannot run off Apple platforms: recorded ``not_verified`` with the reason.
6. **Write** (:mod:`converters.writer`): manifest + programs + ``golden.npz`` written to a temporary directory beside
   ``out`` and renamed into place, so a crash never leaves a half bundle under the final name. A failing format is
   named in the report and left out; the others are written.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from converters import parity as parity_mod
from converters.options import ExportOptions, check_formats, say
from converters.plan import (AGGREGATOR_PARITY_STEPS, Programs, chain, feature_sequences, plan, quantize,
                             reference_videos, references, representative_input, step_inputs)
from converters.program import FasterClipProgram
from converters.source import Source, clips, dataset_root, load_source, long_videos, split_location
from converters.writer import ExportReport, provenance, write_bundle
from sdk.backends import load_runner
from sdk.errors import ConfigError
from sdk.manifest import FasterClipModel, FasterSpec, InputSpec, Program
from training.logs import filtered_stderr
from training.models.faster import LoadedFaster

__all__ = ["ExportOptions", "ExportReport", "export_bundle", "export_faster_bundle"]


def export_bundle(opts: ExportOptions) -> ExportReport:
    """Export, verify and write the bundle (see the module docstring); the report names any format that failed. A
    FASTER checkpoint goes to :func:`export_faster_bundle`. The converters' and runtimes' native chatter and progress
    bars go through :func:`training.logs.filtered_stderr` (hidden unless verbose; whole lines in a log file)."""
    with filtered_stderr():
        return _export(opts)


def _export(opts: ExportOptions) -> ExportReport:
    started = time.perf_counter()
    if opts.out.exists() and not opts.force:
        raise ConfigError(f"{opts.out} exists; pass --force to replace it")
    formats = check_formats(opts.formats, opts.precision)
    say(f"source {opts.checkpoint}")
    source = load_source(opts.checkpoint)
    if isinstance(source, LoadedFaster):
        return export_faster_bundle(opts, source, started)
    if source.model is None and opts.precision != "int8":
        raise ConfigError(f"{opts.checkpoint} is an int8 program (training.qat): export it with --precision int8")
    root = dataset_root(opts, source)
    programs = plan(source, opts.mode)

    held_out = clips(root, opts.split, source, opts.parity_clips + opts.golden_clips)
    if len(held_out) <= opts.golden_clips:
        raise ConfigError(f"{split_location(root, opts.split)} has {len(held_out)} clips: parity needs more than the "
                          f"{opts.golden_clips} golden ones; pass a split with more videos (--split, --data) or "
                          "fewer --golden-clips")
    programs.golden = [tuple(t.numpy() for t in step_inputs(programs, c)) for c in held_out[:opts.golden_clips]]
    programs.parity = [tuple(t.numpy() for t in step_inputs(programs, c)) for c in held_out[opts.golden_clips:]]
    programs.example = representative_input(programs, held_out[0])
    used = len(programs.parity)
    say(f"{used} parity clips from {split_location(root, opts.split)}" + ("" if used == opts.parity_clips else
        f" (--parity-clips {opts.parity_clips}: the split has {len(held_out)} clips, {opts.golden_clips} golden)"))
    coarse = opts.tolerance.coarse(opts.precision, used, against_fp32=programs.quantized is None)
    if coarse:
        say(f"warning: {coarse}")
    if opts.precision == "int8" and programs.quantized is None:
        say(f"calibration clips from {split_location(root, opts.calibration_split)}")
        programs.calibration = clips(root, opts.calibration_split, source, opts.calibration_clips)
    quantize(programs, opts.precision)
    golden: dict[str, np.ndarray] = {}
    references(programs, golden)

    def manifest(entries: list[Program]) -> dict:
        return dict(name=opts.name or opts.out.name.removesuffix(".vbundle"), labels=tuple(source.labels),
                    input=InputSpec(source.preprocess), sampler=source.sampler,
                    provenance=provenance(opts, source.meta.to_dict(), source.meta.sha256, root,
                                          {"gmacs_per_clip": _gmacs(source, programs, opts.mode)},
                                          time.perf_counter() - started))

    return write_bundle(opts, [programs], formats, golden, manifest, started)


def _gmacs(source: Source, programs: Programs, mode: str) -> float | None:
    """GMACs of one clip of the fp32 model (None for an int8 ``.pt2``, which has no fp32 model to count)."""
    from training.profile import count_gmacs

    if source.model is None:
        return None
    size = source.preprocess.size
    return count_gmacs(source.model, programs.example[0].unsqueeze(0) if mode == "clip"
                       else torch.zeros(1, source.sampler.frames, 3, size, size))


def export_faster_bundle(opts: ExportOptions, faster: LoadedFaster, started: float) -> ExportReport:
    """A FASTER bundle from a ``training.faster`` row checkpoint: the clip program of each role the schedule uses
    (``(clip) -> (logits, features)``, projection included) and the aggregator step program
    ``(features, *state) -> (logits, *new_state)``, per format, with ``manifest.faster`` saying how to drive them.

    Parity: each clip program on every segment of ``opts.parity_clips`` held-out long videos (logits and features);
    the aggregator on those videos' torch feature sequences chained and cut into ``AGGREGATOR_PARITY_STEPS``-step
    sequences (stepped from zero state; max-abs-diff over every step). Then, per backend, the whole schedule run in
    that runtime (its clip programs' features into its aggregator, one video at a time from zero state) against the
    torch pipeline as training runs it (:func:`converters.plan.reference_videos`, not through the clip programs):
    recorded as ``details.video_parity`` of the aggregator program.
    """
    from training.models.aggregators import AggregatorStep

    if opts.mode != "clip":
        raise ConfigError("a FASTER bundle has its own modes (clip programs + an aggregate program): drop --mode")
    formats = check_formats(opts.formats, opts.precision)
    meta, pattern = faster.meta, faster.pattern
    root = Path(opts.data or meta["dataset"]["root"])
    if not (root / "meta.json").is_file():
        raise ConfigError(f"parity needs the long-video benchmark the aggregator was trained on; {root} is not one: "
                          "pass --data DIR")
    roles = list(dict.fromkeys(pattern))
    count = opts.parity_clips + opts.golden_clips
    jobs, clip_programs, videos, calibration = {}, {}, {}, {}
    for role in roles:
        pre = faster.preprocess[role]
        model = faster.model
        program = FasterClipProgram(faster.clip_models[role], pre, getattr(model, f"project_{role}"),
                                    getattr(model, f"{role}_mean"), getattr(model, f"{role}_std"),
                                    meta["map_size"] if model.spatial else None).eval()
        clip_programs[role] = program
        videos[role], labels = long_videos(root, opts.split, faster.samplers[role], pre, count)
        segs = [s for v in videos[role] for s in v]  # every segment of every video, video-major
        n_golden = opts.golden_clips * meta["segments"]
        job = Programs("clip", program, None, (segs[0],), ["clip"], ["logits", "features"], (), role=role,
                       golden=[(s.numpy(),) for s in segs[:n_golden]], parity=[(s.numpy(),) for s in segs[n_golden:]])
        if opts.precision == "int8":
            train_videos, _ = long_videos(root, opts.calibration_split, faster.samplers[role], pre,
                                           max(1, opts.calibration_clips // meta["segments"]))
            calibration[role] = train_videos
            job.calibration = [s for v in train_videos for s in v]
        jobs[role] = job
    say(f"{len(labels)} held-out long videos from {split_location(root, opts.split)} ({opts.golden_clips} golden)")

    aggregator = faster.model.aggregator
    size = tuple(aggregator.feature_size) if aggregator.spatial else None
    zero = aggregator.initial_state(1, size)
    names = [n for n, _ in aggregator.state_specs(1, size)]
    sequences = feature_sequences(faster, clip_programs, videos, pattern)
    agg = Programs("aggregate", AggregatorStep(aggregator).eval(), None, (), ["features", *names],
                   ["logits", *[f"new_{n}" for n in names]], zero, role="aggregator")
    agg.golden = [(s.numpy(),) for s in chain(sequences[:opts.golden_clips], AGGREGATOR_PARITY_STEPS)]
    agg.parity = [(s.numpy(),) for s in chain(sequences[opts.golden_clips:], AGGREGATOR_PARITY_STEPS)]
    agg.example = representative_input(agg, sequences[0])
    if opts.precision == "int8":
        agg.calibration = feature_sequences(faster, clip_programs, calibration, pattern)
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
        n_videos, segments = len(parity_labels), meta["segments"]
        feats = {r: outputs[r].features.reshape(n_videos, segments, *outputs[r].features.shape[2:]) for r in roles}
        runner = load_runner(backend, bundle / entries[-1].file, threads=opts.threads)
        seqs = [(np.stack([feats[pattern[i % len(pattern)]][v, i] for i in range(segments)]),)
                for v in range(n_videos)]
        runtime = parity_mod.run_clips(runner.run, "aggregate", seqs, [z.numpy() for z in zero]).clips
        y = np.asarray(parity_labels)
        record = {"videos": n_videos, "max_abs_diff": float(np.abs(runtime - torch_videos).max()),
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
        gmacs = {r: meta["clip_models"][r]["gmacs_per_clip"] for r in roles}
        clip_models = {r: FasterClipModel(faster.samplers[r], InputSpec(faster.preprocess[r]), gmacs[r])
                       for r in roles}
        spec = FasterSpec(schedule=meta["schedule"], pattern=tuple(pattern), segment_frames=meta["segment_frames"],
                          segments=meta["segments"], aggregator=meta["aggregator"], clip_models=clip_models)
        first = clip_models[pattern[0]]
        cost = {"gmacs_per_clip": gmacs, "gmacs_per_video": meta["metrics"].get("gmacs_per_video")}
        return dict(name=opts.name or opts.out.name.removesuffix(".vbundle"), labels=tuple(meta["labels"]),
                    input=first.input, sampler=first.sampler, faster=spec,
                    provenance=provenance(opts, meta, faster.sha256, root, cost, time.perf_counter() - started))

    return write_bundle(opts, [*jobs.values(), agg], formats, golden, manifest, started, video_parity)
