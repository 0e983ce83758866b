#!/usr/bin/env bash
# Set up (or reuse) the environment and run the test suite. Extra arguments go to pytest (e.g. -m slow).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(scripts/env.sh)
exec "$VENV/bin/python" -m pytest "$@"
