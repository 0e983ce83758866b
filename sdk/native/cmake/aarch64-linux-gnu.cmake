# Cross-compile the native core for aarch64 Linux (Jetson's ABI: glibc, LP64, AArch64) on an x86_64 Debian/Ubuntu
# host with the GNU cross toolchain (apt: g++-aarch64-linux-gnu; scripts/arm64_toolchain.sh installs it).
#
#   cmake -S sdk/native -B build/arm64 -DCMAKE_TOOLCHAIN_FILE=sdk/native/cmake/aarch64-linux-gnu.cmake \
#         -Dexecutorch_DIR=<the aarch64 executorch wheel, unpacked>/executorch/share/cmake
#
# The executorch package is named by executorch_DIR (a path outside the sysroot): find_package takes it as given,
# while every other search (headers, libraries) stays inside the aarch64 sysroot so that no x86_64 file is linked.
# scripts/arm64_check.sh does all of this and runs the result under qemu-aarch64.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(EV_CROSS_TRIPLE aarch64-linux-gnu CACHE STRING "GNU triple of the cross compiler")
set(CMAKE_C_COMPILER ${EV_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${EV_CROSS_TRIPLE}-g++)
set(EV_CROSS_SYSROOT /usr/${EV_CROSS_TRIPLE} CACHE PATH "aarch64 glibc/libstdc++ root (qemu-aarch64 -L takes the same)")

set(CMAKE_FIND_ROOT_PATH ${EV_CROSS_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)   # build tools run on the host
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# How try_run / tests run a target binary on the host (user-mode QEMU, no binfmt registration needed).
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L ${EV_CROSS_SYSROOT})
