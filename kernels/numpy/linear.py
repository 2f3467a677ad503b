"""Dense layer ``Z = X Wᵀ + b`` and its gradients (NumPy reference)."""

import numpy as np


def linear_forward(X, W, b, out):
    """Affine map of a batch: ``out = X Wᵀ + b``.

    Parameters
    ----------
    X : ndarray, shape (B, n_in)
    W : ndarray, shape (n_out, n_in)
    b : ndarray, shape (n_out,)
    out : ndarray, shape (B, n_out)
        Written in full.
    """
    np.matmul(X, W.T, out=out)
    out += b


def linear_backward(dZ, X, W, dW, db, dX):
    """Gradients of a dense layer given the upstream gradient ``dZ = ∂l/∂Z``.

    ``dW = dZᵀ X``, ``db = Σ_batch dZ``, ``dX = dZ W``.

    Parameters
    ----------
    dZ : ndarray, shape (B, n_out)
    X : ndarray, shape (B, n_in)
        The layer's input.
    W : ndarray, shape (n_out, n_in)
    dW : ndarray, shape (n_out, n_in)
        Written in full.
    db : ndarray, shape (n_out,)
        Written in full.
    dX : ndarray, shape (B, n_in), or None
        Written in full; ``None`` skips it (the first layer needs no input gradient).
    """
    np.matmul(dZ.T, X, out=dW)
    np.sum(dZ, axis=0, out=db)
    if dX is not None:
        np.matmul(dZ, W, out=dX)
