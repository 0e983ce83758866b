"""Hypothesis fuzzing of manifest parsing and of stream frame inputs; the slow soak test (flat memory)."""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import sdk
from sdk.bundle import Bundle
from sdk.errors import BundleError, FrameError, SdkError
from sdk.manifest import MANIFEST_FILE, Manifest
from tests.runtime_helpers import make_bundle, random_video

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzz-bundles")
    return {kind: make_bundle(kind, root, formats=("onnx",)) for kind in ("clip", "faster")}


# ---------------------------------------------------------------------------------------------- manifest parsing
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


def _mutate(doc, path, action, value):
    doc = copy.deepcopy(doc)
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if action == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


def _damaged(doc: dict, data) -> dict:
    paths = list(_paths(doc))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        action = data.draw(st.sampled_from(["replace", "delete"])) if path else "replace"
        doc = _mutate(doc, path, action, data.draw(json_values))
        paths = list(_paths(doc))
    return doc


@FUZZ
@given(data=st.data())
def test_load_of_a_damaged_manifest_fuzz(bundles, tmp_path_factory, data) -> None:
    """Any damage to a real manifest (FASTER and plain): ``sdk.load`` gives a working model or a typed sdk error."""
    kind = data.draw(st.sampled_from(["clip", "faster"]))
    doc = _damaged(json.loads((bundles[kind] / MANIFEST_FILE).read_text()), data)
    root = tmp_path_factory.mktemp("damaged")
    shutil.copytree(bundles[kind], root / "b.vbundle")
    (root / "b.vbundle" / MANIFEST_FILE).write_text(json.dumps(doc))
    try:
        model = sdk.load(root / "b.vbundle")
    except SdkError:
        return
    assert Manifest.parse(json.loads(json.dumps(model.manifest.to_dict()))) == model.manifest
    model.close()


@pytest.mark.parametrize("path,value", [(("programs", 0, "outputs", 0, "quantization"), False),
                                        (("programs", 0, "parity"), 2.5),
                                        (("input", "preprocess", "train_scales"), ":")])
def test_manifest_parse_raises_bundle_error_only(bundles, path, value) -> None:
    doc = _mutate(json.loads((bundles["clip"] / MANIFEST_FILE).read_text()), path, "replace", value)
    with pytest.raises(BundleError):
        Manifest.parse(doc)


def test_manifest_that_is_not_json_is_a_bundle_error(bundles, tmp_path: Path) -> None:
    copy_dir = tmp_path / "b.vbundle"
    shutil.copytree(bundles["clip"], copy_dir)
    (copy_dir / MANIFEST_FILE).write_bytes(b"\xff{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        Bundle(copy_dir)


# --------------------------------------------------------------------------------------------------- frame inputs
frame_arrays = hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.int8, np.int32, np.float16, np.float32, np.float64, np.bool_]),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=7),
    elements=None)


@FUZZ
@given(frames=st.lists(frame_arrays | st.sampled_from([None, "x", 3.0, [[1, 2], [3]]]), min_size=1, max_size=6))
@example(frames=[None, np.zeros((1, 1, 3), np.uint8)])  # a valid frame mid-stream restarts the comparison (CI found)
def test_stream_frame_fuzz(bundles, frames) -> None:
    """Any input to push is either a frame, or an error event (FrameError) after which the stream continues and
    gives exactly the predictions of the good frames alone."""
    model = sdk.load(bundles["clip"], backend="onnx")
    good = random_video(6, seed=0)
    stream = sdk.StreamClassifier(model, window=3)  # keeps every frame: every bad input is inspected
    out, start = [], 0
    for i, f in enumerate(good):
        if i < len(frames):
            try:
                valid = sdk.classifier.as_frame(frames[i])
            except FrameError:
                valid = None
            event = stream.push(frames[i])
            if valid is None:
                assert event is not None and isinstance(event.error, FrameError)
            else:  # a valid fuzzed frame counts: start over, comparing with the good frames from here on
                stream.reset()
                out, start = [], i
        p = stream.push(f)
        if p is not None:
            out.append(p.logits)
    reference = [p.logits for p in sdk.StreamClassifier(model, window=3).run(good[start:])]
    assert len(out) == len(reference)
    for a, b in zip(out, reference):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------------------- soak
def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@pytest.mark.parametrize("frames", [2000, pytest.param(10000, marks=pytest.mark.slow)])
@pytest.mark.parametrize("kind,window", [("clip", 3), ("faster", None)])
def test_soak_flat_memory(bundles, kind: str, window: int | None, frames: int) -> None:
    """``frames`` streamed frames (every one kept and run for the clip bundle, window 3) after 500 warm-up frames:
    resident memory grows by less than 4 MB and 5 %. An absolute bound, since the process's RSS (torch, the runtimes)
    is hundreds of MB: keeping each preprocessed frame (24x24x3 float32) would add 14 MB in 2,000 frames."""
    model = sdk.load(bundles[kind], backend="onnx")
    stream = sdk.StreamClassifier(model, window=window)
    pool = random_video(50, seed=1)
    n_pred = 0
    for i in range(500):
        n_pred += stream.push(pool[i % 50], i / 30) is not None
    before = _rss_kb()
    for i in range(500, 500 + frames):
        n_pred += stream.push(pool[i % 50], i / 30) is not None
    after = _rss_kb()
    print(f"\nsoak {kind}: RSS {before} kB after 500 frames -> {after} kB after {500 + frames} frames "
          f"({after - before:+d} kB), {n_pred} predictions, {stream.stats.frames_seen} frames seen")
    assert stream.stats.frames_seen == 500 + frames and n_pred == (500 + frames) // stream.window
    assert after - before < 4096 and (after - before) / before < 0.05
