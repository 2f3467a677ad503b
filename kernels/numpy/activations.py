"""Activation functions and their derivatives (NumPy reference).

See :mod:`kernels.activations` for the formulas and codes.
"""

import numpy as np

from kernels.activations import IDENTITY, LEAKY_RELU, LEAKY_SLOPE, RELU, SIGMOID, TANH


def activation_forward(Z, activation, out):
    """``out = g(Z)`` elementwise.

    Parameters
    ----------
    Z : ndarray, shape (B, n)
    activation : int
        A code from :data:`kernels.activations.ACTIVATIONS`.
    out : ndarray, shape (B, n)
        Written in full; may be ``Z`` itself.
    """
    if activation == RELU:
        np.maximum(Z, 0, out=out)
    elif activation == LEAKY_RELU:
        np.copyto(out, np.where(Z > 0, Z, Z * Z.dtype.type(LEAKY_SLOPE)))
    elif activation == SIGMOID:
        # exp of -|z| only: no overflow for large |z|.
        e = np.exp(-np.abs(Z))
        np.copyto(out, np.where(Z >= 0, 1 / (1 + e), e / (1 + e)))
    elif activation == TANH:
        np.tanh(Z, out=out)
    elif activation == IDENTITY:
        np.copyto(out, Z)
    else:
        raise ValueError(f"activation: unknown code {activation}")


def activation_backward(A, dA, activation, out):
    """``out = dA · g'(Z)``, with ``g'`` written through the stored output ``A = g(Z)``.

    Parameters
    ----------
    A : ndarray, shape (B, n)
        The activation's output.
    dA : ndarray, shape (B, n)
        Upstream gradient ``∂l/∂A``.
    activation : int
    out : ndarray, shape (B, n)
        ``∂l/∂Z``, written in full; may be ``dA`` itself.
    """
    if activation == RELU:
        np.multiply(dA, A > 0, out=out)
    elif activation == LEAKY_RELU:
        np.multiply(dA, np.where(A > 0, 1, A.dtype.type(LEAKY_SLOPE)), out=out)
    elif activation == SIGMOID:
        np.multiply(dA, A * (1 - A), out=out)
    elif activation == TANH:
        np.multiply(dA, 1 - A * A, out=out)
    elif activation == IDENTITY:
        np.copyto(out, dA)
    else:
        raise ValueError(f"activation: unknown code {activation}")
