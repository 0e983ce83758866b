"""Atomic writes and content hashes, one implementation for the runtime, training and the converters (``sdk`` is the
layer all of them may import): a reader never sees a half-written file or directory, and a file or an ``.mlpackage``
directory has one sha256 wherever it is computed.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_dir", "atomic_path", "sha256_of"]


def sha256_of(path: str | Path) -> str:
    """sha256 of a file, or of a directory (an .mlpackage): over its sorted ``relative/path\\0<file sha256>\\n``
    lines."""
    path = Path(path)
    if path.is_dir():
        lines = "".join(f"{f.relative_to(path).as_posix()}\0{sha256_of(f)}\n"
                        for f in sorted(path.rglob("*")) if f.is_file())
        return hashlib.sha256(lines.encode()).hexdigest()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sibling(path: Path, kind: str) -> Path:
    """A hidden, unique sibling of ``path`` that keeps its suffix (writers that go by the suffix still work: PyAV's
    container, ``torch.export.save``), e.g. ``.best.tmp-123-ab12cd34.pt``."""
    return path.with_name(f".{path.stem}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")


def _remove(path: Path) -> None:
    for _ in range(10):  # a worker killed mid-write may still be closing a file in it: retry briefly
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        if not path.exists():
            return
        time.sleep(0.1)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path to write; when the block completes the file is flushed to disk and renamed over
    ``path``, when it fails (or is interrupted) the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    tmp = _sibling(path, "tmp")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        _remove(tmp)


@contextlib.contextmanager
def atomic_dir(out: str | Path, *, replace: bool = True) -> Iterator[Path]:
    """Yield a fresh temporary sibling directory to fill; when the block completes it takes ``out``'s place.

    ``replace``: an existing ``out`` is moved aside and removed once the new one is in place. Otherwise an existing
    ``out`` wins (another process finished the same work first) and the new directory is discarded. When the block
    fails (or is interrupted) the temporary directory is removed and ``out`` is untouched.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(out, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        try:
            os.replace(tmp, out)  # no ``out`` yet, or an empty one
        except OSError:
            if not out.exists():
                raise
            if replace:
                old = _sibling(out, "old")
                os.replace(out, old)
                os.replace(tmp, out)
                _remove(old)
    finally:
        _remove(tmp)
