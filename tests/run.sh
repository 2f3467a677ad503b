#!/usr/bin/env bash
# Every test of the project, in the three processes they need:
#   1. the CPU kernels, the model, data and command line, and the PTX compilation of every CUDA kernel;
#   2. the CUDA kernels again on numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1 must be set before
#      numba is imported, hence its own process);
#   3. the benchmark suite once, untimed, as a correctness pass.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
echo "== 1/3 CPU kernels, model, data, CLI, PTX compilation"
"$PYTHON" -m pytest tests -q "$@"
echo "== 2/3 CUDA kernels on the CUDA simulator"
NUMBA_ENABLE_CUDASIM=1 "$PYTHON" -m pytest tests/test_kernels.py tests/test_cuda.py -q "$@"
echo "== 3/3 benchmarks, once each, untimed"
"$PYTHON" -m pytest bench -q --benchmark-disable "$@"
