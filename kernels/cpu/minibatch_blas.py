"""The minibatch SGD epoch for large layers: products through NumPy's BLAS, everything else in ``@njit``.

Reference: :func:`kernels.numpy.network.minibatch_epoch`. Where a step's
matrix products are large (wide layers, large batches), they take nearly all of
its time, and the fastest products on a CPU are an optimised BLAS's: packed
panels, a register tile filling the vector units, blocking for each cache
level, all the cores. NumPy ships one (OpenBLAS in its wheels), so this path
costs no new dependency: each step is

* the batch's rows gathered into the workspace, ``X_b`` (B, n_0), or read in
  place where they are consecutive rows of ``X`` (samples in order);
* per layer, ``Z_l = A_{l-1} W_lᵀ`` by BLAS (:func:`kernels.cpu.blas.gemm`) into
  the workspace, then ``A_l = g(Z_l + b_l)`` by :func:`kernels.cpu.network.bias_activation`;
* the loss and ``δ_L = (softmax(Z_L) − onehot(y)) / B`` row by row;
* per layer, from the top, ``δ_{l-1} = (δ_l W_l) ⊙ g'(A_{l-1})`` by BLAS, then
  the layer's step: for plain SGD ``W_l ← W_l − η δ_lᵀ A_{l-1}`` as one BLAS
  call (``β = 1``: no gradient array, no pass over the weights of its own) and
  ``b_l ← b_l − η Σ_i δ_l[i]``; with momentum or weight decay ``∂W_l`` goes to
  the gradient area and the optimizer steps all parameters at the end
  (:func:`kernels.cpu.sgd.optimizer_update`).

The element-wise kernels run on one thread: BLAS keeps its own threads, and a
second parallel runtime beside them would fight over the cores (OpenBLAS's
threads spin for a while after each call). :func:`kernels.cpu.minibatch.minibatch_epoch`
chooses between this path and the fused one (:func:`takes_blas_path`).
"""

import numpy as np

from kernels import layout
from kernels.activations import IDENTITY
from kernels.cpu._jit import jit
from kernels.cpu.blas import gemm
from kernels.cpu.network import bias_activation, bias_gradient, offsets
from kernels.cpu.scalar import derivative_scalar
from kernels.cpu.sgd import optimizer_update, sgd_update
from kernels.cpu.softmax import row_loss_and_gradient

#: Multiply-adds of one step's products from which the BLAS path is taken: measured on this project's
#: 2-core machine (``bench/sweeps.py --only paths``, ``bench/test_minibatch_ablation.py``), counted as the
#: fused kernel does its work (:func:`fused_multiply_adds`); see bench/RESULTS.md.
BLAS_MIN_MULTIPLY_ADDS = 1 << 26


def step_multiply_adds(sizes, batch_size):
    """Multiply-adds of one step's products: forward, weight gradients, input gradients below the first layer."""
    weights = [int(n_in) * int(n_out) for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    return int(batch_size) * (3 * sum(weights) - weights[0])


def fused_multiply_adds(sizes, batch_size, first_layer_density=1.0):
    """:func:`step_multiply_adds` as the fused kernel does them: its sparse first layer multiplies only the
    non-zero inputs, a fraction ``first_layer_density`` of the first layer's product and weight gradient
    (1.0 when it takes the dense first layer)."""
    first_layer = 2 * int(batch_size) * int(sizes[0]) * int(sizes[1])
    return round(step_multiply_adds(sizes, batch_size) - (1.0 - first_layer_density) * first_layer)


def takes_blas_path(sizes, batch_size, first_layer_density=1.0):
    """Whether a step of ``batch_size`` samples is large enough for the BLAS path to win over the fused kernel,
    whose first layer works on a fraction ``first_layer_density`` of the inputs."""
    return fused_multiply_adds(sizes, batch_size, first_layer_density) >= BLAS_MIN_MULTIPLY_ADDS


@jit
def gather_rows(X, rows, out):
    """``out[i] = X[rows[i]]``, element by element: LLVM vectorises this loop, not numba's row assignment
    (measured 0.34 against 0.61 ms for 1,024 MNIST rows)."""
    for i in range(rows.shape[0]):
        source = X[rows[i]]
        destination = out[i]
        for k in range(source.shape[0]):
            destination[k] = source[k]


@jit
def consecutive(rows):
    """Whether ``rows`` are ``r, r + 1, ..., r + n − 1``: the batch is then a slice of ``X``, read in place."""
    for i in range(1, rows.shape[0]):
        if rows[i] != rows[0] + i:
            return False
    return True


@jit
def loss_rows(logits, y, rows, deltas, losses):
    """Each row's loss into ``losses``, and ``deltas = (softmax(logits) − onehot(y[rows])) / n``."""
    n = logits.shape[0]
    for r in range(n):
        losses[r] = row_loss_and_gradient(logits[r], y[rows[r]], 1.0 / n, deltas[r])


@jit
def activation_derivative_mask(D, A, code):
    """``D *= g'(A)`` element by element, with ``g'`` written in terms of ``A = g(Z)``."""
    for r in range(D.shape[0]):
        d = D[r]
        a = A[r]
        for k in range(D.shape[1]):
            d[k] *= derivative_scalar(a[k], code)


def minibatch_epoch_blas(theta, velocity, sizes, activation, X, y, order, batch_size, hyper, work, loss_sum):
    """Minibatch SGD over ``order`` with the products in BLAS; the arguments of
    :func:`kernels.cpu.minibatch.minibatch_epoch`, whose steps this takes."""
    sizes = np.asarray(sizes, np.int64)
    last = sizes.shape[0] - 2
    plain = hyper[1] == 0.0 and hyper[3] == 0.0
    total = 0.0
    losses = np.empty(min(batch_size, order.shape[0]))
    for start in layout.batch_starts(order.shape[0], batch_size):
        rows = order[start:start + batch_size]
        n = rows.shape[0]
        w_off, b_off, a_off, _, _ = offsets(sizes, n)
        acts, deltas, grad, inputs = layout.workspace_views(work, sizes, n)
        if consecutive(rows):  # samples in order (shuffle=False): the rows as they lie, no copy
            inputs = X[rows[0]:rows[0] + n]
        else:
            gather_rows(X, rows, inputs)
        A = [inputs] + [acts[a_off[l]:a_off[l] + n * sizes[l + 1]].reshape(n, sizes[l + 1]) for l in range(last + 1)]
        D = [None] + [deltas[a_off[l]:a_off[l] + n * sizes[l + 1]].reshape(n, sizes[l + 1]) for l in range(last + 1)]
        W = [theta[w_off[l]:b_off[l]].reshape(sizes[l + 1], sizes[l]) for l in range(last + 1)]
        G = [grad[w_off[l]:b_off[l]].reshape(sizes[l + 1], sizes[l]) for l in range(last + 1)]
        for l in range(last + 1):  # Z_l = A_{l-1} W_lᵀ, A_l = g(Z_l + b_l)
            gemm(A[l], W[l], A[l + 1], transpose_b=True)
            bias_activation(A[l + 1], theta[b_off[l]:b_off[l] + sizes[l + 1]], IDENTITY if l == last else activation)
        loss_rows(A[last + 1], y, rows, D[last + 1], losses)
        total += float(np.sum(losses[:n]))
        for l in range(last, -1, -1):  # from the top, each δ_{l-1} with W_l before its step
            if l > 0:
                gemm(D[l + 1], W[l], D[l])
                activation_derivative_mask(D[l], A[l], activation)
            db = grad[b_off[l]:b_off[l] + sizes[l + 1]]
            bias_gradient(D[l + 1], db)
            if plain:  # W_l -= η δ_lᵀ A_{l-1}: the step fused into the product; then b_l -= η Σ_i δ_l[i]
                gemm(D[l + 1], A[l], W[l], transpose_a=True, alpha=-hyper[0], beta=1.0)
                sgd_update(theta[b_off[l]:b_off[l] + sizes[l + 1]], db, hyper[0])
            else:
                gemm(D[l + 1], A[l], G[l], transpose_a=True)
        if not plain:
            optimizer_update(theta, velocity, grad, sizes, hyper)
    loss_sum[0] += total
