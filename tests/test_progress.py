"""training.progress: a tqdm bar on a terminal, whole lines in a log (no carriage-return updates)."""
from __future__ import annotations

import io

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
