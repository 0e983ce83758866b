"""Progress reporting that reads well in a terminal and in a log file.

On a terminal (stderr is a TTY) :func:`progress` is a tqdm bar. Anywhere else (CI, ``> log 2>&1``) a bar's carriage-
return updates would become thousands of log lines, so it prints plain lines instead: one when the work is done, and
in between at most one every ``every`` percent and ``interval`` seconds, so that a long step still shows it is alive.
Every loop with progress in ``training`` and ``converters`` goes through this one helper; the libraries' own bars
(coremltools' while exporting) are made whole lines by :func:`training.logs.filtered_stderr`.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO, TypeVar

__all__ = ["LineProgress", "progress"]

T = TypeVar("T")


class LineProgress:
    """The log-file form of a progress bar: the tqdm methods the project uses (iteration, ``update``,
    ``set_postfix``, ``close``, context manager), reported as whole lines on ``file``."""

    def __init__(self, iterable: Iterable[T] | None = None, *, desc: str = "", total: int | None = None,
                 unit: str = "it", leave: bool = True, initial: int = 0, every: float = 25.0,
                 interval: float = 30.0, file: TextIO | None = None):
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.iterable, self.desc, self.total, self.unit, self.leave = iterable, desc, total, unit, leave
        self.n, self.every, self.interval = initial, every, interval
        self.file = file if file is not None else sys.stderr
        self.postfix: dict[str, Any] = {}
        self._start = self._last_time = time.monotonic()
        self._last_percent = 100.0 * initial / total if total else 0.0
        self._closed = False

    def __iter__(self) -> Iterator[T]:
        if self.iterable is None:
            raise TypeError("this progress reporter was made without an iterable: call update()")
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.total or 0

    def set_postfix(self, **values: Any) -> None:
        self.postfix = values

    def update(self, n: int = 1) -> None:
        self.n += n
        if not self.total:
            return
        percent = 100.0 * self.n / self.total
        now = time.monotonic()
        due = percent - self._last_percent >= self.every and now - self._last_time >= self.interval
        if due and self.n < self.total:
            self._last_percent, self._last_time = percent, now
            self._write()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.leave:
            self._write()

    def _write(self) -> None:
        done = f"{self.n}/{self.total}" if self.total else str(self.n)
        percent = f" ({100.0 * self.n / self.total:.0f} %)" if self.total else ""
        extra = "".join(f", {k}={v}" for k, v in self.postfix.items())
        self.file.write(f"{self.desc}: {done} {self.unit}{percent} in {time.monotonic() - self._start:.1f} s{extra}\n")
        self.file.flush()


def progress(iterable: Iterable[T] | None = None, *, desc: str = "", total: int | None = None, unit: str = "it",
             leave: bool = True, initial: int = 0, disable: bool = False, file: TextIO | None = None) -> Any:
    """A tqdm bar when ``file`` (default: stderr) is a terminal, else a :class:`LineProgress`; ``disable`` (e.g. on
    the non-main ranks of a distributed run) gives a silent reporter with the same methods."""
    stream = file if file is not None else sys.stderr
    if not disable and stream.isatty():
        from tqdm import tqdm

        return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, initial=initial, dynamic_ncols=True,
                    file=stream)
    return LineProgress(iterable, desc=desc, total=total, unit=unit, leave=leave and not disable, initial=initial,
                        interval=float("inf") if disable else 30.0, file=stream)
