"""The product stands alone: nothing tracked in the repository points the reader to a file outside it (the briefing
notes the project was started from are not part of it; the design lives in docs/design.md)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"\.\./shared\b|\b(?:DESIGN|TOOLCHAIN|STYLE)\.md\b")


def test_no_reference_to_a_file_outside_the_repository() -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    found = []
    for name in filter(None, files):
        path = ROOT / name.decode()
        if path.name == Path(__file__).name or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary: images, wheels
        found += [f"{name.decode()}:{n}: {line.strip()}" for n, line in enumerate(text.splitlines(), 1)
                  if OUTSIDE.search(line)]
    assert not found, "references to files outside the repository:\n" + "\n".join(found)
