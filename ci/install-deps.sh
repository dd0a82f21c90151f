#!/usr/bin/env bash
# Installs the Debian and PyPI packages that building and testing libelastic need.
# Safe to run again: it installs only what is missing.
set -euo pipefail

pkgs=(cmake make gcc g++ pkg-config
      libjansson-dev libcmocka-dev libopenblas-dev
      ocl-icd-opencl-dev opencl-headers pocl-opencl-icd clinfo libclblast-dev
      python3 python3-pip valgrind
      libmicrohttpd-dev curl)   # elastic serve: HTTP server library; curl for ci/main.sh

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

# Python tools: the float64 reference needs NumPy (and safetensors to read model files).
py=python3
if ! $py -c 'import numpy, safetensors' 2>/dev/null; then
  $py -m pip install -q --disable-pip-version-check numpy safetensors 2>/dev/null ||
    $py -m pip install -q --disable-pip-version-check --break-system-packages numpy safetensors
fi
