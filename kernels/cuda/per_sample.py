"""The course's per-sample SGD epoch as one cooperative ``numba.cuda`` kernel across the whole GPU.

Reference: :func:`kernels.numpy.network.sgd_epoch`. One launch runs a chunk of
samples in order, one update per sample, with everything on the device.

The units of the hidden layers are cut into ``n_slices`` slices; a block owns
the slices ``blockIdx.x, blockIdx.x + gridDim.x, ...`` (one physical block can
loop over several slices, which is how the simulator, running cooperative grids
of one block only, tests the multi-slice paths). A slice owns, in every hidden
layer, a range of units: their rows of ``W_l`` and their bias, and, for the
last hidden layer (the inputs when there is none), the matching columns of the
output layer ``W_L``. Per sample:

1. forward through the hidden layers, each slice its rows (a group of
   ``EPOCH_LANES`` threads per row, a tree sum); the first layer applies the
   previous sample's pending update to each row in the same pass (it is not
   needed earlier: no one reads ``W_1`` in between). A grid barrier after each
   hidden layer but the last, whose units the next layer needs all of;
2. each slice's share of the logits from its units of the last hidden layer,
   written beside the others'; a grid barrier;
3. every block sums the slices' shares in the same fixed order (the same logits,
   bit for bit, everywhere), then the loss and the output delta ``p - onehot(y)``;
4. backward: each slice its columns of ``W_L`` (backpropagating into its units
   and updating them in the same pass), then, layer by layer, its rows of
   ``W_l``: each slice writes its share of ``δ_{l-1}`` for all units, a grid
   barrier, and each unit's owner sums the shares in a fixed order.

That is one grid barrier per sample with one hidden layer, ``2L - 3`` with
``L - 1`` hidden layers. No floating-point atomics: the result is the same on
every run. Co-residency of the blocks is guaranteed by the cooperative launch,
whose grid is at most what the driver says fits at once.

The update of each parameter is :func:`kernels.optimizer.sgd_step` (momentum,
Nesterov and weight decay touch every weight every step; plain SGD skips the
exact zeros of the gradient).
"""

import math
import warnings

import numpy as np

from kernels import layout
from kernels.cuda._launch import (
    EPOCH_LANES,
    EPOCH_THREADS,
    MAX_CLASSES,
    activate_device,
    co_resident_blocks,
    cuda,
    derivative_device,
    grid_barrier,
    group_max,
    group_sum,
    kernel,
    launch,
)
from kernels.cuda.network import host_sizes, layer_place
from kernels.cuda.sgd import optimizer_step

GROUPS = EPOCH_THREADS // EPOCH_LANES  # rows a block computes at once in the forward pass

if cuda is not None:

    @cuda.jit(device=True, inline=True)
    def slice_range(n, s, n_slices):
        """Units ``[r0, r1)`` of ``n`` owned by slice ``s`` of ``n_slices``."""
        return (n * s) // n_slices, (n * (s + 1)) // n_slices

    @cuda.jit(device=True, inline=True)
    def span_of(n):
        """The smallest power of two >= ``n``, at most the block: a reduction's group size."""
        span = 1
        while span < n and span < EPOCH_THREADS:
            span *= 2
        return span

    @cuda.jit(device=True, inline=True)
    def sum_of_shares(buffer, scratch, base, stride, index, valid, tid, n_slices, span):
        """``Σ_s scratch[base + s * stride + index]`` over the slices' shares, summed in a fixed order by each
        group of ``span`` threads (every thread of the group gets it; 0 where ``valid`` is false)."""
        acc = 0.0
        if valid:
            for s in range(tid % span, n_slices, span):
                acc += scratch[base + s * stride + index]
        return group_sum(buffer, tid, acc, span)

    @cuda.jit(device=True, inline=True)
    def step_parameter(theta, velocity, q, grad, hyper, decay, plain):
        """One optimizer step of ``theta[q]`` (and its velocity) with gradient ``grad``; returns the new value.

        Plain SGD leaves a parameter with a zero gradient as it is, unread-modify-written."""
        w = theta[q]
        if plain and grad == 0:
            return w
        real = theta.dtype.type
        momentum = real(hyper[1])
        v = velocity[q] if momentum != 0 else real(0)
        w, v = optimizer_step(w, v, grad, real(hyper[0]), momentum, hyper[2], decay)
        theta[q] = w
        if momentum != 0:
            velocity[q] = v
        return w

    @kernel(EPOCH_THREADS, cooperative=True)
    def sgd_epoch_kernel(theta, velocity, sizes, code, X, y, order, hyper, work, n_slices, loss_sum):
        """Per-sample SGD over ``order``; see the module. ``work`` is the batch-1 workspace: activations,
        deltas, then the slices' shares (logits, two buffers by sample parity; backward sums, two by layer
        parity) in the gradient area."""
        buffer = cuda.shared.array(EPOCH_THREADS, np.float64)
        probs = cuda.shared.array(MAX_CLASSES, np.float64)  # the logits, then the output delta p - onehot(y)
        tid = cuda.threadIdx.x
        group = tid // EPOCH_LANES
        lane = tid % EPOCH_LANES
        real = theta.dtype.type
        zero = real(0)
        decay = real(hyper[3])
        plain = hyper[1] == 0.0 and hyper[3] == 0.0
        n_layers = len(sizes) - 1
        n_classes = sizes[n_layers]
        n_last = sizes[n_layers - 1]  # units feeding the output layer: the inputs when there is no hidden layer
        from_inputs = n_layers == 1
        w_out, b_out, a_out = layer_place(sizes, n_layers)
        a_last = a_out - n_last
        acts = work[:a_out + n_classes]
        deltas = work[a_out + n_classes:2 * (a_out + n_classes)]
        scratch = work[2 * (a_out + n_classes):]
        widest = 0  # widest layer whose units get backward shares (layers 1 .. L-2)
        for l in range(1, n_layers - 1):
            widest = max(widest, sizes[l])
        back_base = 2 * n_slices * n_classes
        last_span = span_of((n_last + n_slices - 1) // n_slices)
        slice_span = span_of(n_slices)
        class_span = span_of(n_classes)
        total = 0.0
        prev = -1
        for t in range(order.shape[0]):
            i = order[t]
            shares = (t % 2) * n_slices * n_classes
            # 1. Forward through the hidden layers; the first applies the pending update of the previous sample.
            for l in range(1, n_layers):
                n_in = sizes[l - 1]
                w_off, b_off, a_l = layer_place(sizes, l)
                for s in range(cuda.blockIdx.x, n_slices, cuda.gridDim.x):
                    r0, r1 = slice_range(sizes[l], s, n_slices)
                    for j0 in range(r0, r1, GROUPS):
                        j = j0 + group
                        acc = zero
                        if j < r1:
                            row = w_off + j * n_in
                            if l == 1:
                                pending = deltas[j] if prev >= 0 else zero
                                for k in range(lane, n_in, EPOCH_LANES):
                                    if prev >= 0:
                                        w = step_parameter(theta, velocity, row + k, pending * X[prev, k], hyper,
                                                           decay, plain)
                                    else:
                                        w = theta[row + k]
                                    acc += w * X[i, k]
                            else:
                                for k in range(lane, n_in, EPOCH_LANES):
                                    acc += theta[row + k] * acts[a_l - n_in + k]
                        dot = group_sum(buffer, tid, acc, EPOCH_LANES)
                        if lane == 0 and j < r1:
                            acts[a_l + j] = activate_device(real(dot) + theta[b_off + j], code)
                if l < n_layers - 1:
                    grid_barrier()
            cuda.syncthreads()  # the last hidden layer's units are read by other threads of the block next
            # 2. Each slice's share of the logits, from its units of the last hidden layer.
            for s in range(cuda.blockIdx.x, n_slices, cuda.gridDim.x):
                r0, r1 = slice_range(n_last, s, n_slices)
                for c0 in range(0, n_classes, EPOCH_THREADS // last_span):
                    c = c0 + tid // last_span
                    acc = zero
                    if c < n_classes:
                        for j in range(r0 + tid % last_span, r1, last_span):
                            h = X[i, j] if from_inputs else acts[a_last + j]
                            acc += theta[w_out + c * n_last + j] * h
                    share = group_sum(buffer, tid, acc, last_span)
                    if tid % last_span == 0 and c < n_classes:
                        if s == 0:
                            share += theta[b_out + c]
                        scratch[shares + s * n_classes + c] = share
            grid_barrier()
            # 3. Every block: the logits (the shares summed in a fixed order), the loss and the output delta.
            for c0 in range(0, n_classes, EPOCH_THREADS // slice_span):
                c = c0 + tid // slice_span
                logit = sum_of_shares(buffer, scratch, shares, n_classes, c, c < n_classes, tid, n_slices, slice_span)
                if tid % slice_span == 0 and c < n_classes:
                    probs[c] = real(logit)
            cuda.syncthreads()
            label = y[i]
            z_label = probs[label]
            m = -math.inf
            for c in range(tid % class_span, n_classes, class_span):
                m = max(m, probs[c])
            m = group_max(buffer, tid, m, class_span)
            exps = 0.0
            for c in range(tid % class_span, n_classes, class_span):
                exps += math.exp(probs[c] - m)
            shift = m + math.log(group_sum(buffer, tid, exps, class_span))
            if cuda.blockIdx.x == 0 and tid == 0:
                total += shift - z_label
            for c in range(tid, n_classes, EPOCH_THREADS):
                probs[c] = real(math.exp(probs[c] - shift)) - (1.0 if c == label else 0.0)
            cuda.syncthreads()
            # 4. Backward: each slice its columns of W_L, backpropagating into its units of the last hidden layer.
            for s in range(cuda.blockIdx.x, n_slices, cuda.gridDim.x):
                r0, r1 = slice_range(n_last, s, n_slices)
                for j in range(r0 + tid, r1, EPOCH_THREADS):
                    h = X[i, j] if from_inputs else acts[a_last + j]
                    back = zero
                    for c in range(n_classes):
                        q = w_out + c * n_last + j
                        d = real(probs[c])
                        back += theta[q] * d
                        step_parameter(theta, velocity, q, d * h, hyper, decay, plain)
                    if not from_inputs:
                        d = back * derivative_device(h, code)
                        deltas[a_last + j] = d
                        if n_layers == 2:  # layer 1: the bias now, the weights with the next sample
                            step_parameter(theta, velocity, layer_place(sizes, 1)[1] + j, d, hyper, zero, plain)
                if s == 0:
                    for c in range(tid, n_classes, EPOCH_THREADS):
                        step_parameter(theta, velocity, b_out + c, real(probs[c]), hyper, zero, plain)
            cuda.syncthreads()
            # Then each hidden layer l >= 2: shares of δ_{l-1} from the slice's rows, updated in the same pass.
            for l in range(n_layers - 1, 1, -1):
                n_in = sizes[l - 1]
                w_off, b_off, a_l = layer_place(sizes, l)
                a_in = a_l - n_in
                back_shares = back_base + (l % 2) * n_slices * widest
                for s in range(cuda.blockIdx.x, n_slices, cuda.gridDim.x):
                    r0, r1 = slice_range(sizes[l], s, n_slices)
                    for k in range(tid, n_in, EPOCH_THREADS):
                        a_k = acts[a_in + k]
                        back = zero
                        for j in range(r0, r1):
                            d = deltas[a_l + j]
                            q = w_off + j * n_in + k
                            back += theta[q] * d
                            step_parameter(theta, velocity, q, d * a_k, hyper, decay, plain)
                        scratch[back_shares + s * n_in + k] = back
                    for j in range(r0 + tid, r1, EPOCH_THREADS):
                        step_parameter(theta, velocity, b_off + j, deltas[a_l + j], hyper, zero, plain)
                grid_barrier()
                for s in range(cuda.blockIdx.x, n_slices, cuda.gridDim.x):
                    r0, r1 = slice_range(n_in, s, n_slices)
                    for k0 in range(r0, r1, EPOCH_THREADS // slice_span):
                        k = k0 + tid // slice_span
                        back = sum_of_shares(buffer, scratch, back_shares, n_in, k, k < r1, tid, n_slices, slice_span)
                        if tid % slice_span == 0 and k < r1:
                            d = real(back) * derivative_device(acts[a_in + k], code)
                            deltas[a_in + k] = d
                            if l == 2:  # layer 1: the bias now, the weights with the next sample
                                step_parameter(theta, velocity, layer_place(sizes, 1)[1] + k, d, hyper, zero, plain)
                cuda.syncthreads()
            prev = i
        # The last sample's pending first-layer update.
        if prev >= 0 and n_layers >= 2:
            n0 = sizes[0]
            for s in range(cuda.blockIdx.x, n_slices, cuda.gridDim.x):
                r0, r1 = slice_range(sizes[1], s, n_slices)
                for q in range(r0 * n0 + tid, r1 * n0, EPOCH_THREADS):
                    step_parameter(theta, velocity, q, deltas[q // n0] * X[prev, q % n0], hyper, decay, plain)
        if cuda.blockIdx.x == 0 and tid == 0:
            loss_sum[0] += total


def slices_for(sizes):
    """How many slices the units are cut into: a row per thread group of the widest hidden layer (the
    inputs, a unit per thread, without one), as many as the scratch in the work buffer holds."""
    sizes = host_sizes(sizes)
    n_layers = len(sizes) - 1
    if n_layers == 1:
        wanted = -(-sizes[0] // EPOCH_THREADS)
    else:
        wanted = -(-max(sizes[1:-1]) // GROUPS)
    widest = max(sizes[1:-2], default=0)
    return max(1, min(wanted, layout.param_count(sizes) // (2 * sizes[-1] + 2 * widest)))


def sgd_epoch_variant(theta, velocity, sizes, activation, X, y, order, hyper, work, loss_sum, n_slices):
    """:func:`sgd_epoch` with the units cut into ``n_slices`` slices (the tests vary it)."""
    sizes = host_sizes(sizes)
    if order.shape[0] == 0:
        return
    widest = max(sizes[1:-2], default=0)
    if n_slices * (2 * sizes[-1] + 2 * widest) > layout.param_count(sizes):
        raise ValueError(f"n_slices={n_slices}: the work buffer holds the shares of at most "
                         f"{layout.param_count(sizes) // (2 * sizes[-1] + 2 * widest)} slices")
    args = (theta, velocity, sizes, activation, X, y, order, tuple(float(h) for h in hyper), work, n_slices,
            loss_sum)
    blocks = min(n_slices, co_resident_blocks(sgd_epoch_kernel, EPOCH_THREADS, args))
    with warnings.catch_warnings():
        # A small grid on purpose: a block per slice, and the samples are sequential.
        warnings.filterwarnings("ignore", message="Grid size .* will likely result in GPU under-utilization")
        launch(sgd_epoch_kernel, blocks, EPOCH_THREADS, *args)


def sgd_epoch(theta, velocity, sizes, activation, X, y, order, hyper, work, loss_sum):
    """Per-sample SGD over ``order``: one cooperative launch; see the module and the reference.

    With more than ``MAX_CLASSES`` classes the per-sample steps run as minibatches of one sample
    (:func:`kernels.cuda.minibatch.minibatch_epoch`), the same updates.
    """
    sizes = host_sizes(sizes)
    if sizes[-1] > MAX_CLASSES:
        from kernels.cuda.minibatch import minibatch_epoch

        minibatch_epoch(theta, velocity, sizes, activation, X, y, order, 1, hyper, work, loss_sum)
        return
    sgd_epoch_variant(theta, velocity, sizes, activation, X, y, order, hyper, work, loss_sum, slices_for(sizes))
