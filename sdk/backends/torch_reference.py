"""Torch reference runner (optional extra, for tests and benchmarks): eager torch behind the :class:`Runner` interface.

Not a bundle backend -- a bundle holds no torch programs, and a device never needs torch. It runs either an in-memory
``nn.Module`` / callable with the program calling convention (``TorchRunner(module)``), or a ``.pt2`` file written by
``torch.export.save`` of such a program (``load(path)``: ``torch.export.load`` reads a graph and weights, it runs no
pickled code). :meth:`sdk.runtime.Model.from_runners` puts such runners behind a bundle's manifest, which is how
``python -m sdk bench --torch PROGRAM.pt2`` times eager torch beside the bundle's runtimes.

``threads`` sets ``torch.set_num_threads`` (process-wide in torch).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sdk.backends import Runner, as_float32, unavailable
from sdk.errors import ConfigError

__all__ = ["TorchRunner", "load"]


class TorchRunner(Runner):
    backend = "torch"

    def __init__(self, module: Callable[..., Any], threads: int | None = None):
        try:
            import torch
        except ImportError as e:
            raise unavailable("torch", "pip install torch==2.13.0", e) from e
        if threads is not None:
            torch.set_num_threads(threads)
        self._torch = torch
        self._module = module

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        torch = self._torch
        arrays = as_float32(inputs, "torch program")
        with torch.inference_mode():
            out = self._module(*[torch.from_numpy(a) for a in arrays])
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return [np.asarray(o.detach().numpy(), dtype=np.float32) for o in outs]


def load(path: Path, *, threads: int | None = None) -> Runner:
    """A ``.pt2`` ExportedProgram (``torch.export.save``) run eagerly."""
    try:
        import torch
    except ImportError as e:
        raise unavailable("torch", "pip install torch==2.13.0", e) from e
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"torch program {path} does not exist")
    try:
        program = torch.export.load(str(path))
    except Exception as e:  # torch raises assorted types for files that are not ExportedPrograms
        raise ConfigError(f"cannot load the torch program {path}: {e}") from e
    runner = TorchRunner(program.module(), threads)
    runner.example_inputs = [t for t in program.example_inputs[0]]  # the shapes it was exported with
    return runner
