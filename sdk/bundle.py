"""The model bundle: a directory ``NAME.vbundle/`` (or the same content zipped) that is all a device needs.

Layout::

    NAME.vbundle/
        manifest.json        what is inside (schema: sdk/schema/manifest-v1.schema.json)
        golden.npz           inputs and expected outputs, so that any integration can check itself
        programs/            one file (a directory for .mlpackage) per backend x precision x mode

Loading executes no code (JSON and ``np.load(allow_pickle=False)`` only), checks every field's type, and verifies the
sha256 of every file it hands out; anything wrong raises :class:`~sdk.errors.BundleError` naming the problem.

The manifest's schema and the programs' calling contract are in :mod:`sdk.manifest`; this module is the container:
opening a directory or zip, hash-checked access to its files, and the golden arrays.
"""
from __future__ import annotations

import io
import json
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import numpy as np

from sdk.errors import BundleError
from sdk.files import sha256_of
from sdk.manifest import MANIFEST_FILE, Manifest, Program

__all__ = ["GOLDEN_FILE", "Bundle", "golden_bytes", "open_bundle"]

GOLDEN_FILE = "golden.npz"


class Bundle:
    """An opened bundle: the parsed manifest and verified access to its files.

    ``Bundle(path)`` accepts the directory or a zip of it (the zip may hold the files at its root or inside one
    top-level ``*.vbundle/`` folder). A zip is extracted to a private temporary directory, removed by :meth:`close`
    (or the ``with`` block). Every program file is hash-checked when :meth:`path` hands it out.
    """

    def __init__(self, path: str | Path):
        self.source = Path(path)
        self._tmp: str | None = None
        if not self.source.exists():
            raise BundleError(f"bundle {self.source} does not exist")
        if self.source.is_dir():
            self.root = self.source
        elif zipfile.is_zipfile(self.source):
            self.root = self._extract(self.source)
        else:
            raise BundleError(f"bundle {self.source} is neither a bundle directory nor a zip file")
        manifest_path = self.root / MANIFEST_FILE
        if not manifest_path.is_file():
            self.close()
            raise BundleError(f"bundle {self.source} has no {MANIFEST_FILE}")
        try:
            raw = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            self.close()
            raise BundleError(f"bundle {self.source}: {MANIFEST_FILE} is not valid JSON: {e}") from e
        try:
            self.manifest = Manifest.parse(raw)
        except BundleError:
            self.close()
            raise
        self._verified: set[str] = set()

    def _extract(self, archive: Path) -> Path:
        self._tmp = tempfile.mkdtemp(prefix="vbundle-")
        try:
            with zipfile.ZipFile(archive) as z:
                for name in z.namelist():
                    p = PurePosixPath(name)
                    if p.is_absolute() or ".." in p.parts:
                        raise BundleError(f"bundle {archive}: unsafe path {name!r} in the zip")
                z.extractall(self._tmp)
        except (zipfile.BadZipFile, OSError) as e:
            self.close()
            raise BundleError(f"bundle {archive}: cannot read the zip: {e}") from e
        except BundleError:
            self.close()
            raise
        root = Path(self._tmp)
        if not (root / MANIFEST_FILE).exists():
            inner = [d for d in root.iterdir() if d.is_dir() and (d / MANIFEST_FILE).exists()]
            if len(inner) == 1:
                return inner[0]
        return root

    def close(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    # ---- verified file access ---------------------------------------------------------------------------------
    def _checked(self, relative: str, sha256: str, what: str) -> Path:
        path = self.root / relative
        if not path.exists():
            raise BundleError(f"bundle {self.source}: {what} file {relative} is missing")
        if relative not in self._verified:
            got = sha256_of(path)
            if got != sha256:
                raise BundleError(f"bundle {self.source}: {what} file {relative} does not match its sha256 "
                                  f"(manifest {sha256[:12]}..., file {got[:12]}...): the bundle was modified or "
                                  "damaged; export it again")
            self._verified.add(relative)
        return path

    def path(self, program: Program | str) -> Path:
        """Local path of a program's file (hash-verified)."""
        if isinstance(program, str):
            program = self.get(program)
        return self._checked(program.file, program.sha256, f"program {program.id!r}")

    def get(self, program_id: str) -> Program:
        for p in self.manifest.programs:
            if p.id == program_id:
                return p
        raise BundleError(f"bundle {self.source} has no program {program_id!r} "
                          f"(it has: {', '.join(p.id for p in self.manifest.programs)})")

    def golden(self) -> dict[str, np.ndarray]:
        """The golden arrays (hash-verified): ``{mode}/input/{name}``, ``{mode}/reference/{name}`` (torch) and
        ``{program id}/{name}`` (what that program returned in its runtime at export)."""
        path = self._checked(self.manifest.golden["file"], self.manifest.golden["sha256"], "golden")
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (ValueError, OSError, zipfile.BadZipFile) as e:
            raise BundleError(f"bundle {self.source}: golden file cannot be read: {e}") from e

    def verify(self) -> None:
        """Check the sha256 of every file the manifest lists (raises :class:`BundleError` on the first mismatch)."""
        for p in self.manifest.programs:
            self.path(p)
        self.golden()


def open_bundle(path: str | Path) -> Bundle:
    """Open and check a bundle directory or zip (see :class:`Bundle`)."""
    return Bundle(path)


def golden_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()
