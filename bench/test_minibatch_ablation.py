"""What the cpu minibatch epoch's first-layer paths and threads are worth, on real and dense data.

``kernels.cpu.minibatch.minibatch_epoch_variant`` runs the same steps with the
first layer's sparse path (each sample's non-zero inputs only) or dense path
(register-blocked products) forced, and on one thread or numba's thread count;
groups ``minibatch paths <data> batch <B>`` compare them with the shipped choice.
"""

import numpy as np
import pytest

import kernels.numpy as reference
from bench.conftest import LR, N_SAMPLES, SIZES, flat_theta, let_blas_threads_sleep
from kernels import layout
from kernels.activations import RELU
from kernels.cpu.minibatch import SPARSE_MAX_DENSITY, minibatch_epoch_variant, parallel_threads
from kernels.optimizer import hyper

ALWAYS_SPARSE, NEVER_SPARSE = 2.0, -1.0
VARIANTS = {
    "shipped": lambda: (parallel_threads(), SPARSE_MAX_DENSITY),
    "sparse path": lambda: (parallel_threads(), ALWAYS_SPARSE),
    "dense path": lambda: (parallel_threads(), NEVER_SPARSE),
    "shipped, one thread": lambda: (1, SPARSE_MAX_DENSITY),
}


@pytest.mark.parametrize("batch_size", [128, 1024])
@pytest.mark.parametrize("data", ["mnist", "dense"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_minibatch_epoch_variant(benchmark, datasets, initial_params, order, data, batch_size, variant):
    X, y = datasets[data]
    sizes = layout.as_sizes(SIZES)
    start = flat_theta(initial_params)
    work = np.zeros(layout.workspace_size(sizes, batch_size), np.float32)
    threads, max_density = VARIANTS[variant]()
    # Checked in float64 against the NumPy reference, where the paths agree to rounding, then timed in float32.
    checked, X64 = order[:3 * batch_size], X.astype(np.float64)
    expected = start.astype(np.float64)
    reference.minibatch_epoch(expected, expected[:1], sizes, RELU, X64, y, checked, batch_size, hyper(LR),
                              work.astype(np.float64), np.zeros(1))
    theta = start.astype(np.float64)
    minibatch_epoch_variant(theta, theta[:1], sizes, RELU, X64, y, checked, batch_size, hyper(LR),
                            work.astype(np.float64), np.zeros(1), threads, max_density)
    np.testing.assert_allclose(theta, expected, rtol=1e-9, atol=1e-12)
    theta = start.copy()
    let_blas_threads_sleep()
    benchmark.group = f"minibatch paths {data} batch {batch_size}"
    benchmark.extra_info.update(items=N_SAMPLES, unit="samples")
    benchmark.pedantic(
        minibatch_epoch_variant,
        args=(theta, theta[:1], sizes, RELU, X, y, order, batch_size, hyper(LR), work, np.zeros(1), threads,
              max_density),
        setup=lambda: theta.__setitem__(slice(None), start), rounds=15, iterations=1,
    )
