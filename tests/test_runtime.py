"""The sdk runtime: sdk.load (backends, golden conformance), VideoClassifier, StreamClassifier (clip, stream and FASTER
bundles), latency stats and the ``python -m sdk`` CLI -- on tiny bundles exported with the project's exporters."""
from __future__ import annotations

import json

import dataclasses
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import sdk
from sdk.__main__ import main as sdk_main
from sdk.backends import VERBOSE_ENV
from sdk.classifier import DEFAULT_WINDOW, Smoothing, as_frame
from sdk.errors import BackendUnavailableError, BundleError, ConfigError, FrameError
from tests.runtime_helpers import LABELS, make_bundle, random_video, write_video

# Every runtime the project's environment installs (scripts/env.sh): each one runs here, none is dropped. A missing
# one fails the tests that need it with one line naming the set-up command; only Core ML, which predicts on macOS
# alone, is not run on Linux (its programs are checked on the Mac).
BACKENDS = ("executorch", "tflite", "onnx")
SETUP = "scripts/test.sh"


def require_runtimes(*backends: str) -> None:
    """Fail (one line, no traceback) unless every runtime of ``backends`` is installed."""
    missing = [b for b in backends if not sdk.runtime.is_available(b)]
    if missing:
        pytest.fail(f"runtime(s) {', '.join(missing)} not installed: set up the environment with {SETUP}",
                    pytrace=False)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    require_runtimes(*BACKENDS)
    root = tmp_path_factory.mktemp("runtime-bundles")
    return {kind: make_bundle(kind, root) for kind in ("clip", "stream", "faster")}


def test_every_runtime_of_the_environment_is_installed() -> None:
    require_runtimes(*BACKENDS)
    assert set(BACKENDS) <= set(sdk.runtime.available_backends())


def test_a_missing_runtime_fails_with_the_set_up_command(monkeypatch) -> None:
    real = sdk.runtime.is_available
    monkeypatch.setattr(sdk.runtime, "is_available", lambda b: b != "tflite" and real(b))
    with pytest.raises(pytest.fail.Exception) as failed:
        require_runtimes(*BACKENDS)
    assert str(failed.value) == f"runtime(s) tflite not installed: set up the environment with {SETUP}"


# Each runtime's program against the torch reference (the golden file's ``*/reference_*/logits``: the torch program's
# own outputs on the golden inputs), not only against what the same runtime returned at export: a fault of a runtime
# or of an exporter is recorded into its own goldens and reproduces there. fp32: float sums reordered by the kernels,
# within 1e-4 + 1e-5 * max|reference| (measured <= 2e-6 on these programs). int8: against the torch int8 program,
# whose q/dq reference ops round differently from the runtimes' int8 kernels: within 0.1 * the spread of the
# reference logits over the golden inputs, same top-1 (see ``torch_reference_bound``).
def torch_reference_bound(program, reference: np.ndarray) -> float:
    if program.precision == "int8":
        return 0.1 * float(np.ptp(reference, axis=0).max())
    return 1e-4 + 1e-5 * float(np.abs(reference).max())


def run_on_golden(model: sdk.Model, role: str, golden) -> tuple[np.ndarray, np.ndarray]:
    """``(outputs, torch reference)`` of a role's program on the golden inputs: clips one by one, sequences (stream,
    aggregator) stepped from the zero state."""
    program = model.programs[role]
    name = program.inputs[0].name
    x = next(golden[k] for k in (f"{program.role}/input/{name}", f"{program.mode}/input/{name}") if k in golden)
    kind = "quantized" if program.precision == "int8" else "fp32"
    key = next(k for k in (f"{program.role}/reference_{kind}/logits", f"{program.mode}/reference_{kind}/logits")
               if k in golden)
    rows = []
    for item in x:
        if program.mode == "clip":
            rows.append(model.run(role, [item])[0].reshape(1, -1))
            continue
        state, steps = model.zero_state(role), []
        for step in item:
            out = model.run(role, [step, *state])
            steps.append(out[0].reshape(-1))
            state = out[len(program.outputs):]
        rows.append(np.stack(steps))
    reference = golden[key]
    return np.stack(rows).reshape(reference.shape), reference


# ------------------------------------------------------------------------------------------------ load / verify
@pytest.mark.parametrize("kind", ["clip", "stream", "faster"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_golden_conformance_every_backend(bundles, kind: str, backend: str) -> None:
    """Every program of every bundle kind reproduces its golden vectors in every runtime, and matches the torch
    reference's goldens within the stated bound (above ``torch_reference_bound``)."""
    with sdk.load(bundles[kind], backend=backend, verify=True, threads=1) as model:
        assert model.backend == backend and model.kind == kind
        report = model.verify()
        assert set(report.results) == {p.id for p in model.programs.values()}
        for diff, tol, against in report.results.values():
            assert diff <= tol and "own export-time outputs" in against
        golden = model.bundle.golden()
        for role, program in model.programs.items():
            got, reference = run_on_golden(model, role, golden)
            diff, bound = float(np.abs(got - reference).max()), torch_reference_bound(program, reference)
            assert diff <= bound, f"{program.id} on {backend}: max|diff| {diff:.3g} from torch > {bound:.3g}"
            assert np.ptp(reference, axis=0).max() > 0.01, "the golden inputs hardly move the logits"  # 0.07-0.6


def test_loading_an_executorch_program_prints_no_third_party_chatter(bundles) -> None:
    """Quiet logs: XNNPACK's C++ cpuinfo probing and torchao's import notices never reach the user's terminal, while
    what else is written to stderr still does."""
    script = ("import os, sdk\nfrom sdk.backends import CPUINFO_PROBE, native_stderr_without\n"
              "with native_stderr_without(CPUINFO_PROBE):\n"
              "    os.write(2, b'[cpuinfo_utils.cpp:1] hidden\\nkept\\n')\n"
              f"sdk.load({str(bundles['clip'])!r}, backend='executorch', verify=True)\n")
    err = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stderr
    assert err.splitlines() == ["kept"], err


def test_verbose_output_lets_the_cpuinfo_lines_through(bundles) -> None:
    """``EDGEVIDEO_VERBOSE=1`` (what a tool's ``--verbose`` sets): XNNPACK's C++ CPU probing, hidden by default, reaches
    stderr when an ExecuTorch program loads."""
    script = f"import sdk\nsdk.load({str(bundles['clip'])!r}, backend='executorch', threads=1)\n"
    quiet, verbose = (subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                                     env={**os.environ, VERBOSE_ENV: value}).stderr for value in ("0", "1"))
    assert "[cpuinfo_utils.cpp:" not in quiet, quiet
    assert "[cpuinfo_utils.cpp:" in verbose and "[threadpool.cpp:" in verbose, verbose


def test_verify_raises_on_wrong_numbers(bundles) -> None:
    model = sdk.load(bundles["clip"], backend="onnx")
    runner = model.runners["model"]
    original = runner.run
    runner.run = lambda inputs: [original(inputs)[0] + 0.01]
    with pytest.raises(BundleError, match="does not reproduce its golden vectors"):
        model.verify()


def test_auto_backend_order_and_errors(bundles, tmp_path: Path) -> None:
    model = sdk.load(bundles["clip"])
    assert model.backend == BACKENDS[0] and model.precision == "fp32"
    with pytest.raises(BundleError, match="no coreml"):
        sdk.load(bundles["clip"], backend="coreml")
    with pytest.raises(ConfigError, match="unknown backend"):
        sdk.load(bundles["clip"], backend="tensorrt")
    with pytest.raises(ConfigError, match="threads"):
        sdk.load(bundles["clip"], threads=0)
    with pytest.raises(BundleError, match="does not exist"):
        sdk.load(tmp_path / "missing.vbundle")


def test_auto_skips_an_unavailable_runtime(bundles, monkeypatch) -> None:
    real = sdk.runtime.is_available
    monkeypatch.setattr(sdk.runtime, "is_available", lambda b: b == "onnx" and real(b))
    model = sdk.load(bundles["clip"])
    assert model.backend == "onnx" and any("not available" in s for s in model.skipped)
    with pytest.raises(BackendUnavailableError, match="not available"):
        sdk.load(bundles["clip"], backend="tflite")


# ------------------------------------------------------------------------------------- clip == stream, semantics
def _manual_clip_logits(model: sdk.Model, frames: np.ndarray, role: str = "model") -> np.ndarray:
    """The documented semantics by hand: sampler over the frames, Preprocess minus the in-program steps, program."""
    spec = model.input_spec(role)
    raw = dataclasses.replace(spec.preprocess, scale=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    idx = model.sampler(role).indices(len(frames))
    return model.run(role, [raw(frames[idx])])[0].reshape(-1), idx


@pytest.mark.parametrize("kind", ["clip", "stream"])
def test_stream_windows_equal_clip_mode_on_the_same_kept_frames(bundles, kind: str) -> None:
    model = sdk.load(bundles[kind], backend="onnx")
    window = 12
    video = random_video(3 * window + 5, seed=1)
    stream = sdk.StreamClassifier(model, window=window)
    preds = [p for f in video if (p := stream.push(f)) is not None]
    assert [p.frame_index for p in preds] == [window - 1, 2 * window - 1, 3 * window - 1]
    clip = sdk.VideoClassifier(model)
    for w, p in enumerate(preds):
        offline = clip.classify(video[w * window:(w + 1) * window])
        np.testing.assert_array_equal(p.logits, offline.logits)
        assert p.labels == offline.labels and p.window == w
    if kind == "clip":  # and both equal the documented computation
        manual, idx = _manual_clip_logits(model, video[:window])
        np.testing.assert_allclose(preds[0].logits, manual, atol=1e-5)
        assert idx.tolist() == model.sampler().indices(window).tolist()
    else:  # mean of steps from zero state over the kept frames
        spec = model.input_spec()
        raw = dataclasses.replace(spec.preprocess, scale=1.0, mean=(0.0,) * 3, std=(1.0,) * 3)
        state, rows = model.zero_state(), []
        for i in model.sampler().indices(window):
            out = model.run("model", [raw(video[i])[None], *state])
            rows.append(out[0].reshape(-1))
            state = out[2:]
        np.testing.assert_allclose(preds[0].logits, np.mean(rows, 0), atol=1e-5)


def test_faster_schedule_file_equals_stream_and_manual(bundles) -> None:
    model = sdk.load(bundles["faster"], backend="executorch")
    spec = model.manifest.faster
    seg = spec.segment_frames
    video = random_video(7 * seg + 3, seed=2)
    stream = sdk.StreamClassifier(model, window=999)  # ignored: FASTER segments come from the manifest
    assert stream.window == seg
    preds = [p for f in video if (p := stream.push(f)) is not None]
    assert [p.role for p in preds] == [spec.role(i) for i in range(7)]
    assert [p.role for p in preds][:4] == ["expensive", "cheap", "cheap", "expensive"]
    offline = sdk.VideoClassifier(model).classify(video)
    np.testing.assert_array_equal(preds[-1].logits, offline.logits)
    # by hand: per segment the role's sampler and preprocessing, its clip program, the aggregator from zero state
    state = model.zero_state("aggregator")
    for i in range(7):
        role = spec.role(i)
        pre = model.input_spec(role).preprocess
        raw = dataclasses.replace(pre, scale=1.0, mean=(0.0,) * 3, std=(1.0,) * 3)
        idx = i * seg + model.sampler(role).indices(seg)
        features = model.run(role, [raw(video[idx])])[1]
        logits, *state = model.run("aggregator", [features, *state])
        np.testing.assert_allclose(preds[i].logits, logits.reshape(-1), atol=1e-5)
    # a video shorter than one segment is one segment of all its frames
    short = sdk.VideoClassifier(model).classify(video[:5])
    assert short.role == "expensive" and short.window == 0


def test_reset_restarts_windows_state_and_schedule(bundles) -> None:
    model = sdk.load(bundles["faster"], backend="onnx")
    video = random_video(40, seed=3)
    fresh = [p.logits for p in sdk.StreamClassifier(model).run(video)]
    stream = sdk.StreamClassifier(model)
    for f in random_video(13, seed=9):  # one segment and a half of something else
        stream.push(f)
    stream.reset()
    assert stream.role == "expensive"
    again = [p.logits for p in stream.run(video)]
    assert len(again) == len(fresh) == 5
    for a, b in zip(again, fresh):
        np.testing.assert_array_equal(a, b)


def test_dropped_frames_are_never_decoded(bundles) -> None:
    model = sdk.load(bundles["clip"], backend="tflite")
    video = random_video(64, seed=4)
    stream = sdk.StreamClassifier(model)
    assert stream.window == DEFAULT_WINDOW
    calls = []
    kept_expected = []
    preds = []
    for i, f in enumerate(video):
        kept_expected.append(stream.wants_next())
        p = stream.push(lambda i=i, f=f: calls.append(i) or f)
        if p is not None:
            preds.append(p)
    assert calls == [i for i, k in enumerate(kept_expected) if k]
    assert len(calls) == 2 * model.sampler().frames  # 3 of every 32 frames
    assert stream.stats.frames_dropped == 64 - len(calls) and stream.stats.frames_kept == len(calls)
    eager = [p.logits for p in sdk.StreamClassifier(model).run(video)]
    for a, b in zip(eager, [p.logits for p in preds]):
        np.testing.assert_array_equal(a, b)


def test_bad_frame_is_an_error_event_and_the_stream_goes_on(bundles) -> None:
    model = sdk.load(bundles["stream"], backend="onnx")
    video = random_video(24, seed=5)
    reference = [p.logits for p in sdk.StreamClassifier(model, window=12).run(video)]
    stream = sdk.StreamClassifier(model, window=12)
    out, events = [], []
    for i, f in enumerate(video):
        if i == 2:  # a kept position (uniform_segments 3 of 12 keeps 2, 6, 10)
            nan = f.astype(np.float32)
            nan[0, 0, 0] = np.nan
            for bad in (nan, f[:, :, :2], f.astype(bool), "frame"):
                events.append(stream.push(bad))
        p = stream.push(f)
        if p is not None:
            out.append(p.logits)
    assert all(e is not None and not e.ok and isinstance(e.error, FrameError) and e.labels == () for e in events)
    assert "NaN" in str(events[0].error) and stream.stats.frame_errors == 4
    assert len(out) == 2
    for a, b in zip(out, reference):
        np.testing.assert_array_equal(a, b)


def test_timestamps_must_increase(bundles) -> None:
    stream = sdk.StreamClassifier(sdk.load(bundles["clip"], backend="onnx"), window=4)
    frames = random_video(4, seed=6)
    assert stream.push(frames[0], 0.0) is None
    event = stream.push(frames[1], 0.0)
    assert event is not None and not event.ok and "increase" in str(event.error)
    event = stream.push(frames[1], float("nan"))
    assert event is not None and not event.ok
    stream.push(frames[1], 0.1)
    stream.push(frames[2], 0.2)
    pred = stream.push(frames[3], 0.3)
    assert pred.ok and pred.timestamp == pytest.approx(0.3) and pred.frame_index == 3


def test_frames_as_floats_and_typed_errors() -> None:
    f = random_video(1)[0]
    np.testing.assert_array_equal(as_frame(f.astype(np.float64)), f)
    for bad, match in ((f[..., 0], "shape"), (f.astype(np.float32) * 2, r"\[0, 255\]"),
                       (np.full((4, 4, 3), np.inf, np.float32), "NaN or infinite"),
                       (np.zeros((0, 4, 3), np.uint8), "shape"), (f.astype(np.complex64), "dtype")):
        with pytest.raises(FrameError, match=match):
            as_frame(bad)


def test_smoothing_ema_and_hysteresis(bundles) -> None:
    model = sdk.load(bundles["clip"], backend="onnx")
    video = random_video(8 * 6, seed=7)
    raw = list(sdk.StreamClassifier(model, window=6).run(video))
    smooth = list(sdk.StreamClassifier(model, window=6, smoothing=Smoothing(ema=0.6)).run(video))
    expected = raw[0].probabilities
    for r, s in zip(raw, smooth):
        if s is not smooth[0]:
            expected = 0.6 * expected + 0.4 * r.probabilities
        np.testing.assert_allclose(s.probabilities, expected, atol=1e-6)
        np.testing.assert_array_equal(s.logits, r.logits)  # logits stay raw
    sticky = list(sdk.StreamClassifier(model, window=6, smoothing=Smoothing(hysteresis=0.99)).run(video))
    assert {p.label for p in sticky} == {raw[0].label}  # nothing beats the first label by 0.99
    with pytest.raises(ConfigError, match="ema"):
        Smoothing(ema=1.0)


def test_one_instance_per_thread(bundles) -> None:
    """Several threads, each with its own model and classifier, give the single-threaded results; a classifier
    pushed from a second thread refuses."""
    videos = [random_video(36, seed=10 + i) for i in range(3)]
    expected = []
    for v in videos:
        expected.append([p.logits for p in sdk.StreamClassifier(sdk.load(bundles["stream"], backend="onnx"),
                                                                 window=12).run(v)])
    results: dict[int, list] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            clf = sdk.StreamClassifier(sdk.load(bundles["stream"], backend="onnx", threads=1), window=12)
            results[i] = [p.logits for _ in range(2) for p in (clf.reset() or clf.run(videos[i]))]
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i in range(3):
        assert len(results[i]) == 2 * len(expected[i]) == 6
        for a, b in zip(results[i], expected[i] * 2):
            np.testing.assert_array_equal(a, b)
    clf = sdk.StreamClassifier(sdk.load(bundles["stream"], backend="onnx"))
    clf.push(videos[0][0])
    caught: list[BaseException] = []
    t = threading.Thread(target=lambda: caught.append(pytest.raises(ConfigError, clf.push, videos[0][1])))
    t.start()
    t.join()
    assert caught and "one thread" in str(caught[0].value)


def test_latency_stats(bundles) -> None:
    model = sdk.load(bundles["faster"], backend="onnx")
    stream = sdk.StreamClassifier(model)
    preds = list(stream.run(random_video(80, seed=8)))
    st = stream.stats
    assert st.frames_seen == 80 and st.frames_kept + st.frames_dropped == 80 and st.predictions == len(preds) == 10
    for stage in ("sample", "preprocess", "model", "aggregate"):
        s = st.summary(stage)
        assert s.count > 0 and 0 <= s.p50_ms <= s.p95_ms
    assert st.summary("model").count == 10 and st.summary("sample").count == 80
    assert 0 < st.outside_model_share() < 1
    assert all(set(p.latency_ms) == set(sdk.stats.STAGES) for p in preds)
    table = st.table()
    assert "preprocess" in table and "80 seen" in table and "dropped before decoding" in table


# ------------------------------------------------------------------------------------------------ files and CLI
@pytest.fixture(scope="module")
def video_file(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", random_video(45, seed=11), fps=15)


def test_video_file_classify_and_stream(bundles, video_file: Path) -> None:
    model = sdk.load(bundles["clip"], backend="executorch")
    with sdk.VideoFile(video_file) as v:
        decoded = v.read_indices(range(v.num_frames))
    from_path = sdk.VideoClassifier(model).classify(video_file)
    np.testing.assert_array_equal(from_path.logits, sdk.VideoClassifier(model).classify(decoded).logits)
    with sdk.VideoFile(video_file) as v:
        clf = sdk.VideoClassifier(model)
        clf.classify(v)
        assert v.frames_decoded <= model.sampler().indices(45).max() + 1
        assert clf.stats.summary("decode").count == 3
    streamed = list(sdk.StreamClassifier(model, window=15).run(video_file))
    pushed = list(sdk.StreamClassifier(model, window=15).run(decoded))
    assert len(streamed) == 3 and [p.timestamp for p in streamed] == pytest.approx([14 / 15, 29 / 15, 44 / 15])
    for a, b in zip(streamed, pushed):
        np.testing.assert_array_equal(a.logits, b.logits)
    twice = sdk.StreamClassifier(model, window=15)  # a second file continues the timeline: no timestamp errors
    again = [p for _ in range(2) for p in twice.run(video_file)]
    assert all(p.ok for p in again) and len(again) == 6 and again[3].timestamp == pytest.approx(44 / 15 + 15 / 15)
    with sdk.StreamCapture(str(video_file)) as cap:  # the OpenCV path (cameras, RTSP) drops before retrieve too
        via_cv = list(sdk.StreamClassifier(model, window=15).run(cap))
    assert [p.label for p in via_cv] == [p.label for p in streamed]


def test_cli_classify_stream_inspect_bench(bundles, video_file: Path, capsys) -> None:
    assert sdk_main(["classify", str(video_file), "--bundle", str(bundles["clip"]), "--verify"]) == 0
    out, err = capsys.readouterr()
    assert "golden vectors verified" in err and "preprocess" in out and any(lab in out for lab in LABELS)
    assert sdk_main(["stream", str(video_file), "--bundle", str(bundles["faster"]), "--ema", "0.5"]) == 0
    out, err = capsys.readouterr()
    assert "window: 8 frames (FASTER segment)" in err and "[expensive 0]" in out and "[cheap 1]" in out
    assert "45 seen" in out and "frames/s" in out
    assert sdk_main(["inspect", str(bundles["faster"])]) == 0
    out = capsys.readouterr().out
    assert "FASTER   schedule 1:2" in out and "[aggregator]" in out
    assert sdk_main(["bench", "--bundle", str(bundles["stream"]), "--seconds", "0.05", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    for backend in BACKENDS:
        assert f"tiny_stream {backend} fp32 stream" in out
    assert "1 (core 0)" in out and "1.00x" in out
    assert sdk_main(["classify", str(video_file), "--bundle", str(video_file.parent / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_bench_ratios_to_a_baseline_bundle_and_plot(bundles, tmp_path: Path, capsys) -> None:
    """``--baseline NAME`` puts every program beside the baseline bundle's program of the same runtime and precision
    (what "the step costs 1.1x a plain frame" is read from); ``--png`` draws the table."""
    js, png = tmp_path / "bench.json", tmp_path / "bench.png"
    args = ["bench", "--bundle", str(bundles["clip"]), "--bundle", str(bundles["stream"]), "--seconds", "0.05",
            "--warmup", "1", "--one-thread-only", "--baseline", "tiny_clip", "--json", str(js), "--png", str(png)]
    assert sdk_main(args) == 0
    assert "vs tiny_clip" in capsys.readouterr().out
    rows = json.loads(js.read_text())["rows"]
    base = {r["backend"]: r["p50_ms"] for r in rows if r["bundle"] == "tiny_clip"}
    steps = [r for r in rows if r["bundle"] == "tiny_stream"]
    assert set(base) == {r["backend"] for r in steps} == set(BACKENDS)
    for r in steps:
        assert r["vs_baseline"] == pytest.approx(r["p50_ms"] / base[r["backend"]], rel=1e-9)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert sdk_main(args[:-6] + ["--baseline", "nope"]) == 2
    assert "not the name of a benched bundle" in capsys.readouterr().err


def test_runtime_without_torch(bundles, video_file: Path) -> None:
    """The torch-free runtimes classify with torch (and training) blocked."""
    code = (
        "import sys\n"
        "for name in ('torch', 'training', 'torchvision'): sys.modules[name] = None\n"
        "import sdk, sdk.bench, sdk.describe, sdk.__main__\n"
        f"for be in ('onnx', 'tflite'):\n"
        f"    m = sdk.load({str(bundles['faster'])!r}, backend=be, verify=True)\n"
        f"    print(sdk.VideoClassifier(m).classify({str(video_file)!r}).label)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    labels = result.stdout.split()
    assert len(labels) == 2 and labels[0] == labels[1] and labels[0] in LABELS


def test_torch_reference_runner_behind_a_bundle(bundles) -> None:
    """The optional torch reference backend: the bundle's torch program (rebuilt from the same seed) behind the
    bundle's manifest classifies like the exported programs."""
    from sdk.backends.torch_reference import TorchRunner
    from sdk.bundle import Bundle
    from sdk.preprocess import Preprocess
    from tests.runtime_helpers import ClipNet

    net = ClipNet(3, Preprocess(size=24, resize=28)).eval()
    reference = sdk.runtime.Model.from_runners(Bundle(bundles["clip"]), {"model": TorchRunner(net, threads=1)},
                                               like_backend="onnx")
    assert reference.backend == "torch" and reference.kind == "clip"
    reference.verify()  # within the torch-reference tolerance of the golden vectors
    video = random_video(20, seed=12)
    got = sdk.VideoClassifier(reference).classify(video)
    want = sdk.VideoClassifier(sdk.load(bundles["clip"], backend="onnx")).classify(video)
    np.testing.assert_allclose(got.logits, want.logits, atol=1e-4)
