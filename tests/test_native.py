"""The native C++ core (sdk/native) against the Python sdk: same numbers, same stream semantics, typed errors.

The core is built once per session (``sdk.native.build``: CMake against the executorch wheel, cached by a hash of
the sources under ``$EDGEVIDEO_NATIVE_CACHE`` or ``~/.cache/edgevideo/native``); the bundles are the tiny ones of
``tests/test_native_bundles.py`` (the ``native_bundles`` fixture of ``conftest.py``; ``tests/test_arm64.py`` checks
them on aarch64), and the trained tiny adaptive FASTER bundle of ``tests/test_faster_trained.py`` (the session's
``faster_trained`` fixture) for the gate. Equality is checked through the ctypes binding (``sdk.native``) and through
the CLI.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import executorch  # noqa: F401  (the core links its C++ runtime; a missing wheel fails, never skips)

import sdk
from sdk.files import sha256_of
from sdk.classifier import Smoothing, StreamClassifier
from sdk.errors import BackendUnavailableError, BundleError, ConfigError, FrameError
from sdk.native import NativeStreamClassifier, build, load_library, sampler_copies, sha256_path
from sdk.preprocess import Preprocess
from sdk.samplers import SAMPLER_KINDS, Sampler
from test_native_bundles import cli_stream_vs_python, video

# Program-level equality bound (fp32): the core and the Python bindings run the same ExecuTorch kernels.
ATOL = 1e-5


@pytest.fixture(scope="session")
def native_dir() -> Path:
    # EDGEVIDEO_NATIVE_ASAN=1: the AddressSanitizer + UBSan build (run pytest with LD_PRELOAD of libasan.so and
    # ASAN_OPTIONS=detect_leaks=0, see sdk/native/README.md)
    return build(asan=os.environ.get("EDGEVIDEO_NATIVE_ASAN") == "1")


def _native_frame(nat: NativeStreamClassifier, frame: np.ndarray) -> np.ndarray | None:
    """What an app gives the core: nothing for a dropped frame, else the frame with its shorter side at the role's
    ``short_side`` (resized here with sdk.preprocess's own resize, as a camera scaler would)."""
    req = nat.next_frame()
    if not req["copies"]:
        return None
    if min(frame.shape[:2]) == req["short_side"]:
        return frame
    return Preprocess(size=req["size"], resize=req["short_side"]).resize_short(frame)


def _compare(py_preds: list, nat_preds: list) -> tuple[float, float, int]:
    """Max |logit diff|, max |probability diff|, and the number of predictions; asserts the stream metadata."""
    assert len(py_preds) == len(nat_preds) > 0
    d_logits = d_probs = 0.0
    for a, b in zip(py_preds, nat_preds):
        assert (a is None) == (b is None)
        if a is None:
            continue
        assert (a.ok, b.ok) in ((True, True), (False, False)), (a, b)
        assert (a.frame_index if a.ok else None) == (b.frame_index if b.ok else None)
        if not a.ok:
            continue
        assert (a.window, a.role, a.class_ids[0]) == (b.window, b.role, b.class_ids[0])
        d_logits = max(d_logits, float(np.abs(a.logits - b.logits).max()))
        d_probs = max(d_probs, float(np.abs(a.probabilities - b.probabilities).max()))
    return d_logits, d_probs, sum(1 for a in py_preds if a is not None and a.ok)


CASES = {  # id: (bundle, precision, window)
    "clip-fp32": ("clip", "fp32", 8),
    "clip-int8": ("clip", "int8", 8),
    "stream-fp32": ("stream", "fp32", 8),
    "faster-fp32": ("faster", "fp32", None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_native_core_equals_python_stream_classifier(case, native_bundles, native_dir, capsys):
    kind, precision, window = CASES[case]
    path = native_bundles[kind]
    smoothing = Smoothing(ema=0.5, hysteresis=0.02)
    frames = video(72, seed=1)
    model = sdk.load(path, backend="executorch", precision=precision)
    py = StreamClassifier(model, window=window, smoothing=smoothing)
    nat = NativeStreamClassifier(path, library=native_dir, window=window, precision=precision, smoothing=smoothing)
    assert (nat.kind, nat.precision, nat.window, nat.labels) == (model.kind, precision, py.window, model.labels)
    py_preds, nat_preds = [], []
    for i, frame in enumerate(frames):
        if i == 40:  # a new stream in the middle: both start over (windows, state, smoothing)
            py.reset()
            nat.reset()
        assert py.wants_next() == nat.wants_next()
        if i % 13 == 5 and py.wants_next():  # a bad kept frame: an error event in both, the stream goes on
            py_bad, nat_bad = py.push(frame[..., :2]), nat.push(frame[..., :2])
            assert not py_bad.ok and not nat_bad.ok and isinstance(nat_bad.error, FrameError)
        py_preds.append(py.push(frame))
        nat_preds.append(nat.push(_native_frame(nat, frame)))
    d_logits, d_probs, n = _compare(py_preds, nat_preds)
    with capsys.disabled():
        print(f"\n[native-vs-python] {case}: {n} predictions, max|logit diff| {d_logits:.3g}, "
              f"max|prob diff| {d_probs:.3g}, top-1 identical")
    assert d_logits <= ATOL and d_probs <= ATOL
    # the video changes colour every 8 frames: the logits compared move by far more than the bound they agree to
    logits = np.stack([p.logits for p in py_preds if p is not None and p.ok])
    assert np.ptp(logits, axis=0).max() > 1000 * ATOL
    nat.close()
    model.close()


def test_cli_streams_a_raw_file_like_python(native_bundles, native_dir, tmp_path):
    summary, d_logits, d_probs = cli_stream_vs_python([str(native_dir / "edgevideo_cli")], native_bundles["clip"],
                                                      "fp32", video(40, seed=2), tmp_path / "frames.rgb")
    assert summary["frames"] == 40 and summary["predictions"] == 5 and summary["errors"] == 0
    assert summary["kept"] == 5 * 4  # 4 of every 8 frames read from the file, the rest skipped unread
    assert d_logits <= ATOL and d_probs <= ATOL


@pytest.mark.parametrize("kind", ["clip", "stream", "faster"])
def test_golden_self_check(kind, native_bundles, native_dir):
    for precision in (["fp32", "int8"] if kind == "clip" else ["fp32"]):
        with NativeStreamClassifier(native_bundles[kind], library=native_dir, precision=precision, verify=True) as nat:
            diff, checked = nat.self_check()
        assert checked == (3 if kind == "faster" else 1)
        assert diff <= 1e-5
        # the CLI names every program it compared (ev_self_check_program), with its own max |diff|
        proc = subprocess.run([str(native_dir / "edgevideo_cli"), "check", str(native_bundles[kind]), "--precision",
                               precision], capture_output=True, text=True, check=True)
        result = json.loads(proc.stdout)
        ids = {p["id"] for p in json.loads((native_bundles[kind] / "manifest.json").read_text())["programs"]
               if p["precision"] == precision}
        assert result["ok"] and set(result["programs"]) == ids and result["checked"] == checked
        assert max(result["programs"].values()) == result["max_abs_diff"] <= 1e-5


def _held_to_torch(src: Path, dst: Path) -> Path:
    """A copy of a bundle whose export-time outputs (``{program id}/logits``, written by the Python ExecuTorch
    runtime) are replaced by the torch reference's goldens (``{role or mode}/reference_{fp32|quantized}/logits``), the
    golden file re-hashed: the core's self-check then compares the core with torch, not with a runtime."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    with np.load(dst / "golden.npz") as z:
        golden = {k: z[k] for k in z.files}
    for p in manifest["programs"]:
        kind = "quantized" if p["precision"] == "int8" else "fp32"
        role = p.get("role") or "model"
        key = next(k for k in (f"{role}/reference_{kind}/logits", f"{p['mode']}/reference_{kind}/logits")
                   if k in golden)
        golden[f"{p['id']}/logits"] = golden[key]
    np.savez(dst / "golden.npz", **golden)
    _edit_manifest(dst, lambda m: m["golden"].__setitem__("sha256", sha256_of(dst / "golden.npz")))
    return dst


@pytest.mark.parametrize("kind", ["clip", "stream", "faster"])
def test_the_core_matches_the_torch_reference(kind, native_bundles, native_dir, tmp_path):
    """Conformance across runners: every program of every bundle kind in the native core against the torch
    reference's goldens (not the Python ExecuTorch runtime's, which the self-check uses). fp32 within the verify
    bound 1e-4 + 1e-5 * max|reference|; int8 against the torch int8 program within the core's int8 bound
    1e-3 + 1e-2 * max|reference| and the same top-1 (the CLI exits non-zero beyond them), and also within
    0.1 x the reference logits' spread over the golden inputs (the int8 kernels of XNNPACK round differently from
    torch's reference q/dq ops)."""
    root = _held_to_torch(native_bundles[kind], tmp_path / f"{kind}.vbundle")
    with np.load(root / "golden.npz") as z:
        golden = {k: z[k] for k in z.files}
    programs = json.loads((root / "manifest.json").read_text())["programs"]
    for precision in sorted({p["precision"] for p in programs}):
        proc = subprocess.run([str(native_dir / "edgevideo_cli"), "check", str(root), "--precision", precision],
                              capture_output=True, text=True, check=False)
        error = [line for line in proc.stderr.splitlines() if "executorch:" not in line]  # no XNNPACK probing
        assert proc.returncode == 0, f"{kind} {precision}: the core is off the torch reference: {error[-3:]}"
        result = json.loads(proc.stdout)
        ids = {p["id"] for p in programs if p["precision"] == precision}
        assert result["ok"] and set(result["programs"]) == ids
        for pid, diff in result["programs"].items():
            reference = golden[f"{pid}/logits"]
            spread = float(np.ptp(reference, axis=0).max())
            bound = 0.1 * spread if precision == "int8" else 1e-4 + 1e-5 * float(np.abs(reference).max())
            print(f"[native-vs-torch] {pid}: max|diff| {diff:.3g} (bound {bound:.3g}, spread {spread:.3g})")
            assert diff <= bound, f"{pid}: max|diff| {diff:.3g} from torch > {bound:.3g}"
            assert spread > 0.01, f"{pid}: the golden inputs hardly move the logits"


# ---------------------------------------------------------------------------------------------------- building blocks
def test_sha256_matches_hashlib_and_sdk(native_dir, tmp_path):
    lib = load_library(native_dir)
    rng = np.random.default_rng(0)
    for n in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000, (1 << 20) + 3]:
        f = tmp_path / f"f{n}"
        f.write_bytes(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
        assert sha256_path(lib, f) == hashlib.sha256(f.read_bytes()).hexdigest()
    # an .mlpackage-like directory; "a/b" sorts before "a-c" in Python's Path order, after it as a string
    pkg = tmp_path / "model.mlpackage"
    for rel in ["a/b", "a-c", "Data/com.apple.CoreML/weights/weight.bin", "Manifest.json", "a/z/deep"]:
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_bytes(rel.encode() * 3)
    assert sha256_path(lib, pkg) == sha256_of(pkg)


def test_streaming_sampler_matches_python(native_dir):
    lib = load_library(native_dir)
    checked = 0
    for kind in SAMPLER_KINDS:
        for frames in (1, 2, 3, 4, 5, 8):
            for extra in ({}, {"stride": 2}, {"of": frames + 3}, {"of": 2 * frames}):
                if ("stride" in extra and kind != "dense") or ("of" in extra and kind in ("uniform_segments", "dense")):
                    continue  # not a valid sampler (sdk.samplers refuses it)
                sampler = Sampler(kind, frames, **extra)
                for window in (1, 2, 3, 5, 7, 8, 13, 16, 32, 33):
                    if kind == "random_k" and (sampler.of or window) >= frames:
                        continue  # needs numpy's PCG64: refused natively (test_unsupported_sampler)
                    want = sampler.stream(window)._copies
                    assert np.array_equal(sampler_copies(lib, sampler.to_dict(), window), want), (sampler, window)
                    checked += 1
    assert checked > 500


def test_unsupported_sampler_is_refused(native_dir):
    lib = load_library(native_dir)
    with pytest.raises(BackendUnavailableError, match="random_k"):
        sampler_copies(lib, Sampler("random_k", 4).to_dict(), 32)
    # a window shorter than k needs no random numbers (the short-video policy): supported
    assert sampler_copies(lib, Sampler("random_k", 4).to_dict(), 2).tolist() == [2, 2]


# ------------------------------------------------------------------------------------------------------- bad input
def _copy(bundle: Path, tmp_path: Path) -> Path:
    out = tmp_path / bundle.name
    shutil.copytree(bundle, out)
    return out


def _edit_manifest(root: Path, edit) -> None:
    m = json.loads((root / "manifest.json").read_text())
    edit(m)
    (root / "manifest.json").write_text(json.dumps(m))


def _break(how: str, root: Path) -> None:
    pte = root / "programs" / "clip_executorch_fp32.pte"
    if how == "missing_manifest":
        (root / "manifest.json").unlink()
    elif how == "not_json":
        (root / "manifest.json").write_text('{"schema_version": "1.1", "name": ')
    elif how == "schema":
        _edit_manifest(root, lambda m: m.__setitem__("labels", "left"))
    elif how == "future_schema":
        _edit_manifest(root, lambda m: m.__setitem__("schema_version", "2.0"))
    elif how == "escaping_path":
        _edit_manifest(root, lambda m: m["programs"][0].__setitem__("file", "../../etc/passwd"))
    elif how == "tampered_program":
        data = bytearray(pte.read_bytes())
        data[len(data) // 2] ^= 0xFF
        pte.write_bytes(bytes(data))
    elif how == "missing_program":
        pte.unlink()
    elif how == "truncated_program":  # rehashed: the hash passes, ExecuTorch must refuse it
        pte.write_bytes(pte.read_bytes()[:200])
        _edit_manifest(root, lambda m: m["programs"][0].__setitem__("sha256", sha256_of(pte)))
    elif how == "shape_lie":
        _edit_manifest(root, lambda m: m["programs"][0]["inputs"][0].__setitem__("shape", [4, 3, 16, 16]))
    elif how == "random_k":
        _edit_manifest(root, lambda m: m.__setitem__("sampler", Sampler("random_k", 4).to_dict()))


BROKEN = {  # how: (ev_status name, sdk error type)
    "missing_manifest": ("EV_ERR_IO", BundleError),
    "not_json": ("EV_ERR_BAD_BUNDLE", BundleError),
    "schema": ("EV_ERR_BAD_BUNDLE", BundleError),
    "future_schema": ("EV_ERR_BAD_BUNDLE", BundleError),
    "escaping_path": ("EV_ERR_BAD_BUNDLE", BundleError),
    "tampered_program": ("EV_ERR_HASH_MISMATCH", BundleError),
    "missing_program": ("EV_ERR_IO", BundleError),
    "truncated_program": ("EV_ERR_RUNTIME", Exception),
    "shape_lie": ("EV_ERR_BAD_BUNDLE", BundleError),
    "random_k": ("EV_ERR_UNSUPPORTED", BackendUnavailableError),
}


@pytest.mark.parametrize("how", list(BROKEN))
def test_bad_bundle_is_a_typed_error(how, native_bundles, native_dir, tmp_path):
    root = _copy(native_bundles["clip"], tmp_path)
    _break(how, root)
    status, err_type = BROKEN[how]
    with pytest.raises(err_type) as info:
        NativeStreamClassifier(root, library=native_dir, precision="fp32")
    assert info.value.status_name == status, str(info.value)
    # the CLI exits with 10 + status, never by a signal
    proc = subprocess.run([str(native_dir / "edgevideo_cli"), "info", str(root), "--precision", "fp32"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 10 + info.value.status and status in proc.stderr


def test_golden_tampering_and_mismatch(native_bundles, native_dir, tmp_path):
    root = _copy(native_bundles["clip"], tmp_path)
    golden = root / "golden.npz"
    with np.load(golden) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["clip_executorch_fp32/logits"] = arrays["clip_executorch_fp32/logits"] + 0.5
    np.savez(golden, **arrays)
    with NativeStreamClassifier(root, library=native_dir, precision="fp32") as nat:
        with pytest.raises(BundleError) as info:
            nat.self_check()
        assert info.value.status_name == "EV_ERR_HASH_MISMATCH"
    _edit_manifest(root, lambda m: m["golden"].__setitem__("sha256", sha256_of(golden)))
    with pytest.raises(BundleError) as info:
        NativeStreamClassifier(root, library=native_dir, precision="fp32", verify=True)
    assert info.value.status_name == "EV_ERR_GOLDEN_MISMATCH" and "max|diff|" in str(info.value)
    # the CLI still prints the per-program result line, then the typed error naming the program
    proc = subprocess.run([str(native_dir / "edgevideo_cli"), "check", str(root), "--precision", "fp32"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 10 + 8 and "EV_ERR_GOLDEN_MISMATCH: " in proc.stderr
    assert "'clip_executorch_fp32'" in proc.stderr
    result = json.loads(proc.stdout)
    assert not result["ok"] and result["programs"]["clip_executorch_fp32"] == pytest.approx(0.5, abs=1e-5)


def test_zip_and_missing_bundles(native_dir, tmp_path):
    z = tmp_path / "b.vbundle.zip"
    z.write_bytes(b"PK\x05\x06" + bytes(18))
    with pytest.raises(BackendUnavailableError, match="unzip"):
        NativeStreamClassifier(z, library=native_dir)
    with pytest.raises(BundleError, match="does not exist"):
        NativeStreamClassifier(tmp_path / "nope.vbundle", library=native_dir)


def test_bad_frames_are_error_events_and_the_stream_goes_on(native_bundles, native_dir):
    frames = video(24, seed=4)
    with NativeStreamClassifier(native_bundles["stream"], library=native_dir, window=8) as clean:
        want = [clean.push(_native_frame(clean, f), timestamp=i / 30) for i, f in enumerate(frames)]
    with NativeStreamClassifier(native_bundles["stream"], library=native_dir, window=8) as nat:
        lib = load_library(native_dir)
        got = []
        for i, f in enumerate(frames):
            if not nat.wants_next():  # a dropped frame is never inspected: None is fine
                got.append(nat.push(None, timestamp=i / 30))
                continue
            events = [
                nat.push(f[:32, :32], timestamp=i / 30),  # shorter side 32, not 36
                nat.push(f.astype(np.float32), timestamp=i / 30),  # not uint8
                nat.push(None, timestamp=i / 30),  # no pixels for a kept frame
                nat.push(f, timestamp=(i - 1) / 30) if i else None,  # a timestamp not after the last one
            ]
            for e in events:
                assert e is None or (not e.ok and isinstance(e.error, FrameError)), e
            # a buffer whose length does not match width x height x 3, through the C API directly
            status = lib.ev_push_frame(nat._handle(), f.ctypes.data, f.nbytes - 1, 48, 36, float("nan"), None)
            assert lib.ev_status_name(status) == b"EV_ERR_BAD_FRAME" and b"bytes" in lib.ev_last_error()
            got.append(nat.push(f, timestamp=i / 30))
    for a, b in zip(want, got):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.frame_index == b.frame_index and a.timestamp == b.timestamp
            np.testing.assert_array_equal(a.logits, b.logits)


def test_manifest_mutations_never_crash(native_bundles, native_dir, tmp_path):
    """Truncated and byte-flipped manifests: always an exit code (OK or a typed error), never a signal."""
    root = _copy(native_bundles["faster"], tmp_path)
    text = (root / "manifest.json").read_bytes()
    rng = np.random.default_rng(0)
    variants = [text[:n] for n in np.linspace(0, len(text) - 1, 12).astype(int)]
    for _ in range(18):
        b = bytearray(text)
        for at in rng.integers(0, len(b), 3):
            b[at] = int(rng.choice(list(b'{}[]",:0-9 \\ex\x00\xff')))
        variants.append(bytes(b))
    codes = []
    for v in variants:
        (root / "manifest.json").write_bytes(v)
        proc = subprocess.run([str(native_dir / "edgevideo_cli"), "info", str(root)], capture_output=True, text=True,
                              check=False)
        assert proc.returncode >= 0, f"killed by signal {-proc.returncode} on {v[:80]!r}"
        codes.append(proc.returncode)
    assert set(codes) <= {0, 10 + 2, 10 + 3, 10 + 4, 10 + 5}
    assert 10 + 3 in codes


# ---- the adaptive FASTER schedule (manifest.faster.gate) ------------------------------------------------------------
def _stream_videos(clf, paths: list[Path]) -> np.ndarray:
    """Every segment's logits of each video streamed frame by frame from its file, a fresh stream per video."""
    logits = []
    for path in paths:
        clf.reset()
        predictions = list(clf.run(str(path)))
        assert predictions and all(p.ok for p in predictions)
        logits.append([p.logits for p in predictions])
    return np.array(logits)


@pytest.fixture(scope="module")
def gated_videos(faster_trained) -> list[Path]:
    """The validation long videos of the trained tiny FASTER run (tests/test_faster_trained.py)."""
    from training.data.datasets import DatasetInfo

    return [r.path for r in DatasetInfo.from_dir(faster_trained["bench"]).records("val.csv")]


@pytest.fixture(scope="module")
def gated_streams(faster_trained, gated_videos, native_dir) -> dict:
    """The trained tiny adaptive bundle (learned gate) streamed over every validation video by the Python runtime
    (its .pte programs on the Python ExecuTorch runtime) and by the core, at the bundle's threshold and at +-inf:
    {threshold: (python logits, native logits, python stats, native stats)}, logits (video, segment, class)."""
    from sdk.native.stream import NativeStream

    model = sdk.load(faster_trained["gated"], backend="executorch", precision="fp32")
    out = {}
    for threshold in (None, math.inf, -math.inf):
        py = StreamClassifier(model, gate_threshold=threshold)
        with NativeStream(faster_trained["gated"], precision="fp32", library=native_dir, verify=True,
                          gate_threshold=threshold) as nat:
            out[threshold] = (_stream_videos(py, gated_videos), _stream_videos(nat, gated_videos), py.stats, nat.stats)
    return out


def test_the_core_runs_the_adaptive_gate_as_the_python_runtime(gated_streams):
    """Every segment of every validation video: the core's logits equal the Python runtime's, and the expensive
    model ran on the same number of segments -- some but not all, so that the gate's decisions matter."""
    py, nat, py_stats, nat_stats = gated_streams[None]
    assert py.shape == nat.shape and py.shape[0] >= 16
    assert (nat[:, -1].argmax(-1) == py[:, -1].argmax(-1)).mean() == 1.0
    assert np.abs(nat - py).max() <= ATOL
    assert nat_stats.segments == py_stats.segments == py.shape[0] * py.shape[1]
    assert nat_stats.expensive_segments == py_stats.expensive_segments
    assert 0 < nat_stats.expensive_segments < nat_stats.segments


def test_the_core_gate_threshold_inf_is_cheap_only_and_minus_inf_expensive_only(gated_streams):
    """The threshold option reaches the core's gate: inf never runs the expensive model, -inf always, each equal to
    the Python runtime at that threshold (and the two ends tell the schedules apart)."""
    for threshold, share in ((math.inf, 0.0), (-math.inf, 1.0)):
        py, nat, py_stats, nat_stats = gated_streams[threshold]
        assert np.abs(nat - py).max() <= ATOL, threshold
        assert nat_stats.expensive_share == py_stats.expensive_share == share
    assert np.abs(gated_streams[math.inf][1] - gated_streams[-math.inf][1]).max() > 1e-2


def test_the_cli_passes_the_gate_threshold_to_the_core(faster_trained, gated_videos, gated_streams, native_dir,
                                                       capsys):
    """python -m sdk classify --runtime native --gate-threshold T: the core's whole-video prediction equals the
    Python runtime's stream at T, and its stats count the expensive segments."""
    from sdk.__main__ import main

    for threshold, expensive in ((None, None), (math.inf, 0), (-math.inf, 4)):
        flag = [] if threshold is None else [f"--gate-threshold={threshold}"]  # "-inf" alone reads as an option
        assert main(["classify", str(gated_videos[0]), "--bundle", str(faster_trained["gated"]), "--runtime", "native",
                     "--library", str(native_dir), "--precision", "fp32", "--json", *flag]) == 0
        out = json.loads(capsys.readouterr().out)
        np.testing.assert_allclose(out["logits"], gated_streams[threshold][0][0, -1], atol=1e-4)
        assert out["stats"]["segments"] == 4
        if expensive is not None:
            assert out["stats"]["expensive_segments"] == expensive


def test_a_gate_threshold_for_a_bundle_without_a_gate_is_refused(native_bundles, native_dir):
    with pytest.raises(ConfigError, match="adaptive FASTER bundles"):
        NativeStreamClassifier(native_bundles["faster"], library=native_dir, precision="fp32", gate_threshold=0.5)
    with pytest.raises(ConfigError, match="gate_threshold must be a number"):
        NativeStreamClassifier(native_bundles["faster"], library=native_dir, precision="fp32",
                               gate_threshold=math.nan)


def test_a_gated_manifest_is_checked(native_bundles, native_dir, tmp_path):
    """A gate goes with the adaptive schedule only (manifest.faster.gate, schema 1.3, read as strictly as sdk.manifest):
    on a fixed-schedule bundle it is EV_ERR_BAD_BUNDLE, never run as the pattern."""
    root = _copy(native_bundles["faster"], tmp_path)

    def gated(m: dict) -> None:
        m["faster"]["gate"] = {"kind": "confidence", "threshold": 0.5, "fire_rate": 0.25}

    _edit_manifest(root, gated)
    with pytest.raises(BundleError, match="a gate goes with schedule 'adaptive'") as info:
        NativeStreamClassifier(root, library=native_dir, precision="fp32")
    assert info.value.status_name == "EV_ERR_BAD_BUNDLE"
