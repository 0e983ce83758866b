"""ExecuTorch runner (``executorch.runtime``, XNNPACK kernels).

ExecuTorch's Python bindings load torch themselves and accept only ``torch.Tensor`` inputs (numpy arrays are rejected:
"Unsupported python type <class 'numpy.ndarray'>", executorch 1.5.1), so this runner imports torch -- inside its
constructor, never at module level: ``import sdk`` and the LiteRT / ONNX Runtime / Core ML runners stay torch-free
(tests/test_import.py). A torch-free ExecuTorch path is the native C++ runtime (sdk/native, a later issue). Threads: ExecuTorch's threadpool is
process-wide and ignores ``torch.set_num_threads``; ``threads`` resets it (``_unsafe_reset_threadpool``), which affects
every ExecuTorch program in the process. By default it uses all cores.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from sdk.backends import Runner, as_float32, unavailable, verbose_output
from sdk.errors import ConfigError, FrameError


class ExecuTorchRunner(Runner):
    backend = "executorch"

    def __init__(self, path: Path, threads: int | None):
        _quiet_import_chatter()
        try:
            import torch
            from executorch.runtime import Runtime
        except ImportError as e:
            raise unavailable("executorch", "pip install executorch==1.5.1", e) from e
        if threads is not None:
            from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

            with _without_cpu_probe_lines():  # the reset probes the CPU and says so, too
                _unsafe_reset_threadpool(threads)
        self._torch = torch
        try:
            with _without_cpu_probe_lines():
                self._method = Runtime.get().load_program(Path(path)).load_method("forward")
        except (RuntimeError, ValueError) as e:  # e.g. a delegate that fails to initialise (XNNPACK compile error)
            raise ConfigError(f"cannot load the executorch program {path}: {e}") from e
        meta = self._method.metadata
        self._shapes = [tuple(meta.input_tensor_meta(i).sizes()) for i in range(meta.num_inputs())]

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        arrays = as_float32(inputs, "executorch program")
        if [a.shape for a in arrays] != self._shapes:
            raise FrameError(f"executorch program expects inputs of shapes {self._shapes}, "
                             f"got {[a.shape for a in arrays]}")
        outputs = self._method.execute([self._torch.from_numpy(a) for a in arrays])
        return [np.asarray(o.detach().numpy() if hasattr(o, "detach") else o, dtype=np.float32) for o in outputs]


def _quiet_import_chatter() -> None:
    """executorch imports torchao, which logs "Failed to load" for its CUDA-only kernels and a pytree notice on a CPU
    host; silence those two loggers unless the application set their level itself."""
    import logging

    for name in ("torchao", "torch.utils._pytree"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.ERROR)


# XNNPACK's initialisation logs its ARM CPU probing from C++ on every host ("[cpuinfo_utils.cpp:87] Failed to open
# midr file ..."): five lines of noise on x86, where there is no such file to read.
CPUINFO_PROBE = ("[cpuinfo_utils.cpp:", "[threadpool.cpp:")


def _without_cpu_probe_lines() -> contextlib.AbstractContextManager[None]:
    """Filters :data:`CPUINFO_PROBE` lines out of the block's native stderr, unless verbose output is asked for
    (:func:`sdk.backends.verbose_output`): then everything passes."""
    return contextlib.nullcontext() if verbose_output() else _native_stderr_without(CPUINFO_PROBE)


@contextlib.contextmanager
def _native_stderr_without(prefixes: tuple[str, ...]) -> Iterator[None]:
    """Run the block with file descriptor 2 sent to a temporary file, then write back every line that does not start
    with one of ``prefixes`` (native code logs to the descriptor, past ``sys.stderr``)."""
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
                    if not line.startswith(prefixes)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def load(path: Path, *, threads: int | None = None) -> Runner:
    return ExecuTorchRunner(path, threads)
