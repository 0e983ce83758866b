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
from converters.program import ClipProgram, ExportResult, FasterClipProgram, ProgramJob, StreamProgram
from sdk.backends import load_runner
from sdk.bundle import (
    GOLDEN_FILE,
    MANIFEST_FILE,
    SCHEMA_VERSION,
    FasterClipModel,
    FasterSpec,
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
from training.checkpoint import CheckpointMeta, load_checkpoint_model, model_from_checkpoint, read_checkpoint
from training.models.faster import LoadedFaster, faster_from_checkpoint, is_faster

__all__ = ["FORMATS", "ExportOptions", "ExportReport", "export_bundle", "export_faster_bundle", "zip_bundle"]

# --to name -> (backend name in the manifest, exporter module)
FORMATS = {"pte": ("executorch", "converters.to_pte"), "coreml": ("coreml", "converters.to_coreml"),
           "tflite": ("tflite", "converters.to_tflite"), "onnx": ("onnx", "converters.to_onnx")}
AGGREGATOR_PARITY_STEPS = 20  # the FASTER aggregator is checked over sequences this long (issue 6)


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
        lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths)), *(fmt.format(*r) for r in rows)]
        if self.manifest.faster is not None:
            spec = self.manifest.faster
            lines += ["", f"FASTER {spec.schedule} ({' '.join(spec.pattern)}), {spec.aggregator}, segments of "
                      f"{spec.segment_frames} frames"]
            for p in self.manifest.programs:
                if p.parity is not None and p.parity.features_max_abs_diff is not None:
                    lines.append(f"  {p.id}: features max|diff| {p.parity.features_max_abs_diff:.2e}")
                video = p.details.get("video_parity")
                if video:
                    lines.append(f"  {p.backend}: whole schedule on {video['videos']} videos (its clip programs' "
                                 f"features into its aggregator) vs torch: max|diff| {video['max_abs_diff']:.2e}, "
                                 f"top-1 agreement {video['top1_agreement']:.3f}, top-1 {video['top1_runtime']:.3f} "
                                 f"(torch {video['top1_torch']:.3f})")
        return "\n".join(lines)


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


# ---------------------------------------------------------------------------------------------------------- source
@dataclass
class Source:
    """The model to export and what the bundle says about it."""

    model: nn.Module | None  # fp32 registry model (None for a .pt2 int8 program)
    quantized: nn.Module | None  # int8 PT2E module of the clip model (QAT .pt2)
    meta: CheckpointMeta

    @property
    def labels(self) -> list[str]:
        return list(self.meta.labels)

    @property
    def sampler(self) -> Sampler:
        return self.meta.sampler

    @property
    def preprocess(self) -> Preprocess:
        return self.meta.preprocess


def load_source(path: Path) -> Source | LoadedFaster:
    """The checkpoint, read once (its bytes also give the provenance sha256): a ``.pt`` classifier checkpoint, an int8
    ``.pt2`` program (its JSON sidecar beside it), or a FASTER row checkpoint of ``training.faster``."""
    if path.suffix == ".pt2":
        model, meta = load_checkpoint_model(path, "cpu")
        return Source(None, model, meta)
    ckpt, sha256 = read_checkpoint(path)
    if is_faster(ckpt):
        return faster_from_checkpoint(ckpt, path, sha256)
    meta = CheckpointMeta.from_dict(ckpt, path, sha256)
    return Source(model_from_checkpoint(ckpt, meta).eval(), None, meta)


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
    root = opts.data or Path(source.meta.dataset.get("root") or "")
    if not root or not (Path(root) / "labels.txt").is_file():
        raise ConfigError(f"calibration and parity need the benchmark the model was trained on; {root or 'none'} "
                          "is not a dataset directory: pass --data DIR (python -m benchmarks generate makes one)")
    return Path(root)


# ---------------------------------------------------------------------------------------------------------- programs
@dataclass
class Programs:
    """One program of the bundle (its torch modules, example inputs, tensor names) and the inputs it is checked on.

    ``role`` is ``model`` for an ordinary bundle and ``expensive`` / ``cheap`` / ``aggregator`` in a FASTER bundle;
    ``golden`` / ``parity`` / ``calibration`` hold program-shaped inputs per clip (clip: ``(clip,)``, stream: the
    clip's frames ``(T, 1, 3, H, W)``, aggregate: a feature sequence ``(S, 1, ...)``)."""

    mode: str
    fp32: nn.Module | None
    quantized: nn.Module | None
    example: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    zero_state: tuple[torch.Tensor, ...]
    role: str = "model"
    golden: list[tuple[np.ndarray, ...]] = field(default_factory=list)
    parity: list[tuple[np.ndarray, ...]] = field(default_factory=list)
    calibration: list[torch.Tensor] = field(default_factory=list)
    refs: dict[str, tuple[parity_mod.Outputs, parity_mod.Outputs]] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        """Program ids and golden keys start with it: the mode for an ordinary bundle, the role in a FASTER one."""
        return self.mode if self.role == "model" else self.role

    @property
    def state_at(self) -> int:
        """Index of the first new-state output."""
        return {"stream": 2, "aggregate": 1}.get(self.mode, len(self.output_names))


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
        raise ConfigError(f"{source.meta.config.get('arch', 'this model')} looks at future frames and cannot "
                          "stream; train a causal model (tam_mobilenet_v2_causal, tsm_mobilenet_v2_online) or "
                          "export --mode clip")
    spec = source.model.state_spec(size, size)
    zero = tuple(torch.zeros(shape) for _, shape in spec)
    example = (torch.zeros(1, *frame_shape), *zero)
    names = [n for n, _ in spec]
    return Programs("stream", StreamProgram(source.model, pre).eval(), None, example, ["frame", *names],
                    ["logits", "features", *[f"new_{n}" for n in names]], zero)


def _step_inputs(programs: Programs, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Program-shaped inputs of one clip (or feature sequence): ``(clip,)``, or, streaming, ``(frames (T, 1, ...),)``."""
    return (x.unsqueeze(1),) if programs.mode == "stream" else (x,)


def _calibration_inputs(programs: Programs, items: list[torch.Tensor]) -> list[tuple[torch.Tensor, ...]]:
    """Representative program inputs: clips, or every step of each clip (feature sequence) with the state torch
    reached there."""
    if programs.mode == "clip":
        return [(c,) for c in items]
    out = []
    with torch.no_grad():
        for item in items:
            state = programs.zero_state
            for step in _step_inputs(programs, item)[0]:
                out.append((step, *state))
                state = tuple(programs.fp32(step, *state)[programs.state_at:])
    return out


def _representative_input(programs: Programs, item: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """A real program input: the clip, or its middle step with the state torch reached there."""
    steps = _calibration_inputs(programs, [item])
    return steps[len(steps) // 2]


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


def _prepare(programs: Programs, opts: ExportOptions, golden: dict[str, np.ndarray]) -> None:
    """Calibrate int8 if needed, run the torch references on the golden and parity inputs, fill ``golden``."""
    if opts.precision == "int8" and programs.quantized is None:
        _say(f"{programs.prefix}: post-training int8 calibration (PT2E, XNNPACK scheme) on "
             f"{len(programs.calibration)} inputs")
        programs.quantized = _quantize(programs, _calibration_inputs(programs, programs.calibration))
    zero = [s.numpy() for s in programs.zero_state]
    for kind, module in (("fp32", programs.fp32), ("quantized", programs.quantized)):
        if module is not None:
            run = _torch_run(module)
            programs.refs[kind] = (parity_mod.run_clips(run, programs.mode, programs.golden, zero),
                                   parity_mod.run_clips(run, programs.mode, programs.parity, zero))
    golden[f"{programs.prefix}/input/{programs.input_names[0]}"] = np.stack([g[0] for g in programs.golden])
    for kind, (outputs, _) in programs.refs.items():
        golden[f"{programs.prefix}/reference_{kind}/logits"] = outputs.steps
        if outputs.features is not None:
            golden[f"{programs.prefix}/reference_{kind}/features"] = outputs.features


# ---------------------------------------------------------------------------------------------------------- export
def _say(msg: str) -> None:
    print(f"[export] {msg}", flush=True)


def _exporters(opts: ExportOptions) -> dict[str, tuple[str, Any]]:
    import importlib

    exporters = {}
    for fmt in opts.formats:
        backend, module_name = FORMATS[fmt]
        module = importlib.import_module(module_name)
        if opts.precision not in module.PRECISIONS:
            raise ConfigError(f"{fmt} exports {', '.join(module.PRECISIONS)}, not {opts.precision}")
        exporters[fmt] = (backend, module)
    return exporters


def export_bundle(opts: ExportOptions) -> ExportReport:
    """Export, verify and write the bundle (see the module docstring). Raises on any failure; nothing is left under
    ``opts.out`` unless everything passed. A FASTER checkpoint (``training.faster``) goes to
    :func:`export_faster_bundle`."""
    from training.profile import count_gmacs

    started = time.perf_counter()
    if opts.out.exists() and not opts.force:
        raise ConfigError(f"{opts.out} exists; pass --force to replace it")
    _say(f"source {opts.checkpoint}")
    source = load_source(opts.checkpoint)
    if isinstance(source, LoadedFaster):
        return export_faster_bundle(opts, source, started)
    if source.model is None and opts.precision != "int8":
        raise ConfigError(f"{opts.checkpoint} is an int8 program (training.qat): export it with --precision int8")
    root = _dataset_root(opts, source)
    programs = _programs(source, opts.mode)
    exporters = _exporters(opts)

    _say(f"{opts.parity_clips} parity clips from {root / opts.split}")
    held_out = _clips(root, opts.split, source, opts.parity_clips + opts.golden_clips)
    programs.golden = [tuple(t.numpy() for t in _step_inputs(programs, c)) for c in held_out[:opts.golden_clips]]
    programs.parity = [tuple(t.numpy() for t in _step_inputs(programs, c)) for c in held_out[opts.golden_clips:]]
    programs.example = _representative_input(programs, held_out[0])
    if opts.precision == "int8" and programs.quantized is None:
        _say(f"calibration clips from {root / opts.calibration_split}")
        programs.calibration = _clips(root, opts.calibration_split, source, opts.calibration_clips)
    golden: dict[str, np.ndarray] = {}
    _prepare(programs, opts, golden)

    def manifest(entries: list[Program], golden_sha: str) -> Manifest:
        gmacs = None
        if source.model is not None:
            gmacs = count_gmacs(source.model, programs.example[0].unsqueeze(0) if opts.mode == "clip"
                                else torch.zeros(1, source.sampler.frames, 3, source.preprocess.size,
                                                 source.preprocess.size))
        return Manifest(
            name=opts.name or opts.out.name.removesuffix(".vbundle"), labels=tuple(source.labels),
            input=InputSpec(source.preprocess), sampler=source.sampler, programs=tuple(entries),
            golden={"file": GOLDEN_FILE, "sha256": golden_sha},
            provenance=_provenance(opts, source.meta.to_dict(), source.meta.sha256, root, {"gmacs_per_clip": gmacs},
                                   time.perf_counter() - started),
            created=_now(), producer=_producer(), schema_version=SCHEMA_VERSION)

    return _write_bundle(opts, [programs], exporters, golden, manifest, started)


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def _producer() -> dict[str, str]:
    return {"package": "edgevideo", "version": sdk.__version__, "torch": torch.__version__}


def _write_bundle(opts: ExportOptions, jobs: list[Programs], exporters: dict[str, tuple[str, Any]],
                  golden: dict[str, np.ndarray], manifest, started: float,
                  after_backend=None) -> ExportReport:
    """Export every program of ``jobs`` to every format, check each in its runtime, and write the bundle atomically.

    ``manifest(entries, golden_sha256)`` builds the manifest; ``after_backend(backend, entries, outputs, root)``
    (FASTER) may add details once all programs of a backend were checked (``outputs``: each role's runtime outputs on
    its parity inputs, None where the runtime is missing; ``root``: the bundle being written)."""
    out = opts.out
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "programs").mkdir(parents=True)
    entries, timings = [], {}
    try:
        for fmt, (backend, module) in exporters.items():
            backend_entries, backend_outputs = [], {}
            for programs in jobs:
                pid = f"{programs.prefix}_{backend}_{opts.precision}"
                legacy = fmt == "coreml" and opts.coreml_format == "mlmodel"
                path = tmp / "programs" / f"{pid}{module.LEGACY_SUFFIX if legacy else module.SUFFIX}"
                job = ProgramJob(programs.mode, programs.fp32 if programs.fp32 is not None else programs.quantized,
                                 programs.example, programs.input_names, programs.output_names, opts.precision,
                                 programs.quantized)
                _say(f"{pid}: exporting")
                t0 = time.perf_counter()
                result: ExportResult = module.export(job, path, legacy=True) if legacy else module.export(job, path)
                timings[pid] = time.perf_counter() - t0
                par, outputs = _check(backend, path, result, programs, opts, golden, pid)
                backend_outputs[programs.role] = outputs
                _say(f"{pid}: {timings[pid]:.1f} s, {_size(_disk_size(path))}, parity {par.status}"
                     + (f" (max|diff| {par.max_abs_diff:.2e}, top-1 agreement {par.top1_agreement:.3f})"
                        if par.max_abs_diff is not None else f": {par.reason}"))
                n_in = len(programs.input_names) - len(programs.zero_state)
                backend_entries.append(Program(
                    id=pid, backend=backend, precision=opts.precision, mode=programs.mode, role=programs.role,
                    file=f"programs/{path.name}", sha256=sha256_of(path), size_bytes=_disk_size(path),
                    inputs=tuple(result.inputs[:n_in]), outputs=tuple(result.outputs[:programs.state_at]),
                    state=tuple(result.inputs[n_in:]), parity=par,
                    details={**result.details, "export_seconds": round(timings[pid], 2)}))
            if after_backend is not None:
                backend_entries = after_backend(backend, backend_entries, backend_outputs, tmp)
            entries += backend_entries
        (tmp / GOLDEN_FILE).write_bytes(golden_bytes(golden))
        m = manifest(entries, sha256_of(tmp / GOLDEN_FILE))
        write_manifest(m, tmp)
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
    return ExportReport(out, m, timings)


def _disk_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def _check(backend: str, path: Path, result: ExportResult, programs: Programs, opts: ExportOptions,
           golden: dict, pid: str) -> tuple[Parity, parity_mod.Outputs | None]:
    """Run the program in its runtime: its :class:`Parity` (raises ParityError beyond tolerance) and its outputs on
    the parity inputs (None when the runtime is not available here)."""
    refs = programs.refs
    reference_kind = result.reference if result.reference in refs else "fp32"
    described = {"fp32": "torch fp32", "quantized": "torch int8 (PT2E XNNPACK scheme)"}[reference_kind]
    try:
        runner = load_runner(backend, path, threads=opts.threads)
    except BackendUnavailableError as e:
        return Parity(status="not_verified", reference=described, reason=str(e)), None
    zero = [s.numpy() for s in programs.zero_state]
    g = parity_mod.run_clips(runner.run, programs.mode, programs.golden, zero)
    p = parity_mod.run_clips(runner.run, programs.mode, programs.parity, zero)
    golden[f"{pid}/logits"] = g.steps
    rg, rp = refs[reference_kind]
    fp32_clips = refs["fp32"][1].clips if "fp32" in refs and reference_kind != "fp32" else None
    features_diff = None if p.features is None else float(np.abs(p.features - rp.features).max())
    try:
        return parity_mod.measure(p.steps, p.clips, rp.steps, rp.clips, precision=opts.precision,
                                  reference=described, tolerance=opts.tolerance,
                                  golden_diff=float(np.abs(g.steps - rg.steps).max()), fp32_clips=fp32_clips,
                                  features_diff=features_diff), p
    except parity_mod.ParityError as e:
        raise parity_mod.ParityError(f"{pid}: {e}") from e


def _provenance(opts: ExportOptions, meta: dict, sha256: str, root: Path, cost: dict, seconds: float) -> dict:
    """Where the bundle came from, without the exporting machine's paths (a bundle ships to other machines): files
    by name and sha256 (of the bytes that were loaded), the dataset by preset, seed and a content id
    (:func:`dataset_id`)."""
    return {
        "checkpoint": {"name": opts.checkpoint.name, "sha256": sha256},
        "config": _portable(meta.get("config")),
        "dataset": {**{k: v for k, v in (meta.get("dataset") or {}).items() if k != "root"},
                    "id": dataset_id(root), "name": root.name,
                    "parity_split": opts.split, "parity_clips": opts.parity_clips,
                    "calibration_split": opts.calibration_split},
        "metrics": meta.get("metrics"),
        "teacher": _portable(meta.get("teacher")),
        "quantization": meta.get("quantization"),
        **cost,
        "export": {"precision": opts.precision, "mode": opts.mode, "formats": list(opts.formats),
                   "tolerance": dataclasses.asdict(opts.tolerance), "seconds": round(seconds, 1)},
    }


def dataset_id(root: Path) -> str:
    """A dataset's identity independent of where it lies: sha256 (16 hex) of its labels, meta.json and split files."""
    h = hashlib.sha256()
    for name in ("labels.txt", "meta.json", "train.csv", "val.csv"):
        f = root / name
        h.update(name.encode() + b"\0" + (f.read_bytes() if f.is_file() else b"") + b"\0")
    return h.hexdigest()[:16]


def _portable(value: Any) -> Any:
    """``value`` with every absolute path (a string starting with ``/``, ``~`` or a drive letter) cut to its last
    component, recursively: the run's settings stay readable, the exporting machine's layout does not travel."""
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v) for v in value]
    if isinstance(value, str) and (value.startswith(("/", "~")) or (len(value) > 2 and value[1:3] in (":\\", ":/"))):
        return Path(value).name
    return value


# ---------------------------------------------------------------------------------------------------------- FASTER
def _long_videos(root: Path, split: str, sampler: Sampler, preprocess: Preprocess, count: int
                 ) -> tuple[list[torch.Tensor], list[int]]:
    """The segments ``(L, T, 3, H, W)`` float32 in [0, 255] of ``count`` videos of a long-video split (spread over the
    split so that every class appears) as one clip model samples them, and their labels."""
    from training.data.long_video import LongVideoDataset

    dataset = LongVideoDataset.from_dir(root, split.removesuffix(".csv"), sampler=sampler,
                                        preprocess=_raw(preprocess), train=False)
    picks = np.linspace(0, len(dataset) - 1, min(count, len(dataset))).round().astype(int)
    items = [dataset[int(i)] for i in picks]
    return [torch.as_tensor(v) for v, _ in items], [int(label) for _, label in items]


def _feature_sequences(faster, clip_programs: dict[str, nn.Module], videos: dict[str, list[torch.Tensor]],
                       pattern: list[str]) -> list[torch.Tensor]:
    """Per video, the aggregator's input sequence ``(L, 1, ...)`` under the schedule, from the torch clip programs."""
    out = []
    with torch.no_grad():
        for v in range(len(next(iter(videos.values())))):
            steps = [clip_programs[pattern[i % len(pattern)]](videos[pattern[i % len(pattern)]][v][i])[1]
                     for i in range(faster.meta["segments"])]
            out.append(torch.stack(steps))
    return out


def _chain(sequences: list[torch.Tensor], steps: int) -> list[torch.Tensor]:
    """The videos' feature sequences back to back, as a stream would feed them, cut into ``steps``-long sequences
    (a shorter remainder is dropped unless it is all there is)."""
    stream = torch.cat(sequences)
    chunks = [stream[i:i + steps] for i in range(0, len(stream) - steps + 1, steps)]
    return chunks or [stream]


def export_faster_bundle(opts: ExportOptions, faster: LoadedFaster, started: float) -> ExportReport:
    """A FASTER bundle from a ``training.faster`` row checkpoint: the clip program of each role the schedule uses
    (``(clip) -> (logits, features)``, projection included) and the aggregator step program
    ``(features, *state) -> (logits, *new_state)``, per format, with ``manifest.faster`` saying how to drive them.

    Parity: each clip program on every segment of ``opts.parity_clips`` held-out long videos (logits and features);
    the aggregator on those videos' torch feature sequences chained and cut into ``AGGREGATOR_PARITY_STEPS``-step
    sequences (stepped from zero state; max-abs-diff over every step). Then, per backend, the whole schedule run in
    that runtime (its clip programs' features into its aggregator, one video at a time from zero state) against the
    torch pipeline: recorded as ``details.video_parity`` of the aggregator program.
    """
    from training.models.fast_gru import AggregatorStep

    if opts.mode != "clip":
        raise ConfigError("a FASTER bundle has its own modes (clip programs + an aggregate program): drop --mode")
    meta, pattern = faster.meta, faster.pattern
    root = Path(opts.data or meta["dataset"]["root"])
    if not (root / "meta.json").is_file():
        raise ConfigError(f"parity needs the long-video benchmark the aggregator was trained on; {root} is not one: "
                          "pass --data DIR")
    exporters = _exporters(opts)
    roles = list(dict.fromkeys(pattern))
    count = opts.parity_clips + opts.golden_clips
    _say(f"{count} held-out long videos from {root / opts.split}")
    jobs, clip_programs, videos, calibration = {}, {}, {}, {}
    for role in roles:
        pre = faster.preprocess[role]
        model = faster.model
        program = FasterClipProgram(faster.clip_models[role], pre, getattr(model, f"project_{role}"),
                                    getattr(model, f"{role}_mean"), getattr(model, f"{role}_std"),
                                    meta["map_size"] if model.spatial else None).eval()
        clip_programs[role] = program
        videos[role], labels = _long_videos(root, opts.split, faster.samplers[role], pre, count)
        segs = [s for v in videos[role] for s in v]  # every segment of every video, video-major
        n_golden = opts.golden_clips * meta["segments"]
        job = Programs("clip", program, None, (segs[0],), ["clip"], ["logits", "features"], (), role=role,
                       golden=[(s.numpy(),) for s in segs[:n_golden]], parity=[(s.numpy(),) for s in segs[n_golden:]])
        if opts.precision == "int8":
            train_videos, _ = _long_videos(root, opts.calibration_split, faster.samplers[role], pre,
                                           max(1, opts.calibration_clips // meta["segments"]))
            calibration[role] = train_videos
            job.calibration = [s for v in train_videos for s in v]
        jobs[role] = job

    aggregator = faster.model.aggregator
    size = tuple(aggregator.feature_size) if aggregator.spatial else None
    zero = aggregator.initial_state(1, size)
    names = [n for n, _ in aggregator.state_specs(1, size)]
    sequences = _feature_sequences(faster, clip_programs, videos, pattern)
    agg = Programs("aggregate", AggregatorStep(aggregator).eval(), None, (), ["features", *names],
                   ["logits", *[f"new_{n}" for n in names]], zero, role="aggregator")
    agg.golden = [(s.numpy(),) for s in _chain(sequences[:opts.golden_clips], AGGREGATOR_PARITY_STEPS)]
    agg.parity = [(s.numpy(),) for s in _chain(sequences[opts.golden_clips:], AGGREGATOR_PARITY_STEPS)]
    agg.example = _representative_input(agg, sequences[0])
    if opts.precision == "int8":
        agg.calibration = _feature_sequences(faster, clip_programs, calibration, pattern)
    golden: dict[str, np.ndarray] = {}
    for job in (*jobs.values(), agg):
        if job.role != "aggregator":
            job.example = _representative_input(job, job.calibration[0] if job.calibration else
                                                torch.as_tensor(job.parity[0][0]))
        _prepare(job, opts, golden)

    # the whole pipeline in torch on the parity videos: reference of each backend's video parity
    parity_labels = labels[opts.golden_clips:]
    with torch.no_grad():
        torch_videos = np.stack([aggregator(s.transpose(0, 1)).numpy()[0] for s in sequences[opts.golden_clips:]])

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
                  "reference": "torch fp32 clip programs + aggregator"}
        _say(f"{backend}: whole schedule on {n_videos} videos: max|diff| {record['max_abs_diff']:.2e}, top-1 "
             f"agreement {record['top1_agreement']:.3f} (top-1 {record['top1_runtime']:.3f} vs torch "
             f"{record['top1_torch']:.3f})")
        last = entries[-1]
        return [*entries[:-1], dataclasses.replace(last, details={**last.details, "video_parity": record})]

    def manifest(entries: list[Program], golden_sha: str) -> Manifest:
        gmacs = {r: meta["clip_models"][r]["gmacs_per_clip"] for r in roles}
        clip_models = {r: FasterClipModel(faster.samplers[r], InputSpec(faster.preprocess[r]), gmacs[r])
                       for r in roles}
        spec = FasterSpec(schedule=meta["schedule"], pattern=tuple(pattern), segment_frames=meta["segment_frames"],
                          segments=meta["segments"], aggregator=meta["aggregator"], clip_models=clip_models)
        first = clip_models[pattern[0]]
        return Manifest(
            name=opts.name or opts.out.name.removesuffix(".vbundle"), labels=tuple(meta["labels"]),
            input=first.input, sampler=first.sampler, programs=tuple(entries),
            golden={"file": GOLDEN_FILE, "sha256": golden_sha},
            provenance=_provenance(opts, meta, faster.sha256, root, {"gmacs_per_clip": gmacs,
                                                      "gmacs_per_video": meta["metrics"].get("gmacs_per_video")},
                                   time.perf_counter() - started),
            created=_now(), producer=_producer(), schema_version=SCHEMA_VERSION, faster=spec)

    return _write_bundle(opts, [*jobs.values(), agg], exporters, golden, manifest, started, video_parity)


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
