#!/usr/bin/env bash
# Installs the Debian and PyPI packages that building and testing libelastic need.
# Safe to run again: it installs only what is missing.
set -euo pipefail

pkgs=(cmake make gcc g++ pkg-config
      libjansson-dev libcmocka-dev libopenblas-dev
      ocl-icd-opencl-dev opencl-headers pocl-opencl-icd clinfo libclblast-dev
      python3 python3-pip python3-venv valgrind
      libmicrohttpd-dev curl    # elastic serve: HTTP server library; curl for ci/main.sh
      clang libclang-rt-dev libomp-dev llvm)   # ci/fuzz.sh: libFuzzer, OpenMP for clang, llvm-cov

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python tools: the float64 reference needs NumPy (and safetensors to read model files);
# the Python package's tests (python/tests) need pytest, and Dask, pandas and pyarrow for
# libelastic.dask; tqdm for the progress-bar test. (torch is not installed: its tests skip.)
py=python3
if ! $py -c 'import numpy, safetensors, pytest, dask.distributed, pandas, pyarrow, tqdm' 2>/dev/null; then
  pips=(numpy safetensors pytest "dask[distributed]" pandas pyarrow tqdm)
  $py -m pip install -q --disable-pip-version-check "${pips[@]}" 2>/dev/null ||
    $py -m pip install -q --disable-pip-version-check --break-system-packages "${pips[@]}"
fi
