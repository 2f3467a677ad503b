"""Softmax, cross-entropy and their gradient in one ``numba.cuda`` row kernel.

One block of ``ROW_THREADS`` threads (a warp) per row, grid-stride over rows:
the row max and the sum of exponentials are shared-memory reductions, so the
kernel is stable (``exp`` of non-positive numbers only) and never takes ``log 0``.
Reference: :mod:`kernels.numpy.softmax`.
"""

import math

import numpy as np

from kernels.cuda._launch import ROW_THREADS, block_max, block_sum, cuda, grid_for

SOFTMAX = 0  # out = softmax(Z)
LOSSES = 1  # losses[i] = -log softmax(Z_i)_{y_i}
GRADIENT = 2  # out = (softmax(Z) - onehot(y)) / B, and sums[0] += Σ losses
EVALUATE = 3  # sums[0] += Σ losses, sums[1] += number of correct arg-max predictions

if cuda is not None:

    @cuda.jit(device=True)
    def row_argmax(Z, i):
        """NumPy's ``argmax`` of row ``i``: the first maximum, or the first NaN when the row holds one
        (so a model with NaN logits scores as on every other backend, not as always right)."""
        best = 0
        top = Z[i, 0]
        for k in range(1, Z.shape[1]):
            if top != top:
                break
            value = Z[i, k]
            if value > top or value != value:
                best = k
                top = value
        return best

    @cuda.jit(cache=True)
    def softmax_rows(Z, y, rows, use_rows, mode, out, losses, sums):
        """The row kernel; labels are ``y[rows[i]]`` when ``use_rows`` else ``y[i]``."""
        reduce = cuda.shared.array(ROW_THREADS, np.float64)
        tid = cuda.threadIdx.x
        n_rows = Z.shape[0]
        n_classes = Z.shape[1]
        scale = 1.0 / n_rows
        for i in range(cuda.blockIdx.x, n_rows, cuda.gridDim.x):
            label = 0 if mode == SOFTMAX else (y[rows[i]] if use_rows else y[i])
            z_label = Z[i, label]  # read before any write: out may be Z itself
            m = -math.inf
            for k in range(tid, n_classes, ROW_THREADS):
                m = max(m, Z[i, k])
            reduce[tid] = m
            m = block_max(reduce, tid, ROW_THREADS)
            cuda.syncthreads()  # everyone has read the max before the buffer is reused
            s = 0.0
            for k in range(tid, n_classes, ROW_THREADS):
                s += math.exp(Z[i, k] - m)
            reduce[tid] = s
            shift = m + math.log(block_sum(reduce, tid, ROW_THREADS))
            correct = mode == EVALUATE and tid == 0 and row_argmax(Z, i) == label
            cuda.syncthreads()
            if mode == SOFTMAX or mode == GRADIENT:
                for k in range(tid, n_classes, ROW_THREADS):
                    p = math.exp(Z[i, k] - shift)
                    if mode == GRADIENT:
                        p = (p - 1.0 if k == label else p) * scale
                    out[i, k] = p
            if tid == 0:
                loss = shift - z_label
                if mode == LOSSES:
                    losses[i] = loss
                elif mode == GRADIENT or mode == EVALUATE:
                    cuda.atomic.add(sums, 0, loss)
                    if mode == EVALUATE and correct:
                        cuda.atomic.add(sums, 1, 1.0)
            cuda.syncthreads()


def launch_rows(Z, y, mode, out=None, losses=None, sums=None, rows=None):
    """Launch :func:`softmax_rows`; arguments a mode does not use may be None."""
    use_rows = rows is not None
    if sums is None:
        sums = cuda.device_array(2, np.float64)
    softmax_rows[grid_for(Z.shape[0], 1), ROW_THREADS](
        Z, y, rows if use_rows else y, use_rows, mode,
        Z if out is None else out, Z[0] if losses is None else losses, sums,
    )


def softmax(Z, out):
    """Row-wise ``out = softmax(Z)``; Z, out (B, K) device arrays."""
    launch_rows(Z, cuda.device_array(1, np.int64), SOFTMAX, out=out)  # labels are not read


def cross_entropy(Z, y, losses):
    """Per-sample ``losses[i] = -log softmax(Z_i)_{y_i}``; Z (B, K), y (B,), losses (B,)."""
    launch_rows(Z, y, LOSSES, losses=losses)


def softmax_cross_entropy_backward(Z, y, dZ):
    """``dZ = (softmax(Z) - onehot(y)) / B``; Z, dZ (B, K), y (B,)."""
    launch_rows(Z, y, GRADIENT, out=dZ)
