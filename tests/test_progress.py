"""training.progress: a tqdm bar on a terminal, whole lines in a log (no carriage-return updates)."""
from __future__ import annotations

import io
import os
import subprocess
import sys

from training.progress import LineProgress, progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_one_line_per_loop_and_no_carriage_returns():
    log = io.StringIO()
    bar = progress(range(1000), desc="epoch 1/3", unit="batch", file=log)
    for _ in bar:
        bar.set_postfix(loss="0.500")
    assert "\r" not in log.getvalue()
    assert log.getvalue().splitlines() == [log.getvalue().strip()]
    assert log.getvalue().startswith("epoch 1/3: 1000/1000 batch (100 %) in ")
    assert log.getvalue().rstrip().endswith(", loss=0.500")


def test_a_slow_loop_reports_every_n_percent():
    log = io.StringIO()
    with LineProgress(total=100, desc="cache train", unit="video", every=25, interval=0, file=log) as bar:
        for _ in range(100):
            bar.update()
    lines = log.getvalue().splitlines()
    expected = [f"cache train: {n}/100 video ({n} %)" for n in (25, 50, 75, 100)]
    assert [line.split(" in ")[0] for line in lines] == expected


def test_a_transient_loop_prints_nothing_when_done_and_disabled_prints_nothing():
    log = io.StringIO()
    list(progress(range(50), desc="val", leave=False, file=log))
    list(progress(range(50), desc="rank 1", disable=True, file=log))
    assert log.getvalue() == ""


def test_a_terminal_gets_a_tqdm_bar():
    from tqdm import tqdm

    term = _Terminal()
    bar = progress(range(10), desc="epoch", file=term)
    assert isinstance(bar, tqdm)
    list(bar)
    assert "\r" in term.getvalue()


FOREIGN = r"""
import os, sys
from training.logs import filtered_stderr

with filtered_stderr():
    os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
    sys.stderr.write("\rRunning MIL default pipeline:   0%|   | 0/92\rRunning MIL default pipeline: 100%|###| 92/92\n")
    sys.stderr.write("\rcalibrate:  50%|#  | 1/2\rcalibrate: 100%|## | 2/2\n")
    os.write(2, b"I0000 00:00:1796625150.417225   13572 flatbuffer_export.cc:4410] Estimated count of arithmetic "
                b"ops: 156.177 M  ops, equivalently 78.088 M  MACs\n")
    os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nkept: a line of its own\n")
    os.write(2, b"no newline at the end")
"""


def test_native_chatter_is_dropped_and_any_bar_is_one_line_in_a_log():
    """training.logs.filtered_stderr on descriptor 2 going to a log (not a terminal): the known third-party lines
    (native writes and a Core ML bar) are dropped, another bar is written once, in its final state, and every other
    line passes; with EDGEVIDEO_VERBOSE nothing is dropped, and bars are still whole lines."""
    def run(**env: str) -> str:
        done = subprocess.run([sys.executable, "-c", FOREIGN], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**os.environ, "EDGEVIDEO_VERBOSE": "", **env}, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stderr

    assert run() == "calibrate: 100%|## | 2/2\nkept: a line of its own\nno newline at the end"
    assert run(EDGEVIDEO_VERBOSE="1").splitlines() == [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "Running MIL default pipeline: 100%|###| 92/92", "calibrate: 100%|## | 2/2",
        "I0000 00:00:1796625150.417225   13572 flatbuffer_export.cc:4410] Estimated count of arithmetic ops: 156.177 M  "
        "ops, equivalently 78.088 M  MACs",
        "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", "kept: a line of its own", "no newline at the end"]
