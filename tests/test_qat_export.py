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

VARYING_VIDEOS = 8


def assert_logits_vary(bundle: Path, data: Path) -> None:
    """Every runtime's int8 program gives different logits for different validation videos: a program whose output
    is constant (a zeroed classifier, an input the graph dropped) follows its torch int8 reference perfectly and a
    QAT program has no fp32 model to be held to, so the parity gate alone passes it. On 8 videos spread over the
    classes, the logits' standard deviation over the videos (mean over classes) must exceed 1e-3: 0 for a constant
    program; measured 0.006 on this 1-epoch student, which is itself nearly constant (chance-level, the same top-1
    for every video), so the test cannot also ask for different top-1 classes without training longer."""
    from training.data.datasets import DatasetInfo

    records = DatasetInfo.from_dir(data).records("val.csv")
    videos = [records[i].path for i in np.linspace(0, len(records) - 1, VARYING_VIDEOS).round().astype(int)]
    for backend in ("executorch", "tflite", "onnx"):
        with sdk.load(bundle, backend=backend) as model:
            classifier = sdk.VideoClassifier(model)
            logits = np.stack([classifier.classify(str(v)).logits for v in videos])
        spread = float(logits.std(axis=0).mean())
        print(f"{backend}: logits' std over {len(videos)} videos {spread:.3g}, top-1 {logits.argmax(1).tolist()}")
        assert spread > 1e-3, f"{backend}: the int8 program's logits do not vary between videos ({spread:.3g})"


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
    assert_logits_vary(bundle, tiny_benchmark)
    assert json.loads((bundle / "manifest.json").read_text())["programs"][0]["precision"] == "int8"
