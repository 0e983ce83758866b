#!/usr/bin/env bash
# What the test suite needs besides the Python environment, installed or downloaded when missing (idempotent; ~1 s
# when present): the aarch64 cross toolchain, qemu-user and a JDK (scripts/arm64_toolchain.sh --jni) and ExecuTorch's
# aarch64 wheel (scripts/arm64_check.sh --fetch), kotlinc (scripts/kotlin_setup.sh), headless Chromium, chromedriver,
# Selenium and ONNX Runtime Web (scripts/web_setup.sh), and the wheels of a device install
# (scripts/device_install.sh --wheels).
# scripts/test.sh runs it before pytest and then sets EDGEVIDEO_NO_INSTALL=1, so that no test installs anything:
# with it set, those scripts only locate their tools and fail, naming what is missing.
# Usage: VENV=.venv scripts/system_setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${VENV:-.venv}/bin/python
scripts/arm64_toolchain.sh --jni >/dev/null
EDGEVIDEO_PYTHON=$PY scripts/arm64_check.sh --fetch
scripts/kotlin_setup.sh >/dev/null
scripts/web_setup.sh
PYTHON=$PY scripts/device_install.sh --wheels >/dev/null
