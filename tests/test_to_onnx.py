"""ONNX exporter (converters.to_onnx) + ONNX Runtime runner (sdk.backends.onnxruntime) on tiny settled random
models (tests/settled_models.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import onnx
import onnxruntime  # noqa: F401  (the runtime these tests compare against; a missing one fails, never skips)
import onnxscript  # noqa: F401  (torch.onnx.export's dynamo path)
import torch

from settled_models import CLASSES, PRE, SIZE, assert_int8_follows, rgb_clips, settled
from torch import nn

from converters import to_onnx
from converters.program import ProgramJob, StreamProgram
from sdk.backends import load_runner
from sdk.errors import FrameError


@pytest.fixture(scope="module")
def clip_fp32(settled_clip, tmp_path_factory):
    example = (rgb_clips(1, 2, 0)[0],)
    job = ProgramJob("clip", settled_clip, example, ["clip"], ["logits"], "fp32")
    path = tmp_path_factory.mktemp("onnx") / f"clip_fp32{to_onnx.SUFFIX}"
    return path, to_onnx.export(job, path)


def torch_logits(program: nn.Module, clip: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return program(clip).numpy()


def test_fp32_clip_program_matches_torch(settled_clip, clip_fp32):
    path, result = clip_fp32
    onnx.checker.check_model(str(path), full_check=True)
    assert result.details["opset"] >= 17
    assert {o.domain: o.version for o in onnx.load(str(path)).opset_import}[""] == result.details["opset"]
    assert not [p for p in path.parent.iterdir() if p != path], "external data written next to the .onnx"
    assert [(s.name, s.shape, s.dtype) for s in result.inputs] == [("clip", (2, 3, SIZE, SIZE), "float32")]
    assert [(s.name, s.shape, s.dtype) for s in result.outputs] == [("logits", (1, CLASSES), "float32")]
    assert result.reference == "fp32"

    runner = load_runner("onnx", path, threads=1)
    assert runner.backend == "onnx"
    clips = rgb_clips(4, 2, 1)
    refs = [torch_logits(settled_clip, c) for c in clips]
    assert np.ptp([r.ravel() for r in refs], axis=0).max() > 0.3, "the test model ignores its input"
    for clip, ref in zip(clips, refs):
        (out,) = runner.run([clip.numpy()])
        assert out.dtype == np.float32 and out.shape == (1, CLASSES)
        assert np.abs(out - ref).max() <= 1e-4


def test_runner_rejects_wrong_inputs(clip_fp32):
    runner = load_runner("onnx", clip_fp32[0])
    with pytest.raises(FrameError, match="expects 1 input"):
        runner.run([np.zeros((3, 3, SIZE, SIZE), np.float32)])
    with pytest.raises(FrameError):
        runner.run([np.zeros((2, 3, SIZE, SIZE), np.float32)] * 2)


def test_stream_program_steps_match_torch_and_offline(tmp_path):
    frames = 4
    model = settled("tam_mobilenet_v2_causal", frames=frames, seed=1)
    program = StreamProgram(model, PRE).eval()
    spec = model.state_specs(SIZE, SIZE)
    state0 = tuple(model.initial_state(SIZE, SIZE))
    assert [tuple(s.shape) for s in state0] == [shape for _, shape in spec]
    inputs = ["frame"] + [name for name, _ in spec]
    outputs = ["logits", "features"] + [f"{name}_out" for name, _ in spec]
    clip = rgb_clips(1, frames, 7)[0]  # (T, 3, H, W)
    job = ProgramJob("stream", program, (clip[:1], *state0), inputs, outputs, "fp32")
    path = tmp_path / f"stream{to_onnx.SUFFIX}"
    result = to_onnx.export(job, path)
    assert [s.name for s in result.inputs] == inputs and [s.name for s in result.outputs] == outputs
    assert [s.shape for s in result.inputs] == [(1, 3, SIZE, SIZE)] + [shape for _, shape in spec]
    runner = load_runner("onnx", path, threads=1)

    state_ort = [s.numpy() for s in state0]
    state_pt = state0
    step_logits = []
    for t in range(frames):
        frame = clip[t:t + 1]
        got = runner.run([frame.numpy(), *state_ort])
        with torch.no_grad():
            ref = program(frame, *state_pt)
        assert len(got) == len(ref) == 2 + len(spec)
        for g, r in zip(got, ref):
            assert np.abs(g - r.numpy()).max() <= 1e-4
        state_ort, state_pt = got[2:], ref[2:]  # each side carries its own state
        step_logits.append(got[0])

    normalized = (clip / 255 - torch.tensor(PRE.mean).view(1, 3, 1, 1)) / torch.tensor(PRE.std).view(1, 3, 1, 1)
    with torch.no_grad():
        offline = model(normalized.unsqueeze(0)).numpy()
    assert np.abs(np.mean(step_logits, axis=0) - offline).max() <= 1e-4
    # time matters in this model: the last step differs from the first (state is carried, not ignored)
    assert np.abs(step_logits[-1] - step_logits[0]).max() > 1e-2


def test_int8_is_the_pt2e_program_in_qdq_form(settled_int8, clip_fp32, tmp_path):
    """int8 .onnx is exported from the project's PT2E program (the one the .pte and .tflite come from) and follows it."""
    case = settled_int8
    job = ProgramJob("clip", case.fp32, case.example, ["clip"], ["logits"], "int8", case.quantized)
    path = tmp_path / f"clip_int8{to_onnx.SUFFIX}"
    result = to_onnx.export(job, path)
    onnx.checker.check_model(str(path), full_check=True)
    assert result.reference == "quantized" and result.details["quantization"] == to_onnx.QDQ_METHOD
    assert [(s.name, s.shape, s.dtype) for s in result.inputs] == [("clip", (2, 3, SIZE, SIZE), "float32")]
    assert [(s.name, s.shape, s.dtype) for s in result.outputs] == [("logits", (1, CLASSES), "float32")]
    graph = onnx.load(str(path)).graph
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in graph.node}
    assert any(i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 4 for i in graph.initializer), \
        "conv weights are not stored as int8"
    assert path.stat().st_size < 0.4 * clip_fp32[0].stat().st_size

    assert_int8_follows(load_runner("onnx", path, threads=1), case)


def test_int8_needs_the_quantized_program(settled_clip, tmp_path):
    job = ProgramJob("clip", settled_clip, (rgb_clips(1, 2, 0)[0],), ["clip"], ["logits"], "int8")
    with pytest.raises(ValueError, match="job.quantized"):
        to_onnx.export(job, tmp_path / "x.onnx")


def test_runner_is_torch_free(clip_fp32):
    code = ("import sys, numpy as np\n"
            "from sdk.backends import load_runner\n"
            f"r = load_runner('onnx', {str(clip_fp32[0])!r}, threads=1)\n"
            f"r.run([np.zeros((2, 3, {SIZE}, {SIZE}), np.float32)])\n"
            "assert 'torch' not in sys.modules, 'the onnx runner imported torch'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
