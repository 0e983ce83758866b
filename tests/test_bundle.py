"""The bundle contract without any exporter: manifest parsing, the JSON Schema, hashes, zips, typed errors."""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sdk.bundle import GOLDEN_FILE, Bundle, golden_bytes
from sdk.errors import BundleError
from sdk.files import sha256_of
from sdk.manifest import MANIFEST_FILE, SCHEMA_FILE, InputSpec, Manifest, Parity, Program, TensorSpec, write_manifest
from sdk.preprocess import Preprocess
from sdk.samplers import Sampler

LABELS = ("moving_left", "moving_right", "rotating_cw")


def _make_bundle(root: Path) -> Path:
    """A bundle with two fake program files (bytes; parsing does not run them) and a golden file."""
    root.mkdir(parents=True)
    (root / "programs").mkdir()
    (root / "programs" / "clip_onnx_fp32.onnx").write_bytes(b"not really onnx" * 10)
    pkg = root / "programs" / "clip_coreml_fp32.mlpackage"
    (pkg / "Data").mkdir(parents=True)
    (pkg / "Manifest.json").write_text("{}")
    (pkg / "Data" / "model.mlmodel").write_bytes(b"\x00\x01weights")
    (root / GOLDEN_FILE).write_bytes(golden_bytes({"clip/input/clip": np.zeros((1, 2, 3, 8, 8), np.float32)}))
    clip = (TensorSpec("clip", (2, 3, 8, 8)),)
    logits = (TensorSpec("logits", (1, 3)),)
    programs = []
    for pid, backend, rel in (("clip_onnx_fp32", "onnx", "programs/clip_onnx_fp32.onnx"),
                              ("clip_coreml_fp32", "coreml", "programs/clip_coreml_fp32.mlpackage")):
        programs.append(Program(id=pid, backend=backend, precision="fp32", mode="clip", file=rel,
                                sha256=sha256_of(root / rel), size_bytes=1, inputs=clip, outputs=logits,
                                parity=Parity("verified", "torch fp32", clips=100, max_abs_diff=1e-6,
                                              top1_agreement=1.0)))
    manifest = Manifest(name="demo", labels=LABELS, input=InputSpec(Preprocess(size=8)),
                        sampler=Sampler("uniform_segments", 2), programs=tuple(programs),
                        golden={"file": GOLDEN_FILE, "sha256": sha256_of(root / GOLDEN_FILE)})
    write_manifest(manifest, root)
    return root


@pytest.fixture()
def bundle_dir(tmp_path: Path) -> Path:
    return _make_bundle(tmp_path / "demo.vbundle")


def _edit(bundle: Path, change) -> None:
    path = bundle / MANIFEST_FILE
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_round_trip_and_verify(bundle_dir: Path) -> None:
    with Bundle(bundle_dir) as b:
        b.verify()
        assert b.manifest.labels == LABELS
        assert b.manifest.program(backend="coreml").file.endswith(".mlpackage")
        assert b.path("clip_onnx_fp32").is_file()
        assert b.golden()["clip/input/clip"].shape == (1, 2, 3, 8, 8)
        assert Manifest.parse(b.manifest.to_dict()) == b.manifest


def test_manifest_matches_the_json_schema(bundle_dir: Path) -> None:
    import jsonschema  # a test dependency (pyproject [test]): missing means a broken install, not a skip

    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    manifest = json.loads((bundle_dir / MANIFEST_FILE).read_text())
    jsonschema.validate(manifest, schema)
    manifest["programs"][0]["sha256"] = "xyz"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(manifest, schema)


def test_the_conversion_is_in_the_manifest_and_old_bundles_read_as_swscale(bundle_dir: Path) -> None:
    """``input.preprocess.conversion`` (how training read video files) validates against the schema and parses; a
    manifest written before the field reads as swscale; an unknown one fails both."""
    import jsonschema

    schema = json.loads(SCHEMA_FILE.read_text())
    _edit(bundle_dir, lambda d: d["input"]["preprocess"].update(conversion="camera"))
    jsonschema.validate(json.loads((bundle_dir / MANIFEST_FILE).read_text()), schema)
    with Bundle(bundle_dir) as b:
        assert b.manifest.input.preprocess.conversion == "camera"
    _edit(bundle_dir, lambda d: d["input"]["preprocess"].pop("conversion"))
    jsonschema.validate(json.loads((bundle_dir / MANIFEST_FILE).read_text()), schema)
    with Bundle(bundle_dir) as b:
        assert b.manifest.input.preprocess.conversion == "swscale"
    _edit(bundle_dir, lambda d: d["input"]["preprocess"].update(conversion="yuv"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(json.loads((bundle_dir / MANIFEST_FILE).read_text()), schema)
    with pytest.raises(BundleError, match=r"input.preprocess.*unknown conversion 'yuv'; valid: swscale, camera"):
        Bundle(bundle_dir)


@pytest.mark.parametrize("layout", ["root", "folder"])
def test_zipped_bundle_loads(bundle_dir: Path, tmp_path: Path, layout: str) -> None:
    archive = tmp_path / "demo.vbundle.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in bundle_dir.rglob("*"):
            if f.is_file():
                rel = f.relative_to(bundle_dir).as_posix()
                z.write(f, rel if layout == "root" else f"demo.vbundle/{rel}")
    b = Bundle(archive)
    b.verify()
    extracted = b.root
    assert b.manifest.name == "demo"
    b.close()
    assert not extracted.exists()


def test_tampered_program_names_the_file(bundle_dir: Path) -> None:
    f = bundle_dir / "programs" / "clip_onnx_fp32.onnx"
    data = bytearray(f.read_bytes())
    data[3] ^= 0x01
    f.write_bytes(bytes(data))
    b = Bundle(bundle_dir)  # parsing still works: hashes are checked when a file is used
    with pytest.raises(BundleError, match=r"clip_onnx_fp32\.onnx does not match its sha256"):
        b.path("clip_onnx_fp32")


def test_tampered_file_inside_an_mlpackage(bundle_dir: Path) -> None:
    (bundle_dir / "programs" / "clip_coreml_fp32.mlpackage" / "Data" / "model.mlmodel").write_bytes(b"\x00\x02w")
    with pytest.raises(BundleError, match="clip_coreml_fp32.mlpackage does not match"):
        Bundle(bundle_dir).verify()


def test_missing_program_and_golden(bundle_dir: Path) -> None:
    (bundle_dir / "programs" / "clip_onnx_fp32.onnx").unlink()
    with pytest.raises(BundleError, match="clip_onnx_fp32.onnx is missing"):
        Bundle(bundle_dir).path("clip_onnx_fp32")
    (bundle_dir / GOLDEN_FILE).unlink()
    with pytest.raises(BundleError, match="golden file golden.npz is missing"):
        Bundle(bundle_dir).golden()


def test_missing_manifest_and_not_a_bundle(bundle_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        Bundle(tmp_path / "nope.vbundle")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(BundleError, match="neither a bundle directory nor a zip"):
        Bundle(tmp_path / "x.txt")
    (bundle_dir / MANIFEST_FILE).unlink()
    with pytest.raises(BundleError, match="has no manifest.json"):
        Bundle(bundle_dir)


def test_unknown_schema_version(bundle_dir: Path) -> None:
    _edit(bundle_dir, lambda d: d.update(schema_version="2.0"))
    with pytest.raises(BundleError, match=r"schema_version '2.0' is not supported"):
        Bundle(bundle_dir)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(labels="moving_left"), r"labels: expected list, got str"),
    (lambda d: d["programs"][0].update(size_bytes="12"), r"size_bytes: expected int, got str"),
    (lambda d: d["programs"][0]["inputs"][0].update(shape=[2, "3", 8, 8]), r"shape: expected 1 to 4 positive"),
    (lambda d: d["programs"][0]["inputs"][0].update(shape=[1, 2, 3, 8, 8]), r"shape: expected 1 to 4 positive"),
    (lambda d: d["programs"][0].update(backend="tensorrt"), r"backend: 'tensorrt' is not one of"),
    (lambda d: d["programs"][0].update(file="../../etc/passwd"), r"must be a relative path inside the bundle"),
    (lambda d: d["programs"][0]["outputs"][0].update(dtype="int8"), r"needs its quantization"),
    (lambda d: d["programs"][0]["outputs"][0].update(shape=[1, 5]), r"logits have 5 classes but there are 3"),
    (lambda d: d["programs"][0]["parity"].update(status="passed"), r"status: 'passed' is not one of"),
    (lambda d: d["programs"][1].update(id="clip_onnx_fp32"), r"duplicate program ids"),
    (lambda d: d["sampler"].update(kind="every_frame"), r"sampler: unknown sampler kind"),
    (lambda d: d["input"]["preprocess"].update(size="224"), r"input.preprocess"),
    (lambda d: d.update(extra_field=1), r"unknown field\(s\) \['extra_field'\]"),
    (lambda d: d.pop("golden"), r"manifest.golden: missing"),
    (lambda d: d["programs"][0].update(mode="stream"), r"stream program needs its state"),
    (lambda d: d["programs"][0]["parity"].update(clips=True), r"clips: expected int, got bool"),
])
def test_wrong_types_raise_a_typed_error_naming_the_field(bundle_dir: Path, change, message: str) -> None:
    _edit(bundle_dir, change)
    with pytest.raises(BundleError, match=message):
        Bundle(bundle_dir)


def test_manifest_that_is_not_json(bundle_dir: Path) -> None:
    (bundle_dir / MANIFEST_FILE).write_text("{ not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        Bundle(bundle_dir)


def test_corrupt_zip(tmp_path: Path, bundle_dir: Path) -> None:
    archive = tmp_path / "demo.zip"
    shutil.make_archive(str(archive.with_suffix("")), "zip", bundle_dir)
    data = bytearray(archive.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64
    archive.write_bytes(bytes(data))
    with pytest.raises(BundleError):
        Bundle(archive).verify()
