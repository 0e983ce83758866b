"""A video whose container header promises more frames than the stream holds (issue 16, item 12).

Real footage of that shape: a 320x240 Cinepak AVI whose header says 444 frames while the file holds 69 packets
(players show the frames that exist). Generated here the same way such files come about: a Cinepak AVI cut short,
so its header (avih / strh frame counts) still counts every frame written while the packets stop early.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

import av

import sdk
from sdk.__main__ import main as sdk_main
from sdk.errors import DecodeError, TruncatedVideoError
from tests.runtime_helpers import make_bundle, random_video

PROMISED = 40


def _cinepak_avi(path: Path, frames: np.ndarray) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("cinepak", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "rgb24"
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("header-lies")
    full = _cinepak_avi(root / "full.avi", random_video(PROMISED, height=240, width=320, seed=5))
    data = full.read_bytes()
    movi = data.index(b"movi") + 4  # the packets start here; the header before it counts all 40 frames
    cut = root / "cut.avi"
    cut.write_bytes(data[:movi + int(0.4 * (len(data) - movi))])
    empty = root / "no_packets.avi"
    empty.write_bytes(data[:movi])
    garbage = root / "garbage.avi"
    garbage.write_bytes(bytes(range(256)) * 64)
    return {"full": full, "cut": cut, "no_packets": empty, "garbage": garbage}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("header-lies-bundles")
    return {kind: make_bundle(kind, root, formats=("onnx",)) for kind in ("clip", "faster")}


def _decodable(path: Path) -> np.ndarray:
    """Every frame PyAV decodes before the stream ends (what a player shows)."""
    frames = []
    with av.open(str(path)) as c:
        try:
            for frame in c.decode(video=0):
                frames.append(frame.to_ndarray(format="rgb24"))
        except av.FFmpegError:
            pass
    return np.stack(frames)


def test_the_file_has_the_shape_of_the_real_one(files):
    with sdk.VideoFile(files["cut"]) as v:
        assert v.num_frames == PROMISED and v.codec == "cinepak" and (v.width, v.height) == (320, 240)
    with av.open(str(files["cut"])) as c:
        packets = sum(1 for p in c.demux(video=0) if p.size > 0)
    assert 1 <= len(_decodable(files["cut"])) <= packets < PROMISED


@pytest.mark.parametrize("kind", ["clip", "faster"])
def test_classify_replans_over_the_frames_that_exist_and_says_so(files, bundles, kind, caplog):
    frames = _decodable(files["cut"])
    m = len(frames)
    model = sdk.load(bundles[kind], backend="onnx")
    with caplog.at_level(logging.WARNING, logger="sdk"):
        pred = sdk.VideoClassifier(model).classify(files["cut"])
    # the same prediction as for the decodable frames given as an array: the sampler ran over m frames, not 40
    expected = sdk.VideoClassifier(model).classify(frames)
    np.testing.assert_array_equal(pred.logits, expected.logits)
    assert pred.frame_index == m - 1
    assert len(pred.warnings) == 1 and f"after {m} of the {PROMISED} frames" in pred.warnings[0]
    assert [r.getMessage() for r in caplog.records if r.name == "sdk"] == list(pred.warnings)
    # an intact file of the same frames gives no warning
    assert sdk.VideoClassifier(model).classify(files["full"]).warnings == ()


def test_strict_keeps_the_error(files, bundles):
    model = sdk.load(bundles["clip"], backend="onnx")
    m = len(_decodable(files["cut"]))
    with pytest.raises(TruncatedVideoError, match=rf"decoded {m} of {PROMISED} frames") as e:
        sdk.VideoClassifier(model, strict=True).classify(files["cut"])
    assert (e.value.decoded, e.value.expected) == (m, PROMISED) and isinstance(e.value, DecodeError)
    with pytest.raises(sdk.errors.ConfigError, match="strict"):
        sdk.VideoClassifier(model, strict="yes")


@pytest.mark.parametrize("name", ["no_packets", "garbage"])
def test_a_file_without_a_decodable_frame_stays_an_error(files, bundles, name):
    model = sdk.load(bundles["clip"], backend="onnx")
    with pytest.raises(DecodeError):
        sdk.VideoClassifier(model).classify(files[name])


def test_cli_classify_json_warns_and_strict_fails(files, bundles, capsys, caplog):
    args = ["classify", str(files["cut"]), "--bundle", str(bundles["clip"]), "--backend", "onnx", "--json"]
    m = len(_decodable(files["cut"]))
    with caplog.at_level(logging.WARNING, logger="sdk"):
        assert sdk_main(args) == 0
    out = capsys.readouterr().out
    result = json.loads(out[out.index("{"):])
    assert result["labels"] and len(result["warnings"]) == 1 and f"after {m} of the {PROMISED}" in result["warnings"][0]
    assert any(f"after {m} of the {PROMISED}" in r.getMessage() for r in caplog.records)
    assert sdk_main([*args, "--strict"]) == 2
    assert f"truncated or corrupt: decoded {m} of {PROMISED} frames" in capsys.readouterr().err
