"""Checkpoint -> verified bundle: ``python -m converters export --checkpoint CKPT --to pte,coreml,tflite,onnx ...``.

A straight line of named steps, each printed:

1. **Source** (:mod:`converters.source`): a ``.pt`` checkpoint (``training.train`` / ``training.distill``: fp32 model +
   labels, sampler, preprocessing), an int8 ``.pt2`` from ``training.qat`` (exports as int8 directly, clip mode), or a
   FASTER row checkpoint of ``training.faster``; read once. A FASTER checkpoint leaves this line here: its bundle
   (clip programs + an aggregator, the schedule in the manifest) is :func:`converters.faster.export_faster_bundle`.
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

import time

import numpy as np
import torch

from converters.faster import export_faster_bundle
from converters.options import ExportOptions, check_formats, say
from converters.plan import Programs, plan, quantize, references, representative_input, step_inputs
from converters.source import Source, clips, dataset_root, load_source, split_location
from converters.writer import ExportReport, provenance, write_bundle
from sdk.errors import ConfigError
from sdk.manifest import InputSpec, Program
from training.checkpoint import LoadedFaster
from training.logs import filtered_stderr
from training.macs import count_gmacs

__all__ = ["ExportOptions", "ExportReport", "export_bundle"]


def export_bundle(opts: ExportOptions) -> ExportReport:
    """Export, verify and write the bundle (see the module docstring); the report names any format that failed. A
    FASTER checkpoint goes to :func:`converters.faster.export_faster_bundle`. The converters' and runtimes' native
    chatter and progress bars go through :func:`training.logs.filtered_stderr` (hidden unless verbose; whole lines in
    a log file)."""
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
    if source.model is None:
        return None
    size = source.preprocess.size
    return count_gmacs(source.model, programs.example[0].unsqueeze(0) if mode == "clip"
                       else torch.zeros(1, source.sampler.frames, 3, size, size))
