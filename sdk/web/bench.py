"""The browser runtime measured against ONNX Runtime in Python, side by side in one run, on this machine:
``python -m sdk.web.bench BUNDLE [--rounds 3] [--calls 50] [--video FILE --screenshot PNG]``.

For each round, in turn: the bundle's program in Python (``sdk.load(backend="onnx", threads=1)``) and in headless
Chromium (``edgevideo.js`` on ONNX Runtime Web, WASM, 1 thread, then the page's default threads), ``calls`` calls
each on the same random inputs after a warm-up; per frame = a call's time / frames in its input. The JS and Python
preprocessing of a 640x480 frame are timed the same way. Cold start: a fresh page (page load, ONNX Runtime Web and
the bundle fetched and hashed, sessions created) until the model is ready, and until the first prediction of
``--video`` in the page's file input; in Python, a fresh process from start to ``sdk.load`` and to the first
prediction of the same file. Medians over the rounds are printed as a table (and ``--json``).

Needs ``scripts/web_setup.sh`` (Debian's chromium and chromium-driver, Selenium, ONNX Runtime Web). ``launch`` is
the one way the tests and this tool start the browser.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from sdk.errors import BackendUnavailableError
from sdk.web.serve import WebServer

__all__ = ["launch", "wait_for", "page_call"]

SCRIPT_TIMEOUT = 120  # seconds for one script in the page


def launch(*flags: str, width: int = 1100, height: int = 800):
    """Headless Debian chromium through its chromedriver (Selenium; no browser download), with ``flags`` added."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        raise BackendUnavailableError("Selenium is missing: run scripts/web_setup.sh") from e
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        raise BackendUnavailableError("chromium / chromedriver are missing: run scripts/web_setup.sh")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--autoplay-policy=no-user-gesture-required", f"--window-size={width},{height}", *flags):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver), options=options)
    browser.set_script_timeout(SCRIPT_TIMEOUT)
    return browser


def wait_for(browser, script: str, timeout: float = SCRIPT_TIMEOUT) -> Any:
    """The first truthy value of ``script`` (polled), or AssertionError after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = browser.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for: {script}")


def page_call(browser, body: str, *args: Any) -> Any:
    """Run ``body`` (async JS; ``ev``: the edgevideo.js module, ``page``: the page's ``window.edgevideo``, ``args``:
    the arguments) in the open page and return its value; a JS exception raises AssertionError with its stack."""
    script = ("const done = arguments[arguments.length - 1], args = Array.from(arguments).slice(0, -1);"
              "import('/edgevideo.js').then(async (ev) => { const page = window.edgevideo;" + body + "})"
              ".then(done, (e) => done({failed: String(e && e.stack || e)}));")
    out = browser.execute_async_script(script, *args)
    if isinstance(out, dict) and "failed" in out:
        raise AssertionError(out["failed"])
    return out


def open_page(browser, url: str) -> float:
    """Load the page and wait until its model is ready; returns ms from navigation start to ready."""
    browser.get(url)
    wait_for(browser, "return window.edgevideo && (window.edgevideo.ready || window.edgevideo.errors.length)")
    errors = browser.execute_script("return window.edgevideo.errors")
    if errors:
        raise AssertionError(f"the page failed: {errors}")
    return browser.execute_script("return window.edgevideo.readyAt")


JS_TIME_PROGRAM = """
const m = page.model, role = m.kind === "faster" ? m.manifest.faster.pattern[0] : "model", prog = m.programs[role];
const size = (shape) => shape.reduce((a, b) => a * b, 1);
const inputs = [...prog.inputs, ...prog.state].map((t, i) => {
  const a = new Float32Array(size(t.shape)); if (i === 0) for (let j = 0; j < a.length; j++) a[j] = (j * 37) % 255;
  return a; });
for (let i = 0; i < 5; i++) await m.run(role, inputs);
const ms = [];
for (let i = 0; i < args[0]; i++) { const t = performance.now(); await m.run(role, inputs); ms.push(performance.now() - t); }
const frame = {data: new Uint8Array(640 * 480 * 3).map((_, j) => (j * 13) % 256), width: 640, height: 480};
const spec = m.inputSpec(role), pre = new ev.Preprocess(spec.preprocess, spec.in_program), pms = [];
for (let i = 0; i < 3; i++) pre.tensor(frame);
for (let i = 0; i < args[0]; i++) { const t = performance.now(); pre.tensor(frame); pms.push(performance.now() - t); }
return {ms, preprocess: pms, frames: prog.inputs[0].shape[0], threads: m.threads, program: prog.id};
"""


def _python_program_ms(bundle: Path, calls: int) -> dict[str, Any]:
    from sdk.classifier import _Prep
    from sdk.runtime import load

    with load(bundle, backend="onnx", threads=1) as model:
        role = model.manifest.faster.pattern[0] if model.manifest.faster else "model"
        prog = model.programs[role]
        inputs = [np.zeros(t.shape, np.float32) for t in (*prog.inputs, *prog.state)]
        inputs[0] = (np.arange(inputs[0].size) * 37 % 255).astype(np.float32).reshape(inputs[0].shape)
        for _ in range(5):
            model.run(role, inputs)
        ms = []
        for _ in range(calls):
            t = time.perf_counter()
            model.run(role, inputs)
            ms.append((time.perf_counter() - t) * 1e3)
        prep = _Prep(model.input_spec(role))
        frame = (np.arange(640 * 480 * 3) * 13 % 256).astype(np.uint8).reshape(480, 640, 3)
        pms = []
        for _ in range(calls):
            t = time.perf_counter()
            prep(frame)
            pms.append((time.perf_counter() - t) * 1e3)
        return {"ms": ms, "preprocess": pms, "frames": prog.inputs[0].shape[0], "program": prog.id}


COLD_PYTHON = """
import sys, time
t0 = time.perf_counter()
from sdk.runtime import load
from sdk.classifier import StreamClassifier
model = load(sys.argv[1], backend="onnx")
t1 = time.perf_counter()
first = None
if len(sys.argv) > 2:
    c = StreamClassifier(model)
    first = next(p for p in c.run(sys.argv[2]) if p.ok)
print((t1 - t0) * 1e3, (time.perf_counter() - t0) * 1e3 if first else -1)
"""


def _python_cold(bundle: Path, video: Path | None) -> tuple[float, float, float]:
    """ms from a fresh interpreter's first line to the model loaded and to the first prediction (-1 without a
    video), and the whole process as seen from outside (interpreter start-up included)."""
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", COLD_PYTHON, str(bundle), *([str(video)] if video else [])],
                         capture_output=True, text=True, check=True)
    total = (time.perf_counter() - t) * 1e3
    load_ms, first_ms = map(float, out.stdout.split())
    return load_ms, first_ms, total


def _page_first_prediction(browser, video: Path) -> float:
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "file").send_keys(str(video))
    return wait_for(browser, "return window.edgevideo.coldStart.firstPredictionMs")


def _per_frame(result: dict[str, Any]) -> float:
    return statistics.median(result["ms"]) / result["frames"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sdk.web.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path, help="a bundle with .onnx programs")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--calls", type=int, default=50, help="timed calls per measurement")
    p.add_argument("--video", type=Path, default=None, help="a video file for the first-prediction timings")
    p.add_argument("--screenshot", type=Path, default=None, help="PNG of the page after --video played through")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.calls < 1:
        p.error("--rounds and --calls must be at least 1")
    rows: dict[str, list[float]] = {}
    add = lambda key, value: rows.setdefault(key, []).append(value)  # noqa: E731
    browser = launch()
    try:
        with WebServer(args.bundle, port=0).start() as server:
            for _ in range(args.rounds):
                py = _python_program_ms(args.bundle, args.calls)
                add("python onnxruntime 1 thread: ms/frame", _per_frame(py))
                add("python preprocess 640x480: ms/frame", statistics.median(py["preprocess"]))
                for query, name in (("?threads=1", "1 thread"), ("", "default threads")):
                    add(f"page load to model ready ({name}): ms", open_page(browser, server.url + query))
                    web = page_call(browser, JS_TIME_PROGRAM, args.calls)
                    add(f"browser wasm {name} ({web['threads']}): ms/frame", _per_frame(web))
                    if name == "1 thread":
                        add("browser preprocess 640x480: ms/frame", statistics.median(web["preprocess"]))
                        if args.video is not None:
                            add("browser file to first prediction: ms", _page_first_prediction(browser, args.video))
                load_ms, first_ms, total = _python_cold(args.bundle, args.video)
                add("python process: import + sdk.load: ms", load_ms)
                if args.video is not None:
                    add("python process: to first prediction of the file: ms", first_ms)
                add("python process: whole run incl. interpreter: ms", total)
            if args.screenshot is not None and args.video is not None:
                open_page(browser, server.url)
                _page_first_prediction(browser, args.video)
                wait_for(browser, "return window.edgevideo.source && window.edgevideo.source.done")
                args.screenshot.parent.mkdir(parents=True, exist_ok=True)
                browser.save_screenshot(str(args.screenshot))
    finally:
        browser.quit()
    medians = {k: statistics.median(v) for k, v in rows.items()}
    ratio = medians["browser wasm 1 thread (1): ms/frame"] / medians["python onnxruntime 1 thread: ms/frame"]
    medians["ratio browser / python, 1 thread"] = ratio
    if args.json:
        print(json.dumps({"program": py["program"], "rounds": args.rounds, "medians": medians, "all": rows}, indent=1))
    else:
        print(f"{py['program']} ({py['frames']} frame(s) per call), medians of {args.rounds} rounds x {args.calls} calls")
        for k, v in medians.items():
            print(f"  {k:<58} {v:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
