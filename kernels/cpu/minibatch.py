"""The minibatch SGD epoch as one fused, parallel ``@njit`` kernel.

Reference: :func:`kernels.numpy.network.minibatch_epoch` (one unfused
``minibatch_step`` per batch). Each step runs the forward and backward passes
by row ranges of the batch, then the updates by disjoint ranges of each layer's
units; on sparse inputs the first layer works on a transposed ``W_1ᵀ`` over each
sample's non-zero inputs only.
"""

import numba
import numpy as np
from numba import get_num_threads, prange

from kernels import layout
from kernels.activations import IDENTITY
from kernels.cpu import minibatch_blas
from kernels.cpu._jit import jit, jit_parallel
from kernels.cpu.aligned import aligned_empty, aligned_transpose
from kernels.cpu.linear import axpy, gemm_nt, gemm_rows, input_gradient
from kernels.cpu.minibatch_blas import minibatch_epoch_blas
from kernels.cpu.network import (
    bias_activation,
    bias_gradient,
    input_density,
    nonzero_union,
    offsets,
    row_block,
)
from kernels.cpu.scalar import derivative_scalar
from kernels.cpu.sgd import optimizer_step
from kernels.cpu.simd import block_fma, block_lanes, block_load, block_store, block_zeros
from kernels.cpu.softmax import row_loss_and_gradient
from kernels.layout import ALIGNMENT

#: :func:`minibatch_epoch` takes the sparse first-layer path when at most this fraction of the
#: inputs is non-zero (MNIST: 0.19). Measured on 784-128-10 with random zeros, 2 threads: the sparse
#: path is 1.2x faster at density 0.2, 1.2-1.3x slower at 0.3 (``bench/test_minibatch_ablation.py``
#: compares the paths on MNIST and dense data).
SPARSE_MAX_DENSITY = 0.25
#: The sparse path lists each sample's non-zero inputs in a (batch, n_0) int32 array and their values beside it
#: (:func:`list_rows`); beyond this size of the two (say 100,000 float32 inputs and batches over 80)
#: :func:`minibatch_epoch` takes the dense path.
SPARSE_MAX_INDEX_BYTES = 64 << 20
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
def add_row_tails(M, rows, coefficients, first, end, j, out):
    """``out += Σ_t coefficients[t] M[rows[t], j:]`` for ``t`` in ``[first, end)``: the columns past the last
    whole block of registers in :func:`sparse_rows_product` and :func:`_sparse_rows_update_block`, four rows of
    ``M`` per pass over ``out`` (``rows`` holds integers, or integers as floats)."""
    t = first
    while t + 4 <= end:
        m0 = M[int(rows[t]), j:]
        m1 = M[int(rows[t + 1]), j:]
        m2 = M[int(rows[t + 2]), j:]
        m3 = M[int(rows[t + 3]), j:]
        c0 = coefficients[t]
        c1 = coefficients[t + 1]
        c2 = coefficients[t + 2]
        c3 = coefficients[t + 3]
        for u in range(out.shape[0]):
            out[u] += c0 * m0[u] + c1 * m1[u] + c2 * m2[u] + c3 * m3[u]
        t += 4
    for u in range(t, end):
        axpy(coefficients[u], M[int(rows[u]), j:], out)


@jit
def sparse_rows_product(listing, W1T, Z, r0, r1):
    """``Z[i] = Σ_t x_ik W_1ᵀ[k]`` over the listed non-zero inputs ``k = features[i, t]``, ``x_ik = values[i, t]``.

    For the rows ``i`` in ``[r0, r1)``; ``listing`` is ``(features, values, counts)``
    as :func:`list_rows` fills it; ``W_1ᵀ`` is (n_0, n_1), Z (B, n_1). Each
    block of :func:`kernels.cpu.simd.block_lanes` columns of ``Z[i]`` sums in
    registers over all of the sample's features, then is stored once; the last
    columns take four rows of ``W_1ᵀ`` per pass over them (:func:`add_row_tails`).
    """
    features, values, counts = listing
    n1 = Z.shape[1]
    lanes = block_lanes(Z)
    for i in range(r0, r1):
        x = values[i]
        z = Z[i]
        listed = features[i]
        count = counts[i]
        j = 0
        while j + lanes <= n1:
            total = block_zeros(z)
            for t in range(count):
                total = block_fma(x[t], block_load(W1T[listed[t]], j), total)
            block_store(z, j, total)
            j += lanes
        if j == n1:
            continue
        z_rest = z[j:]
        z_rest[:] = 0
        add_row_tails(W1T, listed, x, 0, count, j, z_rest)


#: :func:`sparse_rows_update` sorts and applies a batch this many samples at a time, so that their
#: deltas (128 KB of float32 for 128 hidden units) stay in L2 beside the rows of ``W_1ᵀ`` they update; the sums
#: are the same bit for bit with any value. 256 against 512: 0.91 of the batch-1024 epoch's time on a 2-core
#: AMD EPYC (Zen 3, 512 KB of L2 a core; bench/RESULTS.md).
UPDATE_ROWS = 256


@jit
def sparse_rows_update(listing, G, W1T, k0, k1, alpha):
    """``W_1ᵀ[k] += alpha Σ_i x_ik G[i]`` over the listed non-zero inputs ``k`` in ``[k0, k1)`` of the rows ``i`` of
    ``listing = (features, values, counts)`` (:func:`list_rows`).

    With ``alpha = -η`` and ``G = δ_1`` (B, n_1), the first layer's SGD update
    restricted to the inputs ``[k0, k1)``, touching only the rows of ``W_1ᵀ`` of
    non-zero inputs. For each block of :data:`UPDATE_ROWS` samples, the
    (sample, feature) pairs are first sorted by feature (a counting sort), so
    that each row of ``W_1ᵀ`` is read and written once per block, and sums its
    samples' terms in registers (:mod:`kernels.cpu.simd`). Threads take disjoint feature ranges: whole rows of ``W_1ᵀ``.
    """
    for i0 in range(0, G.shape[0], UPDATE_ROWS):
        i1 = min(i0 + UPDATE_ROWS, G.shape[0])
        _sparse_rows_update_block(listing, G, W1T, k0, k1, alpha, i0, i1)


@jit
def _sparse_rows_update_block(listing, G, W1T, k0, k1, alpha, i0, i1):
    """:func:`sparse_rows_update` for the samples ``[i0, i1)``."""
    features, values, counts = listing
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
    # The pairs sorted by feature, each as (sample, value) side by side: one cache line written per pair, not two.
    # The sample's index is exact in float32: SPARSE_MAX_INDEX_BYTES keeps a sparse batch below 2²⁴ samples.
    entries = np.empty((start[k1 - k0], 2), G.dtype)
    real = G.dtype.type
    for r in range(n):
        x = values[i0 + r]
        listed = features[i0 + r]
        sample = real(i0 + r)
        for t in range(first[r], stop[r]):
            slot = listed[t] - k0
            e = start[slot]
            entries[e, 0] = sample
            entries[e, 1] = alpha * x[t]
            start[slot] = e + 1
    # start[k - k0] now ends feature k; feature k begins where feature k - 1 ends. Each block of lanes of W_1ᵀ[k]
    # sums its feature's entries in registers; the last columns take four entries per pass (add_row_tails).
    n1 = W1T.shape[1]
    lanes = block_lanes(W1T)
    e0 = 0
    for k in range(k0, k1):
        end = start[k - k0]
        w = W1T[k]
        j = 0
        while j + lanes <= n1:
            total = block_load(w, j)
            for e in range(e0, end):
                total = block_fma(entries[e, 1], block_load(G[int(entries[e, 0])], j), total)
            block_store(w, j, total)
            j += lanes
        if j < n1:
            add_row_tails(G, entries[:, 0], entries[:, 1], e0, end, j, w[j:])
        e0 = end


@jit
def _step_layout(sizes, work, n):
    """Where a step of ``n`` samples keeps its data: each layer's offsets (see :func:`offsets`), the
    workspace's activations and deltas, and the offset in ``work`` of the gathered inputs (n, n_0), on a
    cache line as :func:`kernels.layout.inputs_offset` places them."""
    w_off, b_off, a_off, n_params, n_acts = offsets(sizes, n)
    step = ALIGNMENT // 4
    return w_off, b_off, a_off, work[:n_acts], work[n_acts:2 * n_acts], -(-(2 * n_acts + n_params) // step) * step


@jit
def list_rows(X, rows, listing, r0, r1):
    """Each row ``i`` in ``[r0, r1)``'s non-zero inputs of ``x = X[rows[i]]`` into ``listing = (features, values,
    counts)``: ``features[i, :counts[i]]`` their indices (:func:`kernels.cpu.network.nonzero_union`) and
    ``values[i, :counts[i]]`` their values, side by side, so that the sparse product and update read the values
    from there and not from the rows of ``X`` again (which by then have left the cache)."""
    features, values, counts = listing
    for i in range(r0, r1):
        x = X[rows[i]]
        listed = features[i]
        count = nonzero_union(x, x, listed)
        counts[i] = count
        value = values[i]
        for t in range(count):
            value[t] = x[listed[t]]


@jit
def _listing(X, sizes, work, rows):
    """``(features, values, counts)`` for :func:`list_rows`, room for ``rows`` samples of ``X``: the values in the
    work buffer's gathered-inputs area, which the sparse path leaves unused (already in memory: a fresh (1024, 784)
    array cost ~2.5 ms of page faults a call, bench/RESULTS.md), where the buffer's dtype holds ``X``'s; the indices
    in an array of their own."""
    n0 = X.shape[1]
    inputs_at = _step_layout(sizes, work, rows)[5]
    if work.itemsize >= X.itemsize and rows > 0:
        values = work[inputs_at:inputs_at + rows * n0].view(X.dtype)[:rows * n0].reshape((rows, n0))
    else:
        values = np.empty((rows, n0), X.dtype)
    return np.empty((rows, n0), np.int32), values, np.empty(rows, np.int64)


@jit
def _rows_pass(theta, sizes, activation, X, y, rows, W1T, listing, work, losses, r0, r1):
    """Forward and backward passes of the rows ``[r0, r1)`` of a batch; ``losses[i]`` gets row ``i``'s loss.

    Fills, for those rows, ``A_l`` in the workspace's activations and
    ``δ_l = ∂(mean loss)/∂Z_l`` in its deltas, every layer. The first layer is
    sparse when ``listing``'s arrays have rows (over each sample's non-zero inputs,
    which this pass lists, with the weights in ``W_1ᵀ``), else dense (the inputs
    gathered into the workspace, dot products with ``W_1`` in ``theta``). Rows
    are independent here, so threads share a batch by row ranges.
    """
    n = rows.shape[0]
    last = sizes.shape[0] - 2
    n0 = sizes[0]
    n1 = sizes[1]
    w_off, b_off, a_off, acts, deltas, inputs_at = _step_layout(sizes, work, n)
    Z1 = row_block(acts, 0, n1, 0, n)
    if listing[0].shape[0] > 0:
        list_rows(X, rows, listing, r0, r1)
        sparse_rows_product(listing, W1T, Z1, r0, r1)
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
        bias_activation(A, theta[b_off[l]:b_off[l] + n_out], IDENTITY if l == last else activation)
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
def _bias_step(dZ, b, vb, j0, j1, hyper):
    """The step of ``b[j]`` with gradient ``Σ_i dZ[i, j]``, for ``j`` in ``[j0, j1)``: ``b[j] -= η Σ_i dZ[i, j]``
    for plain SGD, else the optimizer's (no weight decay on biases)."""
    total = np.empty(j1 - j0, dZ.dtype)
    bias_gradient(dZ[:, j0:j1], total)
    real = b.dtype.type
    if hyper[1] == 0.0 and hyper[3] == 0.0:
        step = real(hyper[0])
        for j in range(j1 - j0):
            b[j0 + j] -= step * total[j]
        return
    for j in range(j1 - j0):
        b[j0 + j], vb[j0 + j] = optimizer_step(b[j0 + j], vb[j0 + j], total[j], real(hyper[0]), real(hyper[1]),
                                               hyper[2], real(0))


@jit
def _step_rows(W, V, G, r0, r1, hyper):
    """The optimizer's step of rows ``[r0, r1)`` of ``W`` (velocity ``V``) with gradient ``G`` (weight decay)."""
    real = W.dtype.type
    lr, momentum, nesterov, decay = real(hyper[0]), real(hyper[1]), hyper[2], real(hyper[3])
    for r in range(r0, r1):
        w = W[r]
        v = V[r]
        g = G[r]
        for k in range(W.shape[1]):
            w[k], v[k] = optimizer_step(w[k], v[k], g[k], lr, momentum, nesterov, decay)


@jit
def _update_pass(theta, velocity, sizes, n, W1T, V1T, G1T, listing, work, hyper, t, n_chunks):
    """SGD update of range ``t`` of ``n_chunks`` of every layer's weights, after :func:`_rows_pass`.

    Plain SGD writes ``W_l -= η δ_lᵀ A_{l-1}`` without storing the gradient, by
    ranges of units; the sparse first layer by ranges of input features of
    ``W_1ᵀ``, touching only the rows of listed features. With momentum or weight
    decay every weight moves: the range's gradient rows go to the work buffer's
    gradient area (to ``G_1ᵀ`` for the sparse first layer), then the optimizer
    steps them with their velocity (``V_1ᵀ`` beside ``W_1ᵀ``). Ranges are
    disjoint, so threads share them. ``n``: the batch's samples.
    """
    last = sizes.shape[0] - 2
    n0 = sizes[0]
    n1 = sizes[1]
    lr = hyper[0]
    plain = hyper[1] == 0.0 and hyper[3] == 0.0
    w_off, b_off, a_off, acts, deltas, inputs_at = _step_layout(sizes, work, n)
    grad_at = 2 * acts.shape[0]  # the gradient area: after the activations and the deltas
    d1 = row_block(deltas, 0, n1, 0, n)
    j0, j1 = chunk(n1, t, n_chunks, 4)
    if listing[0].shape[0] > 0:
        k0, k1 = chunk(n0, t, n_chunks, 4)
        if plain:
            sparse_rows_update(listing, d1, W1T, k0, k1, -lr)
        else:
            G1T[k0:k1] = 0
            sparse_rows_update(listing, d1, G1T, k0, k1, 1.0)
            _step_rows(W1T, V1T, G1T, k0, k1, hyper)
    elif plain:
        gemm_rows(d1, row_block(work, inputs_at, n0, 0, n), theta[:n1 * n0].reshape((n1, n0)), j0, j1, True, -lr, True)
    else:
        G1 = work[grad_at:grad_at + n1 * n0].reshape((n1, n0))
        gemm_rows(d1, row_block(work, inputs_at, n0, 0, n), G1, j0, j1, True, 1.0, False)
        _step_rows(theta[:n1 * n0].reshape((n1, n0)), velocity[:n1 * n0].reshape((n1, n0)), G1, j0, j1, hyper)
    _bias_step(d1, theta[b_off[0]:b_off[0] + n1], velocity[b_off[0]:b_off[0] + n1] if not plain else velocity,
               j0, j1, hyper)
    for l in range(1, last + 1):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        d = row_block(deltas, a_off[l], n_out, 0, n)
        j0, j1 = chunk(n_out, t, n_chunks, 4)
        W = theta[w_off[l]:b_off[l]].reshape((n_out, n_in))
        if plain:
            gemm_rows(d, row_block(acts, a_off[l - 1], n_in, 0, n), W, j0, j1, True, -lr, True)
        else:
            G = work[grad_at + w_off[l]:grad_at + b_off[l]].reshape((n_out, n_in))
            gemm_rows(d, row_block(acts, a_off[l - 1], n_in, 0, n), G, j0, j1, True, 1.0, False)
            _step_rows(W, velocity[w_off[l]:b_off[l]].reshape((n_out, n_in)), G, j0, j1, hyper)
        _bias_step(d, theta[b_off[l]:b_off[l] + n_out],
                   velocity[b_off[l]:b_off[l] + n_out] if not plain else velocity, j0, j1, hyper)


def minibatch_epoch(theta, velocity, sizes, activation, X, y, order, batch_size, hyper, work, loss_sum):
    """Minibatch SGD over ``order``: one step per ``batch_size`` consecutive samples (the last may be short).

    The steps of :func:`kernels.numpy.network.minibatch_step`, arranged for speed:

    * on sparse inputs (at most :data:`SPARSE_MAX_DENSITY` non-zero, judged on the
      :data:`DENSITY_SAMPLE` rows of ``X``, and an index of at most
      :data:`SPARSE_MAX_INDEX_BYTES`) the first layer works on a transposed copy
      ``W_1ᵀ`` (n_0, n_1) for the whole call, written back at the end, so that its
      product and its update are row operations ``z += x_k W_1ᵀ[k]`` and
      ``W_1ᵀ[k] -= η Σ_i x_ik δ_i`` over each sample's non-zero inputs only, exactly;
      dense inputs take register-blocked products;
    * steps whose products are large, counting only the non-zero inputs where the
      first layer is sparse (:func:`kernels.cpu.minibatch_blas.takes_blas_path`),
      go to the BLAS path instead; the choice is made for a step of ``batch_size``
      samples (of all of ``X`` where it has fewer), so that a call's short last step,
      and a call of fewer samples than a batch (the last chunk of an epoch), take the
      path of the epoch's other steps (on 784-1024-1024-10 the fused kernel took
      13-17 ms for a last step of 16 samples, the BLAS path 3-8 ms);
    * each step is two parallel passes (when it is large enough): the forward
      and backward passes by row ranges of the batch (:func:`_rows_pass`), then
      the updates by disjoint ranges of each layer's units (:func:`_update_pass`),
      written straight into ``theta`` without storing a gradient.

    This is the only parallel kernel, and no other kernel calls it: numba's
    cache can crash when a cached function calls a parallel one (numba issues
    #8578, #10128).

    Parameters
    ----------
    velocity : ndarray, shape (P,)
    X : ndarray, shape (N, n_0)
    y : ndarray of int64, shape (N,)
    order : ndarray of int64, shape (n,)
    batch_size : int, >= 1
    hyper : tuple
        ``(lr, momentum, nesterov, weight_decay)``.
    work : ndarray, shape (>= layout.workspace_size(sizes, batch_size),)
    loss_sum : ndarray of float64, shape (1,)
        ``loss_sum[0] +=`` each sample's loss, before the update of its step.
    """
    layout.batch_starts(order.shape[0], batch_size)  # checks batch_size as the other backends do
    index_bytes = (4 + X.dtype.itemsize) * min(batch_size, order.shape[0]) * X.shape[1]
    max_density = SPARSE_MAX_DENSITY if index_bytes <= SPARSE_MAX_INDEX_BYTES else -1.0
    step_rows = min(batch_size, X.shape[0])
    # The fused kernel's own choice of first layer, made here to weigh its work; not needed (a pass over
    # DENSITY_SAMPLE rows of X, ~0.2 ms) where the step goes to BLAS whatever the density.
    if minibatch_blas.takes_blas_path(sizes, step_rows, 0.0) or minibatch_blas.takes_blas_path(
            sizes, step_rows, _first_layer_density(X, max_density)):
        minibatch_epoch_blas(theta, velocity, sizes, activation, X, y, order, batch_size, hyper, work, loss_sum)
        return
    minibatch_epoch_variant(theta, velocity, sizes, activation, X, y, order, batch_size, tuple(hyper), work,
                            loss_sum, parallel_threads(), max_density)


def _first_layer_density(X, max_density):
    """The fraction of the first layer's products the fused kernel does on ``X``: the input density where it
    takes the sparse first layer (density at most ``max_density``), else 1."""
    density = input_density(X)
    return density if density <= max_density else 1.0


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
def minibatch_epoch_variant(theta, velocity, sizes, activation, X, y, order, batch_size, hyper, work, loss_sum,
                            threads, max_density):
    """:func:`minibatch_epoch` on ``threads`` threads, sparse when the input density is at most
    ``max_density`` (-1: never; 2: always); ``bench/test_minibatch_ablation.py`` compares them.
    The thread count is an argument because a compiled kernel that reads it from numba cannot be cached.
    """
    n0 = sizes[0]
    n1 = sizes[1]
    plain = hyper[1] == 0.0 and hyper[3] == 0.0
    W1 = theta[:n1 * n0].reshape((n1, n0))
    density = input_density(X)
    sparse = density <= max_density
    W1T = aligned_transpose(W1) if sparse else np.empty((0, n1), theta.dtype)
    with_velocity = sparse and not plain
    V1 = velocity[:n1 * n0].reshape((n1, n0)) if with_velocity else np.empty((0, n0), theta.dtype)
    V1T = aligned_transpose(V1) if with_velocity else np.empty((0, n1), theta.dtype)
    G1T = aligned_empty(n0 if with_velocity else 0, n1, theta)  # the sparse first layer's gradient
    rows_per_step = min(batch_size, order.shape[0])
    listing = _listing(X, sizes, work, rows_per_step if sparse else 0)
    losses = np.empty(rows_per_step)  # each row's loss, summed in order: the same sum on any number of threads
    total = 0.0
    for start in range(0, order.shape[0], batch_size):
        rows = order[start:min(start + batch_size, order.shape[0])]
        n = rows.shape[0]
        n_chunks = threads if n * n0 * n1 * (density if sparse else 1.0) >= PARALLEL_MIN_WORK else 1
        if n_chunks == 1:
            _rows_pass(theta, sizes, activation, X, y, rows, W1T, listing, work, losses, 0, n)
            _update_pass(theta, velocity, sizes, n, W1T, V1T, G1T, listing, work, hyper, 0, 1)
        else:
            for t in prange(n_chunks):
                r0, r1 = chunk(n, t, n_chunks, 4)
                _rows_pass(theta, sizes, activation, X, y, rows, W1T, listing, work, losses, r0, r1)
            for t in prange(n_chunks):
                _update_pass(theta, velocity, sizes, n, W1T, V1T, G1T, listing, work, hyper, t, n_chunks)
        for r in range(n):
            total += losses[r]
    if sparse:
        W1[:] = W1T.T
    if with_velocity:
        V1[:] = V1T.T
    loss_sum[0] += total


def minibatch_step(theta, velocity, sizes, activation, X, y, batch, hyper, work, loss_sum):
    """One SGD step on the mean loss of the samples ``batch``: :func:`minibatch_epoch` over that one batch.

    Parameters
    ----------
    batch : ndarray of int64, shape (B,)
    work : ndarray, shape (>= layout.workspace_size(sizes, B),)
    loss_sum : ndarray of float64, shape (1,)
        ``loss_sum[0] +=`` the batch's summed loss, before the update.
    """
    minibatch_epoch(theta, velocity, sizes, activation, X, y, batch, max(batch.shape[0], 1), hyper, work, loss_sum)


