"""Checkpoint -> verified bundle: ``python -m converters export --checkpoint CKPT --to pte,coreml,tflite,onnx ...``.

Steps, each printed:

1. **Source**: a ``.pt`` checkpoint (``training.train`` / ``training.distill``: fp32 model + labels, sampler,
   preprocessing) or an int8 ``.pt2`` from ``training.qat`` (exports as int8 directly, clip mode).
2. **Program**: :class:`~converters.program.ClipProgram` or, for causal models, :class:`StreamProgram`; for int8 from
   a ``.pt``, post-training calibration (PT2E, XNNPACK scheme) on ``calibration_clips`` training clips.
3. **Export** each format (``to_pte``, ``to_coreml``, ``to_tflite``, ``to_onnx``).
4. **Parity** (:mod:`converters.parity`): each program in its real runtime on the golden inputs and on
   ``parity_clips`` held-out benchmark clips against the torch reference; beyond the tolerance the export fails.
   Core ML cannot run off Apple platforms: recorded ``not_verified`` with the reason.
5. **Bundle**: manifest + programs + ``golden.npz`` written to a temporary directory beside ``out`` and renamed into
   place, so a crash never leaves a half bundle under the final name.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import shutil
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import sdk
from converters import parity as parity_mod
from converters.program import ClipProgram, ExportResult, ProgramJob, StreamProgram
from sdk.backends import load_runner
from sdk.bundle import (
    GOLDEN_FILE,
    MANIFEST_FILE,
    SCHEMA_VERSION,
    InputSpec,
    Manifest,
    Parity,
    Program,
    golden_bytes,
    sha256_of,
    write_manifest,
)
from sdk.errors import BackendUnavailableError, ConfigError
from sdk.preprocess import Preprocess
from sdk.samplers import Sampler

__all__ = ["FORMATS", "ExportOptions", "ExportReport", "export_bundle", "zip_bundle"]

# --to name -> (backend name in the manifest, exporter module)
FORMATS = {"pte": ("executorch", "converters.to_pte"), "coreml": ("coreml", "converters.to_coreml"),
           "tflite": ("tflite", "converters.to_tflite"), "onnx": ("onnx", "converters.to_onnx")}


@dataclass
class ExportOptions:
    """Everything ``python -m converters export`` takes (see ``--help``)."""

    checkpoint: Path
    out: Path
    formats: Sequence[str] = ("pte", "coreml", "tflite", "onnx")
    precision: str = "fp32"
    mode: str = "clip"
    data: Path | None = None  # benchmark for calibration and parity (default: the checkpoint's dataset)
    split: str = "val.csv"
    calibration_split: str = "train.csv"
    calibration_clips: int = 32
    parity_clips: int = 100
    golden_clips: int = 2
    tolerance: parity_mod.Tolerance = field(default_factory=parity_mod.Tolerance)
    name: str | None = None
    force: bool = False
    zip: bool = False
    threads: int | None = None
    coreml_format: str = "mlpackage"  # or "mlmodel": the legacy NeuralNetwork format, fp32 only (to_coreml)

    def __post_init__(self) -> None:
        self.checkpoint, self.out = Path(self.checkpoint), Path(self.out)
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or not self.formats:
            raise ConfigError(f"unknown format(s) {unknown}; valid: {', '.join(FORMATS)}")
        if self.precision not in ("fp32", "fp16", "int8"):
            raise ConfigError(f"precision must be fp32, fp16 or int8, got {self.precision!r}")
        if self.mode not in ("clip", "stream"):
            raise ConfigError(f"mode must be clip or stream, got {self.mode!r}")
        if self.coreml_format not in ("mlpackage", "mlmodel"):
            raise ConfigError(f"coreml_format must be mlpackage or mlmodel, got {self.coreml_format!r}")
        if self.coreml_format == "mlmodel" and "coreml" in self.formats and self.precision != "fp32":
            raise ConfigError(f"a legacy .mlmodel is fp32 only, not {self.precision}; use the .mlpackage")
        for key in ("calibration_clips", "parity_clips", "golden_clips"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")


@dataclass
class ExportReport:
    bundle: Path
    manifest: Manifest
    timings: dict[str, float]

    def table(self) -> str:
        head = ("program", "size", "export s", "parity", "max|diff|", "top-1 agree", "vs fp32", "not delegated")
        rows = []
        for p in self.manifest.programs:
            par = p.parity
            nd = p.details.get("non_delegated_ops")
            rows.append((p.id, _size(p.size_bytes), f"{self.timings.get(p.id, 0):.1f}",
                         par.status if par else "-",
                         "-" if par is None or par.max_abs_diff is None else f"{par.max_abs_diff:.2e}",
                         "-" if par is None or par.top1_agreement is None else
                         f"{par.top1_agreement:.3f} ({par.clips})",
                         "-" if par is None or not par.vs_fp32 else f"{par.vs_fp32['top1_agreement']:.3f}",
                         "-" if nd is None else (", ".join(f"{k.split('.')[1]} x{v}" for k, v in nd.items())
                                                 or "none")))
        widths = [max(len(str(r[i])) for r in (head, *rows)) for i in range(len(head))]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths)),
                          *(fmt.format(*r) for r in rows)])


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


# ---------------------------------------------------------------------------------------------------------- source
@dataclass
class Source:
    """The model to export and what the bundle says about it."""

    model: nn.Module | None  # fp32 registry model (None for a .pt2 int8 program)
    quantized: nn.Module | None  # int8 PT2E module of the clip model (QAT .pt2)
    labels: list[str]
    sampler: Sampler
    preprocess: Preprocess
    meta: dict[str, Any]


def load_source(path: Path) -> Source:
    """Read a ``.pt`` checkpoint or an int8 ``.pt2`` program (its JSON sidecar beside it)."""
    from training.evaluate import load_checkpoint_model

    model, meta = load_checkpoint_model(path, "cpu")
    try:
        sampler, preprocess = Sampler.from_dict(meta["sampler"]), Preprocess.from_dict(meta["preprocess"])
        labels = list(meta["labels"])
    except KeyError as e:
        raise ConfigError(f"{path} lacks {e.args[0]!r}: export a checkpoint written by training.train, "
                          "training.distill or training.qat") from e
    if path.suffix == ".pt2":
        return Source(None, model, labels, sampler, preprocess, meta)
    return Source(model.eval(), None, labels, sampler, preprocess, meta)


def _raw(preprocess: Preprocess) -> Preprocess:
    """The runtime's share of the preprocessing: resize and crop only, values left in [0, 255] (the program
    normalises)."""
    return dataclasses.replace(preprocess, scale=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def _clips(root: Path, split: str, source: Source, count: int) -> list[torch.Tensor]:
    """The first ``count`` clips of a split, deterministic sampling and centre crop, float32 in [0, 255] (T, 3, H, W);
    taken evenly over the split so that every class appears."""
    from training.data.datasets import ClipDataset, DatasetInfo, read_records

    info = DatasetInfo.from_dir(root)
    if list(info.labels) != source.labels:
        raise ConfigError(f"the dataset {root} has other labels than the checkpoint: pass the benchmark it was "
                          "trained on with --data")
    records = read_records(root / split, info.labels)
    picks = np.linspace(0, len(records) - 1, min(count, len(records))).round().astype(int)
    dataset = ClipDataset([records[i] for i in picks], sampler=source.sampler, preprocess=_raw(source.preprocess),
                          train=False)
    return [torch.as_tensor(dataset[i][0]) for i in range(len(dataset))]


def _dataset_root(opts: ExportOptions, source: Source) -> Path:
    root = opts.data or Path(source.meta.get("dataset", {}).get("root") or "")
    if not root or not (Path(root) / "labels.txt").is_file():
        raise ConfigError(f"calibration and parity need the benchmark the model was trained on; {root or 'none'} "
                          "is not a dataset directory: pass --data DIR (python -m benchmarks generate makes one)")
    return Path(root)


# ---------------------------------------------------------------------------------------------------------- programs
@dataclass
class Programs:
    """The torch modules of one mode, their example inputs and the parity/golden/calibration inputs."""

    mode: str
    fp32: nn.Module | None
    quantized: nn.Module | None
    example: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    zero_state: tuple[torch.Tensor, ...]


def _programs(source: Source, mode: str) -> Programs:
    pre, size = source.preprocess, source.preprocess.size
    frame_shape = (size, size, 3) if pre.layout == "THWC" else (3, size, size)
    if mode == "clip":
        example = (torch.zeros(source.sampler.frames, *frame_shape),)
        fp32 = None if source.model is None else ClipProgram(source.model, pre).eval()
        quant = None if source.quantized is None else ClipProgram(source.quantized, pre).eval()
        return Programs("clip", fp32, quant, example, ["clip"], ["logits"], ())
    if source.model is None:
        raise ConfigError("an int8 .pt2 from training.qat is a clip program; export --mode stream from the fp32 "
                          "checkpoint (int8 stream programs are calibrated at export)")
    if not getattr(source.model, "causal", False):
        raise ConfigError(f"{source.meta.get('config', {}).get('arch', 'this model')} looks at future frames and cannot "
                          "stream; train a causal model (tam_mobilenet_v2_causal, tsm_mobilenet_v2_online) or "
                          "export --mode clip")
    spec = source.model.state_spec(size, size)
    zero = tuple(torch.zeros(shape) for _, shape in spec)
    example = (torch.zeros(1, *frame_shape), *zero)
    names = [n for n, _ in spec]
    return Programs("stream", StreamProgram(source.model, pre).eval(), None, example, ["frame", *names],
                    ["logits", "features", *[f"new_{n}" for n in names]], zero)


def _step_inputs(programs: Programs, clip: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Program-shaped inputs of a clip: ``(clip,)`` or, streaming, ``(frames (T, 1, ...),)``."""
    return (clip,) if programs.mode == "clip" else (clip.unsqueeze(1),)


def _representative_input(programs: Programs, clip: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """A real program input: the clip, or its middle frame with the state torch reached there."""
    steps = _calibration_inputs(programs, [clip])
    return steps[len(steps) // 2]


def _calibration_inputs(programs: Programs, clips: list[torch.Tensor]) -> list[tuple[torch.Tensor, ...]]:
    """Representative program inputs: clips, or every step of each clip with the state torch reached there."""
    if programs.mode == "clip":
        return [(c,) for c in clips]
    out = []
    with torch.no_grad():
        for clip in clips:
            state = programs.zero_state
            for frame in clip.unsqueeze(1):
                out.append((frame, *state))
                state = tuple(programs.fp32(frame, *state)[2:])
    return out


def _quantize(programs: Programs, calibration: list[tuple[torch.Tensor, ...]]) -> nn.Module:
    from training import quantize

    gm = quantize.prepare(programs.fp32, programs.example, qat=False, dynamic_batch=False)
    quantize.calibrate(gm, calibration)
    return quantize.convert(gm)


def _torch_run(module: nn.Module):
    def run(inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            out = module(*[torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in inputs])
        return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]
    return run


# ---------------------------------------------------------------------------------------------------------- export
def _say(msg: str) -> None:
    print(f"[export] {msg}", flush=True)


def export_bundle(opts: ExportOptions) -> ExportReport:
    """Export, verify and write the bundle (see the module docstring). Raises on any failure; nothing is left under
    ``opts.out`` unless everything passed."""
    import importlib

    from training.profile import count_gmacs

    started = time.perf_counter()
    out = opts.out
    if out.exists() and not opts.force:
        raise ConfigError(f"{out} exists; pass --force to replace it")
    _say(f"source {opts.checkpoint}")
    source = load_source(opts.checkpoint)
    if source.model is None and opts.precision != "int8":
        raise ConfigError(f"{opts.checkpoint} is an int8 program (training.qat): export it with --precision int8")
    root = _dataset_root(opts, source)
    programs = _programs(source, opts.mode)
    exporters = {}
    for fmt in opts.formats:
        backend, module_name = FORMATS[fmt]
        module = importlib.import_module(module_name)
        if opts.precision not in module.PRECISIONS:
            raise ConfigError(f"{fmt} exports {', '.join(module.PRECISIONS)}, not {opts.precision}")
        exporters[fmt] = (backend, module)

    _say(f"{opts.parity_clips} parity clips from {root / opts.split}")
    held_out = _clips(root, opts.split, source, opts.parity_clips + opts.golden_clips)
    golden_clips, parity_clips = held_out[:opts.golden_clips], held_out[opts.golden_clips:]
    programs.example = _representative_input(programs, held_out[0])
    if opts.precision == "int8" and programs.quantized is None:
        _say(f"post-training int8 calibration (PT2E, XNNPACK scheme) on {opts.calibration_clips} clips from "
             f"{root / opts.calibration_split}")
        calibration = _calibration_inputs(programs, _clips(root, opts.calibration_split, source,
                                                           opts.calibration_clips))
        programs.quantized = _quantize(programs, calibration)

    # torch references on the golden and parity inputs
    golden_inputs = [tuple(t.numpy() for t in _step_inputs(programs, c)) for c in golden_clips]
    parity_inputs = [tuple(t.numpy() for t in _step_inputs(programs, c)) for c in parity_clips]
    zero = [s.numpy() for s in programs.zero_state]
    refs: dict[str, tuple] = {}
    for kind, module in (("fp32", programs.fp32), ("quantized", programs.quantized)):
        if module is not None:
            run = _torch_run(module)
            refs[kind] = (parity_mod.run_clips(run, opts.mode, golden_inputs, zero),
                          parity_mod.run_clips(run, opts.mode, parity_inputs, zero))
    golden: dict[str, np.ndarray] = {f"{opts.mode}/input/{programs.input_names[0]}":
                                     np.stack([g[0] for g in golden_inputs])}
    for kind, ((steps, _), _) in refs.items():
        golden[f"{opts.mode}/reference_{kind}/logits"] = steps

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "programs").mkdir(parents=True)
    entries, timings = [], {}
    try:
        for fmt, (backend, module) in exporters.items():
            pid = f"{opts.mode}_{backend}_{opts.precision}"
            legacy = fmt == "coreml" and opts.coreml_format == "mlmodel"
            path = tmp / "programs" / f"{pid}{module.LEGACY_SUFFIX if legacy else module.SUFFIX}"
            job = ProgramJob(opts.mode, programs.fp32 if programs.fp32 is not None else programs.quantized,
                             programs.example, programs.input_names, programs.output_names, opts.precision,
                             programs.quantized)
            _say(f"{pid}: exporting")
            t0 = time.perf_counter()
            result: ExportResult = module.export(job, path, legacy=True) if legacy else module.export(job, path)
            timings[pid] = time.perf_counter() - t0
            par = _check(backend, path, result, refs, opts, golden_inputs, parity_inputs, zero, golden, pid)
            _say(f"{pid}: {timings[pid]:.1f} s, {_size(_disk_size(path))}, parity {par.status}"
                 + (f" (max|diff| {par.max_abs_diff:.2e}, top-1 agreement {par.top1_agreement:.3f})"
                    if par.max_abs_diff is not None else f": {par.reason}"))
            entries.append(Program(id=pid, backend=backend, precision=opts.precision, mode=opts.mode,
                                   file=f"programs/{path.name}", sha256=sha256_of(path), size_bytes=_disk_size(path),
                                   inputs=tuple(result.inputs[:1] if opts.mode == "stream" else result.inputs),
                                   outputs=tuple(result.outputs[:2] if opts.mode == "stream" else result.outputs),
                                   state=tuple(result.inputs[1:]) if opts.mode == "stream" else (),
                                   parity=par, details={**result.details, "export_seconds": round(timings[pid], 2)}))
        (tmp / GOLDEN_FILE).write_bytes(golden_bytes(golden))
        gmacs = None
        if source.model is not None:
            gmacs = count_gmacs(source.model, programs.example[0].unsqueeze(0) if opts.mode == "clip"
                                else torch.zeros(1, source.sampler.frames, 3, source.preprocess.size,
                                                 source.preprocess.size))
        manifest = Manifest(
            name=opts.name or out.name.removesuffix(".vbundle"), labels=tuple(source.labels),
            input=InputSpec(source.preprocess), sampler=source.sampler, programs=tuple(entries),
            golden={"file": GOLDEN_FILE, "sha256": sha256_of(tmp / GOLDEN_FILE)},
            provenance=_provenance(opts, source, root, gmacs, time.perf_counter() - started),
            created=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
            producer={"package": "edgevideo", "version": sdk.__version__, "torch": torch.__version__},
            schema_version=SCHEMA_VERSION)
        write_manifest(manifest, tmp)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if opts.zip:
        zip_bundle(out)
    timings["total"] = time.perf_counter() - started
    return ExportReport(out, manifest, timings)


def _disk_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def _check(backend: str, path: Path, result: ExportResult, refs: dict, opts: ExportOptions, golden_inputs: list,
           parity_inputs: list, zero: list, golden: dict, pid: str) -> Parity:
    """Run the program in its runtime; :class:`Parity` (raises ParityError beyond tolerance)."""
    reference_kind = result.reference if result.reference in refs else "fp32"
    described = {"fp32": "torch fp32", "quantized": "torch int8 (PT2E XNNPACK scheme)"}[reference_kind]
    try:
        runner = load_runner(backend, path, threads=opts.threads)
    except BackendUnavailableError as e:
        return Parity(status="not_verified", reference=described, reason=str(e))
    run = runner.run
    (g_steps, _), (p_steps, p_clips) = (parity_mod.run_clips(run, opts.mode, golden_inputs, zero),
                                        parity_mod.run_clips(run, opts.mode, parity_inputs, zero))
    golden[f"{pid}/logits"] = g_steps
    (rg_steps, _), (rp_steps, rp_clips) = refs[reference_kind]
    fp32_clips = refs["fp32"][1][1] if "fp32" in refs and reference_kind != "fp32" else None
    try:
        return parity_mod.measure(p_steps, p_clips, rp_steps, rp_clips, precision=opts.precision,
                                  reference=described, tolerance=opts.tolerance,
                                  golden_diff=float(np.abs(g_steps - rg_steps).max()), fp32_clips=fp32_clips)
    except parity_mod.ParityError as e:
        raise parity_mod.ParityError(f"{pid}: {e}") from e


def _provenance(opts: ExportOptions, source: Source, root: Path, gmacs: float | None, seconds: float) -> dict:
    h = hashlib.sha256(opts.checkpoint.read_bytes()).hexdigest()
    meta = source.meta
    return {
        "checkpoint": {"path": str(opts.checkpoint), "sha256": h},
        "config": meta.get("config"),
        "dataset": {**(meta.get("dataset") or {}), "parity_split": opts.split, "parity_clips": opts.parity_clips,
                    "calibration_split": opts.calibration_split, "root": str(root)},
        "metrics": meta.get("metrics"),
        "teacher": meta.get("teacher"),
        "quantization": meta.get("quantization"),
        "gmacs_per_clip": gmacs,
        "export": {"precision": opts.precision, "mode": opts.mode, "formats": list(opts.formats),
                   "tolerance": dataclasses.asdict(opts.tolerance), "seconds": round(seconds, 1)},
    }


def zip_bundle(bundle: Path) -> Path:
    """``NAME.vbundle.zip`` beside the bundle (the loader accepts it like the directory); written atomically."""
    bundle = Path(bundle)
    target = bundle.with_name(bundle.name + ".zip")
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(bundle.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(bundle).as_posix())
    os.replace(tmp, target)
    return target


def manifest_json(bundle: Path) -> dict:
    return json.loads((Path(bundle) / MANIFEST_FILE).read_text())
