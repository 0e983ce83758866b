"""LiteRT exporter (converters.to_tflite, litert-torch) + runner (sdk.backends.litert, ai-edge-litert Interpreter) on
tiny settled random models (tests/settled_models.py)."""
from __future__ import annotations

import numpy as np
import pytest

import torch
import litert_torch  # noqa: F401  (installed by scripts/env.sh: a missing one fails, never skips)
import ai_edge_litert  # noqa: F401  (installed by scripts/env.sh: a missing one fails, never skips)

from settled_models import CLASSES, PRE, SIZE, assert_int8_follows, rgb_clips, settled
from torch import nn

from converters import to_tflite
from converters.program import ProgramJob, StreamProgram
from sdk.backends import load_runner
from sdk.errors import FrameError


@pytest.fixture(scope="module")
def clip_fp32(settled_clip, tmp_path_factory):
    job = ProgramJob("clip", settled_clip, (rgb_clips(1, 2, 0)[0],), ["clip"], ["logits"], "fp32")
    path = tmp_path_factory.mktemp("tflite") / f"clip_fp32{to_tflite.SUFFIX}"
    return path, to_tflite.export(job, path)


def logits(program: nn.Module, clip: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return program(clip).numpy()


def test_fp32_clip_program_matches_torch(settled_clip, clip_fp32):
    path, result = clip_fp32
    assert result.reference == "fp32" and result.details["quantization"] == "none"
    assert [(s.name, s.shape, s.dtype, s.quantization) for s in result.inputs] == [
        ("clip", (2, 3, SIZE, SIZE), "float32", None)]
    assert [(s.name, s.shape, s.dtype) for s in result.outputs] == [("logits", (1, CLASSES), "float32")]
    runner = load_runner("tflite", path, threads=1)
    clips = rgb_clips(4, 2, 1)
    refs = [logits(settled_clip, c) for c in clips]
    assert np.ptp([r.ravel() for r in refs], axis=0).max() > 0.3, "the test model ignores its input"
    for clip, ref in zip(clips, refs):
        (out,) = runner.run([clip.numpy()])
        assert out.dtype == np.float32 and out.shape == (1, CLASSES)
        assert np.abs(out - ref).max() <= 1e-4


def test_runner_rejects_wrong_inputs(clip_fp32):
    runner = load_runner("tflite", clip_fp32[0])
    with pytest.raises(FrameError, match="expects 1 input"):
        runner.run([np.zeros((3, 3, SIZE, SIZE), np.float32)])


def test_int8_from_the_pt2e_program_records_io_quantization(settled_int8, clip_fp32, tmp_path):
    """int8 .tflite built from the project's PT2E (XNNPACK scheme) program follows that program, not just fp32."""
    case = settled_int8
    job = ProgramJob("clip", case.fp32, case.example, ["clip"], ["logits"], "int8", case.quantized)
    path = tmp_path / f"clip_int8{to_tflite.SUFFIX}"
    result = to_tflite.export(job, path)
    assert result.reference == "quantized", result.details.get("direct_conversion_error")
    assert result.details["quantization"] == to_tflite.DIRECT_METHOD
    for spec in (*result.inputs, *result.outputs):  # int8 I/O, with the parameters the runtime needs in the manifest
        assert spec.dtype == "int8" and spec.quantization is not None and spec.quantization.scale > 0
    assert path.stat().st_size < 0.4 * clip_fp32[0].stat().st_size

    assert_int8_follows(load_runner("tflite", path, threads=1), case)


def test_int8_needs_the_quantized_program(settled_clip, tmp_path):
    job = ProgramJob("clip", settled_clip, (rgb_clips(1, 2, 0)[0],), ["clip"], ["logits"], "int8")
    with pytest.raises(ValueError, match="job.quantized"):
        to_tflite.export(job, tmp_path / "x.tflite")


def test_stream_program_keeps_tensor_order_and_matches_torch(tmp_path):
    """Several equal-shaped state tensors: the runner's program order must be the torch order, step after step."""
    frames = 4
    model = settled("tam_mobilenet_v2_causal", frames=frames, seed=1)
    program = StreamProgram(model, PRE).eval()
    spec = model.state_specs(SIZE, SIZE)
    state0 = tuple(model.initial_state(SIZE, SIZE))
    inputs = ["frame"] + [name for name, _ in spec]
    outputs = ["logits", "features"] + [f"{name}_out" for name, _ in spec]
    clip = rgb_clips(1, frames, 7)[0]
    result = to_tflite.export(ProgramJob("stream", program, (clip[:1], *state0), inputs, outputs, "fp32"),
                              tmp_path / "stream.tflite")
    assert [s.name for s in result.outputs] == outputs
    runner = load_runner("tflite", tmp_path / "stream.tflite", threads=1)
    state_rt, state_pt, steps = [s.numpy() for s in state0], state0, []
    for t in range(frames):
        got = runner.run([clip[t:t + 1].numpy(), *state_rt])
        with torch.no_grad():
            ref = program(clip[t:t + 1], *state_pt)
        for g, r in zip(got, ref):
            assert np.abs(g - r.numpy()).max() <= 1e-4
        state_rt, state_pt = got[2:], ref[2:]
        steps.append(got[0])
    assert np.abs(steps[-1] - steps[0]).max() > 1e-2  # the state is carried, not ignored
