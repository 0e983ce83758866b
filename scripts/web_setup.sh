#!/usr/bin/env bash
# What the browser runtime (sdk/web) and its tests need, installed when missing; idempotent and quick when present:
#   - Debian's chromium and chromium-driver (apt-get; the headless browser tests/test_web.py drives),
#   - Selenium in the project's venv (pip; it drives the system chromedriver, it downloads no browser),
#   - ONNX Runtime Web, pinned by sdk/web/package-lock.json, into sdk/web/node_modules (npm ci; node and npm from
#     Debian when missing). The page fetches nothing from the internet at run time.
# Usage: scripts/web_setup.sh            (VENV=.venv by default)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
SELENIUM=selenium==4.50.0
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "${EDGEVIDEO_NO_INSTALL:-}" = 1 ]; then
    echo "web_setup: missing ${missing[*]}, and EDGEVIDEO_NO_INSTALL=1 (tests never install): run scripts/test.sh, or scripts/system_setup.sh" >&2
    exit 1
  fi
  echo "web_setup: apt-get install ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2 && apt-get install -y -q "${missing[@]}" >&2 \
    || { echo "web_setup: apt-get install ${missing[*]} failed (root and Debian's package mirror needed)" >&2; exit 1; }
fi
if ! "$VENV/bin/python" -c "import selenium" 2>/dev/null; then
  if [ "${EDGEVIDEO_NO_INSTALL:-}" = 1 ]; then
    echo "web_setup: missing $SELENIUM, and EDGEVIDEO_NO_INSTALL=1 (tests never install): run scripts/test.sh, or scripts/system_setup.sh" >&2
    exit 1
  fi
  echo "web_setup: pip install $SELENIUM" >&2
  "$VENV/bin/python" -m pip install -q "$SELENIUM" >&2 || { echo "web_setup: pip install $SELENIUM failed" >&2; exit 1; }
fi
stamp=sdk/web/node_modules/.edgevideo-lock
want=$(sha256sum sdk/web/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  if [ "${EDGEVIDEO_NO_INSTALL:-}" = 1 ]; then
    echo "web_setup: missing ONNX Runtime Web (npm ci in sdk/web), and EDGEVIDEO_NO_INSTALL=1 (tests never install): run scripts/test.sh, or scripts/system_setup.sh" >&2
    exit 1
  fi
  echo "web_setup: npm ci in sdk/web (ONNX Runtime Web)" >&2
  (cd sdk/web && npm ci --no-audit --no-fund --ignore-scripts >&2) || { echo "web_setup: npm ci failed" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
for tool in chromium chromedriver; do
  "$tool" --version >/dev/null 2>&1 || { echo "web_setup: $tool does not run" >&2; exit 1; }
done
[ -f sdk/web/node_modules/onnxruntime-web/dist/ort.wasm.min.mjs ] || { echo "web_setup: ONNX Runtime Web missing after npm ci" >&2; exit 1; }
echo "web_setup: chromium $(chromium --version 2>/dev/null | awk '{print $2}'), onnxruntime-web $(node -p 'require("./sdk/web/node_modules/onnxruntime-web/package.json").version')" >&2
