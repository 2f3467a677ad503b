"""Dense layer ``Z = X Wᵀ + b`` and its gradients as ``@njit`` kernels.

Two kernels serve the three products, each running along the contiguous rows
of its operands (single-threaded: see the note in :mod:`kernels.cpu._jit`):

* :func:`gemm_nt`, ``C = A Bᵀ`` (the forward pass ``X Wᵀ``): dot products of
  rows, register-blocked; with one row (the course's B = 1) a matrix-vector product;
* :func:`gemm_nn`, ``C = op(A) B`` (``dW = dZᵀ X`` and ``dX = dZ W``): row
  updates ``C[i] += a B[k]``, four rows by four, with nothing transposed.
"""

from kernels.cpu._jit import jit


@jit
def gemm_nt_columns(A, B, C, j0, j1):
    """``C[:, j0:j1] = A B[j0:j1]ᵀ``: the serial kernel behind :func:`gemm_nt`.

    4×2 blocks of ``C`` are held in eight accumulators while ``k`` runs along
    the contiguous rows of ``A`` and ``B``; LLVM vectorises that loop
    (``reassoc``), which reaches the single-core speed of OpenBLAS' sgemm at
    these shapes. Leftover rows and columns use dot products.
    """
    M, K = A.shape
    zero = C.dtype.type(0)
    i = 0
    while i + 4 <= M:
        j = j0
        while j + 2 <= j1:
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
        if j < j1:
            for r in range(i, i + 4):
                C[r, j] = dot(A[r], B[j])
        i += 4
    for r in range(i, M):
        gemv(B[j0:j1], A[r], C[r, j0:j1])


@jit
def gemm_nt(A, B, C):
    """``C = A Bᵀ``.

    Parameters
    ----------
    A : ndarray, shape (M, K), C-contiguous
    B : ndarray, shape (N, K), C-contiguous
    C : ndarray, shape (M, N), written in full
    """
    gemm_nt_columns(A, B, C, 0, B.shape[0])


@jit
def _coefficient(A, i, k, transpose_a, alpha):
    """``alpha op(A)[i, k]``."""
    return alpha * (A[k, i] if transpose_a else A[i, k])


@jit
def gemm_rows(A, B, C, i0, i1, transpose_a, alpha, accumulate):
    """``C[i0:i1] (+)= alpha op(A)[i0:i1] B`` by row updates ``C[i] += alpha op(A)[i, k] B[k]``.

    ``op(A)`` is ``Aᵀ`` when ``transpose_a`` (A stored (K, M)), else A (M, K);
    B is (K, N), C is (M, N); C is zeroed first unless ``accumulate`` (with
    ``alpha = -η`` and ``accumulate``, an SGD update of C without storing the
    gradient). Four rows of C take four rows of B at a time, so each pass over
    a row of C does 16 multiply-adds per element loaded and stored; the loop
    along the rows vectorises. The reduction runs in blocks of :data:`K_BLOCK`
    rows of B, which then stay in cache across the rows of C (for
    ``dW = dZᵀ X`` with a large batch, X itself would not).
    """
    K = B.shape[0]
    if not accumulate:
        for i in range(i0, i1):
            C[i, :] = 0
    scale = C.dtype.type(alpha)
    for k_start in range(0, K, K_BLOCK):
        _gemm_rows_block(A, B, C, i0, i1, transpose_a, scale, k_start, min(K, k_start + K_BLOCK))


#: Rows of B (the reduction) taken per pass over C in :func:`gemm_rows`, so that they stay in cache.
K_BLOCK = 128


@jit
def _gemm_rows_block(A, B, C, i0, i1, transpose_a, alpha, k_start, k_stop):
    """``C[i0:i1] += alpha op(A)[i0:i1, k_start:k_stop] B[k_start:k_stop]``; see :func:`gemm_rows`."""
    i = i0
    while i + 4 <= i1:
        C0 = C[i]
        C1 = C[i + 1]
        C2 = C[i + 2]
        C3 = C[i + 3]
        k = k_start
        while k + 4 <= k_stop:
            b0 = B[k]
            b1 = B[k + 1]
            b2 = B[k + 2]
            b3 = B[k + 3]
            a00 = _coefficient(A, i, k, transpose_a, alpha)
            a01 = _coefficient(A, i, k + 1, transpose_a, alpha)
            a02 = _coefficient(A, i, k + 2, transpose_a, alpha)
            a03 = _coefficient(A, i, k + 3, transpose_a, alpha)
            a10 = _coefficient(A, i + 1, k, transpose_a, alpha)
            a11 = _coefficient(A, i + 1, k + 1, transpose_a, alpha)
            a12 = _coefficient(A, i + 1, k + 2, transpose_a, alpha)
            a13 = _coefficient(A, i + 1, k + 3, transpose_a, alpha)
            a20 = _coefficient(A, i + 2, k, transpose_a, alpha)
            a21 = _coefficient(A, i + 2, k + 1, transpose_a, alpha)
            a22 = _coefficient(A, i + 2, k + 2, transpose_a, alpha)
            a23 = _coefficient(A, i + 2, k + 3, transpose_a, alpha)
            a30 = _coefficient(A, i + 3, k, transpose_a, alpha)
            a31 = _coefficient(A, i + 3, k + 1, transpose_a, alpha)
            a32 = _coefficient(A, i + 3, k + 2, transpose_a, alpha)
            a33 = _coefficient(A, i + 3, k + 3, transpose_a, alpha)
            for n in range(B.shape[1]):
                x0 = b0[n]
                x1 = b1[n]
                x2 = b2[n]
                x3 = b3[n]
                C0[n] += a00 * x0 + a01 * x1 + a02 * x2 + a03 * x3
                C1[n] += a10 * x0 + a11 * x1 + a12 * x2 + a13 * x3
                C2[n] += a20 * x0 + a21 * x1 + a22 * x2 + a23 * x3
                C3[n] += a30 * x0 + a31 * x1 + a32 * x2 + a33 * x3
            k += 4
        for kk in range(k, k_stop):
            for r in range(4):
                axpy(_coefficient(A, i + r, kk, transpose_a, alpha), B[kk], C[i + r])
        i += 4
    for r in range(i, i1):
        for kk in range(k_start, k_stop):
            coefficient = _coefficient(A, r, kk, transpose_a, alpha)
            if coefficient != 0:  # exact: rows of zeros (inactive ReLU units) add nothing
                axpy(coefficient, B[kk], C[r])


@jit
def gemm_nn(A, B, C, transpose_a):
    """``C = op(A) B`` (see :func:`gemm_rows`)."""
    gemm_rows(A, B, C, 0, C.shape[0], transpose_a, 1.0, False)


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
    gemm_nn(dZ, X, dW, True)


@jit
def input_gradient(dZ, W, dX):
    """``dX = dZ W``: (B, n_in) from dZ (B, n_out) and W (n_out, n_in)."""
    gemm_nn(dZ, W, dX, False)


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
