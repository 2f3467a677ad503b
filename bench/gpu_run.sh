#!/usr/bin/env bash
# On a machine with an NVIDIA GPU, from the source tree, in one go (well under 8 minutes on an H200):
#   1. the CUDA kernel and model tests on the real device (NUMBA_MLP_TEST_CUDA=1), a process per core;
#   2. the GPU benchmarks: the cuda backend against torch CUDA, eager and hand-written (same initial
#      weights, sample order and learning rate, times synchronised), per-sample, minibatch and wide-net
#      epochs on MNIST (the dense-data groups are left to CPU runs, for time);
#   3. bench/gpu_probe.py: the per-sample kernel against its number of slices, minibatch steps, launch cost;
#   4. (only when asked, STAGES="... parts") bench/gpu_probe.py --parts: what a per-sample step is made of;
# writing the log, JUnit XML and benchmark JSON under $OUT (default bench/out/gpu). Each stage has its own
# time limit, so that the whole stays under 8 minutes and a stage that hangs loses only its own results.
# MNIST: ../shared does not travel to a GPU machine; copy it into .data/mnist (ignored) and carry .data.
#   bash bench/gpu_run.sh                                  # STAGES="tests bench probe" by default
#   STAGES="tests parts" TEST_SECONDS=260 bash bench/gpu_run.sh  # a rerun of part of it
#
# numpy: numba-cuda 0.30 calls np.row_stack, which numpy 2.5 removed, at its first kernel compile. Where the
# machine's numpy is 2.5 or newer and a numpy 2.4 wheel lies in .whl/ (bench/fetch_gpu_wheels.sh puts one
# there, on a machine with a registry), this script installs it into a private folder put first on
# PYTHONPATH, and says so; the machine's own packages are left as they are.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out/gpu}
STAGES=" ${STAGES:-tests bench probe} "
TEST_SECONDS=${TEST_SECONDS:-225}  # 197 s with 16 processes on an H200 machine (16 cores)
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
  if [ -z "${NUMBA_MLP_MNIST_DIR:-}" ] && [ -d .data/mnist ]; then
    export NUMBA_MLP_MNIST_DIR=$PWD/.data/mnist  # ../shared does not travel to a GPU machine: a carried copy
  fi
  echo "MNIST: ${NUMBA_MLP_MNIST_DIR:-../shared/data/mnist (synthetic data of the same shape where absent)}"
  # The tests are mostly compiling kernels (CPU-bound): spread them over processes where pytest-xdist is at hand.
  parallel=()
  if "$PYTHON" -c "import xdist" 2>/dev/null; then parallel=(-n "${XDIST:-$(nproc)}"); fi
  if [[ $STAGES == *" tests "* ]]; then
    echo "== 1/3 CUDA kernel and model tests on the device"
    NUMBA_MLP_TEST_CUDA=1 timeout -k 10 "$TEST_SECONDS" "$PYTHON" -m pytest tests/test_kernels.py tests/test_cuda.py \
      -q -p no:cacheprovider "${parallel[@]}" --junitxml="$OUT/tests.xml"
    echo "tests rc=$?"
  fi
  if [[ $STAGES == *" bench "* ]]; then
    echo "== 2/3 GPU benchmarks: cuda against torch CUDA (each file its own JSON, so a timeout loses one only)"
    timeout -k 10 110 "$PYTHON" -m pytest bench/test_training.py -q -p no:cacheprovider -k "cuda and not dense" \
      --benchmark-only --benchmark-group-by=group --benchmark-json="$OUT/gpu-training.json"
    echo "bench training rc=$?"
    timeout -k 10 85 "$PYTHON" -m pytest bench/test_wide.py -q -p no:cacheprovider -k "cuda" \
      --benchmark-only --benchmark-group-by=group --benchmark-json="$OUT/gpu-wide.json"
    echo "bench wide rc=$?"
    for json in "$OUT"/gpu-training.json "$OUT"/gpu-wide.json; do
      [ -s "$json" ] && "$PYTHON" bench/report.py "$json"
    done
  fi
  if [[ $STAGES == *" probe "* ]]; then
    echo "== 3/3 probe: per-sample slices, minibatch steps, launch cost"
    timeout -k 10 35 "$PYTHON" bench/gpu_probe.py
    echo "probe rc=$?"
  fi
  if [[ $STAGES == *" parts "* ]]; then
    echo "== probe: the parts of a per-sample step"
    timeout -k 10 60 "$PYTHON" bench/gpu_probe.py --parts
    echo "parts rc=$?"
  fi
  date -u
} 2>&1 | tee "$OUT/gpu_run.log"
