# cmake/cross-linux.cmake - the part shared by the cross toolchain files
# (toolchain-aarch64.cmake, toolchain-riscv64.cmake, toolchain-s390x.cmake):
# Debian's cross compiler <triple>-gcc, its C library in /usr/<triple>, the
# target's other libraries (jansson, cmocka) under ELASTIC_CROSS_PREFIX (ci/cross.sh
# builds them there), pkg-config limited to the target's .pc files, and
# QEMU user-mode emulation to run the target's programs (ctest runs every test
# through CMAKE_CROSSCOMPILING_EMULATOR). Never -march=native: the baseline of
# each architecture, the CPU backend picks faster kernels at run time.
#
# The including file sets CMAKE_SYSTEM_PROCESSOR, ELASTIC_CROSS_TRIPLE and
# ELASTIC_CROSS_QEMU before including this one.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_C_COMPILER ${ELASTIC_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${ELASTIC_CROSS_TRIPLE}-g++)

# Where the target's libraries were installed (cache variable, or the
# environment variable of the same name; empty: only the C library).
if(NOT DEFINED ELASTIC_CROSS_PREFIX AND DEFINED ENV{ELASTIC_CROSS_PREFIX})
  set(ELASTIC_CROSS_PREFIX "$ENV{ELASTIC_CROSS_PREFIX}")
endif()
set(ELASTIC_CROSS_PREFIX "${ELASTIC_CROSS_PREFIX}" CACHE PATH
    "Prefix of the target's libraries (jansson, cmocka) for cross builds")
# try_compile projects re-read this file: hand them the prefix too.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES ELASTIC_CROSS_PREFIX ELASTIC_CROSS_TRIPLE
     ELASTIC_CROSS_QEMU)

set(CMAKE_FIND_ROOT_PATH /usr/${ELASTIC_CROSS_TRIPLE} ${ELASTIC_CROSS_PREFIX})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# pkg-config sees the target's .pc files only (never the host's libmicrohttpd,
# OpenCL or OpenBLAS: what the target lacks is built without).
set(ENV{PKG_CONFIG_LIBDIR} "${ELASTIC_CROSS_PREFIX}/lib/pkgconfig:${ELASTIC_CROSS_PREFIX}/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "")

# The target's programs run under QEMU; -L: where its dynamic loader and C
# library are (Debian's libc6-<arch>-cross).
find_program(ELASTIC_QEMU_PROGRAM ${ELASTIC_CROSS_QEMU})
if(ELASTIC_QEMU_PROGRAM)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${ELASTIC_QEMU_PROGRAM} -L /usr/${ELASTIC_CROSS_TRIPLE})
endif()
