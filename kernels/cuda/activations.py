"""Activation functions and their derivatives as ``numba.cuda`` kernels.

In training they are fused into the products' epilogues (:mod:`kernels.cuda.linear`);
these standalone ops exist for completeness and testing.
Reference: :mod:`kernels.numpy.activations`.
"""

from kernels.cuda._launch import THREADS, activate_device, cuda, derivative_device, grid_for, kernel, launch

if cuda is not None:

    @kernel(THREADS)
    def activation_kernel(Z, dA, code, out, backward):
        """``out = g(Z)``, or ``out = dA · g'(A)`` with ``Z`` holding ``A`` when ``backward``."""
        n_cols = Z.shape[1]
        for idx in range(cuda.grid(1), Z.shape[0] * n_cols, cuda.gridsize(1)):
            i = idx // n_cols
            j = idx % n_cols
            if backward:
                out[i, j] = dA[i, j] * derivative_device(Z[i, j], code)
            else:
                out[i, j] = activate_device(Z[i, j], code)


def activation_forward(Z, activation, out):
    """``out = g(Z)``; Z and out (B, n) device arrays."""
    launch(activation_kernel, grid_for(Z.size), THREADS, Z, Z, activation, out, False)


def activation_backward(A, dA, activation, out):
    """``out = dA · g'(Z)`` through the stored output ``A = g(Z)``; all (B, n) device arrays."""
    launch(activation_kernel, grid_for(A.size), THREADS, A, dA, activation, out, True)
