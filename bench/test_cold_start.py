"""Cold start: a fresh process imports the library and runs its first ``fit`` (a small net on digits).

``cache warm``: numba's on-disk cache already holds the compiled kernels;
``cache cold``: the cache is empty, so every kernel the fit needs is compiled.
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


def first_fit(cache_dir):
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", SCRIPT], check=True, env=environment, cwd=ROOT, timeout=600)


@pytest.mark.parametrize("cache", ["warm", "cold"])
def test_import_and_first_fit(benchmark, tmp_path, cache):
    cache_dir = tmp_path / "numba-cache"
    if cache == "warm":
        first_fit(cache_dir)  # fills the cache

    def empty_cache():
        shutil.rmtree(cache_dir, ignore_errors=True)

    benchmark.group = "cold start: import + first fit"
    benchmark.pedantic(first_fit, args=(cache_dir,), setup=empty_cache if cache == "cold" else None,
                       rounds=1 if cache == "cold" else 5, iterations=1)
