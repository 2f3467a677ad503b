"""The SGD update, with momentum and weight decay, and the check that it left every value finite, as
``@njit`` kernels. See :mod:`kernels.optimizer` for the rule."""

import math

from numba import njit

from kernels.cpu._jit import ERROR_MODEL, FASTMATH, jit
from kernels.optimizer import sgd_step

#: :func:`kernels.optimizer.sgd_step`, compiled for the CPU as it is written there.
optimizer_step = njit(inline="always", fastmath=set(FASTMATH), error_model=ERROR_MODEL)(sgd_step)


@jit
def sgd_update(theta, grad, lr):
    """In place ``θ ← θ − η g``.

    Parameters
    ----------
    theta : ndarray, shape (P,)
    grad : ndarray, shape (P,)
    lr : float
    """
    step = theta.dtype.type(lr)
    for p in range(theta.shape[0]):
        theta[p] -= step * grad[p]


@jit
def optimizer_update(theta, velocity, grad, sizes, hyper):
    """In place, PyTorch's SGD step with momentum, Nesterov and weight decay on the weight matrices only.

    Parameters
    ----------
    theta, velocity, grad : ndarray, shape (P,)
    sizes : ndarray of int64, shape (L + 1,)
    hyper : tuple
        ``(lr, momentum, nesterov, weight_decay)``; the velocity is touched only with momentum.
    """
    real = theta.dtype.type
    lr, momentum, nesterov, decay = real(hyper[0]), real(hyper[1]), hyper[2], real(hyper[3])
    zero = real(0)
    start = 0
    for l in range(sizes.shape[0] - 1):
        n_weights = sizes[l + 1] * sizes[l]
        for p in range(start, start + n_weights + sizes[l + 1]):
            v = velocity[p] if momentum != 0 else zero
            theta[p], v = optimizer_step(theta[p], v, grad[p], lr, momentum, nesterov,
                                         decay if p < start + n_weights else zero)
            if momentum != 0:
                velocity[p] = v
        start += n_weights + sizes[l + 1]


@jit
def count_nonfinite(values, count):
    """``count[0] +=`` the number of NaN or infinite entries of ``values`` (P,); ``count`` int64 (1,)."""
    bad = 0
    for p in range(values.shape[0]):
        bad += not math.isfinite(values[p])
    count[0] += bad
