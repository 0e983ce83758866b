#!/usr/bin/env bash
# Set up (or reuse) the environment and the system tools the tests use, then run the test suite. Extra arguments go to pytest (e.g. -m slow).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(scripts/env.sh)
VENV="$VENV" scripts/system_setup.sh >&2  # Debian packages, kotlinc, Chromium, npm: installed here, never by a test
export EDGEVIDEO_NO_INSTALL=1
exec "$VENV/bin/python" -m pytest "$@"
