"""Tiny bundles for the runtime tests: small torch programs exported with the project's own exporters.

The runtime is tested on real program files in real runtimes (``converters.to_pte`` / ``to_tflite`` / ``to_onnx``),
but on tiny order-sensitive networks (one conv, a temporal weighting or an explicit recurrent state) so that the
whole set exports in seconds. The manifest and ``golden.npz`` follow the exporter's layout
(``{mode}/input/{name}``, ``{mode}/reference_fp32/logits``, ``{program id}/logits``; the FASTER bundle's torch
references are per role, ``{role}/reference_fp32/logits``, and an int8 clip program's is
``clip/reference_quantized/logits``).

* ``clip``: ``(clip (T=3, 3, 24, 24),) -> (logits (1, 5),)``, sampler ``uniform_segments`` 3, resize 28 crop 24.
* ``stream``: ``(frame (1, 3, 24, 24), state (1, 8)) -> (logits, features (1, 8), new_state)``, same sampler;
  ``new_state = 0.5 * state + features``, logits from ``[features, state]``.
* ``faster``: pattern ``expensive, cheap, cheap`` over segments of 8 frames; expensive clip program 4 frames at 24 px,
  cheap 2 frames at 16 px, both ``(clip,) -> (logits, features (1, 6))``; aggregator ``(features, h (1, 6)) ->
  (logits, new_h)`` with ``new_h = tanh(W f + U h)``.
"""
from __future__ import annotations

import copy
import datetime as dt
import importlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from converters.program import Normalize, ProgramJob
from sdk.backends import load_runner
from sdk.bundle import GOLDEN_FILE, golden_bytes
from sdk.files import sha256_of
from sdk.manifest import SCHEMA_VERSION, FasterClipModel, FasterSpec, InputSpec, Manifest, Program, write_manifest
from sdk.preprocess import Preprocess
from sdk.samplers import Sampler

LABELS = ("left", "right", "up", "down", "idle")
K = len(LABELS)
EXPORTERS = {"pte": ("executorch", "converters.to_pte"), "tflite": ("tflite", "converters.to_tflite"),
             "onnx": ("onnx", "converters.to_onnx")}
_CACHE: dict[tuple, Path] = {}


class ClipNet(nn.Module):
    """(T, 3, S, S) in [0, 255] -> logits (1, K) [, features (1, D)]: conv, pooled per frame, frame-order weights."""

    def __init__(self, frames: int, pre: Preprocess, dim: int = 8, features: bool = False, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.normalize = Normalize(pre)
        self.conv = nn.Conv2d(3, dim, 3, stride=2, padding=1)
        self.mix = nn.Linear(frames * dim, dim)
        self.fc = nn.Linear(dim, K)
        self.frames, self.dim, self.features = frames, dim, features

    def forward(self, clip: torch.Tensor):
        x = torch.relu(self.conv(self.normalize(clip))).mean((2, 3))  # (T, D)
        f = torch.tanh(self.mix(x.reshape(1, self.frames * self.dim)))
        logits = self.fc(f) * 3
        return (logits, f) if self.features else logits


class StepNet(nn.Module):
    """(frame (1, 3, S, S), state (1, D)) -> (logits, features, new_state)."""

    def __init__(self, pre: Preprocess, dim: int = 8, seed: int = 1):
        super().__init__()
        torch.manual_seed(seed)
        self.normalize = Normalize(pre)
        self.conv = nn.Conv2d(3, dim, 3, stride=2, padding=1)
        self.fc = nn.Linear(2 * dim, K)

    def forward(self, frame: torch.Tensor, state: torch.Tensor):
        f = torch.relu(self.conv(self.normalize(frame))).mean((2, 3))
        logits = self.fc(torch.cat([f, state], 1)) * 3
        return logits, f, 0.5 * state + f


class Aggregator(nn.Module):
    """(features (1, D), h (1, D)) -> (logits (1, K), new_h)."""

    def __init__(self, dim: int, seed: int = 2):
        super().__init__()
        torch.manual_seed(seed)
        self.w, self.u, self.fc = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, K)

    def forward(self, features: torch.Tensor, h: torch.Tensor):
        new_h = torch.tanh(self.w(features) + self.u(h))
        return self.fc(new_h) * 3, new_h


def _torch_run(module: nn.Module, inputs: list[np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        out = module(*[torch.from_numpy(a) for a in inputs])
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def _sequence_logits(run, items: np.ndarray, zero: list[np.ndarray], n_out: int) -> np.ndarray:
    rows = []
    for seq in items:
        state, steps = [z.copy() for z in zero], []
        for x in seq:
            out = run([x, *state])
            steps.append(out[0].reshape(-1))
            state = out[n_out:]
        rows.append(np.stack(steps))
    return np.stack(rows)


def _export_program(root: Path, fmt: str, pid: str, role: str, mode: str, module: nn.Module,
                    example: tuple[torch.Tensor, ...], in_names: list[str], out_names: list[str], n_in: int,
                    n_out: int, golden: dict, golden_inputs: np.ndarray, precision: str = "fp32",
                    quantized: nn.Module | None = None) -> Program:
    """Export one program; ``precision`` is what the manifest says (an fp16 ``module`` computes in half precision
    and is exported as it is; int8 is lowered from ``quantized``)."""
    backend, module_name = EXPORTERS[fmt]
    exporter = importlib.import_module(module_name)
    path = root / "programs" / f"{pid}{exporter.SUFFIX}"
    result = exporter.export(ProgramJob("clip" if mode == "clip" else "stream", module.eval(), example, in_names,
                                        out_names, "int8" if precision == "int8" else "fp32", quantized), path)
    runner = load_runner(backend, path)
    if mode == "clip":
        golden[f"{pid}/logits"] = np.stack([runner.run([x])[0].reshape(1, -1) for x in golden_inputs])
    else:
        zero = [np.zeros(t.shape, np.float32) for t in example[n_in:]]
        golden[f"{pid}/logits"] = _sequence_logits(runner.run, golden_inputs, zero, n_out)
    return Program(id=pid, backend=backend, precision=precision, mode=mode, file=f"programs/{path.name}",
                   sha256=sha256_of(path), size_bytes=path.stat().st_size, inputs=tuple(result.inputs[:n_in]),
                   outputs=tuple(result.outputs[:n_out]), state=tuple(result.inputs[n_in:]),
                   details=dict(result.details), role=role)


def _frames_in(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.uniform(0, 255, shape).astype(np.float32)


def _write(root: Path, name: str, pre: Preprocess, sampler: Sampler, programs: list[Program], golden: dict,
           faster: FasterSpec | None = None) -> Path:
    (root / GOLDEN_FILE).write_bytes(golden_bytes(golden))
    manifest = Manifest(name=name, labels=LABELS, input=InputSpec(pre), sampler=sampler, programs=tuple(programs),
                        golden={"file": GOLDEN_FILE, "sha256": sha256_of(root / GOLDEN_FILE)},
                        provenance={"note": "tiny test bundle"},
                        created=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
                        producer={"package": "edgevideo", "version": "test"}, schema_version=SCHEMA_VERSION,
                        faster=faster)
    write_manifest(manifest, root)
    return root


class _Half(nn.Module):
    """The fp16 program of ``net``: half-precision weights and arithmetic, float32 in and out."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = copy.deepcopy(net).half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.half()).float()


def _precision_variant(net: nn.Module, precision: str, calibration: np.ndarray) -> tuple[nn.Module, nn.Module | None]:
    """``(module, quantized)`` of ``net``'s program in ``precision`` (int8: PT2E calibrated on ``calibration``)."""
    if precision == "fp32":
        return net, None
    if precision == "fp16":
        return _Half(net).eval(), None
    from settled_models import ptq

    return net, ptq(net, [(torch.from_numpy(c),) for c in calibration])


def make_bundle(kind: str, root: Path, formats: tuple[str, ...] = ("pte", "tflite", "onnx"),
                precisions: tuple[str, ...] = ("fp32",)) -> Path:
    """Export the tiny ``clip`` / ``stream`` / ``faster`` bundle into ``root/KIND.vbundle`` (cached per session);
    a clip bundle can hold programs of several ``precisions`` (``fp32``, ``fp16``, ``int8``) per format, listed in
    that order."""
    key = (kind, formats, precisions)
    if key in _CACHE and _CACHE[key].exists():
        return _CACHE[key]
    if precisions != ("fp32",) and kind != "clip":
        raise ValueError("only the clip bundle has fp16 / int8 programs")
    out = root / f"{kind}.vbundle"
    (out / "programs").mkdir(parents=True)
    rng = np.random.default_rng(0)
    pre = Preprocess(size=24, resize=28)
    sampler = Sampler("uniform_segments", 3)
    golden: dict[str, np.ndarray] = {}
    programs = []
    if kind == "clip":
        net = ClipNet(3, pre).eval()
        x = _frames_in(rng, 2, 3, 3, 24, 24)
        golden["clip/input/clip"] = x
        golden["clip/reference_fp32/logits"] = np.stack([_torch_run(net, [c])[0] for c in x])
        calibration = _frames_in(rng, 8, 3, 3, 24, 24)
        for precision in precisions:
            module, quantized = _precision_variant(net, precision, calibration)
            if quantized is not None:  # the torch int8 program the int8 runtimes are held to
                golden["clip/reference_quantized/logits"] = np.stack([_torch_run(quantized, [c])[0] for c in x])
            for fmt in formats:
                programs.append(_export_program(out, fmt, f"clip_{EXPORTERS[fmt][0]}_{precision}", "model", "clip",
                                                module, (torch.from_numpy(x[0]),), ["clip"], ["logits"], 1, 1, golden,
                                                x, precision, quantized))
        return _cache(key, _write(out, "tiny_clip", pre, sampler, programs, golden))
    if kind == "stream":
        net = StepNet(pre).eval()
        x = _frames_in(rng, 2, 3, 1, 3, 24, 24)
        zero = [np.zeros((1, 8), np.float32)]
        golden["stream/input/frame"] = x
        golden["stream/reference_fp32/logits"] = _sequence_logits(lambda i: _torch_run(net, i), x, zero, 2)
        for fmt in formats:
            programs.append(_export_program(out, fmt, f"stream_{EXPORTERS[fmt][0]}_fp32", "model", "stream", net,
                                            (torch.from_numpy(x[0, 0]), torch.zeros(1, 8)),
                                            ["frame", "state_0"], ["logits", "features", "new_state_0"], 1, 2,
                                            golden, x))
        return _cache(key, _write(out, "tiny_stream", pre, sampler, programs, golden))
    if kind != "faster":
        raise ValueError(kind)
    pre_cheap = Preprocess(size=16, resize=16)
    dim = 6
    clip_models = {"expensive": FasterClipModel(Sampler("uniform_segments", 4), InputSpec(pre), 0.01),
                   "cheap": FasterClipModel(Sampler("uniform_segments", 2), InputSpec(pre_cheap), 0.001)}
    nets = {"expensive": ClipNet(4, pre, dim, features=True, seed=3).eval(),
            "cheap": ClipNet(2, pre_cheap, dim, features=True, seed=4).eval()}
    agg = Aggregator(dim).eval()
    inputs = {"expensive": _frames_in(rng, 2, 4, 3, 24, 24), "cheap": _frames_in(rng, 2, 2, 3, 16, 16)}
    feats = rng.standard_normal((2, 3, 1, dim)).astype(np.float32)
    for role, x in inputs.items():
        golden[f"{role}/input/clip"] = x
    golden["aggregator/input/features"] = feats
    for role, x in inputs.items():  # the torch reference of each program, what every runtime is held to
        golden[f"{role}/reference_fp32/logits"] = np.stack([_torch_run(nets[role], [c])[0] for c in x])
    golden["aggregator/reference_fp32/logits"] = _sequence_logits(lambda i: _torch_run(agg, i), feats,
                                                                  [np.zeros((1, dim), np.float32)], 1)
    for fmt in formats:
        backend = EXPORTERS[fmt][0]
        for role in ("expensive", "cheap"):
            x = inputs[role]
            programs.append(_export_program(out, fmt, f"{role}_{backend}_fp32", role, "clip", nets[role],
                                            (torch.from_numpy(x[0]),), ["clip"], ["logits", "features"], 1, 2,
                                            golden, x))
        programs.append(_export_program(out, fmt, f"aggregator_{backend}_fp32", "aggregator", "aggregate", agg,
                                        (torch.from_numpy(feats[0, 0]), torch.zeros(1, dim)), ["features", "h"],
                                        ["logits", "new_h"], 1, 1, golden, feats))
    spec = FasterSpec(schedule="1:2", pattern=("expensive", "cheap", "cheap"), segment_frames=8, segments=4,
                      aggregator="tiny_rnn", clip_models=clip_models)
    return _cache(key, _write(out, "tiny_faster", pre, clip_models["expensive"].sampler, programs, golden, spec))


def _cache(key: tuple, path: Path) -> Path:
    _CACHE[key] = path
    return path


def random_video(n: int, height: int = 40, width: int = 48, seed: int = 0) -> np.ndarray:
    """``(n, H, W, 3)`` uint8 frames: blocky random textures that change from frame to frame."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, size=(n, height // 8, width // 8, 3)).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(np.repeat(low, 8, axis=1), 8, axis=2))


def write_video(path: Path, frames: np.ndarray, fps: int = 25) -> Path:
    """An H.264 mp4 of ``(N, H, W, 3)`` uint8 RGB frames (PyAV)."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))
    return path
