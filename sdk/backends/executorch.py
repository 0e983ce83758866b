"""ExecuTorch runner (``executorch.runtime``, XNNPACK kernels).

ExecuTorch's Python bindings load torch themselves and accept only ``torch.Tensor`` inputs (numpy arrays are rejected:
"Unsupported python type <class 'numpy.ndarray'>", executorch 1.5.1), so this runner imports torch -- inside its
constructor, never at module level: ``import sdk`` and the LiteRT / ONNX Runtime / Core ML runners stay torch-free
(tests/test_import.py). A torch-free ExecuTorch path is the native C++ runtime (sdk/native, a later issue). Threads: ExecuTorch's threadpool is
process-wide and ignores ``torch.set_num_threads``; ``threads`` resets it (``_unsafe_reset_threadpool``), which affects
every ExecuTorch program in the process. By default it uses all cores.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sdk.backends import Runner, as_float32, quiet_native_logs, unavailable
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

            with quiet_native_logs():  # the reset probes the CPU and says so, too
                _unsafe_reset_threadpool(threads)
        self._torch = torch
        try:
            with quiet_native_logs():
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


def load(path: Path, *, threads: int | None = None) -> Runner:
    return ExecuTorchRunner(path, threads)
