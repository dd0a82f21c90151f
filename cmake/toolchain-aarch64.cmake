# cmake/toolchain-aarch64.cmake - cross-compiling libelastic for 64-bit ARM (armv8-a baseline: NEON)
# with Debian's gcc-aarch64-linux-gnu; programs and tests run under
# qemu-aarch64-static. Use: cmake -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64.cmake
# -DELASTIC_CROSS_PREFIX=<target libraries> (ci/cross.sh aarch64 does it all).
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(ELASTIC_CROSS_TRIPLE aarch64-linux-gnu)
set(ELASTIC_CROSS_QEMU qemu-aarch64-static)
include(${CMAKE_CURRENT_LIST_DIR}/cross-linux.cmake)
