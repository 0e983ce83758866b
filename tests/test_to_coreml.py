"""Core ML exporter (converters.to_coreml) and runner (sdk.backends.coreml).

Prediction needs macOS: on Linux these tests check what can be checked without Core ML's runtime (the saved
program's format, interface, weight types and sizes) and that the runner refuses with a reason;
``test_prediction_matches_torch_on_macos`` runs only on macOS.
"""
from __future__ import annotations

import platform

import numpy as np
import pytest

import torch
import coremltools as ct

from settled_models import CLASSES, PRE, SIZE, rgb_clips, settled

from converters import to_coreml
from converters.program import ProgramJob, StreamProgram
from sdk.backends import load_runner
from sdk.errors import BackendUnavailableError

ON_MACOS = platform.system() == "Darwin"


@pytest.fixture(scope="module")
def packages(settled_clip, tmp_path_factory):
    """The clip program as .mlpackage in each precision: {precision: (path, ExportResult)}."""
    root = tmp_path_factory.mktemp("coreml")
    out = {}
    for precision in to_coreml.PRECISIONS:
        job = ProgramJob("clip", settled_clip, (rgb_clips(1, 2, 0)[0],), ["clip"], ["logits"], precision)
        path = root / f"clip_{precision}{to_coreml.SUFFIX}"
        out[precision] = path, to_coreml.export(job, path)
    return out


def _ops(path) -> set[str]:
    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    main = spec.mlProgram.functions["main"]
    return {op.type for block in main.block_specializations.values() for op in block.operations}


def _size(path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def test_mlpackage_interface_and_precisions(packages):
    for precision, (path, result) in packages.items():
        assert path.is_dir() and (path / "Manifest.json").is_file(), precision
        assert [(s.name, s.shape, s.dtype) for s in result.inputs] == [("clip", (2, 3, SIZE, SIZE), "float32")]
        assert [(s.name, s.shape) for s in result.outputs] == [("logits", (1, CLASSES))]
        assert result.reference == "fp32" and result.details["format"] == "mlprogram (.mlpackage)"
        spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
        assert spec.WhichOneof("Type") == "mlProgram"
    assert packages["fp32"][1].details["compute_precision"] == "float32"
    assert packages["fp16"][1].details["compute_precision"] == "float16"
    assert "int8 weights" in packages["int8"][1].details["quantization"]
    # int8 weights are stored as int8 and dequantized by constexpr ops; sizes fall fp32 > fp16 > int8
    assert any(op.startswith("constexpr_") for op in _ops(packages["int8"][0]))
    assert not any(op.startswith("constexpr_") for op in _ops(packages["fp32"][0]))
    sizes = {p: _size(path) for p, (path, _) in packages.items()}
    assert sizes["int8"] < 0.65 * sizes["fp16"] < 0.65 * sizes["fp32"], sizes


def test_stream_program_declares_state(tmp_path):
    model = settled("tam_mobilenet_v2_causal", frames=4, seed=1)
    spec = model.state_specs(SIZE, SIZE)
    state0 = tuple(model.initial_state(SIZE, SIZE))
    inputs = ["frame"] + [name for name, _ in spec]
    outputs = ["logits", "features"] + [f"{name}_out" for name, _ in spec]
    job = ProgramJob("stream", StreamProgram(model, PRE).eval(), (rgb_clips(1, 1, 3)[0], *state0), inputs, outputs,
                     "fp16")
    result = to_coreml.export(job, tmp_path / f"stream{to_coreml.SUFFIX}")
    assert [s.name for s in result.inputs] == inputs and [s.name for s in result.outputs] == outputs
    assert [s.shape for s in result.inputs[1:]] == [shape for _, shape in spec]
    assert all(len(s.shape) <= 4 for s in (*result.inputs, *result.outputs))


def test_legacy_mlmodel_fp32(settled_clip, tmp_path):
    job = ProgramJob("clip", settled_clip, (rgb_clips(1, 2, 0)[0],), ["clip"], ["logits"], "fp32")
    path = tmp_path / f"clip{to_coreml.LEGACY_SUFFIX}"
    result = to_coreml.export(job, path, legacy=True)
    assert path.is_file() and result.details["format"] == "neuralnetwork (.mlmodel)"
    assert ct.models.MLModel(str(path), skip_model_load=True).get_spec().WhichOneof("Type") == "neuralNetwork"
    with pytest.raises(ValueError, match="fp32 only"):
        to_coreml.export(ProgramJob("clip", settled_clip, job.example, ["clip"], ["logits"], "fp16"),
                         tmp_path / "x.mlmodel", legacy=True)


@pytest.mark.skipif(ON_MACOS, reason="checks the refusal on hosts without Core ML")
def test_runner_refuses_off_macos_with_the_reason(packages):
    with pytest.raises(BackendUnavailableError, match="macOS"):
        load_runner("coreml", packages["fp32"][0])


@pytest.mark.skipif(not ON_MACOS, reason="Core ML prediction needs macOS (Apple's Core ML framework); not run on "
                                         "this host, so Core ML parity is unverified here")
def test_prediction_matches_torch_on_macos(settled_clip, packages):
    clips = rgb_clips(4, 2, 1)
    with torch.no_grad():
        refs = [settled_clip(c).numpy() for c in clips]
    for precision, atol in (("fp32", 1e-3), ("fp16", 5e-2), ("int8", None)):
        runner = load_runner("coreml", packages[precision][0])
        got = [runner.run([c.numpy()])[0] for c in clips]
        if atol is not None:
            assert max(np.abs(g - r).max() for g, r in zip(got, refs)) <= atol, precision
        assert np.mean([g.argmax() == r.argmax() for g, r in zip(got, refs)]) >= 0.75, precision
