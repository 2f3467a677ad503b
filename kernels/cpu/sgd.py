"""The SGD update, and the check that it left every value finite, as ``@njit`` kernels."""

import math

from kernels.cpu._jit import jit


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
def count_nonfinite(values, count):
    """``count[0] +=`` the number of NaN or infinite entries of ``values`` (P,); ``count`` int64 (1,)."""
    bad = 0
    for p in range(values.shape[0]):
        bad += not math.isfinite(values[p])
    count[0] += bad
