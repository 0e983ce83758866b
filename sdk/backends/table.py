"""The one table of bundle backends: every part that names backends reads it.

The manifest's valid ``backend`` values, ``sdk.load``'s ``auto`` order, package probing and platform check, the runner
module :func:`sdk.backends.load_runner` imports, and the exporter formats (``converters.options.FORMATS``: each row's
backend and precisions) all come from :data:`BACKENDS`, so adding or changing a backend is one row here
(tests/test_backend_table.py refuses a second list of the names elsewhere).

The rows are in ``backend="auto"``'s order: the order of measured CPU speed on this project's machines
(docs/measurements.md) -- Core ML first where it runs (macOS), then ExecuTorch (XNNPACK), LiteRT (XNNPACK) and ONNX
Runtime (CPU provider).

==============  =====================================  ==========================================================
backend         runtime                                notes
==============  =====================================  ==========================================================
``coreml``      ``coremltools`` ``MLModel.predict``    macOS only: elsewhere BackendUnavailableError
``executorch``  ``executorch.runtime`` (XNNPACK)       imports torch (the Python bindings do); threads: see there
``tflite``      ``ai_edge_litert.interpreter``         torch-free
``onnx``        ``onnxruntime`` (CPU provider)         torch-free
==============  =====================================  ==========================================================
"""
from __future__ import annotations

from dataclasses import dataclass

from sdk.errors import ConfigError

__all__ = ["BACKENDS", "Backend", "auto_rank", "get_backend"]


@dataclass(frozen=True)
class Backend:
    """One bundle backend: the name a manifest's program gives, what loads and runs its programs, what it runs on."""

    name: str
    runner_module: str  # its load(path, threads=...) -> Runner
    package: str  # the runtime's import name: installed when importlib finds it (nothing is imported)
    platforms: tuple[str, ...] | None  # the platform.system() values it runs on; None: every platform
    precisions: tuple[str, ...]  # the program precisions exported for it (converters.options.FORMATS)

    def runs_on(self, system: str) -> bool:
        """Whether the runtime exists on ``system`` (a ``platform.system()`` value), installed or not."""
        return self.platforms is None or system in self.platforms


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("coreml", "sdk.backends.coreml", "coremltools", ("Darwin",), ("fp32", "fp16", "int8")),
    Backend("executorch", "sdk.backends.executorch", "executorch", None, ("fp32", "int8")),
    Backend("tflite", "sdk.backends.litert", "ai_edge_litert", None, ("fp32", "int8")),
    Backend("onnx", "sdk.backends.onnxruntime", "onnxruntime", None, ("fp32", "int8")),
)}


def get_backend(name: str) -> Backend:
    """The row of ``name``; an unknown name raises :class:`ConfigError` listing the valid ones."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}")
    return BACKENDS[name]


def auto_rank(name: str) -> int:
    """``name``'s place in ``backend="auto"``'s order (the table's): a sort key for (backend, ...) pairs."""
    return list(BACKENDS).index(get_backend(name).name)
