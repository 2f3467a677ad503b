#!/usr/bin/env bash
# On a machine with an NVIDIA GPU, from the source tree: the CUDA tests on the real device, then the GPU
# benchmarks (cuda backend against torch CUDA, same initial weights and order, times synchronised).
# Writes its log, JUnit XML and benchmark JSON under $OUT (default bench/out/gpu).
#   bash bench/gpu_run.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out/gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python -c "import numba, numba_cuda, numpy; print('numba', numba.__version__, 'numba-cuda', numba_cuda.__version__, 'numpy', numpy.__version__)"
  python -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" || echo "torch: absent"
  echo "== CUDA kernel and model tests on the device"
  NUMBA_MLP_TEST_CUDA=1 python -m pytest tests/test_kernels.py tests/test_cuda.py -q -x \
    -p no:cacheprovider --junitxml="$OUT/tests.xml"
  echo "tests rc=$?"
  echo "== GPU benchmarks: cuda vs torch-cuda"
  python -m pytest bench/test_training.py bench/test_ops.py -q -p no:cacheprovider -k "cuda" \
    --benchmark-only --benchmark-group-by=group --benchmark-json="$OUT/gpu.json"
  echo "bench rc=$?"
  python bench/report.py "$OUT/gpu.json" --baseline torch-cuda
} 2>&1 | tee "$OUT/gpu_run.log"
