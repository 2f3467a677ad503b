"""Arrays on a cache line like the model's (:func:`kernels.layout.aligned`): allocated inside the kernels, and the
data copied onto one at the model boundary.

numba's ``np.empty`` starts a large array wherever its allocator does (32 bytes
into a line for a (784, 128) float32 array here), and a transposed copy of a
weight matrix whose rows are read by 512-bit vectors then splits every load
and store over two lines.
"""

import math

import numpy as np

from kernels.cpu._jit import jit
from kernels.layout import ALIGNMENT


@jit
def aligned_empty(rows, cols, like):
    """An uninitialised C-contiguous (rows, cols) array of ``like``'s dtype, starting at a multiple of
    :data:`kernels.layout.ALIGNMENT` bytes."""
    spare = ALIGNMENT // like.itemsize
    buffer = np.empty(rows * cols + spare, like.dtype)
    start = (-buffer.ctypes.data) % ALIGNMENT // like.itemsize
    return buffer[start:start + rows * cols].reshape((rows, cols))


@jit
def aligned_transpose(W):
    """``Wᵀ`` as a C-contiguous :func:`aligned_empty` array: W (m, n) → (n, m)."""
    WT = aligned_empty(W.shape[1], W.shape[0], W)
    for i in range(W.shape[0]):
        for j in range(W.shape[1]):
            WT[j, i] = W[i, j]
    return WT


@jit
def copy_counting_nonfinite(source, destination):
    """``destination[...] = source`` (2-D, cast to ``destination``'s dtype); returns how many copied values are NaN
    or infinite (the test of :func:`kernels.cpu.sgd.count_nonfinite`). One pass over the data where NumPy's copy,
    ``min`` and ``max`` take three (3.2 against 6.6 ms for 10,000 MNIST images here)."""
    bad = 0
    for i in range(source.shape[0]):
        row = source[i]
        out = destination[i]
        for k in range(source.shape[1]):
            value = destination.dtype.type(row[k])
            out[k] = value
            bad += not math.isfinite(value)
    return bad
