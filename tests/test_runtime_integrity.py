"""The Python sdk refuses a damaged or edited bundle, and ``auto`` picks int8, then fp16, then fp32.

On a real exported clip bundle with ONNX programs in all three precisions (tests/runtime_helpers.py; fp16 = half
precision weights and arithmetic, float32 in and out), listed fp32 first in the manifest, so that picking the first
listed program is not mistaken for the precision order. The native core has its own tests of the same refusals
(tests/test_native.py).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import sdk
from sdk.bundle import GOLDEN_FILE, golden_bytes
from sdk.errors import BundleError
from sdk.files import sha256_of
from sdk.manifest import MANIFEST_FILE
from tests.runtime_helpers import make_bundle

PRECISIONS = ("fp32", "fp16", "int8")


@pytest.fixture(scope="module")
def three_precisions(tmp_path_factory) -> Path:
    return make_bundle("clip", tmp_path_factory.mktemp("precisions"), formats=("onnx",), precisions=PRECISIONS)


@pytest.fixture
def bundle(three_precisions: Path, tmp_path: Path) -> Path:
    """A copy to damage."""
    return Path(shutil.copytree(three_precisions, tmp_path / "copy.vbundle"))


def _edit_manifest(bundle: Path, edit) -> None:
    path = bundle / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest, indent=2))


def _program(manifest: dict, precision: str) -> dict:
    return next(p for p in manifest["programs"] if p["precision"] == precision)


def test_the_bundle_is_sound(three_precisions: Path) -> None:
    """The control: every precision loads and reproduces its golden vectors, and they are different programs."""
    logits = {}
    for precision in PRECISIONS:
        with sdk.load(three_precisions, precision=precision, verify=True) as model:
            assert model.precision == precision
            x = model.bundle.golden()["clip/input/clip"][0]
            logits[precision] = model.run("model", [x])[0]
    assert not np.array_equal(logits["fp32"], logits["fp16"]) and not np.array_equal(logits["fp32"], logits["int8"])
    assert np.abs(logits["fp16"] - logits["fp32"]).max() < 1e-2  # half precision, not another model


def test_auto_takes_int8_then_fp16_then_fp32(bundle: Path) -> None:
    assert [p["precision"] for p in json.loads((bundle / MANIFEST_FILE).read_text())["programs"]] == list(PRECISIONS)
    with sdk.load(bundle, verify=True) as model:
        assert (model.backend, model.precision, model.skipped) == ("onnx", "int8", [])
    # a program that fails to load (its hash updated, so it is not tampering) hands over to the next precision
    broken = []
    for precision, then in (("int8", "fp16"), ("fp16", "fp32")):
        file = bundle / _program(json.loads((bundle / MANIFEST_FILE).read_text()), precision)["file"]
        file.write_bytes(b"not an onnx program" * 8)
        _edit_manifest(bundle, lambda m, p=precision, f=file: _program(m, p).update(sha256=sha256_of(f)))
        broken.append(precision)
        with sdk.load(bundle, verify=True) as model:
            assert model.precision == then
            assert [s.split(":")[0] for s in model.skipped] == [f"onnx {p}" for p in broken]
            assert all("cannot load" in s for s in model.skipped)


def test_a_byte_flipped_golden_file_is_refused(bundle: Path) -> None:
    data = bytearray((bundle / GOLDEN_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01
    (bundle / GOLDEN_FILE).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"golden file golden\.npz does not match its sha256"):
        sdk.load(bundle, verify=True)


def test_edited_golden_numbers_with_a_matching_hash_are_refused(bundle: Path) -> None:
    """Someone re-hashed an edited golden file: the hashes agree, the numbers do not reproduce."""
    with np.load(bundle / GOLDEN_FILE) as z:
        golden = {k: z[k] for k in z.files}
    golden["clip_onnx_int8/logits"] = golden["clip_onnx_int8/logits"] + 0.05
    (bundle / GOLDEN_FILE).write_bytes(golden_bytes(golden))
    _edit_manifest(bundle, lambda m: m["golden"].update(sha256=sha256_of(bundle / GOLDEN_FILE)))
    with pytest.raises(BundleError, match="clip_onnx_int8.*does not reproduce its golden vectors"):
        sdk.load(bundle, verify=True)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_an_edited_program_hash_is_refused_not_skipped(bundle: Path, precision: str) -> None:
    """A program whose manifest hash was edited is an error, also under ``auto`` (never a silent fallback to
    another program)."""
    def edit(m: dict) -> None:
        p = _program(m, precision)
        p["sha256"] = ("0" if p["sha256"][0] != "0" else "1") + p["sha256"][1:]

    _edit_manifest(bundle, edit)
    with pytest.raises(BundleError, match=rf"clip_onnx_{precision}\.onnx does not match its sha256"):
        sdk.load(bundle, precision=precision)
    if precision == "int8":  # auto tries int8 first
        with pytest.raises(BundleError, match="does not match its sha256"):
            sdk.load(bundle)
