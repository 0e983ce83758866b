"""sdk/files.py: the one implementation of atomic writes (checkpoints, int8 programs, datasets, feature caches,
bundles, the native build) and of file / directory hashes."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sdk.files import atomic_dir, atomic_path, sha256_of


def test_atomic_path_renames_on_success_and_leaves_nothing_on_failure(tmp_path: Path):
    target = tmp_path / "best.pt2"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".pt2" and tmp != target  # writers that go by the suffix
        tmp.write_text("new")
        assert target.read_text() == "old"  # nobody sees the new file before the block completes
    assert target.read_text() == "new"
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["best.pt2"]


@pytest.mark.parametrize("replace", [True, False])
def test_atomic_dir_replaces_or_keeps_an_existing_directory(tmp_path: Path, replace: bool):
    out = tmp_path / "data"
    out.mkdir()
    (out / "file").write_text("first")
    with atomic_dir(out, replace=replace) as tmp:
        (tmp / "file").write_text("second")
    assert (out / "file").read_text() == ("second" if replace else "first")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"], "no temporary or old directory is left"
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "file").write_text("third")
        raise RuntimeError("interrupted")
    assert (out / "file").read_text() == ("second" if replace else "first")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_sha256_of_a_file_and_of_a_directory(tmp_path: Path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"abc")
    assert sha256_of(f) == hashlib.sha256(b"abc").hexdigest()
    d = tmp_path / "m.mlpackage"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "w.bin").write_bytes(b"abc")
    expected = hashlib.sha256(f"sub/w.bin\0{hashlib.sha256(b'abc').hexdigest()}\n".encode()).hexdigest()
    assert sha256_of(d) == expected
