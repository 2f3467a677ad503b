"""The SGD update as a ``numba.cuda`` kernel: one grid-stride pass over the flat ``theta``.

Reference: :mod:`kernels.numpy.sgd`.
"""

from kernels.cuda._launch import THREADS, cuda, grid_for

if cuda is not None:

    @cuda.jit(cache=True)
    def sgd_update_kernel(theta, grad, lr):
        step = theta.dtype.type(lr)
        for p in range(cuda.grid(1), theta.shape[0], cuda.gridsize(1)):
            theta[p] -= step * grad[p]


def sgd_update(theta, grad, lr):
    """In place ``θ ← θ − η g``; theta, grad (P,) device arrays."""
    sgd_update_kernel[grid_for(theta.shape[0]), THREADS](theta, grad, lr)
