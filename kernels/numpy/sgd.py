"""The SGD update (NumPy reference)."""


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
