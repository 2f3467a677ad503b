"""The SGD update as an ``@njit`` kernel."""

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
