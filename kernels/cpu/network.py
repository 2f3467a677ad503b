"""Whole-network ops as fused ``@njit`` kernels.

References: :mod:`kernels.numpy.network` (same names, same arguments, the
composition of the unfused ops). See there for the shared arguments.
"""


import numba
import numpy as np
from numba import get_num_threads, prange

from kernels import layout
from kernels.activations import IDENTITY
from kernels.cpu._jit import jit, jit_parallel
from kernels.cpu.linear import axpy, gemm_nt, gemm_rows, gemv, input_gradient, weight_gradient
from kernels.cpu.scalar import activate_scalar, derivative_scalar
from kernels.cpu.softmax import row_log_sum_exp, row_loss_and_gradient, softmax, softmax_cross_entropy_backward


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
def _bias_activation(Z, b, code):
    """Epilogue of a forward product: ``Z = g(Z + b)`` in place."""
    for i in range(Z.shape[0]):
        for j in range(Z.shape[1]):
            Z[i, j] = activate_scalar(Z[i, j] + b[j], code)


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
        _bias_activation(A, b, IDENTITY if l == last else activation)


@jit
def _bias_gradient(dZ, db):
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
        _bias_gradient(dZ, grad[b_off[l]:b_off[l] + n_out])
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
def _logits_loss_sum(acts, sizes, a_off, y, batch):
    """``Σ_i -log softmax(logits_i)_{y_i}`` of the logits stored at the end of ``acts``."""
    last = sizes.shape[0] - 2
    n_classes = sizes[last + 1]
    total = 0.0
    for i in range(batch):
        z = acts[a_off[last] + i * n_classes:a_off[last] + (i + 1) * n_classes]
        m, log_s = row_log_sum_exp(z)
        total += m + log_s - z[y[i]]
    return total


#: :func:`minibatch_epoch` takes the sparse first-layer path when at most this fraction of the
#: inputs is non-zero (MNIST: 0.19). Measured on 784-128-10 with random zeros, 2 threads: the sparse
#: path is 1.2x faster at density 0.2, 1.2-1.3x slower at 0.3 (``bench/test_minibatch_ablation.py``
#: compares the paths on MNIST and dense data).
SPARSE_MAX_DENSITY = 0.25
#: The sparse path lists each sample's non-zero inputs in a (batch, n_0) int32 array; beyond this
#: size (say 100,000 inputs and batches over 160) :func:`minibatch_epoch` takes the dense path.
SPARSE_MAX_INDEX_BYTES = 64 << 20
#: Rows of ``X`` (spread evenly over it) whose inputs :func:`minibatch_epoch` and :func:`sgd_epoch` sample to
#: choose their first-layer path.
DENSITY_SAMPLE = 256
#: :func:`sgd_epoch` lists each sample's non-zero inputs (to skip the zero ones) when at most this
#: fraction of the inputs is non-zero. Measured on 784-128-10 with random zeros, the variants timed in
#: turn: listing is 1.19x faster at density 0.5, 1.14x at 0.7, 0.92-0.94x (slower) at 0.85 and 1.
SGD_MAX_DENSITY = 0.75
#: A minibatch step is shared among threads when its first layer takes at least this many multiply-adds.
PARALLEL_MIN_WORK = 1 << 19


@jit
def chunk(n, t, n_chunks, align):
    """Range ``t`` of ``n_chunks`` disjoint ranges covering ``[0, n)``, starting at multiples of ``align``.

    With more chunks than ``n / align``, the first ranges take ``align`` each and the others are empty.
    """
    share = max((n // n_chunks) // align * align, align)
    start = min(t * share, n)
    return start, (n if t == n_chunks - 1 else min(start + share, n))


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
def sparse_rows_product(X, rows, features, counts, W1T, Z, r0, r1):
    """``Z[i] = Σ_t x_k W_1ᵀ[k]`` over the listed features ``k = features[i, t]`` of ``x = X[rows[i]]``.

    For the rows ``i`` in ``[r0, r1)``; ``W_1ᵀ`` is (n_0, n_1), Z (B, n_1). Four
    rows of ``W_1ᵀ`` per pass over ``Z[i]``.
    """
    for i in range(r0, r1):
        x = X[rows[i]]
        z = Z[i]
        z[:] = 0
        listed = features[i]
        count = counts[i]
        t = 0
        while t + 4 <= count:
            w0 = W1T[listed[t]]
            w1 = W1T[listed[t + 1]]
            w2 = W1T[listed[t + 2]]
            w3 = W1T[listed[t + 3]]
            c0 = x[listed[t]]
            c1 = x[listed[t + 1]]
            c2 = x[listed[t + 2]]
            c3 = x[listed[t + 3]]
            for j in range(z.shape[0]):
                z[j] += c0 * w0[j] + c1 * w1[j] + c2 * w2[j] + c3 * w3[j]
            t += 4
        for u in range(t, count):
            axpy(x[listed[u]], W1T[listed[u]], z)


#: :func:`sparse_rows_update` sorts and applies a batch this many samples at a time, so that their
#: deltas stay in cache.
UPDATE_ROWS = 512


@jit
def sparse_rows_update(X, rows, features, counts, G, W1T, k0, k1, alpha):
    """``W_1ᵀ[k] += alpha Σ_i x_ik G[i]`` over the listed features ``k`` in ``[k0, k1)`` of ``x_i = X[rows[i]]``.

    With ``alpha = -η`` and ``G = δ_1`` (B, n_1), the first layer's SGD update
    restricted to the inputs ``[k0, k1)``, touching only the rows of ``W_1ᵀ`` of
    non-zero inputs. For each block of :data:`UPDATE_ROWS` samples, the
    (sample, feature) pairs are first sorted by feature (a counting sort), so
    that each row of ``W_1ᵀ`` is read and written once per block, taking four
    samples per pass. Threads take disjoint feature ranges: whole rows of ``W_1ᵀ``.
    """
    for i0 in range(0, rows.shape[0], UPDATE_ROWS):
        i1 = min(i0 + UPDATE_ROWS, rows.shape[0])
        _sparse_rows_update_block(X, rows, features, counts, G, W1T, k0, k1, alpha, i0, i1)


@jit
def _sparse_rows_update_block(X, rows, features, counts, G, W1T, k0, k1, alpha, i0, i1):
    """:func:`sparse_rows_update` for the samples ``[i0, i1)``."""
    n = i1 - i0
    start = np.zeros(k1 - k0 + 1, np.int64)  # start[k - k0]: first entry of feature k
    first = np.empty(n, np.int64)
    stop = np.empty(n, np.int64)
    for r in range(n):
        listed = features[i0 + r, :counts[i0 + r]]
        first[r] = np.searchsorted(listed, k0)
        stop[r] = np.searchsorted(listed, k1)
        for t in range(first[r], stop[r]):
            start[listed[t] - k0 + 1] += 1
    for k in range(1, k1 - k0 + 1):
        start[k] += start[k - 1]
    entry_row = np.empty(start[k1 - k0], np.int32)  # the pairs' samples and values, sorted by feature
    entry_value = np.empty(start[k1 - k0], G.dtype)
    for r in range(n):
        x = X[rows[i0 + r]]
        listed = features[i0 + r]
        for t in range(first[r], stop[r]):
            slot = listed[t] - k0
            e = start[slot]
            entry_row[e] = i0 + r
            entry_value[e] = alpha * x[listed[t]]
            start[slot] = e + 1
    # start[k - k0] now ends feature k; feature k begins where feature k - 1 ends.
    e = 0
    for k in range(k0, k1):
        end = start[k - k0]
        w = W1T[k]
        while e + 4 <= end:
            g0 = G[entry_row[e]]
            g1 = G[entry_row[e + 1]]
            g2 = G[entry_row[e + 2]]
            g3 = G[entry_row[e + 3]]
            c0 = entry_value[e]
            c1 = entry_value[e + 1]
            c2 = entry_value[e + 2]
            c3 = entry_value[e + 3]
            for j in range(w.shape[0]):
                w[j] += c0 * g0[j] + c1 * g1[j] + c2 * g2[j] + c3 * g3[j]
            e += 4
        while e < end:
            axpy(entry_value[e], G[entry_row[e]], w)
            e += 1


@jit
def _step_layout(sizes, work, n):
    """Where a step of ``n`` samples keeps its data: each layer's offsets (see :func:`offsets`), the
    workspace's activations and deltas, and the offset in ``work`` of the gathered inputs (n, n_0)."""
    w_off, b_off, a_off, n_params, n_acts = offsets(sizes, n)
    return w_off, b_off, a_off, work[:n_acts], work[n_acts:2 * n_acts], 2 * n_acts + n_params


@jit
def _rows_pass(theta, sizes, activation, X, y, rows, W1T, features, counts, work, losses, r0, r1):
    """Forward and backward passes of the rows ``[r0, r1)`` of a batch; ``losses[i]`` gets row ``i``'s loss.

    Fills, for those rows, ``A_l`` in the workspace's activations and
    ``δ_l = ∂(mean loss)/∂Z_l`` in its deltas, every layer. The first layer is
    sparse when ``features`` has rows (over each sample's non-zero inputs, which
    this pass lists, with the weights in ``W_1ᵀ``), else dense (the inputs
    gathered into the workspace, dot products with ``W_1`` in ``theta``). Rows
    are independent here, so threads share a batch by row ranges.
    """
    n = rows.shape[0]
    last = sizes.shape[0] - 2
    n0 = sizes[0]
    n1 = sizes[1]
    w_off, b_off, a_off, acts, deltas, inputs_at = _step_layout(sizes, work, n)
    Z1 = row_block(acts, 0, n1, 0, n)
    if features.shape[0] > 0:
        for i in range(r0, r1):
            x = X[rows[i]]
            counts[i] = nonzero_union(x, x, features[i])
        sparse_rows_product(X, rows, features, counts, W1T, Z1, r0, r1)
    else:
        inputs = row_block(work, inputs_at, n0, r0, r1)
        for i in range(r0, r1):
            inputs[i - r0] = X[rows[i]]
        gemm_nt(inputs, theta[:n1 * n0].reshape((n1, n0)), row_block(acts, 0, n1, r0, r1))
    for l in range(last + 1):
        n_out = sizes[l + 1]
        A = row_block(acts, a_off[l], n_out, r0, r1)
        if l > 0:
            n_in = sizes[l]
            gemm_nt(row_block(acts, a_off[l - 1], n_in, r0, r1), theta[w_off[l]:b_off[l]].reshape((n_out, n_in)), A)
        _bias_activation(A, theta[b_off[l]:b_off[l] + n_out], IDENTITY if l == last else activation)
    # Loss and output delta (softmax(z) - onehot(y)) / B.
    logits = row_block(acts, a_off[last], sizes[last + 1], r0, r1)
    d_out = row_block(deltas, a_off[last], sizes[last + 1], r0, r1)
    for r in range(r1 - r0):
        losses[r0 + r] = row_loss_and_gradient(logits[r], y[rows[r0 + r]], 1.0 / n, d_out[r])
    # δ_{l-1} = (δ_l W_l) g'(A_{l-1}).
    for l in range(last, 0, -1):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        A_prev = row_block(acts, a_off[l - 1], n_in, r0, r1)
        d_prev = row_block(deltas, a_off[l - 1], n_in, r0, r1)
        input_gradient(row_block(deltas, a_off[l], n_out, r0, r1), theta[w_off[l]:b_off[l]].reshape((n_out, n_in)),
                       d_prev)
        for r in range(r1 - r0):
            for k in range(n_in):
                d_prev[r, k] *= derivative_scalar(A_prev[r, k], activation)


@jit
def _bias_step(dZ, b, j0, j1, lr):
    """``b[j] -= η Σ_i dZ[i, j]`` for ``j`` in ``[j0, j1)``."""
    total = np.empty(j1 - j0, dZ.dtype)
    _bias_gradient(dZ[:, j0:j1], total)
    step = b.dtype.type(lr)
    for j in range(j1 - j0):
        b[j0 + j] -= step * total[j]


@jit
def _update_pass(theta, sizes, X, rows, W1T, features, counts, work, lr, t, n_chunks):
    """SGD update of range ``t`` of ``n_chunks`` of every layer's weights, after :func:`_rows_pass`.

    ``W_l -= η δ_lᵀ A_{l-1}`` without storing the gradient, by ranges of units;
    the sparse first layer by ranges of input features of ``W_1ᵀ``, touching only
    the rows of listed features. Ranges are disjoint, so threads share them.
    """
    n = rows.shape[0]
    last = sizes.shape[0] - 2
    n0 = sizes[0]
    n1 = sizes[1]
    w_off, b_off, a_off, acts, deltas, inputs_at = _step_layout(sizes, work, n)
    d1 = row_block(deltas, 0, n1, 0, n)
    j0, j1 = chunk(n1, t, n_chunks, 4)
    if features.shape[0] > 0:
        k0, k1 = chunk(n0, t, n_chunks, 4)
        sparse_rows_update(X, rows, features, counts, d1, W1T, k0, k1, -lr)
    else:
        gemm_rows(d1, row_block(work, inputs_at, n0, 0, n), theta[:n1 * n0].reshape((n1, n0)), j0, j1, True, -lr, True)
    _bias_step(d1, theta[b_off[0]:b_off[0] + n1], j0, j1, lr)
    for l in range(1, last + 1):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        d = row_block(deltas, a_off[l], n_out, 0, n)
        j0, j1 = chunk(n_out, t, n_chunks, 4)
        gemm_rows(d, row_block(acts, a_off[l - 1], n_in, 0, n), theta[w_off[l]:b_off[l]].reshape((n_out, n_in)),
                  j0, j1, True, -lr, True)
        _bias_step(d, theta[b_off[l]:b_off[l] + n_out], j0, j1, lr)


def minibatch_epoch(theta, sizes, activation, X, y, order, batch_size, lr, work, loss_sum):
    """Minibatch SGD over ``order``: one step per ``batch_size`` consecutive samples (the last may be short).

    The steps of :func:`kernels.numpy.network.minibatch_step`, arranged for speed:

    * on sparse inputs (at most :data:`SPARSE_MAX_DENSITY` non-zero, judged on the
      :data:`DENSITY_SAMPLE` rows of ``X``, and an index of at most
      :data:`SPARSE_MAX_INDEX_BYTES`) the first layer works on a transposed copy
      ``W_1ᵀ`` (n_0, n_1) for the whole call, written back at the end, so that its
      product and its update are row operations ``z += x_k W_1ᵀ[k]`` and
      ``W_1ᵀ[k] -= η Σ_i x_ik δ_i`` over each sample's non-zero inputs only, exactly;
      dense inputs take register-blocked products;
    * each step is two parallel passes (when it is large enough): the forward
      and backward passes by row ranges of the batch (:func:`_rows_pass`), then
      the updates by disjoint ranges of each layer's units (:func:`_update_pass`),
      written straight into ``theta`` without storing a gradient.

    This is the only parallel kernel, and no other kernel calls it: numba's
    cache can crash when a cached function calls a parallel one (numba issues
    #8578, #10128).

    Parameters
    ----------
    X : ndarray, shape (N, n_0)
    y : ndarray of int64, shape (N,)
    order : ndarray of int64, shape (n,)
    batch_size : int, >= 1
    lr : float
    work : ndarray, shape (>= layout.workspace_size(sizes, batch_size),)
    loss_sum : ndarray of float64, shape (1,)
        ``loss_sum[0] +=`` each sample's loss, before the update of its step.
    """
    layout.batch_starts(order.shape[0], batch_size)  # checks batch_size as the other backends do
    index_bytes = 4 * min(batch_size, order.shape[0]) * X.shape[1]
    max_density = SPARSE_MAX_DENSITY if index_bytes <= SPARSE_MAX_INDEX_BYTES else -1.0
    minibatch_epoch_variant(theta, sizes, activation, X, y, order, batch_size, lr, work, loss_sum,
                            parallel_threads(), max_density)


def parallel_threads():
    """Threads :func:`minibatch_epoch` shares a step among: numba's thread count, but 1 under numba's
    ``workqueue`` threading layer (no OpenMP or TBB found), whose parallel regions cost ~150 µs each
    here, more than they save on a step."""
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet in this process
        return get_num_threads()
    return 1 if layer == "workqueue" else get_num_threads()


@jit_parallel
def minibatch_epoch_variant(theta, sizes, activation, X, y, order, batch_size, lr, work, loss_sum,
                            threads, max_density):
    """:func:`minibatch_epoch` on ``threads`` threads, sparse when the input density is at most
    ``max_density`` (-1: never; 2: always); ``bench/test_minibatch_ablation.py`` compares them.
    The thread count is an argument because a compiled kernel that reads it from numba cannot be cached.
    """
    n0 = sizes[0]
    n1 = sizes[1]
    W1 = theta[:n1 * n0].reshape((n1, n0))
    density = input_density(X)
    sparse = density <= max_density
    W1T = np.ascontiguousarray(W1.T) if sparse else np.empty((0, n1), theta.dtype)
    rows_per_step = min(batch_size, order.shape[0])
    features = np.empty((rows_per_step if sparse else 0, n0), np.int32)
    counts = np.empty(rows_per_step, np.int64)
    losses = np.empty(rows_per_step)  # each row's loss, summed in order: the same sum on any number of threads
    total = 0.0
    for start in range(0, order.shape[0], batch_size):
        rows = order[start:min(start + batch_size, order.shape[0])]
        n = rows.shape[0]
        n_chunks = threads if n * n0 * n1 * (density if sparse else 1.0) >= PARALLEL_MIN_WORK else 1
        if n_chunks == 1:
            _rows_pass(theta, sizes, activation, X, y, rows, W1T, features, counts, work, losses, 0, n)
            _update_pass(theta, sizes, X, rows, W1T, features, counts, work, lr, 0, 1)
        else:
            for t in prange(n_chunks):
                r0, r1 = chunk(n, t, n_chunks, 4)
                _rows_pass(theta, sizes, activation, X, y, rows, W1T, features, counts, work, losses, r0, r1)
            for t in prange(n_chunks):
                _update_pass(theta, sizes, X, rows, W1T, features, counts, work, lr, t, n_chunks)
        for r in range(n):
            total += losses[r]
    if sparse:
        W1[:] = W1T.T
    loss_sum[0] += total


def minibatch_step(theta, sizes, activation, X, y, batch, lr, work, loss_sum):
    """One SGD step on the mean loss of the samples ``batch``: :func:`minibatch_epoch` over that one batch.

    Parameters
    ----------
    X : ndarray, shape (N, n_0)
    y : ndarray of int64, shape (N,)
    batch : ndarray of int64, shape (B,)
    lr : float
    work : ndarray, shape (>= layout.workspace_size(sizes, B),)
    loss_sum : ndarray of float64, shape (1,)
        ``loss_sum[0] +=`` the batch's summed loss, before the update.
    """
    minibatch_epoch(theta, sizes, activation, X, y, batch, max(batch.shape[0], 1), lr, work, loss_sum)


@jit
def nonzero_union(x, x_prev, indices):
    """Write the indices where ``x`` or ``x_prev`` is non-zero into ``indices``; return their count.

    Branch-free compaction: MNIST pixels are zero or not at random, which a branch would mispredict.
    (Testing blocks of 16 for all zeros first, to skip an image's borders, measured 1.3-2.7× slower.)
    """
    count = 0
    for k in range(x.shape[0]):
        indices[count] = k
        count += (x[k] != 0) | (x_prev[k] != 0)
    return count


@jit
def first_layer_pass(W1T, features, count, x_prev, g1, x, z):
    """One pass over the listed rows of ``W_1ᵀ``: the pending update, then the forward sum.

    For each listed feature ``k``: ``W_1ᵀ[k] -= x_prev[k] g1`` (the previous
    sample's update, ``g1 = η δ_1``), then ``z += x[k] W_1ᵀ[k]``. Rows are taken
    two at a time to halve the traffic on ``z``. A feature zero in ``x_prev``
    subtracts exact zeros; one zero in ``x`` adds exact zeros.
    """
    n1 = z.shape[0]
    t = 0
    while t + 2 <= count:
        k0 = features[t]
        k1 = features[t + 1]
        r0 = W1T[k0]
        r1 = W1T[k1]
        a0 = x_prev[k0]
        a1 = x_prev[k1]
        c0 = x[k0]
        c1 = x[k1]
        for j in range(n1):
            u0 = r0[j] - a0 * g1[j]
            u1 = r1[j] - a1 * g1[j]
            r0[j] = u0
            r1[j] = u1
            z[j] += c0 * u0 + c1 * u1
        t += 2
    if t < count:
        k = features[t]
        row = W1T[k]
        a = x_prev[k]
        c = x[k]
        for j in range(n1):
            u = row[j] - a * g1[j]
            row[j] = u
            z[j] += c * u


@jit
def sgd_epoch(theta, sizes, activation, X, y, order, lr, work, loss_sum):
    """Per-sample SGD, fused: the course's algorithm, one update per sample in ``order``.

    The updates of :func:`kernels.numpy.network.sgd_epoch` (same products, summed
    in another order), organised around memory traffic, which bounds this loop:

    * the first layer works on a transposed copy ``W_1ᵀ`` (n_0, n_1) for the
      whole call, written back at the end, so that ``W_1 x`` is a sum of rows
      ``x_k W_1ᵀ[k]`` and the update ``W_1ᵀ[k] -= x_k (η δ_1)``: both vectorised
      over the hidden units, and both skip the zero features of the sample
      exactly (about 81% of MNIST pixels), so a sample touches only its rows
      (on inputs more than :data:`SGD_MAX_DENSITY` non-zero, listing them costs
      more than it skips: all rows are taken);
    * the first layer's update for sample ``i`` runs in the same pass over
      ``W_1ᵀ`` that computes ``W_1 x`` for sample ``i + 1`` (it is not needed
      earlier: the first layer has no input gradient), see :func:`first_layer_pass`;
    * each deeper layer backpropagates its delta and updates its weights in one
      pass over ``W_l``, skipping the rows whose delta is zero (inactive ReLU units).

    ``bench/test_sgd_epoch_ablation.py`` measures each saving.

    Parameters
    ----------
    order : ndarray of int64, shape (n,)
    work : ndarray, shape (>= layout.workspace_size(sizes, 1),)
    loss_sum : ndarray of float64, shape (1,)
        ``loss_sum[0] +=`` the sum of each sample's loss, before its update.
    """
    skip_zero_features = input_density(X) <= SGD_MAX_DENSITY
    sgd_epoch_variant(theta, sizes, activation, X, y, order, lr, work, loss_sum, True, skip_zero_features, True)


@jit
def sgd_epoch_variant(theta, sizes, activation, X, y, order, lr, work, loss_sum,
                      skip_zero_rows, skip_zero_features, defer_first_layer):
    """:func:`sgd_epoch` with each saving switchable, for measuring them; same updates either way."""
    last = sizes.shape[0] - 2
    n0 = sizes[0]
    n1 = sizes[1]
    w_off, b_off, a_off, _, n_acts = offsets(sizes, 1)
    acts = work[:n_acts]
    deltas = work[n_acts:2 * n_acts]
    step = theta.dtype.type(lr)
    W1 = theta[w_off[0]:b_off[0]].reshape((n1, n0))
    W1T = np.ascontiguousarray(W1.T)  # (n0, n1): row k holds the weights of input k
    b1 = theta[b_off[0]:b_off[0] + n1]
    a1 = acts[:n1]
    d1 = deltas[:n1]
    code1 = IDENTITY if last == 0 else activation
    g1 = np.zeros(n1, theta.dtype)  # η δ_1 of the sample whose first-layer update is pending
    features = np.arange(n0)  # every input, unless each sample's non-zero ones are listed over it
    prev = order[0] if order.shape[0] > 0 else 0
    total = 0.0
    for s in range(order.shape[0]):
        i = order[s]
        x = X[i]
        x_prev = X[prev]  # with g1 = 0 when no update is pending
        count = nonzero_union(x, x_prev, features) if skip_zero_features else n0
        # First layer: finish the previous sample's update and compute z = b_1 + W_1 x in one pass.
        a1[:] = b1
        first_layer_pass(W1T, features, count, x_prev, g1, x, a1)
        for j in range(n1):
            a1[j] = activate_scalar(a1[j], code1)
        # Deeper layers.
        for l in range(1, last + 1):
            n_in = sizes[l]
            n_out = sizes[l + 1]
            out = acts[a_off[l]:a_off[l] + n_out]
            gemv(theta[w_off[l]:b_off[l]].reshape((n_out, n_in)), acts[a_off[l - 1]:a_off[l]], out)
            b = theta[b_off[l]:b_off[l] + n_out]
            code = IDENTITY if l == last else activation
            for j in range(n_out):
                out[j] = activate_scalar(out[j] + b[j], code)
        # Loss and the output delta softmax(z) - onehot(y).
        n_classes = sizes[last + 1]
        logits = acts[a_off[last]:a_off[last] + n_classes]
        d_out = deltas[a_off[last]:a_off[last] + n_classes]
        total += row_loss_and_gradient(logits, y[i], 1.0, d_out)
        # Deeper layers backward: backpropagate and update in one pass over W_l.
        for l in range(last, 0, -1):
            n_in = sizes[l]
            n_out = sizes[l + 1]
            W = theta[w_off[l]:b_off[l]].reshape((n_out, n_in))
            b = theta[b_off[l]:b_off[l] + n_out]
            d = deltas[a_off[l]:a_off[l] + n_out]
            a_prev = acts[a_off[l - 1]:a_off[l]]
            d_prev = deltas[a_off[l - 1]:a_off[l]]
            d_prev[:] = 0
            for j in range(n_out):
                dj = d[j]
                if dj != 0 or not skip_zero_rows:
                    g = step * dj
                    w = W[j]
                    for k in range(n_in):
                        d_prev[k] += w[k] * dj
                        w[k] -= g * a_prev[k]
                    b[j] -= g
            for k in range(n_in):
                d_prev[k] *= derivative_scalar(a_prev[k], activation)
        # First layer: the bias now, the weights in the next sample's pass (or now).
        for j in range(n1):
            g1[j] = step * d1[j]
            b1[j] -= g1[j]
        prev = i
        if not defer_first_layer:
            count = nonzero_union(x, x, features) if skip_zero_features else n0
            for t in range(count):
                k = features[t]
                axpy(-x[k], g1, W1T[k])
            g1[:] = 0
    if order.shape[0] > 0:
        x_prev = X[prev]
        for k in range(n0):
            if x_prev[k] != 0:
                axpy(-x_prev[k], g1, W1T[k])
    W1[:] = W1T.T
    loss_sum[0] += total


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
    stats[0] += _logits_loss_sum(acts, sizes, a_off, y, n)
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
