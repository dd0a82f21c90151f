#!/usr/bin/env bash
# The Python package's checks on a build:
#   1. pytest on python/tests with the in-tree package (python/) and the build's
#      libelastic.so, elastic program and struct-layout program;
#   2. `pip install .` into a fresh venv (the library rebuilt by scikit-build-core,
#      CUDA and the tests off to save time), then the README's Python example and
#      the API tests with the installed package (nothing from the source tree).
#   ci/python.sh BUILD_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(cd "${1:?usage: ci/python.sh BUILD_DIR}" && pwd)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

echo "== pytest python/tests (in-tree package, $dir/libelastic.so)"
ELASTIC_LIB="$dir/libelastic.so" ELASTIC_CLI="$dir/elastic" \
  ELASTIC_LAYOUT_BIN="$dir/tests/elastic_struct_layout" PYTHONPATH="$PWD/python" \
  python3 -m pytest python/tests -q -rs -p no:cacheprovider

echo "== pip install . into a fresh venv"
venv=$(mktemp -d)/venv
trap 'rm -rf "$(dirname "$venv")"' EXIT
python3 -m venv "$venv"
t0=$(date +%s)
CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$venv/bin/pip" install -q --disable-pip-version-check \
  -C cmake.define.ELASTIC_CUDA=OFF . pytest
echo "pip install . took $(( $(date +%s) - t0 )) s"
# The installed package only: no source tree on the path, no ELASTIC_LIB.
unset ELASTIC_LIB PYTHONPATH
cd "$(dirname "$venv")"
"$venv/bin/python" - <<'PY'
import os, libelastic
site = os.path.dirname(libelastic.__file__)
assert "site-packages" in site, site
assert os.path.dirname(libelastic.library_path()) == site, libelastic.library_path()
print("installed:", site, "library", libelastic.version())
PY
echo "== the README's Python example"
awk '/<!-- ci: python example/ {grab=1; next} grab && /^```python/ {inside=1; next}
     inside && /^```/ {exit} inside {print}' "$OLDPWD/README.md" > example.py
[ -s example.py ] || { echo "FAIL: no Python example found in README.md"; exit 1; }
"$venv/bin/python" example.py
echo "== pytest with the installed package"
ELASTIC_CLI="$dir/elastic" "$venv/bin/python" -m pytest -q -p no:cacheprovider \
  --rootdir "$OLDPWD/python/tests" "$OLDPWD/python/tests/test_api.py" \
  "$OLDPWD/python/tests/test_layout.py"
