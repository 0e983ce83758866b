"""The last steps of an export: each program lowered to each format, checked in its runtime (parity), and the bundle
written atomically with its manifest, golden arrays and provenance. A format that fails is reported and left out; the
others are written.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import shutil
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import sdk
from converters import parity as parity_mod
from converters.options import ExportOptions, Format, say
from converters.plan import Programs
from converters.program import ExportResult, ProgramJob
from sdk.backends import load_runner
from sdk.bundle import GOLDEN_FILE, golden_bytes
from sdk.errors import BackendUnavailableError, BundleError, ConfigError
from sdk.files import atomic_dir, atomic_path, sha256_of
from sdk.manifest import SCHEMA_VERSION, Manifest, Parity, Program, TrainingClip, write_manifest

__all__ = ["ExportReport", "FormatFailure", "dataset_id", "provenance", "training_clip", "write_bundle", "zip_bundle"]


@dataclass(frozen=True)
class FormatFailure:
    """A format left out of the bundle, and why."""

    format: str
    error: str  # "ExceptionType: message"


@dataclass
class ExportReport:
    bundle: Path
    manifest: Manifest
    timings: dict[str, float]
    failed: tuple[FormatFailure, ...] = ()  # formats that are not in the bundle; empty when all were written
    notes: tuple[str, ...] = ()  # lines after the program table that a kind of bundle adds (FASTER: its schedule)

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
        lines += list(self.notes)
        int8 = parity_mod.parity_lines(self.manifest.programs)
        if int8:
            lines += ["", "int8 parity (the gate's figures; --int8-min-agreement, --int8-min-fp32-agreement, "
                      "--int8-max-fp32-error):", *(f"  {line}" for line in int8)]
        lines += [f"FAILED {f.format}: {f.error}" for f in self.failed]
        return "\n".join(lines)


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def _producer() -> dict[str, str]:
    return {"package": "edgevideo", "version": sdk.__version__, "torch": torch.__version__}


def write_bundle(opts: ExportOptions, jobs: list[Programs], formats: list[Format], golden: dict[str, np.ndarray],
                 manifest: Callable[[list[Program]], dict[str, Any]], started: float,
                 after_backend: Callable[..., list[Program]] | None = None) -> ExportReport:
    """Lower every program of ``jobs`` to every format, check each in its runtime, and write the bundle atomically.

    A format that fails (its exporter raises, or parity is out of tolerance) is left out of the bundle and named in
    the report with its error; the other formats are written. When every format fails nothing is written (an
    existing bundle stays) and the first error is raised.

    ``manifest(entries)`` gives the manifest's fields that depend on the source (name, labels, input, sampler,
    provenance, ...; ``clip`` defaults to :func:`training_clip` of the provenance); ``after_backend(backend, entries,
    outputs, root)`` may add details once all programs of a backend were checked (``outputs``: each role's runtime
    outputs on its parity inputs, None where the runtime is missing; ``root``: the bundle being written); the FASTER
    exporter checks the whole schedule there."""
    entries: list[Program] = []
    timings: dict[str, float] = {}
    failed: list[FormatFailure] = []
    errors: list[Exception] = []
    with atomic_dir(opts.out) as tmp:
        (tmp / "programs").mkdir()
        for fmt in formats:
            before, written = set(golden), []
            try:
                entries += _lower(fmt, jobs, opts, tmp, golden, timings, written, after_backend)
            except Exception as e:  # any failure of one format: the others' work stands
                for key in set(golden) - before:
                    del golden[key]
                for path in written:
                    if path.is_dir():
                        shutil.rmtree(path)
                    else:
                        path.unlink(missing_ok=True)
                failed.append(FormatFailure(fmt.name, f"{type(e).__name__}: {e}"))
                errors.append(e)
                say(f"{fmt.name}: FAILED ({type(e).__name__}: {e})")
        if not entries:
            for other in failed[1:]:
                errors[0].add_note(f"{other.format} failed too: {other.error}")
            raise errors[0]
        (tmp / GOLDEN_FILE).write_bytes(golden_bytes(golden))
        fields = manifest(entries)
        m = Manifest(**{"clip": training_clip(fields["provenance"]), **fields}, programs=tuple(entries),
                     golden={"file": GOLDEN_FILE, "sha256": sha256_of(tmp / GOLDEN_FILE)}, created=_now(),
                     producer=_producer(), schema_version=SCHEMA_VERSION)
        write_manifest(m, tmp)
    if opts.zip:
        zip_bundle(opts.out)
    timings["total"] = time.perf_counter() - started
    return ExportReport(opts.out, m, timings, tuple(failed))


def _lower(fmt: Format, jobs: list[Programs], opts: ExportOptions, root: Path, golden: dict[str, np.ndarray],
           timings: dict[str, float], written: list[Path], after_backend) -> list[Program]:
    """Every program of ``jobs`` in one format, checked in its runtime: the manifest entries (``written``: the files
    made so far, removed by the caller if this format fails)."""
    module = fmt.exporter()
    legacy = fmt.legacy_suffix is not None and opts.coreml_format == "mlmodel"
    entries, outputs_by_role = [], {}
    for programs in jobs:
        pid = f"{programs.prefix}_{fmt.backend}_{opts.precision}"
        path = root / "programs" / f"{pid}{fmt.legacy_suffix if legacy else fmt.suffix}"
        written.append(path)
        job = ProgramJob(programs.mode, programs.fp32 if programs.fp32 is not None else programs.quantized,
                         programs.example, programs.input_names, programs.output_names, opts.precision,
                         programs.quantized)
        say(f"{pid}: exporting")
        t0 = time.perf_counter()
        result: ExportResult = module.export(job, path, legacy=True) if legacy else module.export(job, path)
        timings[pid] = time.perf_counter() - t0
        par, outputs = _check(fmt.backend, path, result, programs, opts, golden, pid)
        outputs_by_role[programs.role] = outputs
        say(f"{pid}: {timings[pid]:.1f} s, {_size(_disk_size(path))}, parity {par.status}"
            + (f" (max|diff| {par.max_abs_diff:.2e}, top-1 agreement {par.top1_agreement:.3f})"
               if par.max_abs_diff is not None else f": {par.reason}"))
        n_in = len(programs.input_names) - len(programs.zero_state)
        entries.append(Program(
            id=pid, backend=fmt.backend, precision=opts.precision, mode=programs.mode, role=programs.role,
            file=f"programs/{path.name}", sha256=sha256_of(path), size_bytes=_disk_size(path),
            inputs=tuple(result.inputs[:n_in]), outputs=tuple(result.outputs[:programs.state_at]),
            state=tuple(result.inputs[n_in:]), parity=par,
            details={**result.details, "export_seconds": round(timings[pid], 2)}))
    if after_backend is not None:
        entries = after_backend(fmt.backend, entries, outputs_by_role, root)
    return entries


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
    features_diff = None if p.features is None else float(max(
        np.abs(a - b).max() for a, b in ((p.features, rp.features), (p.pooled, rp.pooled)) if a is not None))
    try:
        return parity_mod.measure(p.steps, p.clips, rp.steps, rp.clips, precision=opts.precision,
                                  reference=described, tolerance=opts.tolerance,
                                  golden_diff=float(np.abs(g.steps - rg.steps).max()), fp32_clips=fp32_clips,
                                  features_diff=features_diff), p
    except parity_mod.ParityError as e:
        raise parity_mod.ParityError(f"{pid}: {e}") from e


def provenance(opts: ExportOptions, meta: dict, sha256: str, root: Path, cost: dict, seconds: float) -> dict:
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


def training_clip(provenance: dict) -> TrainingClip | None:
    """The manifest's ``clip``: the training videos' median length as the checkpoint recorded it
    (``CheckpointMeta.dataset["clip"]``, which :func:`provenance` carries into ``provenance["dataset"]``); None for a
    checkpoint that predates the record (the runtime then streams in its default window and says so)."""
    raw = (provenance.get("dataset") or {}).get("clip")
    if raw is None:
        return None
    try:
        return TrainingClip.parse(raw, "dataset.clip")
    except BundleError as e:
        raise ConfigError(f"the checkpoint's record of its training videos is malformed ({e}): fix its dataset.clip "
                          "entry or train again") from e


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


def zip_bundle(bundle: Path) -> Path:
    """``NAME.vbundle.zip`` beside the bundle (the loader accepts it like the directory); written atomically."""
    bundle = Path(bundle)
    target = bundle.with_name(bundle.name + ".zip")
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(bundle.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(bundle).as_posix())
    return target
