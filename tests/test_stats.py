"""sdk.stats.StageClock: every timed stage goes to the statistics and to the current prediction's lap; a lap ends
when it is taken (a prediction's ``latency_ms`` covers only the work since the previous prediction)."""
from __future__ import annotations

import time

from sdk.stats import STAGES, LatencyStats, StageClock


def test_laps_restart_and_statistics_keep_every_sample():
    stats = LatencyStats()
    clock = StageClock(stats)
    t0 = time.perf_counter() - 0.004  # a stage that started 4 ms ago
    t1 = clock.timed("model", t0)
    assert t1 >= t0 + 0.004
    clock.timed("preprocess", time.perf_counter() - 0.002)
    first = clock.take_lap()
    assert set(first) == set(STAGES) and first["model"] >= 4.0 and first["preprocess"] >= 2.0 and first["decode"] == 0
    clock.timed("model", time.perf_counter() - 0.001)
    second = clock.take_lap()
    assert 1.0 <= second["model"] < first["model"] and second["preprocess"] == 0.0
    assert stats.summary("model").count == 2 and stats.summary("preprocess").count == 1
    clock.stats = other = LatencyStats()  # a classifier may hand the clock a shared record
    clock.timed("sample", time.perf_counter())
    assert other.summary("sample").count == 1 and stats.summary("sample").count == 0
