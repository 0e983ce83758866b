"""Inference runtimes behind one small interface: ``load_runner(backend, path).run(inputs) -> outputs``.

A :class:`Runner` takes and returns float32 numpy arrays in the program's order (``sdk/manifest.py``: inputs then state,
outputs then new state); a program with int8 inputs/outputs is quantized/dequantized inside the runner with the
parameters stored in the program file. Each runtime is imported only when its runner is created, so ``import sdk``
stays numpy-only; a missing runtime raises :class:`~sdk.errors.BackendUnavailableError` saying what to install.

The backends, their runtimes and runner modules are the rows of :data:`sdk.backends.table.BACKENDS`.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from sdk.backends.table import get_backend
from sdk.errors import BackendUnavailableError, ConfigError

__all__ = ["CPUINFO_PROBE", "VERBOSE_ENV", "Runner", "load_runner", "native_stderr_without", "quiet_native_logs",
           "verbose_output"]

# Set to 1 (the tools' ``--verbose`` does): the runtimes' known-harmless native log lines are no longer filtered.
VERBOSE_ENV = "EDGEVIDEO_VERBOSE"


def verbose_output() -> bool:
    """Whether everything the runtimes log should reach stderr (``EDGEVIDEO_VERBOSE`` set and not ``0``)."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


class Runner:
    """One loaded program. Subclasses implement :meth:`run`; not thread-safe (one runner per thread)."""

    backend: str = ""

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:  # pragma: no cover - interface
        raise NotImplementedError


def load_runner(backend: str, path: str | Path, *, threads: int | None = None) -> Runner:
    """The runner of ``backend`` for the program file (or .mlpackage directory) at ``path``.

    ``threads``: intra-op threads (None = the runtime's default).
    """
    runner_module = get_backend(backend).runner_module
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads must be a positive integer or None, got {threads!r}")
    module = importlib.import_module(runner_module)
    return module.load(Path(path), threads=threads)


def as_float32(arrays: Sequence[np.ndarray], what: str) -> list[np.ndarray]:
    """Inputs as C-contiguous float32 arrays (a runner's first step)."""
    out = []
    for i, a in enumerate(arrays):
        a = np.asarray(a)
        if a.dtype.kind not in "fiu":
            raise ConfigError(f"{what}: input {i} has dtype {a.dtype}, expected numbers")
        out.append(np.ascontiguousarray(a, dtype=np.float32))
    return out


def unavailable(backend: str, install: str, error: BaseException | None = None) -> BackendUnavailableError:
    reason = f": {error}" if error is not None else ""
    return BackendUnavailableError(f"the {backend} runtime is not available{reason}; install it with {install}")


# ExecuTorch's XNNPACK initialisation logs its ARM CPU probing from C++ on every host, through the Python bindings
# ("[cpuinfo_utils.cpp:87] Failed to open midr file ...") and through the native core ("I 00:00:00.004 executorch:
# cpuinfo_utils.cpp:87] ..."): five lines of noise on x86, where there is no such file to read.
CPUINFO_PROBE = ("cpuinfo_utils.cpp:", "threadpool.cpp:")


def quiet_native_logs() -> contextlib.AbstractContextManager[None]:
    """Filters :data:`CPUINFO_PROBE` lines out of the block's native stderr, unless verbose output is asked for
    (:func:`verbose_output`): then everything passes."""
    return contextlib.nullcontext() if verbose_output() else native_stderr_without(CPUINFO_PROBE)


@contextlib.contextmanager
def native_stderr_without(markers: tuple[str, ...]) -> Iterator[None]:
    """Run the block with file descriptor 2 sent to a temporary file, then write back every line that contains none
    of ``markers`` (native code logs to the descriptor, past ``sys.stderr``)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                    if not any(m in line for m in markers)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
