# cmake/toolchain-riscv64.cmake - cross-compiling libelastic for 64-bit RISC-V (rv64gc)
# with Debian's gcc-riscv64-linux-gnu; programs and tests run under
# qemu-riscv64-static. Use: cmake -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-riscv64.cmake
# -DELASTIC_CROSS_PREFIX=<target libraries> (ci/cross.sh riscv64 does it all).
set(CMAKE_SYSTEM_PROCESSOR riscv64)
set(ELASTIC_CROSS_TRIPLE riscv64-linux-gnu)
set(ELASTIC_CROSS_QEMU qemu-riscv64-static)
include(${CMAKE_CURRENT_LIST_DIR}/cross-linux.cmake)
