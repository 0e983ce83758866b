"""What ``python -m converters export`` takes: the format table and the options, both checked before any work.

The table has one row per ``--to`` name; the options check, the exporter, ``--help`` and each exporter module
(``to_pte``, ``to_coreml``, ``to_tflite``, ``to_onnx``: their ``SUFFIX`` / ``PRECISIONS``) read it, so a format's file
name and packages are written down once. Each row's backend is a row of the sdk's backend table
(:data:`sdk.backends.table.BACKENDS`), whose precisions are the ones the format exports.
"""
from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from converters.parity import Tolerance
from sdk.backends.table import BACKENDS, get_backend
from sdk.errors import BackendUnavailableError, ConfigError
from sdk.manifest import PRECISIONS
from training.config import check_choices, option

__all__ = ["FORMATS", "ExportOptions", "Format", "check_formats", "formats_help", "say"]


@dataclass(frozen=True)
class Format:
    name: str  # the --to name
    backend: str  # the manifest's backend: a name of sdk.backends.table.BACKENDS
    suffix: str
    module: str  # the exporter: export(job, path) -> ExportResult
    needs: tuple[str, ...]  # Python packages the exporter imports
    legacy_suffix: str | None = None  # Core ML's NeuralNetwork .mlmodel (fp32 only)

    def __post_init__(self) -> None:
        get_backend(self.backend)  # a format exports programs of a known backend, or the table does not load

    @property
    def precisions(self) -> tuple[str, ...]:
        """The precisions it exports: its backend's (the runtime runs what the exporter writes)."""
        return BACKENDS[self.backend].precisions

    def exporter(self) -> ModuleType:
        return importlib.import_module(self.module)

    def missing(self) -> list[str]:
        return [p for p in self.needs if importlib.util.find_spec(p) is None]


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("pte", "executorch", ".pte", "converters.to_pte", ("executorch",)),
    Format("coreml", "coreml", ".mlpackage", "converters.to_coreml", ("coremltools",), legacy_suffix=".mlmodel"),
    Format("tflite", "tflite", ".tflite", "converters.to_tflite", ("litert_torch",)),
    Format("onnx", "onnx", ".onnx", "converters.to_onnx", ("onnx", "onnxscript")),
)}


def formats_help() -> str:
    """One phrase per format for ``--to``'s help: name, file and precisions."""
    return "; ".join(f"{f.name}: {f.suffix} ({'/'.join(f.precisions)})" for f in FORMATS.values())


def check_formats(names: list[str] | tuple[str, ...], precision: str) -> list[Format]:
    """The rows of ``names``, refused before any work: an unknown name, a precision the format cannot make, or a
    missing exporter package, each with the valid choices or the install command."""
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise ConfigError(f"unknown format(s) {unknown}; valid: {', '.join(FORMATS)}")
    rows = [FORMATS[n] for n in names]
    for f in rows:
        if precision not in f.precisions:
            raise ConfigError(f"{f.name} exports {', '.join(f.precisions)}, not {precision}")
        missing = f.missing()
        if missing:
            raise BackendUnavailableError(f"exporting {f.name} needs {', '.join(missing)}: "
                                          "pip install 'edgevideo[export]'")
    return rows


@dataclass
class ExportOptions:
    """Everything ``python -m converters export`` takes: each field's metadata is its option (flag, description,
    default, choices), from which the command line is built (``training.cli.add_options``) and checked."""

    checkpoint: Path = option(help="best.pt (training) or int8_qat.pt2 (training.qat)")
    out: Path = option(help="NAME.vbundle directory to write")
    formats: Sequence[str] = option(tuple(FORMATS), flag="--to", choices=tuple(FORMATS), many=True,
                                    help=f"formats to export ({formats_help()})")
    precision: str = option("fp32", choices=PRECISIONS, help="precision of the programs (int8 from a .pt: "
                            "post-training calibration; a .pt2 is int8)")
    mode: str = option("clip", choices=("clip", "stream"), help="clip: (T,3,H,W) -> logits; stream: one frame + "
                       "explicit state per call (causal models)")
    data: Path | None = option(None, help="benchmark for calibration and parity (default: the checkpoint's dataset)")
    split: str = option("val.csv", help="held-out split for parity")
    calibration_split: str = option("train.csv", help="split the int8 calibration clips come from")
    calibration_clips: int = option(32, help="int8 post-training calibration clips")
    parity_clips: int = option(100, help="held-out clips each program is checked on")
    golden_clips: int = option(2, help="clips stored in golden.npz")
    tolerance: Tolerance = field(default_factory=Tolerance)
    name: str | None = option(None, help="bundle name (default: from --out)")
    force: bool = option(False, help="replace an existing bundle")
    zip: bool = option(False, help="also write NAME.vbundle.zip")
    threads: int | None = option(None, help="runtime threads for the parity runs (default: the runtime's)")
    coreml_format: str = option("mlpackage", choices=("mlpackage", "mlmodel"), help="Core ML container: ML program "
                                ".mlpackage or legacy NeuralNetwork .mlmodel (fp32 only)")

    def __post_init__(self) -> None:
        self.checkpoint, self.out = Path(self.checkpoint), Path(self.out)
        self.formats = tuple(self.formats)
        check_choices(self)
        check_formats(self.formats, self.precision)
        if self.coreml_format == "mlmodel" and "coreml" in self.formats and self.precision != "fp32":
            raise ConfigError(f"a legacy .mlmodel is fp32 only, not {self.precision}; use the .mlpackage")
        for key in ("calibration_clips", "parity_clips", "golden_clips"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")


def say(msg: str) -> None:
    """One line of the export's progress (stdout, flushed: a log shows where a long export is)."""
    print(f"[export] {msg}", flush=True)
