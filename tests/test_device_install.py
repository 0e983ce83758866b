"""A device install without the training stack (issue 18, item 6): ``python -m sdk classify|stream --native`` runs
a bundle's ``.pte`` programs on the native core with torch absent, and ``scripts/device_install.sh`` gives a venv
that classifies with no torch in it.

* In this environment (torch blocked in the subprocess): ``classify --native`` equals ``sdk.VideoClassifier`` on the
  Python ExecuTorch runtime for the native tests' clip fp32 / int8, stream and FASTER bundles on an H.264 file
  (same top-1, logits within ``ATOL``; measured 0), and the logits compared move between videos. A FASTER video
  shorter than one segment, and options that do not apply to the core, are typed errors.
* In a fresh venv (``python -m venv``: it does not see this environment's site-packages) made by
  ``scripts/device_install.sh``: ``edgevideo[device]`` first (LiteRT and ONNX Runtime classify, ``--native`` says
  what is missing), then the same script with ``--native`` (executorch ``--no-deps``, the core built by
  ``python -m sdk.native build`` for that venv into a build cache of this test). ``import torch`` fails there;
  ``python -m sdk classify`` through the core, LiteRT and ONNX Runtime gives this environment's predictions.
  pip installs from the wheelhouse that ``scripts/system_setup.sh`` fills (``scripts/device_install.sh --wheels``),
  with no index: the test downloads nothing, and fails naming the set-up command when the wheelhouse is missing
  (:mod:`tests.host_setup`). About a minute here (62 s, the bundle export included), so not marked slow.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sdk
from sdk.__main__ import main as sdk_main
from sdk.classifier import StreamClassifier, VideoClassifier
from test_native_bundles import video
from tests.host_setup import located
from tests.runtime_helpers import make_bundle, random_video, write_video

ROOT = Path(__file__).resolve().parents[1]
# The core and the Python bindings run the same ExecuTorch kernels (tests/test_native.py's bound).
ATOL = 1e-5
FRAMES = 44  # FASTER: 5 segments of 8 and a tail of 4 that both classifiers drop
NO_TORCH = """
import sys

class NoTorch:  # refuses and records every attempt to import torch, even one that an except clause would swallow
    attempts = []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            self.attempts.append(name)
            raise ImportError(f"torch is blocked here: {name}")
        return None

sys.meta_path.insert(0, NoTorch())
from sdk.__main__ import main
status = main(sys.argv[1:])
assert not NoTorch.attempts, f"the --native path tried to import torch: {NoTorch.attempts}"
sys.exit(status)
"""


def _json_out(stdout: str) -> dict:
    """The ``--json`` document of ``classify``: all of stdout (the model and runtime lines are on stderr)."""
    return json.loads(stdout)


def _classify_without_torch(bundle: Path, video_path: Path, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, "classify", str(video_path), "--bundle", str(bundle),
                           "--native", "--json", *args], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on native" in proc.stderr
    return _json_out(proc.stdout)


def _larger(frames: np.ndarray) -> np.ndarray:
    """Frames at twice the size, so that every kept frame is resized (by the app side of the core, and by sdk)."""
    return np.ascontiguousarray(np.repeat(np.repeat(frames, 2, axis=1), 2, axis=2))


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("device-videos")
    return {"a": write_video(root / "a.mp4", _larger(video(FRAMES, seed=1))),
            "b": write_video(root / "b.mp4", _larger(video(FRAMES, seed=2)[::-1])),
            "short": write_video(root / "short.mp4", _larger(video(5, seed=3)))}


@pytest.mark.parametrize(("kind", "precision"), [("clip", "fp32"), ("clip", "int8"), ("stream", "fp32"),
                                                 ("faster", "fp32")])
def test_classify_native_without_torch_equals_python(kind, precision, native_bundles, videos):
    bundle = native_bundles[kind]
    python = {}
    with sdk.load(bundle, backend="executorch", precision=precision) as model:
        for name in ("a", "b"):
            python[name] = VideoClassifier(model).classify(videos[name])
        kept = len(set(model.sampler("model").indices(FRAMES).tolist()))
    moved = float(np.abs(python["a"].logits - python["b"].logits).max())
    assert moved > 1000 * ATOL, f"the logits hardly depend on the video ({moved:.2e}): the comparison proves little"
    native = _classify_without_torch(bundle, videos["a"], "--precision", precision)
    diff = float(np.abs(np.asarray(native["logits"], np.float32) - python["a"].logits).max())
    print(f"{kind} {precision}: native vs Python max |logit diff| {diff:.2e} (logits move {moved:.2e} between videos)")
    assert native["class_ids"][0] == python["a"].class_ids[0] and native["labels"] == list(python["a"].labels)
    assert diff <= ATOL
    stats = native["stats"]
    if kind == "faster":
        assert stats["frames_seen"] == FRAMES - FRAMES % 8 and stats["predictions"] == FRAMES // 8
    else:  # the whole video is one window: the sampler's indices(n) over all its frames, one prediction
        assert (stats["frames_seen"], stats["frames_kept"], stats["predictions"]) == (FRAMES, kept, 1)


def test_faster_video_shorter_than_a_segment_is_a_typed_error(native_bundles, videos, capsys):
    assert sdk_main(["classify", str(videos["short"]), "--bundle", str(native_bundles["faster"]), "--native"]) == 2
    assert "whole segments of 8 frames and this video has 5" in capsys.readouterr().err


def test_options_that_do_not_apply_to_the_core_are_refused(native_bundles, videos, capsys):
    common = ["classify", str(videos["a"]), "--bundle", str(native_bundles["clip"]), "--native"]
    assert sdk_main([*common, "--backend", "onnx"]) == 2
    assert "--backend onnx does not apply" in capsys.readouterr().err
    assert sdk_main([*common, "--threads", "2"]) == 2
    assert "taskset" in capsys.readouterr().err


def test_stream_native_prints_the_python_predictions(native_bundles, videos, capsys):
    lines = {}
    for native in (False, True):
        flags = ["--native"] if native else ["--backend", "executorch"]
        assert sdk_main(["stream", str(videos["a"]), "--bundle", str(native_bundles["stream"]), "--window", "8",
                         *flags]) == 0
        out = capsys.readouterr().out
        lines[native] = [line.split("  (ms:")[0] for line in out.splitlines() if "[model " in line]
        assert f"{FRAMES} frames in" in out
    assert len(lines[True]) == FRAMES // 8 and lines[True] == lines[False]


# ------------------------------------------------------------------------------------------------ fresh venv
def _source_copy(dest: Path) -> Path:
    """The checkout's files as git sees them (tracked + untracked, not ignored), so that pip's build never writes
    into the working tree."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _device_env(native_cache: Path) -> dict[str, str]:
    """This process's environment minus everything that points at this venv, with pip reading the set-up's
    wheelhouse and no index."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    here = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != here)
    env["EDGEVIDEO_NATIVE_CACHE"] = str(native_cache)
    wheels = located("device_install.sh", "--wheels", env={"PYTHON": sys.executable}).stdout.strip().splitlines()[-1]
    return {**env, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": wheels}


def _install(venv: Path, src: Path, env: dict[str, str], *flags: str) -> None:
    proc = subprocess.run([str(ROOT / "scripts" / "device_install.sh"), str(venv), *flags],
                          env={**env, "EDGEVIDEO_SRC": str(src), "PYTHON": sys.executable}, capture_output=True,
                          text=True, check=False)
    print(proc.stderr[-2000:])
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.strip().splitlines()[-1] == str(venv)


def _run(venv: Path, env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    # -P and a neutral cwd: sdk comes from the venv's site-packages, never from the checkout
    return subprocess.run([str(venv / "bin" / "python"), "-P", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, check=False)


def test_device_install_classifies_without_torch(tmp_path):
    bundle = make_bundle("clip", tmp_path / "bundle", formats=("pte", "tflite", "onnx"))
    clip = write_video(tmp_path / "clip.mp4", random_video(40, height=64, width=96, seed=7))
    expected = {}
    for backend in ("executorch", "tflite", "onnx"):
        with sdk.load(bundle, backend=backend) as model:
            expected[backend] = VideoClassifier(model).classify(clip)
    src, venv, cache = _source_copy(tmp_path / "src"), tmp_path / "venv", tmp_path / "native-cache"
    env = _device_env(cache)

    def classify(*flags: str) -> tuple[dict, str]:
        proc = _run(venv, env, tmp_path, "-m", "sdk", "classify", str(clip), "--bundle", str(bundle), "--json", *flags)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return _json_out(proc.stdout), proc.stderr

    def check(result: dict, backend: str) -> None:
        want = expected[backend]
        diff = float(np.abs(np.asarray(result["logits"], np.float32) - want.logits).max())
        print(f"device venv vs this environment, {backend}: max |logit diff| {diff:.2e}")
        assert result["class_ids"][0] == want.class_ids[0] and diff <= ATOL

    # 1. the device extra alone: LiteRT and ONNX Runtime; no torch; --native says what to install
    _install(venv, src, env)
    where = _run(venv, env, tmp_path, "-c", "import sdk, sys, sysconfig; print(sdk.__file__); print(sys.prefix); "
                 "print(sysconfig.get_path('purelib'))")
    assert where.returncode == 0, where
    sdk_file, prefix, site_packages = where.stdout.split()
    assert (sdk_file, prefix) == (str(Path(site_packages) / "sdk" / "__init__.py"), str(venv)), where
    assert Path(site_packages).is_relative_to(venv), where
    no_torch = _run(venv, env, tmp_path, "-c", "import torch")
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr
    for backend in ("tflite", "onnx"):
        check(classify("--backend", backend)[0], backend)
    result, announced = classify()  # auto: no ExecuTorch Python runtime here, so LiteRT
    assert "on tflite fp32" in announced
    check(result, "tflite")
    missing = _run(venv, env, tmp_path, "-m", "sdk", "classify", str(clip), "--bundle", str(bundle), "--native")
    assert missing.returncode == 2 and "pip install --no-deps executorch==1.5.1" in missing.stderr

    # 2. the same venv with the native core: built here, for this venv's executorch, and used by --native
    _install(venv, src, env, "--native")
    builds = [p for p in cache.iterdir() if (p / "libedgevideo.so").is_file()]
    assert len(builds) == 1
    runpath = subprocess.run(["readelf", "-d", str(builds[0] / "libedgevideo.so")], capture_output=True, text=True,
                             check=True).stdout
    assert str(Path(site_packages) / "executorch") in runpath  # linked against the venv's runtime
    assert _run(venv, env, tmp_path, "-c", "import torch").returncode != 0
    result, announced = classify("--native")
    assert "on native fp32" in announced
    check(result, "executorch")
    result, announced = classify()  # auto: the built core runs the bundle's first choice, its .pte
    assert "on native fp32" in announced and "runtime: native core" in announced


def test_classify_native_replans_a_truncated_file_like_python(native_bundles, tmp_path_factory, caplog):
    """A file whose header promises more frames than its stream holds (tests/test_truncated_video.py's Cinepak
    AVI): the core's prediction is over the frames that exist, with the warning, as sdk.VideoClassifier's;
    ``strict`` keeps the error."""
    from sdk.errors import TruncatedVideoError
    from sdk.native.stream import NativeVideoClassifier
    from tests.test_truncated_video import PROMISED, _cinepak_avi, _decodable

    full = _cinepak_avi(tmp_path_factory.mktemp("cut") / "full.avi", _larger(video(PROMISED, seed=4)))
    data = full.read_bytes()
    movi = data.index(b"movi") + 4
    cut = full.with_name("cut.avi")
    cut.write_bytes(data[:movi + int(0.4 * (len(data) - movi))])
    m = len(_decodable(cut))
    with sdk.load(native_bundles["clip"], backend="executorch", precision="fp32") as model:
        with caplog.at_level("WARNING", logger="sdk"):
            expected = VideoClassifier(model).classify(cut)
    with NativeVideoClassifier(native_bundles["clip"], precision="fp32") as clf:
        with caplog.at_level("WARNING", logger="sdk"):
            got = clf.classify(cut)
        assert got.warnings == expected.warnings and f"after {m} of the {PROMISED}" in got.warnings[0]
        assert got.class_ids[0] == expected.class_ids[0]
        assert float(np.abs(got.logits - expected.logits).max()) <= ATOL
    with NativeVideoClassifier(native_bundles["clip"], precision="fp32", strict=True) as clf:
        with pytest.raises(TruncatedVideoError, match=rf"after {m} of the {PROMISED} frames"):
            clf.classify(cut)


def test_auto_runs_a_pte_bundle_on_the_cached_core_and_says_why(native_bundles, videos, tmp_path):
    """``python -m sdk classify`` naming no runtime: a .pte bundle runs on the native core when its build is cached
    (no torch import, so the first prediction comes without the bindings' seconds of imports), else on the Python
    bindings with the hint to build the core; which runtime and why on stderr, so that stdout is the JSON alone;
    the core's CPU-probing log lines hidden unless ``--verbose``."""
    from sdk.native import build

    cache = build().parent  # the default build of these sources, as scripts/env.sh makes it
    bundle, clip = native_bundles["clip"], videos["a"]

    def classify(runner: list[str], native_cache: Path, *flags: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "EDGEVIDEO_NATIVE_CACHE": str(native_cache)}
        env.pop("EDGEVIDEO_VERBOSE", None)
        return subprocess.run([sys.executable, *runner, "classify", str(clip), "--bundle", str(bundle), "--json",
                               "--precision", "fp32", *flags], capture_output=True, text=True, env=env, check=False)

    cached = classify(["-c", NO_TORCH], cache)  # torch blocked: this succeeds only if nothing imports it
    assert cached.returncode == 0, cached.stderr[-3000:]
    assert "on native fp32" in cached.stderr and "runtime: native core (the bundle's first choice" in cached.stderr
    assert "cpuinfo_utils" not in cached.stderr, cached.stderr
    on_core = json.loads(cached.stdout)  # all of stdout is the document
    python = classify(["-m", "sdk"], tmp_path / "no-builds-here")
    assert python.returncode == 0, python.stderr[-3000:]
    assert "on executorch fp32" in python.stderr and "python -m sdk.native build" in python.stderr
    on_bindings = json.loads(python.stdout)
    assert on_core["class_ids"][0] == on_bindings["class_ids"][0]
    assert np.abs(np.asarray(on_core["logits"]) - np.asarray(on_bindings["logits"])).max() <= ATOL
    verbose = classify(["-m", "sdk"], cache, "--verbose")
    assert verbose.returncode == 0 and "cpuinfo_utils" in verbose.stderr


def test_first_prediction_times_name_the_runtimes_answer(native_bundles, videos, tmp_path):
    """``python -m sdk bench --first-prediction``: the native core is listed first for a .pte bundle once built,
    is what ``classify`` picks by itself, and its cold command gives the Python runtime's top label."""
    from sdk.first_prediction import auto_runtime, first_prediction_times, runtimes_for
    from sdk.native import build

    build()
    bundle = native_bundles["clip"]
    assert runtimes_for(bundle)[:2] == ["native", "executorch"] and auto_runtime(bundle) == "native"
    (row,) = first_prediction_times(bundle, videos["a"], runtimes=["native"], precision="fp32", repeats=1)
    with sdk.load(bundle, backend="executorch", precision="fp32") as model:
        expected = VideoClassifier(model).classify(videos["a"]).labels[0]
    assert row.runtime == "native" and row.precision == "fp32" and row.label == expected
    assert row.cold_s > row.warm_s > 0 and row.first_s > 0
    assert sdk_main(["bench", "--bundle", str(bundle), "--first-prediction", str(tmp_path / "none.mp4")]) == 2
