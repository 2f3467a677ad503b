#!/usr/bin/env bash
# On a machine with a package registry: put the wheels bench/gpu_run.sh needs on a GPU machine that has none
# into .whl/ (git-ignored). Today that is numpy 2.4: the GPU image ships numpy 2.5, whose removal of
# np.row_stack breaks numba-cuda 0.30 at its first kernel compile.
#   bash bench/fetch_gpu_wheels.sh            (then carry .whl to the GPU machine)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version "${GPU_PYTHON_VERSION:-3.12}" \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "numpy==${GPU_NUMPY_VERSION:-2.4.6}"
ls -l .whl
