#!/usr/bin/env bash
# On a machine with an NVIDIA GPU, from the source tree, in one go (well under 8 minutes on an H200):
#   1. the CUDA kernel and model tests on the real device (NUMBA_MLP_TEST_CUDA=1);
#   2. the GPU benchmarks: the cuda backend against torch CUDA, eager and hand-written (same initial
#      weights, sample order and learning rate, times synchronised), per-sample, minibatch and wide-net
#      epochs on MNIST (the dense-data groups are left to CPU runs, for time);
# writing the log, JUnit XML and benchmark JSON under $OUT (default bench/out/gpu).
#   bash bench/gpu_run.sh
#
# numpy: numba-cuda 0.30 calls np.row_stack, which numpy 2.5 removed, at its first kernel compile. Where the
# machine's numpy is 2.5 or newer and a numpy 2.4 wheel lies in .whl/ (bench/fetch_gpu_wheels.sh puts one
# there, on a machine with a registry), this script installs it into a private folder put first on
# PYTHONPATH, and says so; the machine's own packages are left as they are.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out/gpu}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  numpy_version=$("$PYTHON" -c "import numpy; print(numpy.__version__)")
  if [ "$(printf '%s\n2.5\n' "$numpy_version" | sort -V | head -n 1)" = "2.5" ]; then
    wheel=$(ls .whl/numpy-2.4*.whl 2>/dev/null | head -n 1)
    if [ -n "$wheel" ]; then
      "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/numba-mlp-numpy "$wheel" \
        && export PYTHONPATH=/tmp/numba-mlp-numpy:$PWD \
        && echo "numpy $numpy_version breaks numba-cuda 0.30 (np.row_stack): using $wheel instead"
    else
      echo "numpy $numpy_version breaks numba-cuda 0.30 (np.row_stack) and .whl/ holds no numpy 2.4 wheel:"
      echo "run bench/fetch_gpu_wheels.sh on a machine with a registry and bring .whl/ along"
    fi
  fi
  "$PYTHON" -c "import numba, numba_cuda, numpy; print('numba', numba.__version__, 'numba-cuda', numba_cuda.__version__, 'numpy', numpy.__version__)"
  "$PYTHON" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" || echo "torch: absent"
  echo "== 1/2 CUDA kernel and model tests on the device"
  NUMBA_MLP_TEST_CUDA=1 timeout 300 "$PYTHON" -m pytest tests/test_kernels.py tests/test_cuda.py -q -p no:cacheprovider \
    --junitxml="$OUT/tests.xml"
  echo "tests rc=$?"
  echo "== 2/2 GPU benchmarks: cuda against torch CUDA"
  timeout 240 "$PYTHON" -m pytest bench/test_training.py bench/test_wide.py -q -p no:cacheprovider -k "cuda and not dense" \
    --benchmark-only --benchmark-group-by=group --benchmark-json="$OUT/gpu.json"
  echo "bench rc=$?"
  "$PYTHON" bench/report.py "$OUT/gpu.json"
} 2>&1 | tee "$OUT/gpu_run.log"
