# cmake/toolchain-s390x.cmake - cross-compiling libelastic for IBM Z (s390x, big-endian)
# with Debian's gcc-s390x-linux-gnu; programs and tests run under
# qemu-s390x-static. Use: cmake -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-s390x.cmake
# -DELASTIC_CROSS_PREFIX=<target libraries> (ci/cross.sh s390x does it all).
set(CMAKE_SYSTEM_PROCESSOR s390x)
set(ELASTIC_CROSS_TRIPLE s390x-linux-gnu)
set(ELASTIC_CROSS_QEMU qemu-s390x-static)
include(${CMAKE_CURRENT_LIST_DIR}/cross-linux.cmake)
