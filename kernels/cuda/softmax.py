"""Softmax, cross-entropy and their gradient as ``numba.cuda`` kernels.

A row is handled by a group of threads: its max and the sum of its exponentials
are shared-memory tree reductions (:func:`row_shift`), so the kernels are stable
(``exp`` of non-positive numbers only), never take ``log 0``, and add in the same
order on every run. The fused epoch kernels call the same row routines.

* :func:`softmax_rows`: one warp per row, grid-stride over rows: softmax, the
  per-row losses, or the gradient of the mean loss;
* :func:`evaluate_rows`: the summed loss and the number of right arg-max
  predictions of a batch, in one block, summed in a fixed order (no atomics).

Reference: :mod:`kernels.numpy.softmax`.
"""

import math

import numpy as np

from kernels.cuda._launch import ROW_THREADS, THREADS, cuda, grid_for, group_max, group_sum, kernel, launch

SOFTMAX = 0  # out = softmax(Z)
LOSSES = 1  # losses[i] = -log softmax(Z_i)_{y_i}
GRADIENT = 2  # out = (softmax(Z) - onehot(y)) / B

if cuda is not None:

    @cuda.jit(device=True, inline=True)
    def row_shift(Z, i, valid, lane, span, buffer, tid):
        """``m + log Σ_k exp(Z[i, k] - m)`` with ``m = max_k Z[i, k]``, computed by the group of ``span``
        threads this one is ``lane`` of; every thread of the block calls it (``valid`` False: a thread
        whose group has no row)."""
        m = -math.inf
        if valid:
            for k in range(lane, Z.shape[1], span):
                m = max(m, Z[i, k])
        m = group_max(buffer, tid, m, span)
        total = 0.0
        if valid:
            for k in range(lane, Z.shape[1], span):
                total += math.exp(Z[i, k] - m)
        total = group_sum(buffer, tid, total, span)
        return m + math.log(total) if valid else 0.0

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

    @kernel(ROW_THREADS)
    def softmax_rows(Z, y, mode, out, losses):
        """One warp per row of ``Z`` (B, K), grid-stride over rows; ``out`` may be ``Z`` itself."""
        buffer = cuda.shared.array(ROW_THREADS, np.float64)
        tid = cuda.threadIdx.x
        scale = 1.0 / Z.shape[0]
        for i in range(cuda.blockIdx.x, Z.shape[0], cuda.gridDim.x):
            label = 0 if mode == SOFTMAX else y[i]
            z_label = Z[i, label]  # read before any write: out may be Z itself
            shift = row_shift(Z, i, True, tid, ROW_THREADS, buffer, tid)
            if mode == SOFTMAX or mode == GRADIENT:
                for k in range(tid, Z.shape[1], ROW_THREADS):
                    p = math.exp(Z[i, k] - shift)
                    if mode == GRADIENT:
                        p = (p - 1.0 if k == label else p) * scale
                    out[i, k] = p
            if mode == LOSSES and tid == 0:
                losses[i] = shift - z_label

    @kernel(THREADS)
    def evaluate_rows(Z, y, stats):
        """``stats[0] +=`` the summed loss of the rows of ``Z``, ``stats[1] +=`` the rows whose arg-max is the
        label; one block, each thread a strided share of the rows, then a tree: the same sum every run."""
        buffer = cuda.shared.array(THREADS, np.float64)
        tid = cuda.threadIdx.x
        loss = 0.0
        hits = 0.0
        for i in range(tid, Z.shape[0], THREADS):
            label = y[i]
            m = Z[i, 0]
            for k in range(1, Z.shape[1]):
                m = max(m, Z[i, k])
            total = 0.0
            for k in range(Z.shape[1]):
                total += math.exp(Z[i, k] - m)
            loss += m + math.log(total) - Z[i, label]
            if row_argmax(Z, i) == label:
                hits += 1.0
        loss = group_sum(buffer, tid, loss, THREADS)
        hits = group_sum(buffer, tid, hits, THREADS)
        if tid == 0:
            stats[0] += loss
            stats[1] += hits


def launch_rows(Z, y, mode, out=None, losses=None):
    """Launch :func:`softmax_rows`; arguments a mode does not use may be None."""
    launch(softmax_rows, grid_for(Z.shape[0], 1), ROW_THREADS, Z, y, mode, Z if out is None else out,
           Z[0] if losses is None else losses)


def evaluate_logits(Z, y, stats):
    """``stats[0] +=`` Σ losses, ``stats[1] +=`` correct predictions of the logits ``Z`` (B, K); one launch."""
    launch(evaluate_rows, 1, THREADS, Z, y, stats)


def softmax(Z, out):
    """Row-wise ``out = softmax(Z)``; Z, out (B, K) device arrays."""
    launch_rows(Z, cuda.device_array(1, np.int64), SOFTMAX, out=out)  # labels are not read


def cross_entropy(Z, y, losses):
    """Per-sample ``losses[i] = -log softmax(Z_i)_{y_i}``; Z (B, K), y (B,), losses (B,)."""
    launch_rows(Z, y, LOSSES, losses=losses)


def softmax_cross_entropy_backward(Z, y, dZ):
    """``dZ = (softmax(Z) - onehot(y)) / B``; Z, dZ (B, K), y (B,)."""
    launch_rows(Z, y, GRADIENT, out=dZ)
