"""The course's per-sample SGD epoch as one fused ``@njit`` kernel.

Reference: :func:`kernels.numpy.network.sgd_epoch` (one unfused
``minibatch_step`` of one sample at a time). The loop is bound by memory
traffic; see :func:`sgd_epoch` for how it saves it.
"""

import numpy as np

from kernels.activations import IDENTITY
from kernels.cpu._jit import jit
from kernels.cpu.aligned import aligned_transpose
from kernels.cpu.linear import axpy
from kernels.cpu.network import input_density, nonzero_union, offsets, sample_forward_above_first
from kernels.cpu.per_sample_momentum import sgd_epoch_momentum
from kernels.cpu.scalar import activate_scalar, derivative_scalar
from kernels.cpu.softmax import row_loss_and_gradient

#: :func:`sgd_epoch` lists each sample's non-zero inputs (to skip the zero ones) when at most this
#: fraction of the inputs is non-zero. Measured on 784-128-10 with random zeros, the variants timed in
#: turn: listing is 1.19x faster at density 0.5, 1.14x at 0.7, 0.92-0.94x (slower) at 0.85 and 1.
SGD_MAX_DENSITY = 0.75


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
def sgd_epoch(theta, velocity, sizes, activation, X, y, order, hyper, work, loss_sum):
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

    ``bench/test_sgd_epoch_ablation.py`` measures each saving. With momentum or
    weight decay the epoch is :func:`kernels.cpu.per_sample_momentum.sgd_epoch_momentum`.

    Parameters
    ----------
    order : ndarray of int64, shape (n,)
    work : ndarray, shape (>= layout.workspace_size(sizes, 1),)
    loss_sum : ndarray of float64, shape (1,)
        ``loss_sum[0] +=`` the sum of each sample's loss, before its update.
    """
    skip_zero_features = input_density(X) <= SGD_MAX_DENSITY
    if hyper[1] != 0.0 or hyper[3] != 0.0:  # momentum or weight decay
        sgd_epoch_momentum(theta, velocity, sizes, activation, X, y, order, hyper, work, loss_sum, skip_zero_features)
        return
    sgd_epoch_variant(theta, sizes, activation, X, y, order, hyper[0], work, loss_sum, True, skip_zero_features,
                      True)


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
    W1T = aligned_transpose(W1)  # (n0, n1): row k holds the weights of input k
    b1 = theta[b_off[0]:b_off[0] + n1]
    a1 = acts[:n1]
    d1 = deltas[:n1]
    code1 = IDENTITY if last == 0 else activation
    g1 = np.zeros(n1, theta.dtype)  # η δ_1 of the sample whose first-layer update is pending
    features = np.arange(n0).astype(np.int32)  # every input, unless each sample's non-zero ones are listed over it
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
        sample_forward_above_first(theta, sizes, activation, acts, w_off, b_off, a_off)
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


