"""General matrix products through the BLAS that NumPy itself ships, with ``alpha`` and ``beta``.

``C ← α op(A) op(B) + β C`` for C-contiguous float32/float64 matrices: the
BLAS ``gemm``, reached through ``ctypes`` in the OpenBLAS library of NumPy's
wheels (``numpy.libs/libscipy_openblas64_*``, symbols ``scipy_cblas_sgemm64_``
and ``scipy_cblas_dgemm64_``), so no new dependency. ``β = 1`` with ``α = −η``
is an SGD step of ``C`` fused into the product that makes its gradient: no
gradient array, no second pass over the weights. Where that library is absent
(NumPy built against another BLAS), :func:`gemm` computes the same with
``np.matmul`` and an update pass; :data:`LIBRARY` says which.
"""

import ctypes
import glob
import os

import numpy as np

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


def _load():
    """``(library path, {dtype: cblas function})`` of NumPy's bundled OpenBLAS, or ``(None, {})``."""
    root = os.path.dirname(os.path.dirname(np.__file__))
    patterns = [os.path.join(root, "numpy.libs", "libscipy_openblas*"),
                os.path.join(os.path.dirname(np.__file__), ".dylibs", "libscipy_openblas*")]
    for path in sorted(p for pattern in patterns for p in glob.glob(pattern)):
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        functions = {}
        for dtype, letter, pointer in ((np.float32, "s", ctypes.c_float), (np.float64, "d", ctypes.c_double)):
            for name, index in ((f"scipy_cblas_{letter}gemm64_", ctypes.c_int64),
                                (f"scipy_cblas_{letter}gemm", ctypes.c_int32)):
                function = getattr(library, name, None)
                if function is not None:
                    function.restype = None
                    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, index, index, index, pointer,
                                         ctypes.c_void_p, index, ctypes.c_void_p, index, pointer, ctypes.c_void_p,
                                         index]
                    functions[np.dtype(dtype)] = function
                    break
        if len(functions) == 2:
            return path, functions
    return None, {}


#: The library :func:`gemm` calls, or None where it falls back to ``np.matmul``.
LIBRARY, _GEMM = _load()


def gemm(A, B, C, transpose_a=False, transpose_b=False, alpha=1.0, beta=0.0):
    """``C = alpha op(A) op(B) + beta C``, in place.

    Parameters
    ----------
    A : ndarray, shape (M, K), or (K, M) with ``transpose_a``; C-contiguous
    B : ndarray, shape (K, N), or (N, K) with ``transpose_b``; C-contiguous
    C : ndarray, shape (M, N), C-contiguous, of the same dtype (float32 or float64)
    alpha, beta : float
    """
    M, N = C.shape
    K = A.shape[0] if transpose_a else A.shape[1]
    function = _GEMM.get(C.dtype)
    if function is None or not (A.flags.c_contiguous and B.flags.c_contiguous and C.flags.c_contiguous):
        product = np.matmul(A.T if transpose_a else A, B.T if transpose_b else B)
        if beta == 0.0:
            np.multiply(product, alpha, out=C)
        else:
            C *= beta
            C += alpha * product
        return
    function(ROW_MAJOR, TRANS if transpose_a else NO_TRANS, TRANS if transpose_b else NO_TRANS, M, N, K, alpha,
             A.ctypes.data, A.shape[1], B.ctypes.data, B.shape[1], beta, C.ctypes.data, N)
