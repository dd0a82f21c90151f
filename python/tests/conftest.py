"""conftest.py - shared fixtures of the Python package's tests (python/tests).

The package comes from the environment (pip install .) or, in a source tree,
from python/ with the library named by ELASTIC_LIB (ci/test.sh sets both:
PYTHONPATH=python ELASTIC_LIB=build/libelastic.so).  The `elastic` program,
for comparisons with the command line, comes from ELASTIC_CLI or build/elastic;
tests that need it skip without it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Callable, List, Optional

import numpy as np
import pytest

# OpenMP threads that spin between calls slow shared machines down badly.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import libelastic  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

SMALL = {"num_items": 100, "hidden": 32, "max_len": 50, "experts": 4, "mem_subkeys": 16}
TINY_TRAIN = {"hidden": 16, "max_len": 16, "experts": 4, "mem_subkeys": 8, "mem_topk": 2,
              "layers": 1}


def cli_path() -> Optional[str]:
    """The `elastic` program, if one is at hand."""
    for cand in (os.environ.get("ELASTIC_CLI"), os.path.join(ROOT, "build", "elastic"),
                 shutil.which("elastic")):
        if cand and os.path.exists(cand):
            return cand
    return None


@pytest.fixture(scope="session")
def cli() -> Callable[..., str]:
    """Runs `elastic ARGS...` and returns its stdout (skips without the program)."""
    path = cli_path()
    if path is None:
        pytest.skip("no `elastic` program (set ELASTIC_CLI or build into build/)")

    def run(*args: str, input: Optional[str] = None) -> str:
        return subprocess.run([path, *args], input=input, capture_output=True, text=True,
                              check=True).stdout
    return run


@pytest.fixture(scope="session")
def small_model_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("models") / "small.st")
    m = libelastic.Model.init_random(SMALL, seed=3)
    m.save(path)
    m.close()
    return path


@pytest.fixture()
def small_model(small_model_path: str) -> libelastic.Model:
    return libelastic.Model.load(small_model_path)


@pytest.fixture()
def session(small_model: libelastic.Model):
    with libelastic.Session(small_model, backend="cpu") as s:
        yield s


def random_histories(num_items: int, count: int, seed: int, max_len: int = 60) -> List[List[int]]:
    rng = np.random.default_rng(seed)
    return [[int(v) for v in rng.integers(1, num_items + 1, int(n))]
            for n in rng.integers(1, max_len + 1, count)]
