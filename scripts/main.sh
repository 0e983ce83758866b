#!/usr/bin/env bash
# The main job on the built-in default: set up the environment, then generate the time-reversal benchmark, train, evaluate,
# export the student as a bundle and stream validation videos through the sdk runtime.
# Extra arguments go to `python -m edgevideo.pipeline` (e.g. --preset tiny).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(scripts/env.sh)
exec "$VENV/bin/python" -m edgevideo.pipeline "$@"
