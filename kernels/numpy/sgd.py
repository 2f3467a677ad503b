"""The SGD update, and the check that it left every value finite (NumPy reference)."""

import numpy as np


def sgd_update(theta, grad, lr):
    """In place ``θ ← θ − η g``.

    Parameters
    ----------
    theta : ndarray, shape (P,)
    grad : ndarray, shape (P,)
    lr : float
        The learning rate η.
    """
    theta -= theta.dtype.type(lr) * grad


def count_nonfinite(values, count):
    """``count[0] +=`` the number of NaN or infinite entries of ``values``.

    The training loop's check that an update left every weight finite (the loss
    of the epoch's last update is only seen in the next epoch).

    Parameters
    ----------
    values : ndarray, shape (P,)
    count : ndarray of int64, shape (1,)
    """
    count[0] += np.count_nonzero(~np.isfinite(values))
