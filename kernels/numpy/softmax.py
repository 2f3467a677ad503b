"""Softmax, cross-entropy from logits, and their fused gradient (NumPy reference)."""

import numpy as np


def softmax(Z, out):
    """Row-wise ``out = exp(Z - max Z) / Σ exp(Z - max Z)``.

    Parameters
    ----------
    Z : ndarray, shape (B, K)
    out : ndarray, shape (B, K)
        Written in full; rows sum to 1.
    """
    shifted = Z - Z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    np.divide(e, e.sum(axis=1, keepdims=True), out=out)


def cross_entropy(Z, y, losses):
    """Per-sample loss ``l = -log softmax(Z)_y`` computed from the logits.

    Uses log-sum-exp, ``l = m + log Σ exp(Z - m) - Z_y`` with ``m = max Z``, so
    ``log 0`` is never taken. The cost of the course is ``losses.mean()``.

    Parameters
    ----------
    Z : ndarray, shape (B, K)
        Logits.
    y : ndarray of int64, shape (B,)
        Labels in ``[0, K)``.
    losses : ndarray, shape (B,)
        Written in full.
    """
    m = Z.max(axis=1)
    lse = m + np.log(np.exp(Z - m[:, None]).sum(axis=1))
    np.subtract(lse, Z[np.arange(Z.shape[0]), y], out=losses)


def softmax_cross_entropy_backward(Z, y, dZ):
    """Gradient of the *mean* cross-entropy w.r.t. the logits.

    ``dZ = (softmax(Z) - onehot(y)) / B``.

    Parameters
    ----------
    Z : ndarray, shape (B, K)
    y : ndarray of int64, shape (B,)
    dZ : ndarray, shape (B, K)
        Written in full.
    """
    softmax(Z, dZ)
    dZ[np.arange(Z.shape[0]), y] -= 1
    dZ /= Z.shape[0]
