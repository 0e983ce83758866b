#!/usr/bin/env bash
# Which of the runtime wheels pinned in pyproject.toml (the `runtime` extra and numpy) exist on PyPI for aarch64
# Linux, per Python version: `pip download --only-binary :all: --no-deps` with the platform tags of a glibc
# GLIBC (default 2.35: JetPack 6 / Ubuntu 22.04; JetPack 7 / Ubuntu 24.04 is 2.39).
#
#   scripts/arm64_wheels.sh [PYTHON_VERSION ...]     default: 3.10 3.11 3.12; prints one line per package and version
#
# pip does not widen --platform: `--platform manylinux_2_28_aarch64` alone misses wheels tagged for an older glibc
# (ai-edge-litert 2.3.0 is manylinux_2_27_aarch64), so every manylinux tag up to GLIBC is passed, as pip on the
# device would accept them. Wheels land in a temporary directory (pip's HTTP cache makes reruns quick).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${EDGEVIDEO_PYTHON:-python3}
GLIBC=${GLIBC:-2.35}
versions=("$@")
[ "${#versions[@]}" -gt 0 ] || versions=(3.10 3.11 3.12)
platforms=(--platform manylinux2014_aarch64)
for minor in $(seq 17 "${GLIBC#2.}"); do platforms+=(--platform "manylinux_2_${minor}_aarch64"); done
# the pins: numpy (a dependency) and the runtime extra, read from pyproject.toml
mapfile -t specs < <("$PY" - "$ROOT/pyproject.toml" <<'PYEOF'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
for spec in [*project["dependencies"], *project["optional-dependencies"]["runtime"]]:
    print(spec)
PYEOF
)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
missing=0
for py in "${versions[@]}"; do
  for i in "${!specs[@]}"; do
    spec=${specs[$i]}
    if out=$("$PY" -m pip download -q --disable-pip-version-check --only-binary :all: --no-deps "${platforms[@]}" \
               --python-version "$py" -d "$tmp/$py-$i" "$spec" 2>&1); then
      wheel=$(ls "$tmp/$py-$i")
      echo "python $py  $spec: $wheel"
    else
      seen=$(echo "$out" | grep -o "from versions: [^)]*" | head -n1)
      echo "python $py  $spec: NONE for aarch64 (${seen:-no versions})"
      missing=1
    fi
  done
done
exit $missing
