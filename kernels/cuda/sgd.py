"""The SGD update as a ``numba.cuda`` kernel: one grid-stride pass over the flat ``theta``; and the
check that it left every value finite.

Reference: :mod:`kernels.numpy.sgd`.
"""

import math

from kernels.cuda._launch import THREADS, cuda, grid_for

if cuda is not None:

    @cuda.jit(cache=True)
    def sgd_update_kernel(theta, grad, lr):
        step = theta.dtype.type(lr)
        for p in range(cuda.grid(1), theta.shape[0], cuda.gridsize(1)):
            theta[p] -= step * grad[p]

    @cuda.jit(cache=True)
    def count_nonfinite_kernel(values, count):
        bad = 0
        for p in range(cuda.grid(1), values.shape[0], cuda.gridsize(1)):
            bad += not math.isfinite(values[p])
        if bad:
            cuda.atomic.add(count, 0, bad)


def sgd_update(theta, grad, lr):
    """In place ``θ ← θ − η g``; theta, grad (P,) device arrays."""
    sgd_update_kernel[grid_for(theta.shape[0]), THREADS](theta, grad, lr)


def count_nonfinite(values, count):
    """``count[0] +=`` the number of NaN or infinite entries; values (P,), count int64 (1,) device arrays."""
    count_nonfinite_kernel[grid_for(values.shape[0]), THREADS](values, count)
