"""Tests do not change the host: the system packages and downloads they need come from ``scripts/system_setup.sh``,
which ``scripts/test.sh`` runs before pytest. A test only locates them -- its set-up scripts run with
``EDGEVIDEO_NO_INSTALL=1`` whatever the caller's environment -- and when one is missing it fails, never skips, with one
line naming the set-up command (the script's whole stderr goes to the test's captured output).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETUP = "run scripts/test.sh, or scripts/system_setup.sh"


def missing(what: str) -> NoReturn:
    """Fail the test: ``what`` is missing from the host, and the command that sets it up."""
    pytest.fail(f"{what}: {SETUP}", pytrace=False)


def located(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``scripts/SCRIPT ARGS`` with installs and downloads off (``env`` added to this process's environment)."""
    proc = subprocess.run([str(ROOT / "scripts" / script), *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False,
                          env={**os.environ, **(env or {}), "EDGEVIDEO_NO_INSTALL": "1"})
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        reason = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        what = f"scripts/{' '.join((script, *args))} failed: {reason}"
        if SETUP in reason:  # the set-up scripts' own refusal under EDGEVIDEO_NO_INSTALL names it already
            pytest.fail(what, pytrace=False)
        missing(what)
    return proc
