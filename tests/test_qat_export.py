"""The shipped bundle is the QAT model: a student trained on the feature cache -> QAT int8 program (``int8_qat.pt2``)
-> int8 ``.pte`` that loads and runs in ExecuTorch and agrees with the torch int8 program."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import executorch  # noqa: F401  (installed by scripts/env.sh: a missing one fails, never skips)

import sdk
from converters.export import ExportOptions, export_bundle
from sdk.backends import load_runner
from training.qat import QATConfig, quantize_checkpoint
from training.train import TrainConfig, train


@pytest.mark.timeout(900)
def test_qat_int8_program_exports_to_pte_tflite_onnx_that_match_it(tiny_benchmark: Path, tmp_path: Path):
    fp32 = tmp_path / "student"
    train(TrainConfig(data=str(tiny_benchmark), out=str(fp32), arch="tam_head_mobilenet_v2", frames=2, size=64,
                      resize=72, freeze=7, epochs=1, batch_size=8, workers=0, cache_dir=str(tmp_path / "cache"),
                      optimizer="adamw", lr=3e-3))
    report = quantize_checkpoint(QATConfig(checkpoint=str(fp32 / "best.pt"), data=str(tiny_benchmark),
                                           out=str(tmp_path / "int8"), epochs=1, batch_size=8, workers=0,
                                           calibration_batches=2))
    program = tmp_path / "int8" / "int8_qat.pt2"
    assert program.is_file() and report["int8_qat"]["n"] == 32

    bundle = tmp_path / "student.vbundle"
    result = export_bundle(ExportOptions(program, bundle, formats=["pte", "tflite", "onnx"], precision="int8",
                                         data=tiny_benchmark, parity_clips=8, golden_clips=1))
    entry = result.manifest.program(backend="executorch")
    assert [p.backend for p in result.manifest.programs] == ["executorch", "tflite", "onnx"]
    # the QAT program itself in every runtime (for the .tflite, to_tflite unfolds the int8 weights inside the wrapper)
    for p in result.manifest.programs:
        assert p.precision == "int8" and p.parity.status == "verified", (p.id, p.parity)
        assert p.parity.top1_agreement >= 0.9
    assert not entry.details.get("non_delegated_ops"), entry.details  # the TAM head stays on XNNPACK

    # ExecuTorch itself, outside the exporter: the .pte on the golden input == the torch int8 reference
    golden = np.load(bundle / "golden.npz")
    runner = load_runner("executorch", bundle / entry.file)
    (logits,) = runner.run([golden["clip/input/clip"][0]])[:1]
    reference = golden["clip/reference_quantized/logits"][0]
    scale = float(np.abs(reference).max())
    assert np.abs(logits.reshape(reference.shape) - reference).max() <= 0.05 * max(scale, 1.0)
    with sdk.load(bundle, verify=True) as model:  # golden vectors checked on load
        assert model.precision == "int8"
    assert json.loads((bundle / "manifest.json").read_text())["programs"][0]["precision"] == "int8"
