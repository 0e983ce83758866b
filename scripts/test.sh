#!/usr/bin/env bash
# Set up (or reuse) the environment and the system tools the tests use, then run the test suite. Extra arguments go to pytest (e.g. -m slow).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(scripts/env.sh)
VENV="$VENV" scripts/system_setup.sh >&2  # Debian packages, kotlinc, Chromium, npm: installed here, never by a test
export EDGEVIDEO_NO_INSTALL=1
# one pytest worker per core, at most 4 (each holds torch and the exporters: ~2 GB; EDGEVIDEO_TEST_WORKERS=0: none),
# each file on one worker (its tests share its module fixtures; tests/conftest.py queues the heaviest files first),
# and a worker's torch runs one thread so that the workers do not oversubscribe the cores
cores=$(nproc)
exec "$VENV/bin/python" -m pytest -n "${EDGEVIDEO_TEST_WORKERS:-$(( cores < 4 ? cores : 4 ))}" \
    --dist loadfile --no-loadscope-reorder "$@"
