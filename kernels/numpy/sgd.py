"""The SGD update, with momentum and weight decay, and the check that it left every value finite
(NumPy reference). See :mod:`kernels.optimizer` for the rule."""

import numpy as np

from kernels import layout
from kernels.optimizer import LR, MOMENTUM, NESTEROV, WEIGHT_DECAY


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


def optimizer_update(theta, velocity, grad, sizes, hyper):
    """In place, PyTorch's SGD step with momentum, Nesterov and weight decay on the weight matrices only.

    ``g ← g + λ W`` (weights only), ``v ← μ v + g``, ``θ ← θ − η (g + μ v)``
    (Nesterov) or ``θ ← θ − η v``; with ``μ = 0``, ``θ ← θ − η g`` and the
    velocity is left alone.

    Parameters
    ----------
    theta, velocity, grad : ndarray, shape (P,)
        Laid out as in :mod:`kernels.layout`.
    sizes : ndarray of int64, shape (L + 1,)
    hyper : tuple
        ``(lr, momentum, nesterov, weight_decay)`` from :func:`kernels.optimizer.hyper`.
    """
    dtype = theta.dtype.type
    lr, momentum, decay = dtype(hyper[LR]), dtype(hyper[MOMENTUM]), dtype(hyper[WEIGHT_DECAY])
    g = grad.copy()
    for W, dW in zip((W for W, _ in layout.param_views(theta, sizes)), (dW for dW, _ in layout.param_views(g, sizes))):
        dW += decay * W
    if momentum == 0:
        theta -= lr * g
        return
    velocity *= momentum
    velocity += g
    theta -= lr * (g + momentum * velocity if hyper[NESTEROV] else velocity)


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
