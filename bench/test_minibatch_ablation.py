"""What the cpu minibatch epoch's paths and threads are worth, on real and dense data.

The same steps run by each path of the cpu backend: the fused parallel kernel
(``kernels.cpu.minibatch.minibatch_epoch_variant``) with its first layer's sparse
path (each sample's non-zero inputs only) or dense path (register-blocked
products) forced, on one thread or numba's count; and the BLAS path
(``kernels.cpu.minibatch_blas``), products in NumPy's BLAS. Groups
``minibatch paths <sizes> <data> batch <B>`` compare them with the shipped
choice (``kernels.cpu.minibatch_epoch``), on 784-128-10 and on the wide
784-1024-1024-10, where the BLAS path takes over
(:data:`kernels.cpu.minibatch_blas.BLAS_MIN_MULTIPLY_ADDS`).
"""

import numpy as np
import pytest

import kernels.numpy as reference
from bench.conftest import LR, N_SAMPLES, SIZES, flat_theta, let_blas_threads_sleep
from kernels import layout
from kernels.activations import RELU
from kernels.cpu.minibatch import SPARSE_MAX_DENSITY, minibatch_epoch, minibatch_epoch_variant, parallel_threads
from kernels.cpu.minibatch_blas import minibatch_epoch_blas
from kernels.optimizer import hyper
from model import MLP

ALWAYS_SPARSE, NEVER_SPARSE = 2.0, -1.0


def fused(threads, max_density):
    def run(theta, sizes, X, y, order, batch_size, work):
        minibatch_epoch_variant(theta, theta[:1], sizes, RELU, X, y, order, batch_size, hyper(LR), work, np.zeros(1),
                                threads(), max_density)
    return run


def blas(theta, sizes, X, y, order, batch_size, work):
    minibatch_epoch_blas(theta, theta[:1], sizes, RELU, X, y, order, batch_size, hyper(LR), work, np.zeros(1))


def shipped(theta, sizes, X, y, order, batch_size, work):
    minibatch_epoch(theta, theta[:1], sizes, RELU, X, y, order, batch_size, hyper(LR), work, np.zeros(1))


VARIANTS = {
    "shipped (minibatch_epoch)": shipped,
    "fused, sparse first layer": fused(parallel_threads, ALWAYS_SPARSE),
    "fused, dense first layer": fused(parallel_threads, NEVER_SPARSE),
    "fused, shipped first layer, one thread": fused(lambda: 1, SPARSE_MAX_DENSITY),
    "BLAS path": blas,
}
WIDE = [784, 1024, 1024, 10]
CASES = [(SIZES, "mnist", 128), (SIZES, "dense", 128), (SIZES, "mnist", 1024), (SIZES, "dense", 1024),
         (WIDE, "mnist", 64), (WIDE, "mnist", 256)]


@pytest.mark.parametrize("sizes, data, batch_size", CASES,
                         ids=[f"{'-'.join(map(str, s))}-{d}-batch{b}" for s, d, b in CASES])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_minibatch_path(benchmark, datasets, initial_params, order, sizes, data, batch_size, variant):
    X, y = datasets[data]
    sizes = layout.as_sizes(sizes)
    params = initial_params if list(sizes) == SIZES else MLP(list(sizes), backend="numpy", seed=0).params
    start = flat_theta(params)
    work = layout.aligned_zeros(layout.workspace_size(sizes, batch_size), np.float32)
    run = VARIANTS[variant]
    # Checked in float64 against the NumPy reference, where the paths agree to rounding, then timed in float32.
    checked, X64 = order[:3 * batch_size], X.astype(np.float64)
    expected = start.astype(np.float64)
    reference.minibatch_epoch(expected, expected[:1], sizes, RELU, X64, y, checked, batch_size, hyper(LR),
                              work.astype(np.float64), np.zeros(1))
    theta = start.astype(np.float64)
    run(theta, sizes, X64, y, checked, batch_size, work.astype(np.float64))
    np.testing.assert_allclose(theta, expected, rtol=1e-9, atol=1e-12)
    theta = layout.aligned_copy(start)
    let_blas_threads_sleep()
    benchmark.group = f"minibatch paths {'-'.join(map(str, sizes))} {data} batch {batch_size}"
    benchmark.extra_info.update(items=N_SAMPLES, unit="samples", label=variant,
                                baseline=variant == "shipped (minibatch_epoch)")
    benchmark.pedantic(run, args=(theta, sizes, X, y, order, batch_size, work),
                       setup=lambda: theta.__setitem__(slice(None), start), rounds=3 if sizes[1] > 128 else 9,
                       iterations=1)
