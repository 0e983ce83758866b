"""The known-harmless chatter of the libraries underneath, hidden at its source; ``--verbose`` shows it again.

Each is matched by its own message, so every other warning of the same library still shows:

- torchao's import logs ``Failed to load .../torchao/_C_*.so`` for each CUDA-only kernel library on a CPU host;
- torch's pytree logs ``<enum 'KernelPreference'> is an Enum subclass ... register_constant`` (deprecated) when
  torchao registers its enums;
- ``torch.export`` warns ``isinstance(treespec, LeafSpec)`` is deprecated (a FutureWarning from inside torch).

XNNPACK's ``cpuinfo_utils.cpp`` lines come from C++ on file descriptor 2: the sdk filters those where the Python
ExecuTorch runner or the native core loads programs (``sdk.backends.quiet_native_logs``), unless ``EDGEVIDEO_VERBOSE``
is set (``sdk.backends.verbose_output``).

The export path (``python -m converters export``) adds its converters' and runtimes' own:

- coremltools logs, on import, that this scikit-learn / torch version is untested and ``Failed to load _ML...Proxy``
  for each macOS-only native class (Core ML cannot run off macOS; the export says so in its report);
- ``torch.onnx`` logs ``torchvision is not installed. Skipping torchvision::nms`` for each torchvision op it would
  register (the project never uses torchvision);
- from C++ on file descriptor 2: TensorFlow's ``WARNING: All log messages before absl::InitializeLog()`` and its
  ``oneDNN custom operations are on`` notice (litert-torch imports TensorFlow), the TFLite converter's ``Estimated
  count of arithmetic ops`` (its estimate, not ours: the bundle records our MACs), and the LiteRT interpreter's
  ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.``;
- coremltools' tqdm bars (``Running MIL default pipeline: 100%|...``) through ``sys.stderr``.

The last two never reach a Python logger or the warnings module: :func:`filtered_stderr` reads descriptor 2 through a
pipe for the export's duration and drops those lines (:data:`NATIVE_LINES`). It also writes a carriage-return
progress bar, its own or any library's, as whole lines (its final state) when stderr is not a terminal, so that a log
file gets one line per bar instead of hundreds of overwritten ones -- with ``--verbose`` too, where nothing is dropped.

``import training`` hides the logged and warned ones (before torchao or torch.export can be imported), in every
process that imports it -- DataLoader and generator workers included -- unless verbose output is asked for:
``--verbose`` on the command line of the tool being run (seen here already, so that messages printed while the tool's
modules import show too) or ``EDGEVIDEO_VERBOSE=1`` in the environment, which ``--verbose`` sets for the processes a
tool starts.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator

from sdk.backends import verbose_output

__all__ = ["NATIVE_LINES", "filtered_stderr", "hide_known_chatter", "show_everything", "verbose_requested"]

# logger name -> the start of each message hidden on it
LOG_MESSAGES: dict[str, tuple[str, ...]] = {
    "torchao": ("Failed to load ",),
    "torch.utils._pytree": ("<enum ",),
    "coremltools": ("scikit-learn version ", "Torch version ", "Failed to load _ML"),
    "torch.onnx._internal.exporter._registration": ("torchvision is not installed. ",),
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


# Whole lines written to file descriptor 2 past Python's logging (module docstring), matched on a line's final state.
NATIVE_LINES: tuple[re.Pattern[str], ...] = tuple(re.compile(p) for p in (
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
    r"I\d{4} [\d:.]+ +\d+ port\.cc:\d+\] oneDNN custom operations are on\.",
    r"I\d{4} [\d:.]+ +\d+ flatbuffer_export\.cc:\d+\] Estimated count of arithmetic ops",
    r"INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$",
    r"(Converting PyTorch Frontend ==> MIL Ops|Running MIL \w+ pipeline|Running compression pass \w+):",
))
_SEGMENT = re.compile(rb"([^\r\n]*)([\r\n])")
_filtering = threading.Lock()  # held while descriptor 2 is filtered: a nested filtered_stderr passes through


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Run the block with file descriptor 2 read through a pipe (see the module docstring): the lines of
    :data:`NATIVE_LINES` dropped unless verbose output is asked for, and carriage-return progress written as whole
    lines when stderr is not a terminal. Verbose on a terminal, or inside another such block, it changes nothing."""
    live = os.isatty(2)
    drop = () if verbose_requested() else NATIVE_LINES
    if (live and not drop) or not _filtering.acquire(blocking=False):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    pump = threading.Thread(target=_pump, args=(read_end, saved, drop, live), name="filtered_stderr", daemon=True)
    pump.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end (unless a child process kept one): the pump sees EOF
        pump.join(timeout=10.0)
        if not pump.is_alive():
            os.close(saved)
        _filtering.release()


def _pump(read_end: int, out: int, drop: tuple[re.Pattern[str], ...], live: bool) -> None:
    """Copy the pipe to ``out`` segment by segment (text up to a ``\\r`` or ``\\n``): a line whose final state
    matches ``drop`` is left out; ``live`` (a terminal) passes a bar's intermediate states on, else only its final
    state is written, as one line."""
    def dropped(segment: bytes) -> bool:
        text = segment.decode(errors="replace")
        return any(p.match(text) for p in drop)

    buffer, latest = b"", b""  # bytes not yet terminated; the last non-empty \r-terminated state of this line
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while chunk := pipe.read(1 << 16):
            buffer += chunk
            end = 0
            for m in _SEGMENT.finditer(buffer):
                segment, end = m.group(1), m.end()
                if m.group(2) == b"\r":
                    latest = segment or latest
                    if live and segment and not dropped(segment):
                        os.write(out, segment + b"\r")
                    continue
                line, latest = segment or latest, b""
                if not dropped(line):
                    os.write(out, (segment if live else line) + b"\n")
            buffer = buffer[end:]
    if buffer and not dropped(buffer):
        os.write(out, buffer)
