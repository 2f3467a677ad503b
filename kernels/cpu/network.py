"""Whole-network ops as fused ``@njit`` kernels.

References: :mod:`kernels.numpy.network` (same names, same arguments, the
composition of the unfused ops). See there for the shared arguments.
"""

import math

import numpy as np
from numba import prange

from kernels.activations import IDENTITY
from kernels.cpu._jit import activate_scalar, derivative_scalar, jit, jit_parallel
from kernels.cpu.linear import axpy, gemm_nt, gemm_nt_columns, gemm_rows, gemv, input_gradient, weight_gradient
from kernels.cpu.sgd import sgd_update
from kernels.cpu.softmax import row_log_sum_exp, softmax, softmax_cross_entropy_backward


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


#: Products of at least this many multiply-adds are shared among threads in ``minibatch_step``.
PARALLEL_MIN_WORK = 1 << 20
#: Column (or row) ranges such a product is cut into; numba shares them among its threads.
PARALLEL_CHUNKS = 4


@jit
def chunk(n, t, align):
    """Range ``t`` of :data:`PARALLEL_CHUNKS` ranges covering ``[0, n)``, starting at multiples of ``align``."""
    share = (n // PARALLEL_CHUNKS) // align * align
    start = t * share
    return start, (n if t == PARALLEL_CHUNKS - 1 else start + share)


@jit_parallel
def minibatch_step(theta, sizes, activation, X, y, batch, lr, work, loss_sum):
    """One SGD step on the mean loss of the samples ``batch``: forward, backward, update.

    The same passes as :func:`mlp_forward` and :func:`mlp_backward`, written
    out here because the large products are cut into column (forward) or row
    (backward) ranges shared among threads with ``prange``. This is the only
    parallel kernel, and no other kernel calls it: numba's cache can crash when a
    cached function calls a parallel one (numba issues #8578, #10128).

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
    n = batch.shape[0]
    last = sizes.shape[0] - 2
    w_off, b_off, a_off, n_params, n_acts = offsets(sizes, n)
    acts = work[:n_acts]
    deltas = work[n_acts:2 * n_acts]
    grad = work[2 * n_acts:2 * n_acts + n_params]
    Xb = work[2 * n_acts + n_params:2 * n_acts + n_params + n * sizes[0]].reshape((n, sizes[0]))
    yb = np.empty(n, np.int64)
    for i in range(n):
        Xb[i] = X[batch[i]]
        yb[i] = y[batch[i]]
    # Forward: A_l = g(A_{l-1} W_lᵀ + b_l), the columns of each product in ranges.
    for l in range(last + 1):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        W = theta[w_off[l]:b_off[l]].reshape((n_out, n_in))
        A = acts[a_off[l]:a_off[l] + n * n_out].reshape((n, n_out))
        inputs = Xb if l == 0 else acts[a_off[l - 1]:a_off[l]].reshape((n, n_in))
        if n * n_in * n_out >= PARALLEL_MIN_WORK:
            for t in prange(PARALLEL_CHUNKS):
                j0, j1 = chunk(n_out, t, 2)
                gemm_nt_columns(inputs, W, A, j0, j1)
        else:
            gemm_nt_columns(inputs, W, A, 0, n_out)
        _bias_activation(A, theta[b_off[l]:b_off[l] + n_out], IDENTITY if l == last else activation)
    loss_sum[0] += _logits_loss_sum(acts, sizes, a_off, yb, n)
    n_classes = sizes[last + 1]
    span = n * n_classes
    softmax_cross_entropy_backward(acts[a_off[last]:a_off[last] + span].reshape((n, n_classes)), yb,
                                   deltas[a_off[last]:a_off[last] + span].reshape((n, n_classes)))
    # Backward: dW_l = dZ_lᵀ A_{l-1} in row ranges, db_l, dZ_{l-1} = (dZ_l W_l) g'(A_{l-1}).
    for l in range(last, -1, -1):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        dZ = deltas[a_off[l]:a_off[l] + n * n_out].reshape((n, n_out))
        dW = grad[w_off[l]:b_off[l]].reshape((n_out, n_in))
        inputs = Xb if l == 0 else acts[a_off[l - 1]:a_off[l]].reshape((n, n_in))
        if n * n_in * n_out >= PARALLEL_MIN_WORK:
            for t in prange(PARALLEL_CHUNKS):
                i0, i1 = chunk(n_out, t, 4)
                gemm_rows(dZ, inputs, dW, i0, i1, True)
        else:
            gemm_rows(dZ, inputs, dW, 0, n_out, True)
        _bias_gradient(dZ, grad[b_off[l]:b_off[l] + n_out])
        if l > 0:
            dA_prev = deltas[a_off[l - 1]:a_off[l]].reshape((n, n_in))
            input_gradient(dZ, theta[w_off[l]:b_off[l]].reshape((n_out, n_in)), dA_prev)
            for i in range(n):
                for k in range(n_in):
                    dA_prev[i, k] *= derivative_scalar(inputs[i, k], activation)
    sgd_update(theta, grad, lr)


@jit
def nonzero_union(x, x_prev, indices):
    """Write the indices where ``x`` or ``x_prev`` is non-zero into ``indices``; return their count.

    Branch-free compaction: MNIST pixels are zero or not at random, which a branch would mispredict.
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
      exactly (about 81% of MNIST pixels), so a sample touches only its rows;
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
    sgd_epoch_variant(theta, sizes, activation, X, y, order, lr, work, loss_sum, True, True, True)


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
    features = np.empty(n0, np.int64)
    prev = order[0] if order.shape[0] > 0 else 0
    total = 0.0
    for s in range(order.shape[0]):
        i = order[s]
        x = X[i]
        x_prev = X[prev]  # with g1 = 0 when no update is pending
        if skip_zero_features:
            count = nonzero_union(x, x_prev, features)
        else:
            count = n0
            for k in range(n0):
                features[k] = k
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
        m, log_s = row_log_sum_exp(logits)
        label = y[i]
        total += m + log_s - logits[label]
        for k in range(n_classes):
            d_out[k] = math.exp(logits[k] - m - log_s)
        d_out[label] -= 1
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
