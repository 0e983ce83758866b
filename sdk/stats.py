"""Latency statistics of a classifier: p50 / p95 per stage and frame counts, in bounded memory.

Stages (milliseconds, measured with ``time.perf_counter``):

==============  ==================================================================================================
``decode``      producing the RGB frame: the frame callable of a lazy push, or ``read_indices`` of a file (whole
                request, divided evenly over the frames it returned)
``sample``      the streaming sampler's keep/drop decision (and the bookkeeping of the window / segment)
``preprocess``  resize + crop (+ scale / normalisation not done inside the program) of one kept frame
``model``       one program call: a clip program (clip / FASTER clip bundles) or a step program (stream bundles)
``aggregate``   turning program outputs into a prediction: the FASTER aggregator program, the mean of a window's
                step logits, softmax, top-k and smoothing
==============  ==================================================================================================

Each stage keeps its last ``window`` samples (a ring buffer: memory stays flat on an endless stream) for the
percentiles, and running totals over everything for :meth:`LatencyStats.outside_model_share`. A FASTER bundle also
counts its segments and those the expensive clip model saw (``expensive_share``: the adaptive gate's fire rate, or
the fixed schedule's share).
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np

__all__ = ["STAGES", "LatencyStats", "StageClock", "StageSummary"]

STAGES = ("decode", "sample", "preprocess", "model", "aggregate")
# Work the runtime adds around the model (decode excluded: it depends on the source, not on the runtime).
OVERHEAD_STAGES = ("sample", "preprocess", "aggregate")


@dataclass(frozen=True)
class StageSummary:
    stage: str
    count: int
    p50_ms: float
    p95_ms: float
    mean_ms: float
    total_ms: float


class LatencyStats:
    """Per-stage latencies and frame counts of one classifier (not thread-safe, like the classifier)."""

    def __init__(self, window: int = 4096):
        self.window = int(window)
        self.reset()

    def reset(self) -> None:
        self._samples = {s: deque(maxlen=self.window) for s in STAGES}
        self._totals = dict.fromkeys(STAGES, 0.0)
        self._counts = dict.fromkeys(STAGES, 0)
        self.frames_seen = 0
        self.frames_kept = 0
        self.frames_dropped = 0
        self.frame_errors = 0
        self.predictions = 0
        self.segments = 0  # FASTER segments classified
        self.expensive_segments = 0  # of which the expensive clip model saw

    def add(self, stage: str, ms: float) -> None:
        self._samples[stage].append(ms)
        self._totals[stage] += ms
        self._counts[stage] += 1

    def summary(self, stage: str) -> StageSummary:
        samples = self._samples[stage]
        count, total = self._counts[stage], self._totals[stage]
        if not samples:
            return StageSummary(stage, 0, 0.0, 0.0, 0.0, 0.0)
        p50, p95 = np.percentile(np.fromiter(samples, float, len(samples)), [50, 95])
        return StageSummary(stage, count, float(p50), float(p95), total / count, total)

    def total_ms(self, stages: tuple[str, ...] = STAGES) -> float:
        return sum(self._totals[s] for s in stages)

    @property
    def expensive_share(self) -> float | None:
        """Share of FASTER segments the expensive clip model ran on; None before any segment."""
        return self.expensive_segments / self.segments if self.segments else None

    def outside_model_share(self) -> float:
        """Share of the runtime's own time (sample + preprocess + model + aggregate; decode excluded) spent outside
        the programs: in sampling, preprocessing and aggregation. 0.0 before any work."""
        inside = self._totals["model"]
        outside = self.total_ms(OVERHEAD_STAGES)
        return outside / (inside + outside) if inside + outside > 0 else 0.0

    def as_dict(self) -> dict:
        return {"frames_seen": self.frames_seen, "frames_kept": self.frames_kept,
                "frames_dropped": self.frames_dropped, "frame_errors": self.frame_errors,
                "predictions": self.predictions, "outside_model_share": self.outside_model_share(),
                "segments": self.segments, "expensive_segments": self.expensive_segments,
                "stages": {s: vars(self.summary(s)) for s in STAGES}}

    def table(self) -> str:
        """A fixed-width table: stage | calls | p50 ms | p95 ms | mean ms | total ms, then the frame counts."""
        head = ("stage", "calls", "p50 ms", "p95 ms", "mean ms", "total ms")
        rows = [(s.stage, str(s.count), f"{s.p50_ms:.3f}", f"{s.p95_ms:.3f}", f"{s.mean_ms:.3f}",
                 f"{s.total_ms:.1f}") for s in map(self.summary, STAGES)]
        widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
        fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
        lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths)), *(fmt.format(*r) for r in rows)]
        lines.append(f"frames: {self.frames_seen} seen, {self.frames_kept} kept, {self.frames_dropped} dropped "
                     f"before decoding, {self.frame_errors} bad; {self.predictions} predictions; "
                     f"outside the model (sample+preprocess+aggregate): {100 * self.outside_model_share():.2f}%")
        if self.segments:
            lines.append(f"FASTER: the expensive model ran on {self.expensive_segments} of {self.segments} segments "
                         f"({100 * self.expensive_share:.1f}%)")
        return "\n".join(lines)


class StageClock:
    """Times consecutive stages of one prediction: each :meth:`timed` call adds a sample to ``stats`` and to the
    current lap (per-stage milliseconds since the last :meth:`take_lap`: a prediction's ``latency_ms``)."""

    def __init__(self, stats: LatencyStats):
        self.stats = stats
        self.lap = dict.fromkeys(STAGES, 0.0)

    def timed(self, stage: str, t0: float) -> float:
        """Record ``stage`` as lasting from ``t0`` (``time.perf_counter``) until now; returns now."""
        t1 = time.perf_counter()
        ms = (t1 - t0) * 1e3
        self.stats.add(stage, ms)
        self.lap[stage] += ms
        return t1

    def take_lap(self) -> dict[str, float]:
        """The current lap, and a new one started."""
        lap, self.lap = self.lap, dict.fromkeys(STAGES, 0.0)
        return lap
