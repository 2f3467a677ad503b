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
  call (in float64, :func:`zero_gradient_powers`);
* each row ``k`` of ``W_1ᵀ`` (and of its velocity ``V_1ᵀ``) carries the number
  of steps it has had; a sample visits the rows of its non-zero inputs and those
  of the previous sample (whose update is pending, as in plain SGD), catches each
  up with ``Mʲ``, applies the pending step, and accumulates ``z += x_k W_1ᵀ[k]``,
  all in one pass over the row; the end of the call brings every row up to date.

The deeper layers and the biases are updated in full at every step (small).
``bench/test_momentum.py`` measures it against plain per-sample SGD.
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


@jit
def first_layer_pass(W1T, V1T, features, count, steps, s, powers, x_prev, d1, x, z, hyper):
    """Sample ``s``'s pass over the listed rows of ``W_1ᵀ`` and its velocity ``V_1ᵀ``: each row's zero-gradient
    steps since it was last visited, the pending step of sample ``s - 1`` (gradient ``x_prev[k] δ_1``), then
    ``z += x[k] W_1ᵀ[k]``.

    With momentum the step of :func:`kernels.optimizer.sgd_step` is affine and has
    no branch: ``g = x_prev[k] δ + λ w``, ``v ← μ v + g``, ``w ← w − a g − b v`` with
    ``a = 0, b = η`` (classical) or ``a = η, b = η μ`` (Nesterov); the row loops
    are written so, with the catch-up or without it (most rows: visited at the
    previous sample too), and vectorise; a row whose input was zero in the previous
    sample takes its pending step as one more power of ``M``. Weight decay without
    momentum, where the velocity must stay as it is, takes the shared step.
    """
    real = W1T.dtype.type
    lr, momentum, nesterov, decay = real(hyper[0]), real(hyper[1]), hyper[2], real(hyper[3])
    a, b = affine_step(hyper, real)
    n1 = W1T.shape[1]
    for t in range(count):
        k = features[t]
        row = W1T[k]
        vrow = V1T[k]
        gap = s - 1 - steps[k]
        steps[k] = s
        xp = x_prev[k]
        xk = x[k]
        if momentum == 0:
            c0, c1 = real(powers[gap, 0]), real(powers[gap, 1])
            for j in range(n1):
                w, _ = optimizer_step(c0 * row[j] + c1 * vrow[j], vrow[j], xp * d1[j], lr, momentum, nesterov,
                                      decay)
                row[j] = w
                z[j] += xk * w
        elif xp == 0:  # the pending step has no data gradient: it is one more zero-gradient step
            c0, c1, c2, c3 = (real(powers[gap + 1, 0]), real(powers[gap + 1, 1]), real(powers[gap + 1, 2]),
                              real(powers[gap + 1, 3]))
            for j in range(n1):
                w0 = row[j]
                v0 = vrow[j]
                w = c0 * w0 + c1 * v0
                row[j] = w
                vrow[j] = flush_velocity(c2 * w0 + c3 * v0)
                z[j] += xk * w
        elif gap == 0:
            for j in range(n1):
                w = row[j]
                g = xp * d1[j] + decay * w
                v = flush_velocity(momentum * vrow[j] + g)
                w = w - a * g - b * v
                row[j] = w
                vrow[j] = v
                z[j] += xk * w
        else:
            c0, c1, c2, c3 = (real(powers[gap, 0]), real(powers[gap, 1]), real(powers[gap, 2]),
                              real(powers[gap, 3]))
            for j in range(n1):
                w0 = row[j]
                v0 = vrow[j]
                w = c0 * w0 + c1 * v0
                g = xp * d1[j] + decay * w
                v = flush_velocity(momentum * flush_velocity(c2 * w0 + c3 * v0) + g)
                w = w - a * g - b * v
                row[j] = w
                vrow[j] = v
                z[j] += xk * w


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
    features = np.arange(n0)
    prev = order[0] if n > 0 else 0
    total = 0.0
    for s in range(n):
        i = order[s]
        x = X[i]
        x_prev = X[prev]
        count = nonzero_union(x, x_prev, features) if skip_zero_features else n0
        # First layer: bring each visited row up to step s (the pending step s - 1 last), and z = b_1 + W_1 x.
        a1[:] = b1
        if s > 0:
            first_layer_pass(W1T, V1T, features, count, steps, s, powers, x_prev, d1, x, a1, hyper)
        else:
            for t in range(count):
                k = features[t]
                for j in range(n1):
                    a1[j] += x[k] * W1T[k, j]
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
        # First layer: the bias now, the weights in the next sample's pass (or at the end).
        for j in range(n1):
            b1[j], vb1[j] = optimizer_step(b1[j], vb1[j], d1[j], lr, momentum, nesterov, zero)
        prev = i
    if n > 0:  # every row up to step n: its zero-gradient steps, then the last sample's pending step
        scratch = np.zeros(n1, theta.dtype)
        first_layer_pass(W1T, V1T, np.arange(n0), n0, steps, n, powers, X[prev], d1, np.zeros(n0, theta.dtype),
                         scratch, hyper)
    W1[:] = W1T.T
    V1[:] = V1T.T
    loss_sum[0] += total
