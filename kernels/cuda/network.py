"""Whole-network ops on the GPU: the fused minibatch step and the per-sample SGD epoch.

References: :mod:`kernels.numpy.network` (same names, same arguments; see there
for the shared ones). Everything stays on the device: ``theta``, the data, the
work buffer and the loss accumulators are device arrays, and ``sizes`` is a host
sequence used for shapes and passed to kernels as a tuple.

Launches per minibatch step, for L layers: 1 gather + L forward products (bias
and activation fused) + 1 softmax-cross-entropy row kernel + L weight-gradient
products (bias gradient fused) + L - 1 input-gradient products (activation
derivative fused) + 1 SGD update = 3L + 2 (8 for one hidden layer).

The per-sample epoch (the course's algorithm) is one launch per chunk of
samples: a single persistent block walks the samples with ``cuda.syncthreads()``
between phases (no grid sync, so it compiles to PTX without a driver).
"""

import math
import warnings

from kernels import layout
from kernels.activations import IDENTITY
from kernels.cuda._launch import (
    ACTIVATION_GRADIENT,
    BIAS_ACTIVATION,
    EPOCH_LANES,
    EPOCH_THREADS,
    ROW_SUM,
    THREADS,
    activate_device,
    cuda,
    derivative_device,
    grid_for,
)
from kernels.cuda.linear import matmul
from kernels.cuda.sgd import sgd_update
from kernels.cuda.softmax import EVALUATE, GRADIENT, SOFTMAX, launch_rows

_GROUPS = EPOCH_THREADS // EPOCH_LANES  # weight rows processed at once by the epoch kernel

if cuda is not None:

    @cuda.jit(cache=True)
    def gather_rows(X, rows, out):
        """``out[i, :] = X[rows[i], :]``."""
        n_cols = X.shape[1]
        for idx in range(cuda.grid(1), out.shape[0] * n_cols, cuda.gridsize(1)):
            i = idx // n_cols
            out[i, idx % n_cols] = X[rows[i], idx % n_cols]

    @cuda.jit(device=True)
    def layer_offsets(sizes, layer):
        """Offsets of ``W``, ``b`` in theta and of the activations (batch 1) of ``layer``."""
        w_off = 0
        a_off = 0
        for l in range(layer):
            w_off += sizes[l + 1] * sizes[l] + sizes[l + 1]
            a_off += sizes[l + 1]
        return w_off, w_off + sizes[layer + 1] * sizes[layer], a_off

    @cuda.jit(cache=True)
    def sgd_epoch_kernel(theta, sizes, code, X, y, order, lr, acts, deltas, loss_sum):
        """Per-sample SGD over ``order`` in one block; see :func:`sgd_epoch`.

        Forward: groups of EPOCH_LANES threads take one weight row each, the lanes
        splitting the dot product (coalesced) and a shared-memory sum finishing it;
        the first layer's group applies the previous sample's pending update to its
        row in the same pass. Backward: one thread per input unit walks its column
        of W, backpropagating and updating it in the same pass.
        """
        partial = cuda.shared.array(EPOCH_THREADS, theta.dtype)
        tid = cuda.threadIdx.x
        group = tid // EPOCH_LANES
        lane = tid % EPOCH_LANES
        zero = theta.dtype.type(0)
        step = theta.dtype.type(lr)
        n_layers = len(sizes) - 1
        n0 = sizes[0]
        n1 = sizes[1]
        total = 0.0
        prev = -1
        for s in range(order.shape[0]):
            i = order[s]
            # Forward, layer by layer.
            for l in range(n_layers):
                n_in = sizes[l]
                n_out = sizes[l + 1]
                w_off, b_off, a_off = layer_offsets(sizes, l)
                a_in = a_off - n_in  # where layer l's input sits in acts (l > 0)
                layer_code = IDENTITY if l == n_layers - 1 else code
                for row0 in range(0, n_out, _GROUPS):
                    j = row0 + group
                    acc = zero
                    if j < n_out:
                        row = w_off + j * n_in
                        if l == 0:
                            g = step * deltas[j] if prev >= 0 else zero
                            for k in range(lane, n_in, EPOCH_LANES):
                                w = theta[row + k]
                                if g != 0:
                                    x_prev = X[prev, k]
                                    if x_prev != 0:
                                        w -= g * x_prev
                                        theta[row + k] = w
                                acc += w * X[i, k]
                        else:
                            for k in range(lane, n_in, EPOCH_LANES):
                                acc += theta[row + k] * acts[a_in + k]
                    partial[tid] = acc
                    cuda.syncthreads()
                    if lane == 0 and j < n_out:
                        dot = zero
                        for q in range(EPOCH_LANES):
                            dot += partial[tid + q]
                        acts[a_off + j] = activate_device(dot + theta[b_off + j], layer_code)
                    cuda.syncthreads()
            # Loss and output delta softmax(z) - onehot(y), by one thread (few classes).
            n_classes = sizes[n_layers]
            _, _, out_off = layer_offsets(sizes, n_layers - 1)
            if tid == 0:
                label = y[i]
                m = acts[out_off]
                for k in range(1, n_classes):
                    m = max(m, acts[out_off + k])
                total_exp = 0.0
                for k in range(n_classes):
                    total_exp += math.exp(acts[out_off + k] - m)
                shift = m + math.log(total_exp)
                total += shift - acts[out_off + label]
                for k in range(n_classes):
                    p = math.exp(acts[out_off + k] - shift)
                    deltas[out_off + k] = p - 1.0 if k == label else p
            cuda.syncthreads()
            # Backward through layers L-1 .. 1: one thread per input unit k walks column k.
            for l in range(n_layers - 1, 0, -1):
                n_in = sizes[l]
                n_out = sizes[l + 1]
                w_off, b_off, a_off = layer_offsets(sizes, l)
                a_in = a_off - n_in
                for k in range(tid, n_in, EPOCH_THREADS):
                    a_prev = acts[a_in + k]
                    back = zero
                    for j in range(n_out):
                        dj = deltas[a_off + j]
                        if dj != 0:
                            w = theta[w_off + j * n_in + k]
                            back += w * dj
                            theta[w_off + j * n_in + k] = w - step * dj * a_prev
                    deltas[a_in + k] = back * derivative_device(a_prev, code)
                for j in range(tid, n_out, EPOCH_THREADS):
                    theta[b_off + j] -= step * deltas[a_off + j]
                cuda.syncthreads()
            # First layer: the bias now, the weights in the next sample's forward pass.
            _, b_off, _ = layer_offsets(sizes, 0)
            for j in range(tid, n1, EPOCH_THREADS):
                theta[b_off + j] -= step * deltas[j]
            prev = i
            cuda.syncthreads()
        if prev >= 0:
            for idx in range(tid, n1 * n0, EPOCH_THREADS):
                j = idx // n0
                g = step * deltas[j]
                x_prev = X[prev, idx % n0]
                if g != 0 and x_prev != 0:
                    theta[idx] -= g * x_prev
        if tid == 0:
            loss_sum[0] += total


def _sizes(sizes):
    return tuple(int(n) for n in sizes)


def _views(theta, acts, sizes, batch):
    return layout.param_views(theta, sizes), layout.activation_views(acts, sizes, batch)


def mlp_forward(theta, sizes, activation, X, acts):
    """Forward pass: one product per layer with bias and activation fused; see the reference."""
    sizes = _sizes(sizes)
    params, outputs = _views(theta, acts, sizes, X.shape[0])
    inputs = X
    for l, ((W, b), A) in enumerate(zip(params, outputs)):
        code = IDENTITY if l == len(params) - 1 else activation
        matmul(inputs, W, A, transpose_b=True, epilogue=BIAS_ACTIVATION, code=code, vec=b)
        inputs = A


def _backward_layers(theta, sizes, activation, X, acts, deltas, grad, batch):
    """From the output delta (already in ``deltas``) down: dW with db, and dX with g' fused."""
    params, outputs = _views(theta, acts, sizes, batch)
    dZs = layout.activation_views(deltas, sizes, batch)
    grads = layout.param_views(grad, sizes)
    for l in range(len(params) - 1, -1, -1):
        dW, db = grads[l]
        inputs = X if l == 0 else outputs[l - 1]
        matmul(dZs[l], inputs, dW, transpose_a=True, epilogue=ROW_SUM, vec=db)
        if l > 0:
            matmul(dZs[l], params[l][0], dZs[l - 1], epilogue=ACTIVATION_GRADIENT, code=activation,
                   gate=outputs[l - 1])


def mlp_backward(theta, sizes, activation, X, y, acts, deltas, grad):
    """Backpropagation of the mean cross-entropy after :func:`mlp_forward`; see the reference."""
    sizes = _sizes(sizes)
    batch = X.shape[0]
    _, outputs = _views(theta, acts, sizes, batch)
    launch_rows(outputs[-1], y, GRADIENT, out=layout.activation_views(deltas, sizes, batch)[-1])
    _backward_layers(theta, sizes, activation, X, acts, deltas, grad, batch)


def minibatch_step(theta, sizes, activation, X, y, batch, lr, work, loss_sum):
    """One SGD step on the samples ``batch`` in 3L + 2 launches; see the reference."""
    sizes = _sizes(sizes)
    n = batch.shape[0]
    acts, deltas, grad, Xb = layout.workspace_views(work, sizes, n)
    gather_rows[grid_for(Xb.size), THREADS](X, batch, Xb)
    mlp_forward(theta, sizes, activation, Xb, acts)
    logits = layout.activation_views(acts, sizes, n)[-1]
    launch_rows(logits, y, GRADIENT, out=layout.activation_views(deltas, sizes, n)[-1], sums=loss_sum,
                rows=batch)
    _backward_layers(theta, sizes, activation, Xb, acts, deltas, grad, n)
    sgd_update(theta, grad, lr)


def minibatch_epoch(theta, sizes, activation, X, y, order, batch_size, lr, work, loss_sum):
    """One :func:`minibatch_step` per ``batch_size`` samples of ``order``; everything stays on the device."""
    for start in layout.batch_starts(order.shape[0], batch_size):
        minibatch_step(theta, sizes, activation, X, y, order[start:start + batch_size], lr, work, loss_sum)


def sgd_epoch(theta, sizes, activation, X, y, order, lr, work, loss_sum):
    """Per-sample SGD over ``order``: one launch of a single persistent block; see the reference."""
    sizes = _sizes(sizes)
    if order.shape[0] == 0:
        return
    acts, deltas, _, _ = layout.workspace_views(work, sizes, 1)
    with warnings.catch_warnings():
        # One block on purpose: the samples are sequential, and the block walks them all.
        warnings.filterwarnings("ignore", message="Grid size 1 will likely result in GPU under-utilization")
        sgd_epoch_kernel[1, EPOCH_THREADS](theta, sizes, activation, X, y, order, lr, acts, deltas, loss_sum)


def evaluate(theta, sizes, activation, X, y, work, stats):
    """``stats[0] +=`` summed loss, ``stats[1] +=`` correct predictions; see the reference."""
    sizes = _sizes(sizes)
    n = X.shape[0]
    acts = work[:layout.activation_count(sizes, n)]
    mlp_forward(theta, sizes, activation, X, acts)
    launch_rows(layout.activation_views(acts, sizes, n)[-1], y, EVALUATE, sums=stats)


def predict_proba(theta, sizes, activation, X, work, probs):
    """``probs = softmax(logits)``; see the reference."""
    sizes = _sizes(sizes)
    n = X.shape[0]
    acts = work[:layout.activation_count(sizes, n)]
    mlp_forward(theta, sizes, activation, X, acts)
    launch_rows(layout.activation_views(acts, sizes, n)[-1], cuda.device_array(1, "int64"), SOFTMAX, out=probs)
