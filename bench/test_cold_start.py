"""Cold start: a fresh process imports the library and runs its first ``fit`` (a small net on digits).

``cache warm``: numba's on-disk cache already holds the compiled kernels;
``cache cold``: the cache is empty, so every kernel the fit needs is compiled.
``numba alone``: the floor any cached numba code pays, for comparison in the same
run: a fresh process imports NumPy and numba and calls a one-loop cached
``@njit`` function (warm cache).
"""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = (
    "from model import MLP, load_digits; X, y = load_digits(); "
    "MLP([64, 32, 10], backend='cpu', seed=0).fit(X, y, epochs=1)"
)
FLOOR_MODULE = '''
from numba import njit


@njit(cache=True)
def total(values):
    result = 0.0
    for value in values:
        result += value
    return result
'''
FLOOR_SCRIPT = "import numpy as np, floor_module; floor_module.total(np.ones(3))"


def run_fresh(script, cache_dir, path):
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(path)}
    subprocess.run([sys.executable, "-c", script], check=True, env=environment, cwd=path, timeout=600)


@pytest.mark.parametrize("cache", ["warm", "cold"])
def test_import_and_first_fit(benchmark, tmp_path, cache):
    cache_dir = tmp_path / "numba-cache"
    if cache == "warm":
        run_fresh(SCRIPT, cache_dir, ROOT)  # fills the cache

    def empty_cache():
        shutil.rmtree(cache_dir, ignore_errors=True)

    benchmark.group = "cold start: import + first fit"
    benchmark.pedantic(run_fresh, args=(SCRIPT, cache_dir, ROOT), setup=empty_cache if cache == "cold" else None,
                       rounds=1 if cache == "cold" else 5, iterations=1)


@pytest.mark.parametrize("variant", ["numba alone, cache warm"])
def test_numba_alone(benchmark, tmp_path, variant):
    (tmp_path / "floor_module.py").write_text(FLOOR_MODULE)
    cache_dir = tmp_path / "numba-cache"
    run_fresh(FLOOR_SCRIPT, cache_dir, tmp_path)  # fills the cache
    benchmark.group = "cold start: import + first fit"
    benchmark.pedantic(run_fresh, args=(FLOOR_SCRIPT, cache_dir, tmp_path), rounds=5, iterations=1)
