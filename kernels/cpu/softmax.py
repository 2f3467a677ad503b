"""Softmax, cross-entropy from logits, and their fused gradient as ``@njit`` kernels."""

import math

from kernels.cpu._jit import jit
from kernels.cpu.scalar import exp_nonpositive


@jit
def row_log_sum_exp(z):
    """``(m, log Σ exp(z - m))`` with ``m = max z``, for one row ``z``."""
    m = z[0]
    for k in range(1, z.shape[0]):
        if z[k] > m:
            m = z[k]
    s = 0.0
    for k in range(z.shape[0]):
        s += exp_nonpositive(z[k] - m)
    return m, math.log(s)


@jit
def row_loss_and_gradient(z, label, scale, dz):
    """Return ``l = -log softmax(z)_label`` and write ``dz = scale (softmax(z) - onehot(label))``.

    One row's loss and its scaled gradient, for the fused kernels; ``dz`` must
    not be ``z``.
    """
    m, log_s = row_log_sum_exp(z)
    shift = z.dtype.type(m + log_s)  # in the logits' dtype, for a vectorised float32 exp
    for k in range(z.shape[0]):
        dz[k] = exp_nonpositive(z[k] - shift) * scale
    dz[label] -= scale
    return m + log_s - z[label]


@jit
def softmax(Z, out):
    """Row-wise ``out = exp(Z - max Z) / Σ exp(Z - max Z)``.

    Parameters
    ----------
    Z : ndarray, shape (B, K)
    out : ndarray, shape (B, K)
        Written in full; may be ``Z`` itself.
    """
    for i in range(Z.shape[0]):
        m, log_s = row_log_sum_exp(Z[i])
        shift = Z.dtype.type(m + log_s)
        for k in range(Z.shape[1]):
            out[i, k] = exp_nonpositive(Z[i, k] - shift)


@jit
def cross_entropy(Z, y, losses):
    """Per-sample loss ``l = -log softmax(Z)_y = m + log Σ exp(Z - m) - Z_y``.

    Parameters
    ----------
    Z : ndarray, shape (B, K)
        Logits.
    y : ndarray of int64, shape (B,)
    losses : ndarray, shape (B,)
        Written in full.
    """
    for i in range(Z.shape[0]):
        m, log_s = row_log_sum_exp(Z[i])
        losses[i] = m + log_s - Z[i, y[i]]


@jit
def softmax_cross_entropy_backward(Z, y, dZ):
    """``dZ = (softmax(Z) - onehot(y)) / B``, the gradient of the mean loss.

    Parameters
    ----------
    Z : ndarray, shape (B, K)
    y : ndarray of int64, shape (B,)
    dZ : ndarray, shape (B, K)
        Written in full; may be ``Z`` itself.
    """
    inv_batch = 1.0 / Z.shape[0]
    for i in range(Z.shape[0]):
        m, log_s = row_log_sum_exp(Z[i])
        shift = Z.dtype.type(m + log_s)
        label = y[i]
        for k in range(Z.shape[1]):
            p = exp_nonpositive(Z[i, k] - shift)
            dZ[i, k] = ((p - 1.0) if k == label else p) * inv_batch
