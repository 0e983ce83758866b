"""``python -m sdk bench``: per-frame latency of every available backend of one or more bundles, side by side.

Method (docs/design.md "Measuring": ratios measured side by side in one run, the machines are shared and noisy):

* every program of every bundle on every available backend (and optional eager-torch ``.pt2`` reference programs)
  is loaded, warmed up, then timed **round-robin**: one burst of calls per program in turn until each has
  ``seconds`` of samples, so that a background load hits all of them alike;
* two passes: **1 thread** with the process pinned to one core (``os.sched_setaffinity``) and every runtime set to
  one thread -- ExecuTorch's threadpool ignores ``torch.set_num_threads`` and is reset with
  ``_unsafe_reset_threadpool(1)`` (process-wide), LiteRT ``num_threads=1``, ONNX Runtime ``intra_op_num_threads=1``,
  torch ``set_num_threads(1)`` -- then **all threads**: unpinned, every runtime set to the number of usable cores;
* per-frame latency = a call's time divided by the frames in its input (a clip program of T frames: T; a stream
  step: 1; a FASTER aggregator step: reported per call); p50 / p95 over the calls; ``speed-up`` = the baseline's
  p50 / this p50, the baseline being the first torch reference if given, else the first row.

Inputs are random values in the program's input range (uniform [0, 255] frames, zero state); the time of a
program does not depend on them.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sdk.backends import Runner
from sdk.backends.table import auto_rank, get_backend
from sdk.bundle import Bundle
from sdk.errors import ConfigError, SdkError
from sdk.runtime import is_available, load

__all__ = ["BenchOptions", "BenchReport", "run_bench"]


@dataclass
class BenchOptions:
    bundles: list[Path]
    torch_programs: list[str] = field(default_factory=list)  # "NAME=PATH.pt2"
    backends: list[str] | None = None
    seconds: float = 2.0
    warmup: int = 5
    core: int = 0
    all_threads: bool = True
    baseline: str | None = None  # a bundle name: rows also as ratios to its row (same runtime, precision, pass)

    def __post_init__(self) -> None:
        if not self.bundles and not self.torch_programs:
            raise ConfigError("bench needs at least one --bundle")
        for b in self.backends or []:
            get_backend(b)  # an unknown name raises ConfigError naming the valid ones
        if self.seconds <= 0 or self.warmup < 0:
            raise ConfigError("seconds must be > 0 and warmup >= 0")


@dataclass
class _Entry:
    name: str
    runner: Runner
    inputs: list[np.ndarray]
    frames: int | None
    bundle: str | None = None  # manifest name; None for an eager-torch program
    backend: str = "torch"
    precision: str = "fp32"
    samples: list[float] = field(default_factory=list)


@dataclass
class Row:
    name: str
    threads: str
    frames: int | None
    p50_ms: float
    p95_ms: float
    calls: int
    speedup: float | None = None
    bundle: str | None = None
    backend: str = "torch"
    precision: str = "fp32"
    vs_baseline: float | None = None  # p50 / the baseline bundle's p50 (same backend, precision and pass)


@dataclass
class BenchReport:
    rows: list[Row]
    skipped: list[str]
    host: str
    baseline: str | None = None

    def table(self) -> str:
        head = ("program", "threads", "frames/call", "per-frame p50 ms", "p95 ms", "calls", "speed-up",
                *([f"vs {self.baseline}"] if self.baseline else []))
        rows = [(r.name, r.threads, "-" if r.frames is None else str(r.frames), f"{r.p50_ms:.3f}", f"{r.p95_ms:.3f}",
                 str(r.calls), "-" if r.speedup is None else f"{r.speedup:.2f}x",
                 *([("-" if r.vs_baseline is None else f"{r.vs_baseline:.2f}x")] if self.baseline else []))
                for r in self.rows]
        widths = [max(len(x[i]) for x in (head, *rows)) for i in range(len(head))]
        fmt = "  ".join(f"{{:<{w}}}" if i < 2 else f"{{:>{w}}}" for i, w in enumerate(widths))
        lines = [self.host, fmt.format(*head), fmt.format(*("-" * w for w in widths)), *(fmt.format(*r) for r in rows)]
        lines += [f"skipped: {s}" for s in self.skipped]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"host": self.host, "baseline": self.baseline, "rows": [vars(r) for r in self.rows],
                "skipped": self.skipped}

    def plot(self, path: Path) -> Path:
        """A PNG: per-frame p50 (p95 as the whisker) of every program, one panel per thread pass, fp32 and int8 in
        their own colours; with a baseline, each bar is labelled with its ratio to the baseline."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        passes = list(dict.fromkeys(r.threads for r in self.rows))
        colours = {"fp32": "tab:blue", "fp16": "tab:green", "int8": "tab:orange"}
        height = max(2.5, 0.32 * max(sum(r.threads == t for r in self.rows) for t in passes) + 1.2)
        fig, axes = plt.subplots(1, len(passes), figsize=(7 * len(passes), height), squeeze=False)
        for ax, threads in zip(axes[0], passes):
            rows = [r for r in self.rows if r.threads == threads][::-1]
            y = np.arange(len(rows))
            ax.barh(y, [r.p50_ms for r in rows], xerr=[[0] * len(rows), [r.p95_ms - r.p50_ms for r in rows]],
                    color=[colours.get(r.precision, "tab:grey") for r in rows], capsize=2)
            ax.set_yticks(y, [r.name for r in rows], fontsize=7)
            for yi, r in zip(y, rows):
                if r.vs_baseline is not None:
                    ax.text(r.p95_ms, yi, f" {r.vs_baseline:.2f}x", va="center", fontsize=7)
            ax.set_xlabel("per-frame latency, p50 ms (whisker: p95)")
            ax.set_xlim(0, 1.15 * max(r.p95_ms for r in rows))
            ax.set_title(f"threads: {threads}", fontsize=9)
        used = [p for p in colours if any(r.precision == p for r in self.rows)]
        axes[0][-1].legend([plt.Rectangle((0, 0), 1, 1, color=colours[p]) for p in used], used, fontsize=7,
                           loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.suptitle(self.host + (f"; ratios vs {self.baseline}" if self.baseline else ""), fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path


def _inputs(runner_inputs: list[tuple[tuple[int, ...], bool]], rng: np.random.Generator) -> list[np.ndarray]:
    return [(rng.uniform(0, 255, shape) if frame else np.zeros(shape)).astype(np.float32)
            for shape, frame in runner_inputs]


def _entries(opts: BenchOptions, threads: int, rng: np.random.Generator, skipped: list[str]) -> list[_Entry]:
    entries = []
    for spec in opts.torch_programs:
        name, _, path = spec.rpartition("=")
        from sdk.backends import torch_reference

        runner = torch_reference.load(Path(path), threads=threads)
        shapes = [tuple(t.shape) for t in runner.example_inputs]
        entries.append(_Entry(f"{name or Path(path).stem} torch eager", runner,
                              _inputs([(s, i == 0) for i, s in enumerate(shapes)], rng),
                              shapes[0][0] if len(shapes) == 1 else 1))
    for path in opts.bundles:
        with Bundle(path) as bundle:
            pairs = sorted({(p.backend, p.precision) for p in bundle.manifest.programs},
                           key=lambda bp: auto_rank(bp[0]))
        for backend, precision in pairs:
            if opts.backends is not None and backend not in opts.backends:
                continue
            if not is_available(backend):
                skipped.append(f"{Path(path).name} {backend} {precision}: runtime not available on this host")
                continue
            try:
                model = load(path, backend=backend, precision=precision, threads=threads)
            except SdkError as e:
                skipped.append(f"{Path(path).name} {backend} {precision}: {e}")
                continue
            for role, program in model.programs.items():
                shapes = [t.shape for t in program.inputs] + [t.shape for t in program.state]
                frames = program.inputs[0].shape[0] if program.mode == "clip" else (
                    1 if program.mode == "stream" else None)
                label = f"{model.manifest.name} {backend} {precision} {program.mode}" + (
                    "" if role == "model" else f" [{role}]")
                entries.append(_Entry(label, model.runners[role],
                                      _inputs([(s, program.mode != "aggregate" and i == 0)
                                               for i, s in enumerate(shapes)], rng), frames,
                                      model.manifest.name, backend, precision))
    return entries


def _measure(entries: list[_Entry], seconds: float, warmup: int) -> None:
    for e in entries:
        for _ in range(warmup):
            e.runner.run(e.inputs)
    spent = dict.fromkeys(range(len(entries)), 0.0)
    burst = 0.05  # seconds per program per round
    while min(spent.values()) < seconds:
        for k, e in enumerate(entries):
            if spent[k] >= seconds:
                continue
            start = time.perf_counter()
            while time.perf_counter() - start < burst:
                t0 = time.perf_counter()
                e.runner.run(e.inputs)
                e.samples.append(time.perf_counter() - t0)
            spent[k] += time.perf_counter() - start


def _rows(entries: list[_Entry], threads: str, baseline: str | None) -> list[Row]:
    rows = []
    for e in entries:
        ms = np.asarray(e.samples) * 1e3 / (e.frames or 1)
        rows.append(Row(e.name, threads, e.frames, float(np.percentile(ms, 50)), float(np.percentile(ms, 95)),
                        len(ms), bundle=e.bundle, backend=e.backend, precision=e.precision))
    base = next((r for r in rows if r.name.endswith("torch eager")), rows[0] if rows else None)
    for r in rows:  # per-frame figures compare; a per-call aggregator step does not
        r.speedup = base.p50_ms / r.p50_ms if base is not None and r.frames and base.frames else None
        ref = next((b for b in rows if baseline is not None and b.bundle == baseline and b.backend == r.backend
                    and b.precision == r.precision and b.frames), None)
        r.vs_baseline = r.p50_ms / ref.p50_ms if ref is not None and r.frames else None
    return rows


def run_bench(opts: BenchOptions) -> BenchReport:
    """Both passes (see the module docstring); the process affinity is restored afterwards."""
    rng = np.random.default_rng(0)
    skipped: list[str] = []
    rows: list[Row] = []
    original = os.sched_getaffinity(0)
    cores = len(original)
    try:
        os.sched_setaffinity(0, {opts.core})
        entries = _entries(opts, 1, rng, skipped)
        _measure(entries, opts.seconds, opts.warmup)
        rows += _rows(entries, f"1 (core {opts.core})", opts.baseline)
        del entries
        if opts.all_threads and cores > 1:
            os.sched_setaffinity(0, original)
            entries = _entries(opts, cores, rng, [])
            _measure(entries, opts.seconds, opts.warmup)
            rows += _rows(entries, f"{cores} (all)", opts.baseline)
    finally:
        os.sched_setaffinity(0, original)
    host = (f"host: {os.uname().machine}, {cores} usable cores, load average "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; {opts.seconds:g} s per program and pass, round-robin")
    if opts.baseline is not None and not any(r.bundle == opts.baseline for r in rows):
        raise ConfigError(f"--baseline {opts.baseline!r} is not the name of a benched bundle; names: "
                          f"{', '.join(sorted({r.bundle for r in rows if r.bundle}))}")
    return BenchReport(rows, sorted(set(skipped)), host, opts.baseline)
