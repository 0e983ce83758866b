#!/usr/bin/env bash
# kotlinc for compiling the Android wrapper (apps/android/edgevideo, the Android library module) and its JVM test on Linux: Debian's
# `kotlin` package (kotlinc 1.3), installed with apt-get when missing. Prints "kotlinc: PATH". The JDK (jni.h,
# javap, java) comes from scripts/arm64_toolchain.sh --jni.
set -euo pipefail
if ! command -v kotlinc >/dev/null; then
  if [ "${EDGEVIDEO_NO_INSTALL:-}" = 1 ]; then
    echo "kotlin_setup: missing kotlinc, and EDGEVIDEO_NO_INSTALL=1 (tests never install): run scripts/test.sh, or scripts/system_setup.sh" >&2
    exit 1
  fi
  echo "kotlin_setup: apt-get install kotlin" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2 && apt-get install -y -q kotlin >&2 \
    || { echo "kotlin_setup: apt-get install kotlin failed (root and Debian's package mirror needed)" >&2; exit 1; }
fi
echo "kotlinc: $(command -v kotlinc)"
