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
#   scripts/device_install.sh --wheels        download every wheel those two take (and edgevideo's build backend)
#                                             into $EDGEVIDEO_WHEELHOUSE (default ~/.cache/edgevideo/wheelhouse) and
#                                             print it: with PIP_NO_INDEX=1 PIP_FIND_LINKS=that folder the installs
#                                             need no index (an offline device; tests/test_device_install.py, whose
#                                             wheels scripts/system_setup.sh fetches). Reused while pyproject.toml is
#                                             unchanged; with EDGEVIDEO_NO_INSTALL=1 it only locates them.
#
# Why a script and not an extra: pip extras cannot say --no-deps, and executorch's own requirements (torch, torchao,
# pandas, scikit-learn, coremltools, ...) are the gigabytes a device install leaves out.
# Needs Python >= 3.11 and pip's access to the package index (or the wheelhouse of --wheels); --native also needs a
# C++17 compiler (g++ or clang++; `apt install g++`, JetPack has one). Creates VENV if missing, reuses it otherwise.
# Ends by checking that torch is not installed and that `import sdk` works, prints the venv size and the time taken,
# and VENV on the last line.
# Environment: EDGEVIDEO_SRC (what pip installs edgevideo from: a checkout, an sdist or a wheel; default this
# checkout), PYTHON (the interpreter that creates VENV; default python3).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
usage() { sed -n '2,16p' "$0" >&2; exit 2; }
[ $# -ge 1 ] || usage
PYTHON=${PYTHON:-python3}
ET_VERSION=1.5.1
say() { echo "device_install: $*" >&2; }
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { say "Python >= 3.11 needed ($PYTHON)"; exit 1; }
# PY -m pip COMMAND ARGS: pip's own exit status decides; its output goes to stderr without the index's "Location ...
# is ignored" warnings
pip_run() {
  local py=$1 log status=0
  shift
  log=$(mktemp)
  "$py" -m pip "$1" -q --disable-pip-version-check "${@:2}" >"$log" 2>&1 || status=$?
  sed '/^WARNING: Location/d' "$log" >&2
  rm -f "$log"
  [ "$status" -eq 0 ] || { say "pip $* failed (status $status): see above"; exit 1; }
}

# --wheels: the wheelhouse, stamped with the pyproject.toml it was filled for
if [ "$1" = --wheels ]; then
  [ $# -eq 1 ] || usage
  WHEELS=${EDGEVIDEO_WHEELHOUSE:-$HOME/.cache/edgevideo/wheelhouse}
  want=$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)
  if [ "$(cat "$WHEELS/.complete" 2>/dev/null)" != "$want" ]; then
    if [ "${EDGEVIDEO_NO_INSTALL:-}" = 1 ]; then
      say "no wheelhouse for this pyproject.toml in $WHEELS, and EDGEVIDEO_NO_INSTALL=1 (tests never download): run scripts/test.sh, or scripts/system_setup.sh"
      exit 1
    fi
    # the build backend, numpy and the device and native extras, read from pyproject.toml
    mapfile -t specs < <("$PYTHON" - "$ROOT/pyproject.toml" <<'PYEOF'
import sys, tomllib
meta = tomllib.load(open(sys.argv[1], "rb"))
project, extras = meta["project"], meta["project"]["optional-dependencies"]
print(*meta["build-system"]["requires"], *project["dependencies"], *extras["device"], *extras["native"], sep="\n")
PYEOF
)
    say "downloading the device install's wheels into $WHEELS"
    pip_run "$PYTHON" download -d "$WHEELS" "${specs[@]}"
    pip_run "$PYTHON" download -d "$WHEELS" --no-deps "executorch==$ET_VERSION"
    echo "$want" > "$WHEELS/.complete"
  fi
  echo "$WHEELS"
  exit 0
fi

VENV=$1; shift
native=0
for arg in "$@"; do
  case "$arg" in
    --native) native=1 ;;
    *) usage ;;
  esac
done
SRC=${EDGEVIDEO_SRC:-$ROOT}
t0=$(date +%s.%N)

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY=$VENV/bin/python
if [ "$native" = 1 ]; then
  say "installing edgevideo[device,native] from $SRC into $VENV"
  pip_run "$PY" install "$SRC[device,native]"
  say "installing executorch==$ET_VERSION without its dependencies (the C++ runtime the native core links)"
  pip_run "$PY" install --no-deps "executorch==$ET_VERSION"
  # -P: never import sdk from the current directory (a checkout), only the installed package; the venv's cmake and
  # ninja first on PATH
  say "building the native core (python -m sdk.native build)"
  build=$(PATH="$VENV/bin:$PATH" "$PY" -P -m sdk.native build) || { say "building the native core failed (see above)"; exit 1; }
  say "native core: $build"
else
  say "installing edgevideo[device] from $SRC into $VENV"
  pip_run "$PY" install "$SRC[device]"
fi

"$PY" -P -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is not None)' \
  || { say "torch is installed in $VENV: a device install must not pull it (pip list shows who did)"; exit 1; }
"$PY" -P -c 'import sdk, sys; assert "torch" not in sys.modules' || { say "import sdk failed in $VENV"; exit 1; }
say "done in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }'), $(du -sm "$VENV" | cut -f1) MB in $VENV (no torch)"
echo "$VENV"
