#!/usr/bin/env bash
# Install (once) what building and running the native core for aarch64 on an x86_64 Debian/Ubuntu host needs:
# the GNU cross compiler (g++-aarch64-linux-gnu, which brings the aarch64 glibc/libstdc++ under /usr/aarch64-linux-gnu)
# and user-mode QEMU (qemu-aarch64: runs an aarch64 Linux binary as a process; no binfmt or other host change);
# cmake and a build tool when there are none.
# With --jni, also a JDK (default-jdk-headless: jni.h, javac and java, for compiling and running the Android JNI glue
# on the host: tests/test_apps_compile.py).
#
#   scripts/arm64_toolchain.sh [--jni]      prints what it found ("cxx: ...", "qemu: ...", "jdk: HOME"); exit 0 when
#                                           everything is there
#
# Non-interactive (CI): runs apt-get directly as root, through `sudo -n` otherwise; with neither it fails and says
# which packages to install. Installs nothing when everything is already present.
set -euo pipefail
want_jni=0
for arg in "$@"; do
  case "$arg" in
    --jni) want_jni=1 ;;
    *) echo "usage: $0 [--jni]" >&2; exit 2 ;;
  esac
done

SYSROOT=/usr/aarch64-linux-gnu
jdk_home() {  # a JDK with jni.h and javac: the default one first
  local h
  for h in /usr/lib/jvm/default-java /usr/lib/jvm/*; do
    [ -f "$h/include/jni.h" ] && [ -x "$h/bin/javac" ] && [ -x "$h/bin/java" ] && { echo "$h"; return 0; }
  done
  return 1
}
missing() {  # the Debian packages whose files are absent
  command -v aarch64-linux-gnu-g++ >/dev/null && [ -e "$SYSROOT/lib/ld-linux-aarch64.so.1" ] \
    || echo g++-aarch64-linux-gnu
  command -v qemu-aarch64 >/dev/null || command -v qemu-aarch64-static >/dev/null || echo qemu-user
  command -v cmake >/dev/null || echo cmake  # the project venv's (pip) cmake counts when its bin/ is on PATH
  command -v ninja >/dev/null || command -v make >/dev/null || echo ninja-build
  if [ "$want_jni" = 1 ]; then jdk_home >/dev/null || echo default-jdk-headless; fi
}

pkgs=$(missing | tr '\n' ' ')
if [ -n "${pkgs// }" ]; then
  if [ "${EDGEVIDEO_NO_INSTALL:-}" = 1 ]; then
    echo "arm64 toolchain: missing $pkgs, and EDGEVIDEO_NO_INSTALL=1 (tests never install): run scripts/test.sh, or scripts/system_setup.sh" >&2
    exit 1
  fi
  if [ "$(id -u)" = 0 ]; then
    apt=(apt-get)
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    apt=(sudo -n apt-get)
  else
    echo "arm64 toolchain: missing Debian packages: $pkgs" >&2
    echo "  not root and no password-less sudo: install them with  sudo apt-get install -y $pkgs" >&2
    exit 1
  fi
  command -v apt-get >/dev/null || { echo "arm64 toolchain: no apt-get on this host; install: $pkgs" >&2; exit 1; }
  echo "arm64 toolchain: installing $pkgs (apt-get, non-interactive)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  lock=(-o DPkg::Lock::Timeout=300)
  # a fresh machine may have empty package lists: update, then install (qemu-user's binfmt recommendation is left
  # out: nothing here registers binfmt handlers)
  log=$(mktemp)
  # shellcheck disable=SC2086
  if ! { "${apt[@]}" "${lock[@]}" update -qq && "${apt[@]}" "${lock[@]}" install -y -qq --no-install-recommends $pkgs; } \
       >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "arm64 toolchain: apt-get could not install $pkgs (output above)" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
  still=$(missing | tr '\n' ' ')
  if [ -n "${still// }" ]; then
    echo "arm64 toolchain: apt-get finished but these are still missing: $still" >&2
    exit 1
  fi
fi
echo "cxx: $(command -v aarch64-linux-gnu-g++) ($(aarch64-linux-gnu-g++ -dumpfullversion))"
echo "qemu: $(command -v qemu-aarch64 || command -v qemu-aarch64-static)"
echo "sysroot: $SYSROOT"
if [ "$want_jni" = 1 ]; then echo "jdk: $(jdk_home)"; fi
