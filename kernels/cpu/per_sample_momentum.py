"""The per-sample SGD epoch with momentum and weight decay as one fused ``@njit`` kernel.

Reference: :func:`kernels.numpy.network.sgd_epoch` (one unfused step per sample,
:func:`kernels.numpy.sgd.optimizer_update`). With momentum every weight moves at
every step, also the first layer's rows of inputs that are zero in the sample,
which plain SGD skips. Here they are skipped too, exactly, by a lazy update:

* a weight whose data gradient is zero at a step (its input was zero) goes
  through a fixed linear map of ``(w, v)``, the step with gradient ``λ w``::

      v ← μ v + λ w,   w ← w − η v                (classical)
      v ← μ v + λ w,   w ← w − η (λ w + μ v)      (Nesterov)

  so ``j`` such steps are ``(w, v) ← Mʲ (w, v)``, with ``Mʲ`` tabled once per
  call (in float64, :func:`zero_gradient_powers`), and a step with data gradient
  ``x_k δ`` is ``(w, v) ← M (w, v) + x_k δ e`` (:func:`data_step_vector`);
* a row ``k`` of ``W_1ᵀ`` (and of its velocity ``V_1ᵀ``) is visited only at the
  samples whose input ``k`` is non-zero, where the forward sum needs it. Its
  step from the sample ``p`` of its previous visit waits until then, with
  ``δ_1`` of sample ``p`` kept in a ring of the last :data:`HISTORY` samples'
  deltas: a visit at sample ``s`` brings the row from ``p`` steps to ``s`` in one
  pass, ``(w, v) ← M^{s−p} (w, v) + x_pk M^{s−p−1} e δ_p``, then accumulates
  ``z += x_sk W_1ᵀ[k]``. (Plain SGD's kernel visits the previous sample's rows
  too, to apply its pending step; with momentum a row's pass moves twice the
  bytes, and waiting takes a third of the visits away on MNIST.)
* every :data:`HISTORY` / 2 samples, the rows whose pending step is about to
  leave the ring are brought up to date, and the end of the call brings every
  row up to date (:func:`bring_rows_up_to_date`).

The deeper layers and the biases are updated in full at every step (small).
``bench/test_optimizer.py`` measures it against plain per-sample SGD.
"""

import numpy as np

from kernels.activations import IDENTITY
from kernels.cpu._jit import jit
from kernels.cpu.aligned import aligned_transpose
from kernels.cpu.network import nonzero_union, offsets, sample_forward_above_first
from kernels.cpu.scalar import activate_scalar, derivative_scalar
from kernels.cpu.sgd import flush_velocity, optimizer_step
from kernels.cpu.softmax import row_loss_and_gradient

#: Coefficients of ``Mʲ`` below this are 0, as velocities below it are (:data:`kernels.cpu.sgd.VELOCITY_FLOOR`):
#: ``μʲ v`` after a long gap (a pixel dark for a thousand samples) would otherwise be a subnormal float, ~100×
#: slower to compute on x86, for a contribution below any weight's resolution.
NEGLIGIBLE = 2.0 ** -60


@jit
def zero_gradient_powers(n, lr, momentum, nesterov, decay):
    """``P[j] = Mʲ`` for ``j = 0..n`` as rows ``(m00, m01, m10, m11)``: ``w ← m00 w + m01 v``,
    ``v ← m10 w + m11 v`` after ``j`` steps whose data gradient is zero. Float64, whatever the model's dtype.
    Without momentum the velocity is not part of the update and stays as it is."""
    boost = momentum if nesterov != 0.0 else 0.0  # Nesterov steps by g + μ v', classical by v'
    m00 = 1.0 - lr * decay * (1.0 + boost)
    m01 = -lr * momentum * (momentum if nesterov != 0.0 else 1.0)
    m10 = decay if momentum != 0.0 else 0.0
    m11 = momentum if momentum != 0.0 else 1.0
    P = np.empty((n + 1, 4))
    P[0, 0], P[0, 1], P[0, 2], P[0, 3] = 1.0, 0.0, 0.0, 1.0
    for j in range(1, n + 1):
        a, b, c, d = P[j - 1, 0], P[j - 1, 1], P[j - 1, 2], P[j - 1, 3]
        P[j, 0] = m00 * a + m01 * c
        P[j, 1] = m00 * b + m01 * d
        P[j, 2] = m10 * a + m11 * c
        P[j, 3] = m10 * b + m11 * d
        for e in range(4):  # a product with a coefficient this small lands among the subnormals: see below
            if abs(P[j, e]) < NEGLIGIBLE:
                P[j, e] = 0.0
    return P


@jit
def affine_step(hyper, real):
    """``(a, b)`` of the momentum step written without a branch, ``w ← w − a g − b v`` after ``v ← μ v + g``:
    ``(0, η)`` classical, ``(η, η μ)`` Nesterov (:func:`kernels.optimizer.sgd_step` with ``μ > 0``)."""
    lr = real(hyper[0])
    if hyper[2] != 0.0:
        return lr, lr * real(hyper[1])
    return real(0), lr


#: Samples whose first-layer deltas the per-sample momentum kernel keeps for the rows' pending steps.
HISTORY = 512


@jit
def data_step_vector(hyper):
    """``e`` of a step with data gradient ``g = x δ``: ``(w, v) ← M (w, v) + g e``. From
    :func:`kernels.optimizer.sgd_step`: ``v' = μ v + λ w + g``, ``w' = w − a (g + λ w) − b v'`` (:func:`affine_step`),
    so ``e = (−(a + b), 1)``; without momentum the velocity stays as it is, ``e = (−η, 0)``. Float64."""
    a, b = affine_step(hyper, np.float64)
    if hyper[1] == 0.0:
        return -hyper[0], 0.0
    return -(a + b), 1.0


@jit
def catch_up_coefficients(powers, j, x_pending, e0, e1, real):
    """``(c0, c1, c2, c3, f0, f1)`` of a row brought ``j`` steps forward, the first of them its pending data step
    (gradient ``x_pending δ``; 0 for none): ``w ← c0 w + c1 v + f0 δ``, ``v ← c2 w + c3 v + f1 δ``, that is
    ``(w, v) ← Mʲ (w, v) + x_pending δ Mʲ⁻¹ e`` (``e`` of :func:`data_step_vector`). Computed in float64; ``f0`` and
    ``f1`` below :data:`NEGLIGIBLE` are 0, as the ring's ``δ`` below it are, so that no product is subnormal."""
    q = max(j - 1, 0)
    f0 = x_pending * (powers[q, 0] * e0 + powers[q, 1] * e1)
    f1 = x_pending * (powers[q, 2] * e0 + powers[q, 3] * e1)
    return (real(powers[j, 0]), real(powers[j, 1]), real(powers[j, 2]), real(powers[j, 3]),
            real(f0 if abs(f0) >= NEGLIGIBLE else 0.0), real(f1 if abs(f1) >= NEGLIGIBLE else 0.0))


@jit
def visit_rows(W1T, V1T, features, count, s, steps, pending, x_pending, history, powers, hyper, x, z):
    """Sample ``s``'s pass over the rows ``features[:count]`` of ``W_1ᵀ`` and ``V_1ᵀ`` (its non-zero inputs): each
    row brought to ``s`` steps (:func:`catch_up_coefficients`, ``δ`` of its pending step from ``history``), then
    ``z += x_k W_1ᵀ[k]``; the row's step from this sample is left pending. The velocity is flushed
    (:func:`kernels.cpu.sgd.flush_velocity`), and without momentum left as it is.

    The loops index the matrices directly, in this function, with the momentum test outside them: the same loop
    in a helper called per row, or behind a test inside it, ran 2-3× slower. Without weight decay ``Mʲ`` keeps
    ``c0 = 1`` and ``c2 = 0`` exactly, and the loop without those two products (same bits) took 0.91-0.93 of the
    epoch's time (784-128-10, momentum 0.9, MNIST, 21 rounds by turns on the AMD EPYC of bench/RESULTS.md).
    """
    real = W1T.dtype.type
    e0, e1 = data_step_vector(hyper)
    with_velocity = hyper[1] != 0.0
    for t in range(count):
        k = features[t]
        p = pending[k]
        h = max(p, 0) % HISTORY
        c0, c1, c2, c3, f0, f1 = catch_up_coefficients(powers, s - p if p >= 0 else s - steps[k],
                                                       x_pending[k] if p >= 0 else 0.0, e0, e1, real)
        xk = x[k]
        if with_velocity and c0 == 1 and c2 == 0:  # no weight decay: w ← w + c1 v + f0 δ, v ← c3 v + f1 δ
            w_row = W1T[k]
            v_row = V1T[k]
            d_row = history[h]
            for i in range(W1T.shape[1]):
                v0 = v_row[i]
                d = d_row[i]
                w = w_row[i] + c1 * v0 + f0 * d
                w_row[i] = w
                v_row[i] = flush_velocity(c3 * v0 + f1 * d)
                z[i] += xk * w
        elif with_velocity:
            for i in range(W1T.shape[1]):
                w0 = W1T[k, i]
                v0 = V1T[k, i]
                w = c0 * w0 + c1 * v0 + f0 * history[h, i]
                W1T[k, i] = w
                V1T[k, i] = flush_velocity(c2 * w0 + c3 * v0 + f1 * history[h, i])
                z[i] += xk * w
        else:
            for i in range(W1T.shape[1]):
                w = c0 * W1T[k, i] + f0 * history[h, i]
                W1T[k, i] = w
                z[i] += xk * w
        steps[k] = s
        pending[k] = s
        x_pending[k] = xk


@jit
def bring_rows_up_to_date(W1T, V1T, s, steps, pending, x_pending, history, powers, hyper, older_than, every_row):
    """Rows whose pending step is from a sample before ``older_than`` brought to ``s`` steps, none left pending;
    with ``every_row`` also the rows without one (the end of the call)."""
    up_to_date = np.zeros(W1T.shape[0], W1T.dtype)  # as a sample whose inputs are all zero: x_k = 0, no step
    due = np.empty(W1T.shape[0], np.int64)
    count = 0
    for k in range(W1T.shape[0]):
        p = pending[k]
        if 0 <= p < older_than or (p < 0 and every_row and steps[k] < s):
            due[count] = k
            count += 1
    scratch = np.zeros(W1T.shape[1], W1T.dtype)
    visit_rows(W1T, V1T, due, count, s, steps, pending, x_pending, history, powers, hyper, up_to_date, scratch)
    for t in range(count):
        pending[due[t]] = -1


@jit
def dense_layer_step(W, V, b, vb, d, a_prev, d_prev, hyper):
    """Backpropagate ``d_prev = Wᵀ d`` with the weights before the step, then step every weight and bias
    (gradient ``d aᵀ``, weight decay on ``W`` only); the momentum step in :func:`affine_step`'s form."""
    real = W.dtype.type
    lr, momentum, nesterov, decay = real(hyper[0]), real(hyper[1]), hyper[2], real(hyper[3])
    zero = real(0)
    a, c = affine_step(hyper, real)
    d_prev[:] = 0
    for j in range(W.shape[0]):
        dj = d[j]
        w = W[j]
        v = V[j]
        for k in range(W.shape[1]):
            d_prev[k] += w[k] * dj
        if momentum == 0:
            for k in range(W.shape[1]):
                w[k], v[k] = optimizer_step(w[k], v[k], dj * a_prev[k], lr, momentum, nesterov, decay)
        else:
            for k in range(W.shape[1]):
                g = dj * a_prev[k] + decay * w[k]
                v[k] = flush_velocity(momentum * v[k] + g)
                w[k] = w[k] - a * g - c * v[k]
        b[j], vb[j] = optimizer_step(b[j], vb[j], dj, lr, momentum, nesterov, zero)


@jit
def sgd_epoch_momentum(theta, velocity, sizes, activation, X, y, order, hyper, work, loss_sum, skip_zero_features):
    """Per-sample SGD with momentum and weight decay over ``order``; see the module.

    ``skip_zero_features`` False visits every row at every sample (the lazy update
    then never has steps to catch up): the same updates, for measuring the saving.
    """
    real = theta.dtype.type
    zero = real(0)
    lr, momentum, nesterov = real(hyper[0]), real(hyper[1]), hyper[2]
    last = sizes.shape[0] - 2
    n0 = sizes[0]
    n1 = sizes[1]
    n = order.shape[0]
    w_off, b_off, a_off, _, n_acts = offsets(sizes, 1)
    acts = work[:n_acts]
    deltas = work[n_acts:2 * n_acts]
    W1 = theta[w_off[0]:b_off[0]].reshape((n1, n0))
    V1 = velocity[w_off[0]:b_off[0]].reshape((n1, n0))
    W1T = aligned_transpose(W1)  # (n0, n1): row k holds the weights of input k, and its velocity
    V1T = aligned_transpose(V1)
    b1 = theta[b_off[0]:b_off[0] + n1]
    vb1 = velocity[b_off[0]:b_off[0] + n1]
    a1 = acts[:n1]
    d1 = deltas[:n1]
    code1 = IDENTITY if last == 0 else activation
    powers = zero_gradient_powers(n, hyper[0], hyper[1], hyper[2], hyper[3])
    steps = np.zeros(n0, np.int64)  # steps[k]: the steps row k of W_1ᵀ has had
    pending = np.full(n0, -1, np.int64)  # pending[k]: the sample of row k's step still to apply, or -1
    x_pending = np.zeros(n0)  # that sample's input k
    history = np.zeros((HISTORY, n1), theta.dtype)  # history[p % HISTORY]: δ_1 of sample p
    features = np.arange(n0).astype(np.int32)
    total = 0.0
    for s in range(n):
        i = order[s]
        x = X[i]
        if s > 0 and s % (HISTORY // 2) == 0:  # pending steps older than this are about to leave the ring
            bring_rows_up_to_date(W1T, V1T, s, steps, pending, x_pending, history, powers, hyper, s - HISTORY // 2,
                                  False)
        count = nonzero_union(x, x, features) if skip_zero_features else n0
        # First layer: bring each row of a non-zero input up to step s, and z = b_1 + W_1 x.
        a1[:] = b1
        visit_rows(W1T, V1T, features, count, s, steps, pending, x_pending, history, powers, hyper, x, a1)
        for j in range(n1):
            a1[j] = activate_scalar(a1[j], code1)
        sample_forward_above_first(theta, sizes, activation, acts, w_off, b_off, a_off)
        n_classes = sizes[last + 1]
        total += row_loss_and_gradient(acts[a_off[last]:a_off[last] + n_classes], y[i], 1.0,
                                       deltas[a_off[last]:a_off[last] + n_classes])
        # Deeper layers: backpropagate and step in one pass over W_l and its velocity.
        for l in range(last, 0, -1):
            n_in = sizes[l]
            n_out = sizes[l + 1]
            a_prev = acts[a_off[l - 1]:a_off[l]]
            d_prev = deltas[a_off[l - 1]:a_off[l]]
            dense_layer_step(theta[w_off[l]:b_off[l]].reshape((n_out, n_in)),
                             velocity[w_off[l]:b_off[l]].reshape((n_out, n_in)), theta[b_off[l]:b_off[l] + n_out],
                             velocity[b_off[l]:b_off[l] + n_out], deltas[a_off[l]:a_off[l] + n_out], a_prev, d_prev,
                             hyper)
            for k in range(n_in):
                d_prev[k] *= derivative_scalar(a_prev[k], activation)
        # First layer: the bias now, each weight row at its next visit (or at the end).
        for j in range(n1):
            b1[j], vb1[j] = optimizer_step(b1[j], vb1[j], d1[j], lr, momentum, nesterov, zero)
        for j in range(n1):  # as velocities are flushed: a product of tiny δ and f0 would be a subnormal float
            history[s % HISTORY, j] = flush_velocity(d1[j])
    bring_rows_up_to_date(W1T, V1T, n, steps, pending, x_pending, history, powers, hyper, n, True)
    W1[:] = W1T.T
    V1[:] = V1T.T
    loss_sum[0] += total
