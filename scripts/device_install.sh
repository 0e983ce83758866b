#!/usr/bin/env bash
# A device install (Jetson, Raspberry Pi, any Linux box): the runtime without the training stack; torch never lands.
#
#   scripts/device_install.sh VENV            pip install "edgevideo[device]": numpy, PyAV, OpenCV (headless),
#                                             LiteRT, ONNX Runtime -- runs .tflite and .onnx programs
#   scripts/device_install.sh VENV --native   the same, plus .pte programs through the native C++ core:
#                                             executorch==1.5.1 with --no-deps (only its C++ runtime is used: headers,
#                                             libexecutorch, CMake package; its Python side imports torch and is never
#                                             imported), cmake + ninja (pyproject's "native" extra), then
#                                             `python -m sdk.native build` compiles libedgevideo.so for this venv
#
# Why a script and not an extra: pip extras cannot say --no-deps, and executorch's own requirements (torch, torchao,
# pandas, scikit-learn, coremltools, ...) are the gigabytes a device install leaves out.
# Needs Python >= 3.11 and pip's access to the package index; --native also needs a C++17 compiler (g++ or clang++;
# `apt install g++`, JetPack has one). Creates VENV if missing, reuses it otherwise. Ends by checking that torch is
# not installed and that `import sdk` works, prints the venv size and the time taken, and VENV on the last line.
# Environment: EDGEVIDEO_SRC (what pip installs edgevideo from: a checkout, an sdist or a wheel; default this
# checkout), PYTHON (the interpreter that creates VENV; default python3).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
usage() { sed -n '2,8p' "$0" >&2; exit 2; }
[ $# -ge 1 ] || usage
VENV=$1; shift
native=0
for arg in "$@"; do
  case "$arg" in
    --native) native=1 ;;
    *) usage ;;
  esac
done
SRC=${EDGEVIDEO_SRC:-$ROOT}
PYTHON=${PYTHON:-python3}
ET_VERSION=1.5.1
say() { echo "device_install: $*" >&2; }
t0=$(date +%s.%N)

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { say "Python >= 3.11 needed ($PYTHON)"; exit 1; }
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY=$VENV/bin/python
# pip install "$@": pip's own exit status decides; its output goes to stderr without the index's "Location ... is
# ignored" warnings
pip_install() {
  local log status=0
  log=$(mktemp)
  "$PY" -m pip install -q --disable-pip-version-check "$@" >"$log" 2>&1 || status=$?
  sed '/^WARNING: Location/d' "$log" >&2
  rm -f "$log"
  [ "$status" -eq 0 ] || { say "pip install $* failed (status $status): see above"; exit 1; }
}

if [ "$native" = 1 ]; then
  say "installing edgevideo[device,native] from $SRC into $VENV"
  pip_install "$SRC[device,native]"
  say "installing executorch==$ET_VERSION without its dependencies (the C++ runtime the native core links)"
  pip_install --no-deps "executorch==$ET_VERSION"
  # -P: never import sdk from the current directory (a checkout), only the installed package; the venv's cmake and
  # ninja first on PATH
  say "building the native core (python -m sdk.native build)"
  build=$(PATH="$VENV/bin:$PATH" "$PY" -P -m sdk.native build) || { say "building the native core failed (see above)"; exit 1; }
  say "native core: $build"
else
  say "installing edgevideo[device] from $SRC into $VENV"
  pip_install "$SRC[device]"
fi

"$PY" -P -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is not None)' \
  || { say "torch is installed in $VENV: a device install must not pull it (pip list shows who did)"; exit 1; }
"$PY" -P -c 'import sdk, sys; assert "torch" not in sys.modules' || { say "import sdk failed in $VENV"; exit 1; }
say "done in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }'), $(du -sm "$VENV" | cut -f1) MB in $VENV (no torch)"
echo "$VENV"
