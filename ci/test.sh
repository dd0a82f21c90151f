#!/usr/bin/env bash
# The README's test command: installs what is missing, builds with warnings
# as errors, and runs every test twice: a normal build and an ASan+UBSan one;
# then a short fuzzing run of every fuzz target (ci/fuzz.sh), and elastic
# serve's end-to-end test (ctest serve: concurrent clients, reload and drain
# under load) and the library's thread test (ctest threads) under
# ThreadSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/install-deps.sh

# Tests run two at a time on shared cores: idle OpenMP threads must sleep,
# not spin, or oversubscription makes them crawl.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
export ELASTIC_CACHE_DIR=${ELASTIC_CACHE_DIR:-$PWD/build-cache/kernels}
bash ci/build.sh build
(cd build && ctest --output-on-failure -j2)
bash ci/smoke.sh build
bash ci/python.sh build
bash ci/valgrind.sh build

# The sanitized build: every test again under AddressSanitizer and UBSan.
# CUDA is left out of it: no GPU runs it here, and the normal build above
# already compiles every CUDA source with warnings as errors.
bash ci/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DELASTIC_SANITIZE=ON -DELASTIC_CUDA=OFF
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
(cd build-asan && ctest --output-on-failure -j2)
bash ci/smoke.sh build-asan

# Fuzzing, short: every libFuzzer target of tests/fuzz for 20 s, two at a
# time (clang, ASan+UBSan; ctest above already replayed their corpora with
# gcc). A longer campaign: ci/fuzz.sh SECONDS (docs/reliability.md).
FUZZ_JOBS=2 bash ci/fuzz.sh 20

# ThreadSanitizer: the library, the CLI and the server, built alone (no OpenCL,
# no tests but what ctest serve runs); ctest sets one OpenMP thread per team
# and tests/serve/tsan.supp (libgomp is not instrumented: docs/serving.md).
bash ci/build.sh build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DELASTIC_TSAN=ON \
  -DELASTIC_OPENCL=OFF -DELASTIC_CUDA=OFF --target elastic_cli --target test_threads
(cd build-tsan && ctest -R '^(serve|threads)$' --output-on-failure)

# Cross builds under QEMU (ci/cross.sh; README "Cross-building for ARM and
# others"): aarch64 (the NEON table) and big-endian s390x (byte order), each
# with every unit test but test_train, `elastic conformance --backends cpu:*`
# and golden_cross (4 of its 19 cases here). riscv64 (the generic table, as
# on s390x) is left to `bash ci/cross.sh riscv64`: all three would take CI
# past its time budget.
for target in aarch64 s390x; do
  ELASTIC_CROSS_QUICK=1 bash ci/cross.sh "$target"
done
