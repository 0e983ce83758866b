#!/usr/bin/env bash
# The native core on aarch64, checked under emulation: cross-builds sdk/native (libedgevideo.so + edgevideo_cli) for
# aarch64 Linux against ExecuTorch's manylinux_2_28_aarch64 wheel and runs `edgevideo_cli check` (the bundle's golden
# vectors, every .pte program) under qemu-aarch64.
#
#   scripts/arm64_check.sh BUNDLE [BUNDLE ...]   exit 0 only when every program of every bundle reproduces its
#                                                golden vectors on aarch64 within the bundle's tolerances
#   scripts/arm64_check.sh --build               install/fetch/build only; prints the build directory, which holds
#                                                edgevideo_cli, libedgevideo.so, uname_m and qemu-run (runs an
#                                                aarch64 binary there: qemu-run ./edgevideo_cli ARGS)
#   scripts/arm64_check.sh --fetch               install/fetch only (scripts/system_setup.sh: the tests then build
#                                                with EDGEVIDEO_NO_INSTALL=1, which installs and downloads nothing)
#
# Environment: EDGEVIDEO_ARM64_CACHE (default ~/.cache/edgevideo/arm64: the wheel, the unpacked runtime, the builds,
# all reused on a rerun), EDGEVIDEO_ARM64_CPU (the emulated CPU, default cortex-a76: ARMv8.2-A + dotprod + fp16, the
# feature set of Jetson Orin's Cortex-A78AE; `qemu-aarch64 -cpu help` lists others), EDGEVIDEO_PYTHON (the Python
# whose pip downloads the wheel and which builds through sdk.native.build; default: the project venv, scripts/env.sh).
# Installs the cross compiler and qemu-user with apt-get when they are missing (scripts/arm64_toolchain.sh), and
# downloads the wheel, unless EDGEVIDEO_NO_INSTALL=1: then a missing one is an error naming the set-up command.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${EDGEVIDEO_ARM64_CACHE:-$HOME/.cache/edgevideo/arm64}
CPU=${EDGEVIDEO_ARM64_CPU:-cortex-a76}
ET_VERSION=1.5.1
SYSROOT=/usr/aarch64-linux-gnu
TOOLCHAIN=$ROOT/sdk/native/cmake/aarch64-linux-gnu.cmake

build_only=0
fetch_only=0
bundles=()
for arg in "$@"; do
  case "$arg" in
    --build) build_only=1 ;;
    --fetch) fetch_only=1 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    -*) echo "unknown option $arg (see $0 --help)" >&2; exit 2 ;;
    *) bundles+=("$arg") ;;
  esac
done
if [ "$build_only" = 0 ] && [ "$fetch_only" = 0 ] && [ "${#bundles[@]}" = 0 ]; then
  echo "usage: $0 BUNDLE [BUNDLE ...] | --build | --fetch" >&2
  exit 2
fi
say() { echo "arm64: $*" >&2; }
t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }'; }

PY=${EDGEVIDEO_PYTHON:-$("$ROOT/scripts/env.sh")/bin/python}
export PATH="$(dirname "$PY"):$PATH"  # the venv's cmake / ninja, when it has them
"$ROOT/scripts/arm64_toolchain.sh" >&2

# 1. ExecuTorch's aarch64 wheel (its C++ runtime: headers, shared libraries, CMake package), unpacked once
ET=$CACHE/executorch-$ET_VERSION-aarch64
if [ ! -f "$ET/.complete" ]; then
  wheels=("$CACHE/wheels"/executorch-"$ET_VERSION"-*manylinux_2_28_aarch64.whl)
  if [ ! -f "${wheels[0]}" ]; then
    if [ "${EDGEVIDEO_NO_INSTALL:-}" = 1 ]; then
      echo "arm64_check: no aarch64 executorch wheel in $CACHE/wheels, and EDGEVIDEO_NO_INSTALL=1 (tests never download): run scripts/test.sh, or scripts/system_setup.sh" >&2
      exit 1
    fi
    say "downloading executorch==$ET_VERSION (manylinux_2_28_aarch64) into $CACHE/wheels"
    mkdir -p "$CACHE/wheels"
    log=$(mktemp)
    # pip's own status decides; its output is shown without the index's "Location ... ignored" warnings
    if ! "$PY" -m pip download -q --disable-pip-version-check --platform manylinux_2_28_aarch64 \
        --only-binary :all: --no-deps "executorch==$ET_VERSION" -d "$CACHE/wheels" >"$log" 2>&1; then
      sed '/^WARNING: Location/d' "$log" >&2; rm -f "$log"
      echo "arm64_check: could not download the aarch64 executorch wheel (see above)" >&2; exit 1
    fi
    rm -f "$log"
    wheels=("$CACHE/wheels"/executorch-"$ET_VERSION"-*manylinux_2_28_aarch64.whl)
    [ -f "${wheels[0]}" ] || { echo "arm64_check: pip reported success but no wheel is in $CACHE/wheels" >&2; exit 1; }
  fi
  wheel=${wheels[0]}
  say "unpacking the C++ runtime of $(basename "$wheel")"
  rm -rf "$ET.tmp"
  "$PY" - "$wheel" "$ET.tmp" <<'PYEOF'
import sys, zipfile
wheel, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:  # the C++ package only (the Python side is not used)
    z.extractall(out, [n for n in z.namelist() if n.split("/")[1:2] in (["include"], ["lib"], ["share"])])
PYEOF
  rm -rf "$ET"
  mv "$ET.tmp/executorch" "$ET"
  rm -rf "$ET.tmp"
  touch "$ET/.complete"
fi
[ "$fetch_only" = 0 ] || exit 0

# 2. the cross build (sdk.native.build: cached under $CACHE/build by a hash of the sources and the toolchain file)
BUILD=$("$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); from sdk.native import build
print(build(sys.argv[2], executorch=sys.argv[3], toolchain=sys.argv[4]))' "$ROOT" "$CACHE/build" "$ET" "$TOOLCHAIN")
QEMU=$(command -v qemu-aarch64 || command -v qemu-aarch64-static)
if [ ! -x "$BUILD/uname_m" ]; then  # uname(2) as the emulated process sees it
  printf '#include <stdio.h>\n#include <sys/utsname.h>\nint main(void) { struct utsname u; if (uname(&u)) return 1; puts(u.machine); return 0; }\n' \
    | aarch64-linux-gnu-gcc -O2 -x c - -o "$BUILD/uname_m.tmp" && mv "$BUILD/uname_m.tmp" "$BUILD/uname_m"
fi
cat > "$BUILD/qemu-run.tmp" <<EOF2
#!/bin/sh
# run an aarch64 binary of this build under user-mode QEMU (CPU model: \$EDGEVIDEO_ARM64_CPU, default $CPU)
exec "$QEMU" -cpu "\${EDGEVIDEO_ARM64_CPU:-$CPU}" -L "$SYSROOT" "\$@"
EOF2
chmod +x "$BUILD/qemu-run.tmp" && mv "$BUILD/qemu-run.tmp" "$BUILD/qemu-run"
say "build: $BUILD ($(elapsed) so far)"
if [ "$build_only" = 1 ]; then
  echo "$BUILD"
  exit 0
fi

# 3. it is aarch64 code, running as an aarch64 process
elf_machine() {  # e_machine of an ELF file: 183 = EM_AARCH64, 62 = EM_X86_64
  local m
  m=$(od -An -tu2 -j18 -N2 "$1" | tr -d ' ')
  case "$m" in 183) echo "AArch64 (e_machine 183)" ;; 62) echo "x86-64 (e_machine 62)" ;; *) echo "e_machine $m" ;; esac
}
echo "edgevideo_cli ELF machine: $(elf_machine "$BUILD/edgevideo_cli"); libexecutorch.so: $(elf_machine "$ET/lib/libexecutorch.so")"
machine=$("$BUILD/qemu-run" "$BUILD/uname_m")
echo "uname -m under $(basename "$QEMU") -cpu $CPU: $machine"
[ "$machine" = aarch64 ] || { echo "not running as aarch64 ($machine)" >&2; exit 1; }

# 4. the golden self-check of every .pte program, one precision at a time
status=0
for bundle in "${bundles[@]}"; do
  precisions=$("$PY" - "$bundle" <<'PYEOF'
import json, sys
from pathlib import Path
try:
    m = json.loads((Path(sys.argv[1]) / "manifest.json").read_text())
    print(" ".join(sorted({p["precision"] for p in m["programs"] if p.get("backend") == "executorch"})))
except (OSError, ValueError, KeyError, TypeError) as e:
    print(f"cannot read {sys.argv[1]}/manifest.json: {e}", file=sys.stderr)
PYEOF
)
  if [ -z "$precisions" ]; then
    echo "FAIL $bundle: no executorch (.pte) programs to check" >&2
    status=1
    continue
  fi
  for precision in $precisions; do
    set +e
    line=$("$BUILD/qemu-run" "$BUILD/edgevideo_cli" check "$bundle" --precision "$precision" 2> "$BUILD/check.err")
    rc=$?
    set -e
    sed '/^I [0-9:.]* executorch:cpuinfo_utils/d' "$BUILD/check.err" >&2  # cpuinfo's notes under qemu
    "$PY" - "$bundle" "$precision" "$rc" "$line" <<'PYEOF'
import json, sys
bundle, precision, rc, line = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
try:
    r = json.loads(line)
except ValueError:
    r = {"programs": {}}
for pid, diff in r["programs"].items():
    print(f"  {bundle} {pid}: max|diff| aarch64 vs golden (x86-64 export) = {diff}")
verdict = "ok  " if rc == 0 else "FAIL"
print(f"{verdict} {bundle} [{precision}]: {len(r['programs'])} program(s), edgevideo_cli check exit {rc}")
PYEOF
    [ "$rc" = 0 ] || status=1
  done
done
say "done in $(elapsed)"
exit $status
