#!/usr/bin/env bash
# The README's test command: installs what is missing, builds with warnings
# as errors, and runs every test twice: a normal build and an ASan+UBSan one;
# compiles the CUDA backend (where nvcc is) and runs its GPU-less tests; then
# a short fuzzing run of every fuzz target (ci/fuzz.sh), elastic serve's
# end-to-end test (ctest serve: concurrent clients, reload and drain under
# load) and the library's thread test (ctest threads) under ThreadSanitizer,
# and the cross builds for aarch64, s390x and riscv64 under QEMU. Each stage
# prints its wall and CPU time; the table at the end sums them up.
set -euo pipefail
cd "$(dirname "$0")/.."
stage_t0=$SECONDS
bash ci/install-deps.sh
install_s=$((SECONDS - stage_t0))

# Each stage prints its wall and CPU time (user+sys of this shell's finished
# children), and a table of all stages closes the run: CI must stay under 30
# minutes (docs/testing.md says what each stage costs).
stages=() cpu=0
times_file=$(mktemp)
cpu_now() { # `times` in this shell, not in a $(...) fork that has no children
  times >"$times_file"
  cpu=$(sed -n 2p "$times_file" | awk '{ s = 0; for (i = 1; i <= 2; i++) { split($i, p, "m"); s += p[1] * 60 + p[2] } printf "%d", s }')
}
stage() {
  local name=$1 t0=$SECONDS c0
  shift
  cpu_now; c0=$cpu
  echo "== [ci] $name"
  "$@"
  cpu_now
  stages+=("$(printf '%-26s %5d s wall %6d s CPU' "$name" $((SECONDS - t0)) $((cpu - c0)))")
  echo "== [ci] $name: $((SECONDS - t0)) s wall, $((cpu - c0)) s CPU"
}

# Tests run two at a time on shared cores: idle OpenMP threads must sleep,
# not spin, or oversubscription makes them crawl.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
export ELASTIC_CACHE_DIR=${ELASTIC_CACHE_DIR:-$PWD/build-cache/kernels}
# The tested build leaves CUDA out: no GPU runs it here, and every process
# that links the CUDA libraries maps cuBLASLt (540 MB), which valgrind reads
# in about 24 s of CPU per process (it was 9 of valgrind's 9 CPU-minutes).
# The CUDA backend is compiled with warnings as errors in build-cuda below.
stage build bash ci/build.sh build -DELASTIC_CUDA=OFF
stage ctest bash -c "cd build && ctest --output-on-failure -j2"
stage smoke bash ci/smoke.sh build
stage python bash ci/python.sh build
stage valgrind bash ci/valgrind.sh build

# The CUDA backend: compiled with warnings as errors (where nvcc is
# installed), and its tests, which without a GPU check what needs none
# (probe, init errors, the op table) and say the rest is skipped.
cuda_stage() {
  local nvcc
  nvcc=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
  if [ -z "$nvcc" ]; then
    echo "no nvcc: the CUDA backend is not built"
    return 0
  fi
  CUDACXX=$nvcc bash ci/build.sh build-cuda -DELASTIC_CUDA=ON --target elastic_cli --target test_cuda_ops
  build-cuda/elastic backends
  (cd build-cuda && ctest -R cuda --output-on-failure)
}
stage cuda cuda_stage

# The sanitized build: every test again under AddressSanitizer and UBSan, at
# -O1 (ASan's advice; -O0 made the numerical tests several times slower).
# CUDA is left out of it, as above.
stage asan-build bash ci/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_C_FLAGS_DEBUG=-g -O1" \
  -DELASTIC_SANITIZE=ON -DELASTIC_CUDA=OFF
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
stage asan-ctest bash -c "cd build-asan && ctest --output-on-failure -j2"
stage asan-smoke bash ci/smoke.sh build-asan

# Fuzzing, short: every libFuzzer target of tests/fuzz for 20 s, two at a
# time (clang, ASan+UBSan; ctest above already replayed their corpora with
# gcc). A longer campaign: ci/fuzz.sh SECONDS (docs/reliability.md).
stage fuzz env FUZZ_JOBS=2 bash ci/fuzz.sh 20

# ThreadSanitizer: the library, the CLI and the server, built alone (no OpenCL,
# no tests but what ctest serve runs); ctest sets one OpenMP thread per team
# and tests/serve/tsan.supp (libgomp is not instrumented: docs/serving.md).
stage tsan-build bash ci/build.sh build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DELASTIC_TSAN=ON \
  -DELASTIC_OPENCL=OFF -DELASTIC_CUDA=OFF --target elastic_cli --target test_threads
stage tsan-ctest bash -c "cd build-tsan && ctest -R '^(serve|threads)\$' --output-on-failure"

# Cross builds under QEMU (ci/cross.sh; README "Cross-building for ARM and
# others"): aarch64 (the NEON table), big-endian s390x (byte order) and
# riscv64 (the generic table), each in quick mode: every unit test but
# test_train (ELASTIC_TEST_QUICK=1: no learning run in test_objectives) and
# alloc_fail (minutes under QEMU; `bash ci/cross.sh T` runs it),
# `elastic conformance --backends cpu:* --small-models` (every op case on every
# kernel table; the whole models at reduced sizes), golden_cross on 4 of its
# 19 cases, and the x86 -> target model-file round trip, byte for byte.
for target in ${ELASTIC_CI_CROSS:-aarch64 s390x riscv64}; do
  stage "cross-$target" env ELASTIC_CROSS_QUICK=1 bash ci/cross.sh "$target"
done

echo "== [ci] stages (install: ${install_s} s wall)"
printf '%s\n' "${stages[@]}"
echo "== [ci] total: $((SECONDS - stage_t0)) s wall"
rm -f "$times_file"
