"""Dense layer ``Z = X Wᵀ + b`` and its gradients as ``@njit`` kernels.

All three products reduce to one register-blocked kernel, :func:`gemm_nt`,
``C = A Bᵀ``, whose reduction runs along the contiguous rows of both operands;
the backward products feed it transposed copies when the batch is large enough
to pay for them, and use rank-1 row updates otherwise (the course's B = 1 case).
"""

import numpy as np

from kernels.cpu._jit import jit

#: From this batch size on, the backward products transpose and use gemm_nt.
GEMM_MIN_BATCH = 16


@jit
def gemm_nt(A, B, C):
    """``C = A Bᵀ``.

    Parameters
    ----------
    A : ndarray, shape (M, K), C-contiguous
    B : ndarray, shape (N, K), C-contiguous
    C : ndarray, shape (M, N), written in full

    Notes
    -----
    4×2 blocks of ``C`` are held in eight accumulators while ``k`` runs along
    the rows; LLVM vectorises that loop (``reassoc``), which reaches the
    single-core speed of OpenBLAS' sgemm at these shapes. Rows left over (and
    ``M = 1``, the matrix-vector product) use 1×4 blocks.
    """
    M, K = A.shape
    N = B.shape[0]
    zero = C.dtype.type(0)
    i = 0
    while i + 4 <= M:
        j = 0
        while j + 2 <= N:
            c00 = zero
            c01 = zero
            c10 = zero
            c11 = zero
            c20 = zero
            c21 = zero
            c30 = zero
            c31 = zero
            for k in range(K):
                b0 = B[j, k]
                b1 = B[j + 1, k]
                a = A[i, k]
                c00 += a * b0
                c01 += a * b1
                a = A[i + 1, k]
                c10 += a * b0
                c11 += a * b1
                a = A[i + 2, k]
                c20 += a * b0
                c21 += a * b1
                a = A[i + 3, k]
                c30 += a * b0
                c31 += a * b1
            C[i, j] = c00
            C[i, j + 1] = c01
            C[i + 1, j] = c10
            C[i + 1, j + 1] = c11
            C[i + 2, j] = c20
            C[i + 2, j + 1] = c21
            C[i + 3, j] = c30
            C[i + 3, j + 1] = c31
            j += 2
        if j < N:
            for r in range(i, i + 4):
                C[r, j] = dot(A[r], B[j])
        i += 4
    for r in range(i, M):
        gemv(B, A[r], C[r])


@jit
def dot(a, b):
    """``Σ_k a[k] b[k]`` of two contiguous vectors."""
    acc = a.dtype.type(0)
    for k in range(a.shape[0]):
        acc += a[k] * b[k]
    return acc


@jit
def gemv(W, x, out):
    """Matrix-vector product ``out = W x``; ``W`` is (N, K), ``x`` (K,), ``out`` (N,)."""
    N, K = W.shape
    zero = out.dtype.type(0)
    j = 0
    while j + 4 <= N:
        c0 = zero
        c1 = zero
        c2 = zero
        c3 = zero
        for k in range(K):
            xk = x[k]
            c0 += W[j, k] * xk
            c1 += W[j + 1, k] * xk
            c2 += W[j + 2, k] * xk
            c3 += W[j + 3, k] * xk
        out[j] = c0
        out[j + 1] = c1
        out[j + 2] = c2
        out[j + 3] = c3
        j += 4
    for r in range(j, N):
        out[r] = dot(W[r], x)


@jit
def axpy(alpha, x, y):
    """``y += alpha x`` for contiguous vectors."""
    for k in range(x.shape[0]):
        y[k] += alpha * x[k]


@jit
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
    gemm_nt(X, W, out)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] += b[j]


@jit
def weight_gradient(dZ, X, dW):
    """``dW = dZᵀ X``: (n_out, n_in) from dZ (B, n_out) and X (B, n_in)."""
    if dZ.shape[0] >= GEMM_MIN_BATCH:
        gemm_nt(np.ascontiguousarray(dZ.T), np.ascontiguousarray(X.T), dW)
        return
    dW[:] = 0
    for i in range(dZ.shape[0]):
        for j in range(dZ.shape[1]):
            d = dZ[i, j]
            if d != 0:  # exact: a zero row of dZ adds nothing (inactive ReLU units)
                axpy(d, X[i], dW[j])


@jit
def input_gradient(dZ, W, dX):
    """``dX = dZ W``: (B, n_in) from dZ (B, n_out) and W (n_out, n_in)."""
    if dZ.shape[0] >= GEMM_MIN_BATCH:
        gemm_nt(dZ, np.ascontiguousarray(W.T), dX)
        return
    dX[:] = 0
    for i in range(dZ.shape[0]):
        for j in range(dZ.shape[1]):
            d = dZ[i, j]
            if d != 0:
                axpy(d, W[j], dX[i])


@jit
def linear_backward(dZ, X, W, dW, db, dX):
    """Gradients of a dense layer given the upstream gradient ``dZ = ∂l/∂Z``.

    ``dW = dZᵀ X``, ``db = Σ_batch dZ``, ``dX = dZ W``.

    Parameters
    ----------
    dZ : ndarray, shape (B, n_out)
    X : ndarray, shape (B, n_in)
    W : ndarray, shape (n_out, n_in)
    dW : ndarray, shape (n_out, n_in)
        Written in full.
    db : ndarray, shape (n_out,)
        Written in full.
    dX : ndarray, shape (B, n_in), or None
        Written in full; ``None`` skips it (first layer).
    """
    weight_gradient(dZ, X, dW)
    db[:] = 0
    for i in range(dZ.shape[0]):
        for j in range(dZ.shape[1]):
            db[j] += dZ[i, j]
    if dX is not None:
        input_gradient(dZ, W, dX)
