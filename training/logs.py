"""The known-harmless chatter of the libraries underneath, hidden at its source; ``--verbose`` shows it again.

Each is matched by its own message, so every other warning of the same library still shows:

- torchao's import logs ``Failed to load .../torchao/_C_*.so`` for each CUDA-only kernel library on a CPU host;
- torch's pytree logs ``<enum 'KernelPreference'> is an Enum subclass ... register_constant`` (deprecated) when
  torchao registers its enums;
- ``torch.export`` warns ``isinstance(treespec, LeafSpec)`` is deprecated (a FutureWarning from inside torch).

XNNPACK's ``[cpuinfo_utils.cpp:...]`` lines come from C++ on file descriptor 2: the sdk's ExecuTorch runner filters
those where it loads programs (``sdk.backends.executorch._without_cpu_probe_lines``), unless ``EDGEVIDEO_VERBOSE`` is
set (``sdk.backends.verbose_output``).

``import training`` hides them (before torchao or torch.export can be imported), in every process that imports it
-- DataLoader and generator workers included -- unless verbose output is asked for: ``--verbose`` on the command
line of the tool being run (seen here already, so that messages printed while the tool's modules import show too) or
``EDGEVIDEO_VERBOSE=1`` in the environment, which ``--verbose`` sets for the processes a tool starts.
"""
from __future__ import annotations

import logging
import re
import sys
import warnings

from sdk.backends import verbose_output

__all__ = ["hide_known_chatter", "show_everything", "verbose_requested"]

# logger name -> the start of each message hidden on it
LOG_MESSAGES: dict[str, tuple[str, ...]] = {
    "torchao": ("Failed to load ",),
    "torch.utils._pytree": ("<enum ",),
}
WARNING_MESSAGES: tuple[tuple[str, type[Warning]], ...] = (
    (r".*isinstance\(treespec, LeafSpec\).*", FutureWarning),
)


class _DropMessages(logging.Filter):
    def __init__(self, starts: tuple[str, ...]):
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno < logging.ERROR and record.getMessage().startswith(self.starts))


_FILTERS = {name: _DropMessages(starts) for name, starts in LOG_MESSAGES.items()}


def verbose_requested() -> bool:
    return verbose_output() or "--verbose" in sys.argv[1:]


def hide_known_chatter() -> None:
    """Install the message-scoped log filters and warning filters (idempotent)."""
    for name, drop in _FILTERS.items():
        logger = logging.getLogger(name)
        if drop not in logger.filters:
            logger.addFilter(drop)
    for message, category in WARNING_MESSAGES:
        warnings.filterwarnings("ignore", message=message, category=category)


def show_everything() -> None:
    """Remove what :func:`hide_known_chatter` installed, and keep the sdk from quieting these loggers later."""
    for name, drop in _FILTERS.items():
        logger = logging.getLogger(name)
        logger.removeFilter(drop)
        logger.setLevel(logging.DEBUG if logger.level == logging.NOTSET else logger.level)
    hidden = {(re.compile(message, re.I).pattern, category) for message, category in WARNING_MESSAGES}
    warnings.filters[:] = [f for f in warnings.filters
                           if not (f[0] == "ignore" and f[1] is not None and (f[1].pattern, f[2]) in hidden)]
