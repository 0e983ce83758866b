"""Cold and warm first prediction per runtime: ``python -m sdk bench --bundle B --first-prediction VIDEO``.

What a person waits for when they type ``python -m sdk classify VIDEO --bundle B``: a fresh process that imports the
runtime, loads the programs, decodes the video and answers. For every runtime that can run the bundle here -- the
native core (when its build is cached: ``python -m sdk.native build``) and each Python runner whose programs the
bundle has -- this runs

* **cold**: the command itself, ``python -m sdk classify ... --json`` in a new process, wall time from start to exit
  (median of ``repeats``; the operating system's file cache is warm after the first, as it is for a user's second
  command);
* **in process**, one more fresh process: the time to import and load, the first ``classify`` and a second one of
  the same video (**warm**: programs loaded, allocator and threadpool started).

Every runtime must give the same top label (a runtime that answered differently would be timed for nothing).
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from sdk.backends.table import BACKENDS
from sdk.bundle import Bundle
from sdk.errors import ConfigError
from sdk.runtime import first_choice, is_available

__all__ = ["FirstPrediction", "as_dict", "auto_runtime", "first_prediction_times", "runtimes_for", "table"]

# Imports, loads and classifies twice, timing each step (argv: runtime, bundle, video, precision or "").
_IN_PROCESS = r"""
import json, sys, time
t0 = time.perf_counter()
runtime, bundle, video, precision = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] or None
if runtime == "native":
    from sdk.native.stream import NativeVideoClassifier
    clf = NativeVideoClassifier(bundle, precision=precision)
else:
    import sdk
    from sdk.classifier import VideoClassifier
    clf = VideoClassifier(sdk.load(bundle, backend=runtime, precision=precision))
t1 = time.perf_counter()
first = clf.classify(video)
t2 = time.perf_counter()
clf.classify(video)
t3 = time.perf_counter()
print(json.dumps({"load_s": t1 - t0, "first_s": t2 - t1, "warm_s": t3 - t2, "label": first.labels[0],
                  "precision": clf.precision if runtime == "native" else clf.model.precision}))
"""


@dataclass(frozen=True)
class FirstPrediction:
    runtime: str  # "native", or a Python backend
    precision: str
    cold_s: float  # `python -m sdk classify` in a new process, start to exit (median)
    load_s: float  # in process: imports + loading the programs
    first_s: float  # in process: the first classify (decode + preprocess + programs)
    warm_s: float  # in process: the same classify again
    label: str


def runtimes_for(bundle: str | Path, precision: str | None = None) -> list[str]:
    """The runtimes that can run ``bundle`` here: ``native`` when it has .pte programs and the core's build is
    cached, then every available Python backend it has programs for (in :data:`sdk.backends.table.BACKENDS`'s order)."""
    from sdk.native import cached_build

    with Bundle(bundle) as b:
        have = {p.backend for p in b.manifest.programs if precision is None or p.precision == precision}
    found = ["native"] if "executorch" in have and cached_build() is not None else []
    return found + [be for be in BACKENDS if be in have and is_available(be)]


def first_prediction_times(bundle: str | Path, video: str | Path, *, runtimes: list[str] | None = None,
                           precision: str | None = None, repeats: int = 3) -> list[FirstPrediction]:
    """One :class:`FirstPrediction` per runtime (default: :func:`runtimes_for`); raises ConfigError when a runtime
    fails or the runtimes disagree on the top label."""
    if not Path(video).is_file():
        raise ConfigError(f"video {video} does not exist")
    if repeats < 1:
        raise ConfigError(f"repeats must be >= 1, got {repeats}")
    rows = []
    for runtime in runtimes or runtimes_for(bundle, precision):
        flags = ["--runtime", "native"] if runtime == "native" else ["--runtime", "python", "--backend", runtime]
        if precision:
            flags += ["--precision", precision]
        command = [sys.executable, "-m", "sdk", "classify", str(video), "--bundle", str(bundle), "--json", *flags]
        walls = []
        for _ in range(repeats):
            started = time.perf_counter()
            _run(command, runtime)
            walls.append(time.perf_counter() - started)
        inside = json.loads(_run([sys.executable, "-c", _IN_PROCESS, runtime, str(bundle), str(video),
                                  precision or ""], runtime))
        rows.append(FirstPrediction(runtime, inside["precision"], statistics.median(walls), inside["load_s"],
                                    inside["first_s"], inside["warm_s"], inside["label"]))
    if len({r.label for r in rows}) > 1:
        raise ConfigError("the runtimes disagree on the top label: " + ", ".join(f"{r.runtime} {r.label}" for r in rows))
    return rows


def _run(command: list[str], runtime: str) -> str:
    proc = subprocess.run(command, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise ConfigError(f"{runtime}: {' '.join(command[:4])} ... failed: {proc.stderr.strip()[-1500:]}")
    return proc.stdout


def table(rows: list[FirstPrediction], auto: str | None = None) -> str:
    """The rows as a text table; ``auto``: the runtime ``python -m sdk classify`` picks by itself, marked."""
    lines = [f"{'runtime':<12} {'precision':<9} {'cold s':>7} {'load s':>7} {'first s':>8} {'warm s':>7}  top-1",
             "-" * 62]
    for r in rows:
        mark = "  <- auto" if r.runtime == auto else ""
        lines.append(f"{r.runtime:<12} {r.precision:<9} {r.cold_s:>7.2f} {r.load_s:>7.2f} {r.first_s:>8.3f} "
                     f"{r.warm_s:>7.3f}  {r.label}{mark}")
    lines.append("cold: `python -m sdk classify --json` in a new process, start to exit (median); load, first, warm: "
                 "in one process (imports + load, first classify, the same classify again)")
    return "\n".join(lines)


def auto_runtime(bundle: str | Path, precision: str | None = None) -> str | None:
    """The runtime ``python -m sdk classify`` picks with no option (``sdk/__main__.py``: the cached core for a
    bundle whose first choice is a .pte)."""
    from sdk.native import cached_build

    with Bundle(bundle) as b:
        first = first_choice(b.manifest, "auto", precision)
    if first is None:
        return None
    return "native" if first[0] == "executorch" and cached_build() is not None else first[0]


def as_dict(rows: list[FirstPrediction]) -> list[dict]:
    return [asdict(r) for r in rows]
