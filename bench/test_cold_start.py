"""Cold start: a fresh process imports the library and runs its first ``fit`` (a small net on digits).

Entries, all in one group:

``library, cache warm``: a user's script, ``MLP([64, 32, 10], backend='cpu').fit`` for one epoch, with
numba's on-disk cache already holding the compiled kernels;
``library, cache cold``: the same with an empty cache, so every kernel the fit needs is compiled;
``command line, cache warm``: the main job for one epoch, ``python -m model train --epochs 1``
(64-128-10, ``backend='auto'``, then validation and test accuracy), which freezes the garbage
collector before exiting (:func:`model.cli.run`);
``numba alone, cache warm``: the floor any cached numba code pays, for comparison in the same run: a
fresh process imports NumPy and numba and calls a one-loop cached ``@njit`` function;
``numba alone + gc.freeze(), cache warm``: that floor for a program that freezes the collector before
exiting, as the command line does.
"""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
LIBRARY_SCRIPT = (
    "from model import MLP, load_digits; X, y = load_digits(); "
    "MLP([64, 32, 10], backend='cpu', seed=0).fit(X, y, epochs=1)"
)
COMMAND_LINE = ["-m", "model", "train", "--epochs", "1"]
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
FLOOR_FROZEN_SCRIPT = FLOOR_SCRIPT + "; import gc; gc.freeze()"
GROUP = "cold start: import + first fit"


def run_fresh(arguments, cache_dir, path):
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(path)}
    subprocess.run([sys.executable, *arguments], check=True, env=environment, cwd=path, timeout=600,
                   stdout=subprocess.DEVNULL)


@pytest.mark.parametrize("variant, arguments", [
    ("library, cache warm", ["-c", LIBRARY_SCRIPT]),
    ("library, cache cold", ["-c", LIBRARY_SCRIPT]),
    ("command line, cache warm", COMMAND_LINE),
])
def test_import_and_first_fit(benchmark, tmp_path, variant, arguments):
    cache_dir = tmp_path / "numba-cache"
    cold = variant.endswith("cold")

    def empty_cache():
        shutil.rmtree(cache_dir, ignore_errors=True)

    if not cold:
        run_fresh(arguments, cache_dir, ROOT)  # fills the cache
    benchmark.group = GROUP
    benchmark.pedantic(run_fresh, args=(arguments, cache_dir, ROOT), setup=empty_cache if cold else None,
                       rounds=1 if cold else 5, iterations=1)


@pytest.mark.parametrize("variant, script", [
    ("numba alone, cache warm", FLOOR_SCRIPT),
    ("numba alone + gc.freeze(), cache warm", FLOOR_FROZEN_SCRIPT),
])
def test_numba_alone(benchmark, tmp_path, variant, script):
    (tmp_path / "floor_module.py").write_text(FLOOR_MODULE)
    cache_dir = tmp_path / "numba-cache"
    run_fresh(["-c", script], cache_dir, tmp_path)  # fills the cache
    benchmark.group = GROUP
    benchmark.pedantic(run_fresh, args=(["-c", script], cache_dir, tmp_path), rounds=5, iterations=1)
