"""Property tests of the one frame-sampling implementation (sdk.samplers)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdk.errors import ConfigError
from sdk.samplers import SAMPLER_KINDS, SEE_VERY_LITTLE_KINDS, Sampler, StreamingSampler


@st.composite
def samplers(draw) -> Sampler:
    kind = draw(st.sampled_from(SAMPLER_KINDS))
    frames = draw(st.integers(1, 24))
    stride = draw(st.integers(1, 5)) if kind == "dense" else 1
    of = None
    if kind in SEE_VERY_LITTLE_KINDS and draw(st.booleans()):
        of = draw(st.integers(frames, 48))
    return Sampler(kind, frames, stride=stride, of=of, seed=draw(st.integers(0, 2**31 - 1)))


lengths = st.integers(1, 400)
seeds = st.integers(0, 2**32 - 1)


@settings(max_examples=300, deadline=None)
@given(samplers(), lengths, st.one_of(st.none(), seeds))
def test_indices_in_range_ordered_right_count(sampler: Sampler, n: int, seed: int | None):
    rng = None if seed is None else np.random.default_rng(seed)
    idx = sampler.indices(n, rng)
    assert idx.dtype == np.int64 and idx.shape == (sampler.frames,)
    assert idx.min() >= 0 and idx.max() < n
    assert np.all(np.diff(idx) >= 0), "indices must be in temporal order"


@settings(max_examples=300, deadline=None)
@given(samplers(), lengths)
def test_distinct_when_the_video_is_long_enough(sampler: Sampler, n: int):
    """Repeats are the short-video policy only: with enough frames every index is a different frame."""
    grid = sampler.of if sampler.of is not None else n
    span = (sampler.frames - 1) * sampler.stride + 1 if sampler.kind == "dense" else sampler.frames
    enough = n >= span and (sampler.kind not in SEE_VERY_LITTLE_KINDS or (grid >= sampler.frames and n >= grid))
    if enough:
        assert len(np.unique(sampler.indices(n))) == sampler.frames
        assert len(np.unique(sampler.indices(n, np.random.default_rng(0)))) == sampler.frames


@settings(max_examples=200, deadline=None)
@given(samplers(), lengths, seeds)
def test_deterministic_per_seed(sampler: Sampler, n: int, seed: int):
    a = sampler.indices(n, np.random.default_rng(seed))
    b = sampler.indices(n, np.random.default_rng(seed))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(sampler.indices(n), sampler.indices(n))


@settings(max_examples=200, deadline=None)
@given(samplers(), st.integers(1, 120), st.integers(1, 4))
def test_streaming_keeps_exactly_the_offline_frames(sampler: Sampler, window: int, windows: int):
    """Frame by frame over several windows, the kept frames (with multiplicity) are the offline indices per window."""
    stream = sampler.stream(window)
    offline = sampler.indices(window)
    for w in range(windows):
        kept = []
        for t in range(window):
            assert not stream.window_complete or t == 0
            kept += [t] * stream.offer()
        assert stream.window_complete and stream.window_index == w + 1
        np.testing.assert_array_equal(kept, offline)
    stream.reset()
    assert stream.frames_seen == 0 and stream.position == 0


def test_streaming_over_a_whole_file_equals_offline():
    sampler = Sampler("uniform_segments", 8)
    stream = StreamingSampler(sampler, window=300)
    kept = [t for t in range(300) if stream.offer()]
    np.testing.assert_array_equal(kept, sampler.indices(300))
    assert kept == [18, 56, 93, 131, 168, 206, 243, 281]


def test_tsn_training_offsets_stay_in_their_segment():
    sampler = Sampler("uniform_segments", 4)
    rng = np.random.default_rng(0)
    draws = np.stack([sampler.indices(100, rng) for _ in range(500)])
    for i in range(4):
        assert draws[:, i].min() >= 25 * i and draws[:, i].max() < 25 * (i + 1)
        assert len(np.unique(draws[:, i])) > 15, "training offsets should vary"


def test_see_very_little_family_picks_from_the_teacher_grid():
    n, teacher = 160, Sampler("uniform_segments", 16)
    grid = teacher.indices(n)
    expected_positions = {
        "uniform_k": [2, 6, 10, 14],
        "first_k": [0, 1, 2, 3],
        "middle_k": [6, 7, 8, 9],
        "last_k": [12, 13, 14, 15],
        "first_middle_last_k": [0, 1, 7, 15],
    }
    for kind, pos in expected_positions.items():
        np.testing.assert_array_equal(Sampler(kind, 4, of=16).indices(n), grid[pos], err_msg=kind)
    # random_k: a subset of the grid, fixed by the seed without a generator, varying with one.
    rk = Sampler("random_k", 4, of=16, seed=3)
    assert set(rk.indices(n)) <= set(grid)
    np.testing.assert_array_equal(rk.indices(n), rk.indices(n))
    rng = np.random.default_rng(1)
    assert len({tuple(rk.indices(n, rng)) for _ in range(20)}) > 1
    # In training the student's frames are a subset of the teacher's frames drawn with the same generator state.
    t_idx = teacher.indices(n, np.random.default_rng(7))
    s_idx = Sampler("first_middle_last_k", 3, of=16).indices(n, np.random.default_rng(7))
    assert set(s_idx) <= set(t_idx)


def test_short_video_policy():
    np.testing.assert_array_equal(Sampler("uniform_segments", 8).indices(3), [0, 0, 0, 1, 1, 2, 2, 2])
    # A dense clip longer than the video is centred and padded with the first/last frame.
    np.testing.assert_array_equal(Sampler("dense", 8, stride=2).indices(9), [0, 0, 1, 3, 5, 7, 8, 8])
    np.testing.assert_array_equal(Sampler("first_k", 4).indices(2), [0, 0, 1, 1])
    with pytest.raises(ConfigError, match="0 frames"):
        Sampler("uniform_segments", 8).indices(0)


@settings(max_examples=100, deadline=None)
@given(samplers(), lengths, st.integers(1, 5))
def test_multi_view(sampler: Sampler, n: int, clips: int):
    views = sampler.multi_view(n, clips)
    assert views.shape == (clips, sampler.frames)
    assert views.min() >= 0 and views.max() < n
    assert np.all(np.diff(views, axis=1) >= 0)
    if clips == 1:
        np.testing.assert_array_equal(views[0], sampler.indices(n))


@settings(max_examples=100, deadline=None)
@given(samplers())
def test_spec_round_trips_through_json(sampler: Sampler):
    assert Sampler.from_dict(json.loads(json.dumps(sampler.to_dict()))) == sampler


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kind="every_other"), "valid kinds"),
        (dict(frames=0), "positive"),
        (dict(kind="dense", stride=0), "stride"),
        (dict(kind="uniform_segments", stride=2), "dense"),
        (dict(kind="uniform_k", frames=4, of=2), ">= frames"),
        (dict(kind="uniform_segments", of=16), "see-very-little"),
    ],
)
def test_invalid_specs_raise_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Sampler(**kwargs)


def test_unknown_manifest_field_is_rejected():
    with pytest.raises(ConfigError, match="unknown sampler field"):
        Sampler.from_dict({"kind": "dense", "frames": 4, "strde": 2})
    with pytest.raises(ConfigError):
        StreamingSampler(Sampler(), window=0)
