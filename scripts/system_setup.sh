#!/usr/bin/env bash
# What the test suite needs besides the Python environment, installed when missing (idempotent; ~1 s when present):
# the aarch64 cross toolchain, qemu-user and a JDK (scripts/arm64_toolchain.sh --jni), kotlinc
# (scripts/kotlin_setup.sh), headless Chromium, chromedriver, Selenium and ONNX Runtime Web (scripts/web_setup.sh).
# scripts/test.sh runs it before pytest and then sets EDGEVIDEO_NO_INSTALL=1, so that no test installs anything:
# with it set, those scripts only locate their tools and fail, naming what is missing.
# Usage: VENV=.venv scripts/system_setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/arm64_toolchain.sh --jni >/dev/null
scripts/kotlin_setup.sh >/dev/null
scripts/web_setup.sh
