"""Whole-network ops as ``@njit`` kernels: the forward and backward passes, evaluation, prediction.

References: :mod:`kernels.numpy.network` (same names, same arguments, the
composition of the unfused ops). See there for the shared arguments. The fused
epochs have their own modules: :mod:`kernels.cpu.per_sample` (per-sample) and
:mod:`kernels.cpu.minibatch`.
"""

import numpy as np

from kernels.activations import IDENTITY
from kernels.cpu._jit import jit
from kernels.cpu.linear import gemm_nt, gemv, input_gradient, weight_gradient
from kernels.cpu.scalar import activate_scalar, derivative_scalar
from kernels.cpu.simd import VECTOR_LISTING, list_nonzero_lanes, register_lanes
from kernels.cpu.softmax import row_log_sum_exp, softmax, softmax_cross_entropy_backward

#: Rows of ``X`` (spread evenly over it) whose inputs :func:`minibatch_epoch` and :func:`sgd_epoch` sample to
#: choose their first-layer path.
DENSITY_SAMPLE = 256


@jit
def offsets(sizes, batch):
    """Offsets of each layer's ``W``, ``b`` in ``theta`` and of its activations in ``acts``.

    Returns
    -------
    w_off, b_off, a_off : ndarray of int64, shape (L,)
    n_params : int
        Length of ``theta``.
    n_acts : int
        Length of ``acts`` for ``batch`` samples.
    """
    n_layers = sizes.shape[0] - 1
    w_off = np.empty(n_layers, np.int64)
    b_off = np.empty(n_layers, np.int64)
    a_off = np.empty(n_layers, np.int64)
    p = 0
    a = 0
    for l in range(n_layers):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        w_off[l] = p
        b_off[l] = p + n_out * n_in
        p += n_out * n_in + n_out
        a_off[l] = a
        a += batch * n_out
    return w_off, b_off, a_off, p, a


@jit
def bias_activation(Z, b, code):
    """Epilogue of a forward product: ``Z = g(Z + b)`` in place."""
    for i in range(Z.shape[0]):
        for j in range(Z.shape[1]):
            Z[i, j] = activate_scalar(Z[i, j] + b[j], code)


@jit
def sample_forward_above_first(theta, sizes, activation, acts, w_off, b_off, a_off):
    """One sample's layers 2..L from its first layer's activations ``acts[:n_1]``: ``a_l = g(W_l a_{l-1} + b_l)``,
    the last without ``g`` (the logits), into ``acts`` at the batch-1 offsets ``a_off``."""
    last = sizes.shape[0] - 2
    for l in range(1, last + 1):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        out = acts[a_off[l]:a_off[l] + n_out]
        gemv(theta[w_off[l]:b_off[l]].reshape((n_out, n_in)), acts[a_off[l - 1]:a_off[l]], out)
        b = theta[b_off[l]:b_off[l] + n_out]
        code = IDENTITY if l == last else activation
        for j in range(n_out):
            out[j] = activate_scalar(out[j] + b[j], code)


@jit
def mlp_forward(theta, sizes, activation, X, acts):
    """Forward pass of a batch; bias and activation fused into each product's epilogue.

    Parameters
    ----------
    X : ndarray, shape (B, n_0)
    acts : ndarray, shape (>= layout.activation_count(sizes, B),)
        Receives ``A_1 .. A_L``; ``A_L`` are the logits.
    """
    batch = X.shape[0]
    last = sizes.shape[0] - 2
    w_off, b_off, a_off, _, _ = offsets(sizes, batch)
    for l in range(last + 1):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        W = theta[w_off[l]:b_off[l]].reshape((n_out, n_in))
        b = theta[b_off[l]:b_off[l] + n_out]
        A = acts[a_off[l]:a_off[l] + batch * n_out].reshape((batch, n_out))
        if l == 0:
            gemm_nt(X, W, A)
        else:
            gemm_nt(acts[a_off[l - 1]:a_off[l]].reshape((batch, n_in)), W, A)
        bias_activation(A, b, IDENTITY if l == last else activation)


@jit
def bias_gradient(dZ, db):
    db[:] = 0
    for i in range(dZ.shape[0]):
        for j in range(dZ.shape[1]):
            db[j] += dZ[i, j]


@jit
def mlp_backward(theta, sizes, activation, X, y, acts, deltas, grad):
    """Backpropagation of the mean cross-entropy of a batch, after :func:`mlp_forward`.

    Parameters
    ----------
    X : ndarray, shape (B, n_0)
    y : ndarray of int64, shape (B,)
    acts : ndarray
        As filled by :func:`mlp_forward`.
    deltas : ndarray, shape like ``acts``
        Scratch for ``∂l/∂Z_l``.
    grad : ndarray, shape (P,)
        Receives the gradient, laid out like ``theta``.
    """
    batch = X.shape[0]
    last = sizes.shape[0] - 2
    w_off, b_off, a_off, _, _ = offsets(sizes, batch)
    n_classes = sizes[last + 1]
    span = batch * n_classes
    softmax_cross_entropy_backward(
        acts[a_off[last]:a_off[last] + span].reshape((batch, n_classes)),
        y,
        deltas[a_off[last]:a_off[last] + span].reshape((batch, n_classes)),
    )
    for l in range(last, -1, -1):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        dZ = deltas[a_off[l]:a_off[l] + batch * n_out].reshape((batch, n_out))
        dW = grad[w_off[l]:b_off[l]].reshape((n_out, n_in))
        bias_gradient(dZ, grad[b_off[l]:b_off[l] + n_out])
        if l == 0:
            weight_gradient(dZ, X, dW)
            continue
        A_prev = acts[a_off[l - 1]:a_off[l]].reshape((batch, n_in))
        dA_prev = deltas[a_off[l - 1]:a_off[l]].reshape((batch, n_in))
        weight_gradient(dZ, A_prev, dW)
        input_gradient(dZ, theta[w_off[l]:b_off[l]].reshape((n_out, n_in)), dA_prev)
        for i in range(batch):
            for k in range(n_in):
                dA_prev[i, k] *= derivative_scalar(A_prev[i, k], activation)


@jit
def logits_loss_sum(acts, sizes, a_off, y, batch):
    """``Σ_i -log softmax(logits_i)_{y_i}`` of the logits stored at the end of ``acts``."""
    last = sizes.shape[0] - 2
    n_classes = sizes[last + 1]
    total = 0.0
    for i in range(batch):
        z = acts[a_off[last] + i * n_classes:a_off[last] + (i + 1) * n_classes]
        m, log_s = row_log_sum_exp(z)
        total += m + log_s - z[y[i]]
    return total


@jit
def row_block(flat, offset, n_cols, r0, r1):
    """Rows ``[r0, r1)`` of the (·, n_cols) matrix stored in ``flat`` from ``offset``, as a C-contiguous view."""
    return flat[offset + r0 * n_cols:offset + r1 * n_cols].reshape((r1 - r0, n_cols))


@jit
def input_density(X):
    """Fraction of non-zero entries in :data:`DENSITY_SAMPLE` rows spread evenly over ``X`` (all rows of a
    smaller ``X``).

    The fused epochs choose their first-layer path from it: a function of the data
    alone, so every call of a training run, whatever samples it visits, chooses alike.
    """
    n = X.shape[0]
    n_rows = min(n, DENSITY_SAMPLE)
    nonzero = 0
    for r in range(n_rows):
        x = X[(r * n) // n_rows]
        for k in range(x.shape[0]):
            nonzero += x[k] != 0
    return nonzero / max(n_rows * X.shape[1], 1)


@jit
def nonzero_union(x, x_prev, indices):
    """Write the indices where ``x`` or ``x_prev`` is non-zero into ``indices`` (int32); return their count.

    Branch-free compaction: MNIST pixels are zero or not at random, which a branch would mispredict.
    With AVX2 or AVX-512, a register of inputs at a time (:func:`kernels.cpu.simd.list_nonzero_lanes`:
    one compare, then one compressing store with AVX-512 or a packing table's row with AVX2), the last
    inputs one by one; a loop of scalars elsewhere (7× slower than the table on AVX2, 135 against 1,000
    ns a 784-input row in L1). (Testing blocks of 16 for all zeros first, to skip an image's borders,
    measured 1.3-2.7× slower than the loop of scalars.)
    """
    count = 0
    listed_up_to = 0
    if VECTOR_LISTING:
        lanes = register_lanes(x)
        while listed_up_to + lanes <= x.shape[0]:
            count = list_nonzero_lanes(x, x_prev, listed_up_to, indices, count)
            listed_up_to += lanes
    for k in range(listed_up_to, x.shape[0]):
        indices[count] = k
        count += (x[k] != 0) | (x_prev[k] != 0)
    return count


@jit
def evaluate(theta, sizes, activation, X, y, work, stats):
    """Loss and accuracy counts of a batch.

    Parameters
    ----------
    X : ndarray, shape (B, n_0)
    y : ndarray of int64, shape (B,)
    work : ndarray, shape (>= layout.workspace_size(sizes, B),)
    stats : ndarray of float64, shape (2,)
        ``stats[0] +=`` the summed cross-entropy, ``stats[1] +=`` the number of
        correct arg-max predictions.
    """
    n = X.shape[0]
    last = sizes.shape[0] - 2
    n_classes = sizes[last + 1]
    _, _, a_off, _, n_acts = offsets(sizes, n)
    acts = work[:n_acts]
    mlp_forward(theta, sizes, activation, X, acts)
    stats[0] += logits_loss_sum(acts, sizes, a_off, y, n)
    correct = 0
    for i in range(n):
        z = acts[a_off[last] + i * n_classes:a_off[last] + (i + 1) * n_classes]
        if np.argmax(z) == y[i]:
            correct += 1
    stats[1] += correct


@jit
def predict_proba(theta, sizes, activation, X, work, probs):
    """Class probabilities ``softmax(logits)`` of a batch.

    Parameters
    ----------
    X : ndarray, shape (B, n_0)
    work : ndarray, shape (>= layout.workspace_size(sizes, B),)
    probs : ndarray, shape (B, n_L)
        Written in full.
    """
    n = X.shape[0]
    last = sizes.shape[0] - 2
    n_classes = sizes[last + 1]
    _, _, a_off, _, n_acts = offsets(sizes, n)
    mlp_forward(theta, sizes, activation, X, work[:n_acts])
    softmax(work[a_off[last]:a_off[last] + n * n_classes].reshape((n, n_classes)), probs)
