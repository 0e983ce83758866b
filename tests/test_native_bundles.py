"""Small .pte bundles for the native-core tests, written directly (no dataset, no parity run): a clip bundle with
fp32 and int8 programs, a stream bundle, and a FASTER bundle (expensive / cheap clip programs + GRU aggregator).

Programs are tiny conv nets whose logits depend on the input and on frame order (a clip net with a frame-difference
term, a causal step net carrying its previous features and feature map as explicit state): lowering a real
TAM-MobileNetV2 took minutes on the shared 2-core machine. Each is lowered with the real ``converters.to_pte`` and its export-time outputs
on the golden inputs come from the Python ExecuTorch runtime, as ``converters.export`` records them. This module
holds no tests; ``build_bundles`` (through the ``native_bundles`` fixture of ``tests/conftest.py``), ``video`` and
``cli_stream_vs_python`` are used by ``tests/test_native.py`` (x86_64) and ``tests/test_arm64.py`` (aarch64 under QEMU).
"""
from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sdk.preprocess import Preprocess
from sdk.samplers import Sampler

SIZE, RESIZE, CLASSES = 32, 36, 4
CHEAP_SIZE, CHEAP_RESIZE = 24, 28
LABELS = ("left", "right", "up", "down")


def random_video(n: int, height: int = RESIZE, width: int = 48, seed: int = 0) -> np.ndarray:
    """``(n, H, W, 3)`` uint8: smooth random textures that change every frame (8x8 blocks + fine noise)."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, size=(n, -(-height // 8), -(-width // 8), 3)).astype(np.float32)
    frames = np.repeat(np.repeat(low, 8, axis=1), 8, axis=2)[:, :height, :width]
    frames += rng.normal(0, 12, size=frames.shape)
    return np.clip(frames, 0, 255).astype(np.uint8)



def video(n: int, seed: int = 0) -> np.ndarray:
    """``(n, 36, 48, 3)`` uint8 frames whose colour balance changes every 8 frames (so that the logits move)."""
    frames = random_video(n, seed=seed).astype(np.float32)
    gains = np.array([[1.0, 0.3, 0.3], [0.3, 1.0, 0.3], [0.3, 0.3, 1.0], [1.0, 1.0, 0.2]], np.float32)
    for i in range(n):
        frames[i] *= gains[(i // 8) % len(gains)] * (0.6 + 0.4 * ((i // 5) % 3))
    return np.clip(frames, 0, 255).astype(np.uint8)


def cli_stream_vs_python(cli: Sequence[str], bundle: Path, precision: str, frames: np.ndarray, raw: Path, *,
                         window: int = 8, ema: float = 0.3) -> tuple[dict, float, float]:
    """``edgevideo_cli run`` (``cli``: its command line, e.g. under an emulator) on ``frames`` (written to ``raw``)
    against ``sdk.StreamClassifier`` on the Python ExecuTorch runtime of this host, same frames and smoothing.

    Asserts the same predictions (frame index, top-1, label); returns the CLI's summary line and the max |logit| and
    |probability| differences, for the caller's tolerance."""
    import sdk
    from sdk.classifier import Smoothing, StreamClassifier

    raw.write_bytes(frames.tobytes())
    n, height, width = frames.shape[:3]
    proc = subprocess.run([*cli, "run", str(bundle), str(raw), "--width", str(width), "--height", str(height),
                           "--window", str(window), "--precision", precision, "--ema", str(ema)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"edgevideo_cli run exited {proc.returncode}: {proc.stderr[-2000:]}"
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    summary = lines.pop()
    with sdk.load(bundle, backend="executorch", precision=precision) as model:
        py = StreamClassifier(model, window=window, smoothing=Smoothing(ema=ema))
        expected = [p for p in (py.push(f) for f in frames) if p is not None]
    assert [line["frame_index"] for line in lines] == [p.frame_index for p in expected]
    d_logits = d_probs = 0.0
    for line, p in zip(lines, expected):
        assert line["top1"] == p.class_ids[0] and line["label"] == p.labels[0], (line, p)
        d_logits = max(d_logits, float(np.abs(np.array(line["logits"], np.float32) - p.logits).max()))
        d_probs = max(d_probs, float(np.abs(np.array(line["probabilities"], np.float32) - p.probabilities).max()))
    return summary, d_logits, d_probs

def _pte(job, path: Path):
    from converters import to_pte

    return to_pte.export(job, path)


def _program(pid, role, mode, precision, path: Path, result, n_inputs: int, root: Path):
    from sdk.files import sha256_of
    from sdk.manifest import Program

    inputs, outputs = list(result.inputs), list(result.outputs)
    return Program(id=pid, backend="executorch", precision=precision, mode=mode,
                   file=path.relative_to(root).as_posix(), sha256=sha256_of(path), size_bytes=path.stat().st_size,
                   inputs=tuple(inputs[:n_inputs]), outputs=tuple(outputs[:len(outputs) - (len(inputs) - n_inputs)]),
                   state=tuple(inputs[n_inputs:]), role=role, details=result.details)


def _torch_outputs(module, mode: str, x: np.ndarray, state: list[np.ndarray]) -> np.ndarray:
    """The torch program's logits on the golden inputs, laid out as :func:`_export_time_outputs`: the
    ``*/reference_*/logits`` goldens every runtime (the native core included) is held to."""
    import torch

    def run(inputs):
        with torch.no_grad():
            out = module(*[torch.from_numpy(np.ascontiguousarray(a)) for a in inputs])
        return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]

    rows = []
    for item in x:
        if mode == "clip":
            rows.append(run([item])[0].reshape(1, -1))
            continue
        s, steps = list(state), []
        for step in item:
            out = run([step, *s])
            steps.append(out[0].reshape(-1))
            s = out[len(out) - len(state):]
        rows.append(np.stack(steps))
    return np.stack(rows)


def _export_time_outputs(path: Path, mode: str, x: np.ndarray, state: list[np.ndarray]) -> np.ndarray:
    """What ``converters.export`` stores as ``{pid}/logits``: the program in the Python ExecuTorch runtime."""
    from sdk.backends import load_runner

    runner = load_runner("executorch", path)
    rows = []
    for item in x:
        if mode == "clip":
            rows.append(runner.run([item])[0].reshape(1, -1))
            continue
        s, steps = list(state), []
        for step in item:
            out = runner.run([step, *s])
            steps.append(out[0].reshape(-1))
            s = out[len(out) - len(state):]
        rows.append(np.stack(steps))
    return np.stack(rows)


def _write(root: Path, name: str, pre: Preprocess, sampler: Sampler, programs, golden, faster=None) -> Path:
    from sdk.bundle import GOLDEN_FILE, golden_bytes
    from sdk.files import sha256_of
    from sdk.manifest import InputSpec, Manifest, write_manifest

    (root / GOLDEN_FILE).write_bytes(golden_bytes(golden))
    manifest = Manifest(name=name, labels=LABELS, input=InputSpec(pre), sampler=sampler, programs=tuple(programs),
                        golden={"file": GOLDEN_FILE, "sha256": sha256_of(root / GOLDEN_FILE)},
                        provenance={"note": "tests/test_native_bundles.py"}, faster=faster)
    write_manifest(manifest, root)
    return root


def clip_bundle(root: Path, frames: int = 4, int8: bool = True) -> Path:
    import torch
    from settled_models import ptq

    from converters.program import ProgramJob

    root.mkdir(parents=True)
    (root / "programs").mkdir()
    pre = Preprocess(size=SIZE, resize=RESIZE)
    net = _tiny_clip_net(frames, SIZE, pre, 16, 1)
    program = _logits_only(net).eval()
    g = torch.Generator().manual_seed(7)
    golden_x = (torch.rand(2, frames, 3, SIZE, SIZE, generator=g) * 255).numpy()
    golden = {"clip/input/clip": golden_x}
    with torch.no_grad():
        golden["clip/reference_fp32/logits"] = np.stack([program(torch.from_numpy(c)).numpy() for c in golden_x])
    example = (torch.from_numpy(golden_x[0]),)
    jobs = [("fp32", None)]
    if int8:
        calib = [(torch.rand(frames, 3, SIZE, SIZE, generator=g) * 255,) for _ in range(8)]
        jobs.append(("int8", ptq(program, calib)))
        golden["clip/reference_quantized/logits"] = _torch_outputs(jobs[-1][1], "clip", golden_x, [])
    programs = []
    for precision, quantized in jobs:
        pid = f"clip_executorch_{precision}"
        path = root / "programs" / f"{pid}.pte"
        result = _pte(ProgramJob("clip", program, example, ["clip"], ["logits"], precision, quantized), path)
        programs.append(_program(pid, "model", "clip", precision, path, result, 1, root))
        golden[f"{pid}/logits"] = _export_time_outputs(path, "clip", golden_x, [])
    return _write(root, "native-clip", pre, Sampler("uniform_segments", frames), programs, golden)


def stream_bundle(root: Path, frames: int = 4) -> Path:
    import torch

    from converters.program import ProgramJob

    root.mkdir(parents=True)
    (root / "programs").mkdir()
    pre = Preprocess(size=SIZE, resize=RESIZE)
    program = _tiny_step_net(pre, 16, 2).eval()
    zero = [torch.zeros(1, 16), torch.zeros(1, 16, 8, 8)]
    g = torch.Generator().manual_seed(9)
    golden_x = (torch.rand(2, frames, 1, 3, SIZE, SIZE, generator=g) * 255).numpy()
    example = (torch.from_numpy(golden_x[0, 0]), *zero)
    names = ["prev_features", "prev_map"]
    pid = "stream_executorch_fp32"
    path = root / "programs" / f"{pid}.pte"
    result = _pte(ProgramJob("stream", program, example, ["frame", *names],
                             ["logits", "features", *[f"new_{n}" for n in names]], "fp32"), path)
    golden = {"stream/input/frame": golden_x,
              "stream/reference_fp32/logits": _torch_outputs(program, "stream", golden_x, [z.numpy() for z in zero]),
              f"{pid}/logits": _export_time_outputs(path, "stream", golden_x, [z.numpy() for z in zero])}
    programs = [_program(pid, "model", "stream", "fp32", path, result, 1, root)]
    return _write(root, "native-stream", pre, Sampler("uniform_segments", frames), programs, golden)


def _tiny_step_net(pre: Preprocess, width: int, seed: int):
    """A causal step program ``(frame (1, 3, S, S), prev_features (1, W), prev_map (1, W, S/4, S/4)) -> (logits,
    features, new_prev_features, new_map)``: its logits depend on the previous frame through the explicit state."""
    import torch
    from torch import nn

    from converters.program import Normalize

    torch.manual_seed(seed)

    class Step(nn.Module):
        def __init__(self):
            super().__init__()
            self.normalize = Normalize(pre)
            self.conv = nn.Conv2d(3, width, 3, stride=2, padding=1)
            self.pool = nn.AvgPool2d(2)
            self.mix = nn.Conv2d(2 * width, width, 1)
            self.fc = nn.Linear(2 * width, CLASSES)

        def forward(self, frame, prev_features, prev_map):
            m = self.pool(torch.relu(self.conv(self.normalize(frame))))  # (1, W, S/4, S/4)
            m = torch.relu(self.mix(torch.cat([m, prev_map], 1)))
            f = m.mean((2, 3))
            return self.fc(torch.cat([f, f - prev_features], 1)) * 3, f, f, m

    return Step()


def _tiny_clip_net(frames: int, size: int, pre: Preprocess, width: int, seed: int):
    """``(clip (T, 3, S, S)) -> (logits (1, K), features (1, 16))``: conv, ReLU, pooled, a frame-difference term (so
    that frame order matters), projected to the aggregator's 16-dim feature space."""
    import torch
    from torch import nn

    from converters.program import Normalize

    torch.manual_seed(seed)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.normalize = Normalize(pre)
            self.conv = nn.Conv2d(3, width, 3, stride=2, padding=1)
            self.proj = nn.Linear(2 * width, 16)
            self.fc = nn.Linear(16, CLASSES)

        def forward(self, clip):
            x = torch.relu(self.conv(self.normalize(clip))).mean((2, 3))  # (T, width)
            motion = (x[1:] - x[:-1]).abs().mean(0, keepdim=True) if frames > 1 else x[:1] * 0
            f = self.proj(torch.cat([x.mean(0, keepdim=True), motion], 1))
            return self.fc(torch.relu(f)) * 3, f

    return Net().eval()


def _logits_only(net):
    from torch import nn

    class LogitsOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, clip):
            return self.net(clip)[0]

    return LogitsOnly()


def faster_bundle(root: Path, segment_frames: int = 8) -> Path:
    import torch

    from converters.program import ProgramJob
    from sdk.manifest import FasterClipModel, FasterSpec, InputSpec
    from training.models.aggregators import AggregatorStep, gru

    root.mkdir(parents=True)
    (root / "programs").mkdir()
    pre_e = Preprocess(size=SIZE, resize=RESIZE)
    pre_c = Preprocess(size=CHEAP_SIZE, resize=CHEAP_RESIZE)
    samplers = {"expensive": Sampler("uniform_segments", 4), "cheap": Sampler("uniform_segments", 2)}
    nets = {"expensive": _tiny_clip_net(4, SIZE, pre_e, 16, 3), "cheap": _tiny_clip_net(2, CHEAP_SIZE, pre_c, 8, 4)}
    sizes = {"expensive": SIZE, "cheap": CHEAP_SIZE}
    golden, programs = {}, []
    g = torch.Generator().manual_seed(5)
    for role, net in nets.items():
        x = (torch.rand(2, samplers[role].frames, 3, sizes[role], sizes[role], generator=g) * 255).numpy()
        pid = f"{role}_executorch_fp32"
        path = root / "programs" / f"{pid}.pte"
        result = _pte(ProgramJob("clip", net, (torch.from_numpy(x[0]),), ["clip"], ["logits", "features"], "fp32"),
                      path)
        programs.append(_program(pid, role, "clip", "fp32", path, result, 1, root))
        golden[f"{role}/input/clip"] = x
        golden[f"{role}/reference_fp32/logits"] = _torch_outputs(net, "clip", x, [])
        golden[f"{pid}/logits"] = _export_time_outputs(path, "clip", x, [])
    torch.manual_seed(6)
    agg = gru(in_channels=16, num_classes=CLASSES)
    with torch.no_grad():
        agg.fc.weight.mul_(10)
    step = AggregatorStep(agg).eval()
    example = agg.example_inputs()
    n_state = len(example) - 1
    pid = "aggregator_executorch_fp32"
    path = root / "programs" / f"{pid}.pte"
    names = [f"state{i}" for i in range(n_state)]
    result = _pte(ProgramJob("stream", step, example, ["features", *names], ["logits", *[f"new_{n}" for n in names]],
                             "fp32"), path)
    programs.append(_program(pid, "aggregator", "aggregate", "fp32", path, result, 1, root))
    feats = torch.randn(2, 3, 1, 16, generator=g).numpy()
    golden["aggregator/input/features"] = feats
    golden["aggregator/reference_fp32/logits"] = _torch_outputs(step, "aggregate", feats,
                                                                [e.numpy() * 0 for e in example[1:]])
    golden[f"{pid}/logits"] = _export_time_outputs(path, "aggregate", feats, [e.numpy() * 0 for e in example[1:]])
    faster = FasterSpec(schedule="1:2", pattern=("expensive", "cheap", "cheap"), segment_frames=segment_frames,
                        segments=4, aggregator="gru",
                        clip_models={"expensive": FasterClipModel(samplers["expensive"], InputSpec(pre_e)),
                                     "cheap": FasterClipModel(samplers["cheap"], InputSpec(pre_c))})
    return _write(root, "native-faster", pre_e, samplers["expensive"], programs, golden, faster)


def build_bundles(root: Path) -> dict[str, Path]:
    """``{"clip": ..., "stream": ..., "faster": ...}`` under ``root``."""
    root = Path(root)
    return {"clip": clip_bundle(root / "clip.vbundle"), "stream": stream_bundle(root / "stream.vbundle"),
            "faster": faster_bundle(root / "faster.vbundle")}
