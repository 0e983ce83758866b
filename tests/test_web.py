"""The browser runtime (sdk/web) in a real headless Chromium: the same numbers as the Python runtime.

``scripts/web_setup.sh`` (run by ``scripts/system_setup.sh``) installs Debian's chromium and chromium-driver, Selenium
and ONNX Runtime Web (``npm ci``); the tests only locate them: a missing one fails these tests, never skips them.
Selenium drives the system chromedriver (no browser download). The browser starts with a fake camera fed from a ``.y4m`` of benchmark
clips (tests/.. training.data.synthetic), so the webcam path runs too.

What is compared, on the tiny ONNX bundles of tests/runtime_helpers.py (a causal stream bundle with explicit state and
a clip bundle): the predictions of every window of 300 frames pushed into ``edgevideo.js``'s StreamClassifier against
``sdk.StreamClassifier`` on the ONNX Runtime backend (top-1 agreement >= 0.99, max |logit diff| <= 1e-3); the JS
preprocessing (resize + centre crop) within one uint8 step of ``sdk.Preprocess`` on golden frames of several sizes
and both interpolations, and the float input equal where the crops are; the page's file input against
``python -m sdk stream``'s numbers on the same H.264 file; the fake camera giving predictions on the page.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from host_setup import located
from runtime_helpers import LABELS, make_bundle, random_video, write_video

import sdk
from sdk.bundle import Bundle
from sdk.classifier import _Prep
from sdk.errors import BackendUnavailableError
from sdk.manifest import InputSpec
from sdk.preprocess import Preprocess
from sdk.web import bench
from sdk.web.bench import launch, page_call, wait_for
from sdk.web.serve import WebServer

ROOT = Path(__file__).resolve().parents[1]
WINDOW = 5  # frames per window: the tiny bundles sample 3 of them


# ------------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def web_setup() -> None:
    """The set-up script with installs off (tests/host_setup.py): a missing browser or npm package fails the test,
    naming the set-up command."""
    located("web_setup.sh", env={"VENV": str(Path(sys.executable).parents[1])})


def benchmark_frames(n: int, width: int = 64, height: int = 48) -> np.ndarray:
    """``n`` frames of consecutive benchmark clips (the time-reversal benchmark's renderer), uint8 RGB."""
    import training.data.synthetic as syn

    cfg = dataclasses.replace(syn.PRESETS["tiny"], width=width, height=height, frames=30)
    clips = [syn.render_clip(i % len(syn.CLASSES), 7 + i, cfg)[0] for i in range(-(-n // cfg.frames))]
    return np.concatenate(clips)[:n]


def write_y4m(path: Path, frames: np.ndarray, fps: int = 25) -> Path:
    """A YUV4MPEG2 (4:2:0, BT.601 full range) file of RGB frames: what Chromium's fake camera plays in a loop."""
    h, w = frames.shape[1:3]
    rgb = frames.astype(np.float32)
    y = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    u = (rgb[..., 2] - y) * 0.564 + 128
    v = (rgb[..., 0] - y) * 0.713 + 128
    half = lambda p: p.reshape(len(p), h // 2, 2, w // 2, 2).mean((2, 4))  # noqa: E731
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(len(frames)):
            f.write(b"FRAME\n")
            for plane in (y[i], half(u)[i], half(v)[i]):
                f.write(np.clip(np.rint(plane), 0, 255).astype(np.uint8).tobytes())
    return path


@pytest.fixture(scope="module")
def browser(web_setup, tmp_path_factory):
    """Headless Chromium (Debian's) through its chromedriver, with a fake camera playing benchmark clips."""
    camera = write_y4m(tmp_path_factory.mktemp("camera") / "benchmark.y4m", benchmark_frames(60))
    driver = launch("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                    f"--use-file-for-fake-video-capture={camera}")
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("web-bundles")
    return {kind: make_bundle(kind, root, formats=("onnx",)) for kind in ("stream", "clip", "faster")}


def open_page(driver, bundle: Path, query: str = "") -> WebServer:
    """Serve ``bundle`` and open the page until its model is ready; returns the server (close it after)."""
    server = WebServer(bundle, port=0).start()
    bench.open_page(driver, server.url + query)
    return server


def b64(frames: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(frames, np.uint8).tobytes()).decode()


JS_FRAMES = "const bytes = Uint8Array.from(atob(args[0]), (c) => c.charCodeAt(0)), [n, h, w] = args[1];" \
            "const frame = (i) => ({data: bytes.subarray(i * h * w * 3, (i + 1) * h * w * 3), width: w, height: h});"


def python_windows(bundle: Path, frames) -> np.ndarray:
    """Logits of every window of ``frames`` (an array or a path) from ``sdk.StreamClassifier`` on ONNX Runtime."""
    with sdk.load(bundle, backend="onnx") as model:
        classifier = sdk.StreamClassifier(model, window=WINDOW)
        if isinstance(frames, Path):
            out = [p.logits for p in classifier.run(frames)]
        else:
            out = [p.logits for f in frames if (p := classifier.push(f)) is not None]
    return np.stack(out)


def assert_same(python: np.ndarray, web: np.ndarray, tolerance: float = 1e-3, agreement: float = 0.99) -> None:
    assert python.shape == web.shape, (python.shape, web.shape)
    top1 = float(np.mean(python.argmax(1) == web.argmax(1)))
    diff = float(np.abs(python - web).max())
    print(f"{len(python)} windows: top-1 agreement {top1:.3f}, max |logit diff| {diff:.2e}")
    assert top1 >= agreement and diff <= tolerance, f"top-1 agreement {top1:.3f}, max |logit diff| {diff:.2e}"


# ------------------------------------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("kind", ["stream", "clip", "faster"])
def test_windows_equal_python(browser, bundles, kind):
    """300 frames pushed into the browser's StreamClassifier give every window's logits of sdk.StreamClassifier
    (a FASTER bundle: every segment's, its clip models taking turns and the aggregator's state carried on)."""
    frames = random_video(300, 40, 48, seed=3)
    server = open_page(browser, bundles[kind])
    try:
        web = page_call(browser, JS_FRAMES + """
            const c = new ev.StreamClassifier(page.model, {window: args[2]}), out = [];
            for (let i = 0; i < n; i++) { const p = await c.push(frame(i)); if (p) out.push(p); }
            return {kind: page.model.kind, precision: page.model.precision, logits: out.map((p) => p.logits),
                    windows: out.map((p) => p.window), errors: out.filter((p) => p.error).length};""",
                        b64(frames), list(frames.shape[:3]), WINDOW)
    finally:
        server.close()
    assert (web["kind"], web["precision"], web["errors"]) == (kind, "fp32", 0)
    python = python_windows(bundles[kind], frames)
    assert web["windows"] == list(range(len(python))) and len(python) == 300 // (8 if kind == "faster" else WINDOW)
    assert_same(python, np.asarray(web["logits"], np.float32))


def golden_frames() -> list[np.ndarray]:
    """Frames that take every resize path: down by non-integer factors, exactly 2x, up, unchanged, portrait."""
    rng = np.random.default_rng(5)
    scene = benchmark_frames(1, 96, 72)[0]
    smooth = np.clip(np.add.outer(np.arange(61), np.arange(97))[..., None] * [2, 1, 3] % 256, 0, 255)
    return [scene, smooth.astype(np.uint8), random_video(1, 56, 72, seed=1)[0], random_video(1, 20, 30, seed=2)[0],
            rng.integers(0, 256, (28, 33, 3), dtype=np.uint8), rng.integers(0, 256, (90, 41, 3), dtype=np.uint8),
            rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)]


@pytest.mark.parametrize("interpolation", ["bilinear", "area"])
def test_preprocessing_within_one_step(browser, bundles, interpolation):
    """The JS resize + crop is within one uint8 step of sdk.Preprocess, for RGB and RGBA (ImageData) frames, and
    its float input is the Python runtime's (normalisation in the runtime) wherever the crops are equal."""
    server = open_page(browser, bundles["clip"])
    try:
        for frame in golden_frames():
            for pre in (Preprocess(size=24, resize=28, interpolation=interpolation),
                        Preprocess(size=17, resize=None, interpolation=interpolation, layout="THWC")):
                spec = InputSpec(pre, in_program=())
                web = page_call(browser, JS_FRAMES + """
                    const rgb = frame(0), rgba = new Uint8ClampedArray(w * h * 4);
                    for (let i = 0; i < w * h; i++) { rgba.set(rgb.data.subarray(3 * i, 3 * i + 3), 4 * i); }
                    const p = new ev.Preprocess(args[2].preprocess, args[2].in_program);
                    const four = {data: rgba, width: w, height: h};
                    return {rgb: Array.from(p.crop(rgb)), rgba: Array.from(p.crop(four)),
                            tensor: Array.from(p.tensor(four))};""",
                                b64(frame), [1, *frame.shape[:2]], spec.to_dict())
                want = pre._centre_crop(pre.resize_short(frame)).astype(np.int16).reshape(-1)
                got = np.asarray(web["rgb"], np.int16)
                assert np.array_equal(got, np.asarray(web["rgba"], np.int16))
                assert np.abs(got - want).max() <= 1, f"{frame.shape} {pre}: max diff {np.abs(got - want).max()}"
                assert np.mean(got == want) >= 0.98, f"{frame.shape} {pre}: only {np.mean(got == want):.3f} equal"
                python_input = _Prep(spec)(frame).reshape(-1)
                same = (got == want) if pre.layout == "THWC" else \
                    (got == want).reshape(pre.size, pre.size, 3).transpose(2, 0, 1).reshape(-1)
                tensor = np.asarray(web["tensor"], np.float32)
                assert np.array_equal(tensor[same], python_input[same])
    finally:
        server.close()


# ---------------------------------------------------------------------------------------------------- the page
def test_file_input_equals_python_on_the_same_file(browser, bundles, tmp_path):
    """A video file chosen in the page: every frame is stepped through and each window's prediction is shown; the
    windows are python -m sdk stream's on the same H.264 file (the browser's own decoder and colour conversion: a
    looser bound on the logits than for identical frames)."""
    from selenium.webdriver.common.by import By

    path = write_video(tmp_path / "benchmark.mp4", benchmark_frames(60), fps=25)
    server = open_page(browser, bundles["stream"], f"?window={WINDOW}")
    try:
        browser.find_element(By.ID, "file").send_keys(str(path))
        wait_for(browser, "return window.edgevideo.source && window.edgevideo.source.done")
        page = browser.execute_script("return {source: window.edgevideo.source, errors: window.edgevideo.errors,"
                                      "logits: window.edgevideo.predictions.map((p) => p.logits),"
                                      "label: document.getElementById('label').textContent,"
                                      "latency: document.getElementById('latency').textContent,"
                                      "isolated: crossOriginIsolated, threads: window.edgevideo.model.threads,"
                                      "fetched: performance.getEntriesByType('resource').map((e) => e.name)}")
    finally:
        server.close()
    assert not page["errors"]
    # nothing from the internet: every resource the page loaded came from the local server (or the chosen file)
    assert page["fetched"] and all(u.startswith((server.url, "blob:")) for u in page["fetched"]), page["fetched"]
    assert page["isolated"] and page["threads"] >= 1  # COOP/COEP: WASM threads allowed
    assert page["source"]["frames"] == 60 and page["source"]["window"] == WINDOW
    assert page["label"] in LABELS and "preprocess" in page["latency"] and "model" in page["latency"]
    assert_same(python_windows(bundles["stream"], path), np.asarray(page["logits"], np.float32), tolerance=0.1,
                agreement=0.9)


def test_fake_camera_gives_live_predictions(browser, bundles):
    """The webcam button: Chromium's fake camera plays benchmark clips from a .y4m; predictions appear live."""
    from selenium.webdriver.common.by import By

    server = open_page(browser, bundles["clip"], f"?window={WINDOW}")
    try:
        browser.find_element(By.ID, "camera").click()
        wait_for(browser, "return window.edgevideo.predictions.length >= 4 || window.edgevideo.errors.length")
        page = browser.execute_script("const e = window.edgevideo; document.getElementById('stop').click();"
                                      "return {errors: e.errors, source: e.source, labels: e.predictions.map("
                                      "(p) => p.labels[0]), first: e.coldStart.firstPredictionMs,"
                                      "latency: e.predictions[0].latencyMs}")
    finally:
        server.close()
    assert not page["errors"]
    assert page["source"]["kind"] == "camera" and set(page["labels"]) <= set(LABELS)
    assert page["first"] > 0 and page["latency"]["model"] > 0


# ------------------------------------------------------------------------------------------------ python -m sdk web
def test_web_command_serves_page_runtime_and_bundle(web_setup, bundles):
    """``python -m sdk web BUNDLE --port 0`` prints the address and serves the page, ONNX Runtime Web and the
    bundle with the cross-origin isolation headers, and nothing else."""
    proc = subprocess.Popen([sys.executable, "-m", "sdk", "web", str(bundles["clip"]), "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "serving tiny_clip at http://127.0.0.1:" in line, line + proc.stderr.read()
        url = line.split(" at ")[1].split()[0]
        manifest = json.loads(Bundle(bundles["clip"]).root.joinpath("manifest.json").read_text())
        for path in ("", "edgevideo.js", "ort/ort.wasm.min.mjs", "bundle/manifest.json",
                     "bundle/" + manifest["programs"][0]["file"]):
            with urllib.request.urlopen(url + path) as r:
                assert r.headers["Cross-Origin-Opener-Policy"] == "same-origin"
                assert r.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        for path in ("serve.py", "node_modules/onnxruntime-web/package.json", "bundle/golden.npz", "bundle/../serve.py",
                     "ort/../../package.json"):
            with pytest.raises(urllib.error.HTTPError, match="404"):
                urllib.request.urlopen(url + path)
    finally:
        proc.terminate()
        proc.wait(10)


def test_web_command_errors(web_setup, bundles, tmp_path, monkeypatch, capsys):
    """A missing bundle, a damaged program and a missing ONNX Runtime Web install: one error line, exit 2."""
    import sdk.web.serve as serve

    damaged = shutil.copytree(bundles["clip"], tmp_path / "damaged.vbundle")
    program = next((damaged / "programs").glob("*.onnx"))
    program.write_bytes(program.read_bytes()[:-1] + b"\0")
    from sdk.__main__ import main

    for bundle, problem in ((tmp_path / "none.vbundle", "does not exist"), (damaged, "does not match its sha256")):
        assert main(["web", str(bundle), "--port", "0"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and problem in err and err.count("\n") == 1, err
    monkeypatch.setattr(serve, "ORT_DIST", tmp_path / "nothing")
    with pytest.raises(BackendUnavailableError, match="scripts/web_setup.sh"):
        serve.WebServer(bundles["clip"], port=0)


def test_an_adaptive_faster_bundle_is_refused_not_run_as_its_pattern(browser, bundles, tmp_path):
    """The browser runtime does not run the adaptive schedule yet (manifest.faster.gate, schema 1.3): run as its
    pattern ('cheap' on every segment) it would answer as cheap-only, so the page must refuse the bundle."""
    gated = tmp_path / bundles["faster"].name
    shutil.copytree(bundles["faster"], gated)
    manifest = json.loads((gated / "manifest.json").read_text())
    manifest["faster"].update(schedule="adaptive", pattern=["cheap"],
                              gate={"kind": "confidence", "threshold": 0.5, "fire_rate": 0.25})
    for program in manifest["programs"]:
        if program["role"] == "cheap":  # what an adaptive bundle's cheap program returns: (logits, features, pooled)
            program["outputs"].append({**program["outputs"][1], "name": "pooled"})
    (gated / "manifest.json").write_text(json.dumps(manifest))
    server = WebServer(gated, port=0).start()
    try:
        with pytest.raises(AssertionError, match="faster.gate"):
            bench.open_page(browser, server.url)
    finally:
        server.close()
