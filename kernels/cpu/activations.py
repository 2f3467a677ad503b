"""Activation functions and their derivatives as ``@njit`` kernels.

The scalar formulas come from :mod:`kernels.activations` (written once for all
compiled backends); see there for the table.
"""

from kernels.cpu._jit import jit
from kernels.cpu.scalar import activate_scalar, derivative_scalar


@jit
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
    for i in range(Z.shape[0]):
        for j in range(Z.shape[1]):
            out[i, j] = activate_scalar(Z[i, j], activation)


@jit
def activation_backward(A, dA, activation, out):
    """``out = dA · g'(Z)``, ``g'`` written through the stored output ``A = g(Z)``.

    Parameters
    ----------
    A : ndarray, shape (B, n)
    dA : ndarray, shape (B, n)
    activation : int
    out : ndarray, shape (B, n)
        Written in full; may be ``dA`` itself.
    """
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            out[i, j] = dA[i, j] * derivative_scalar(A[i, j], activation)
