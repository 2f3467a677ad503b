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

1. forward through the hidden layers, each slice its rows (a group of at
   least ``EPOCH_LANES`` threads per row, a tree sum); the first layer applies
   the previous sample's pending update to each row in the same pass (it is not
   needed earlier: no one reads ``W_1`` in between). The first layer reads only
   the inputs it needs: those nonzero in this sample or, for the pending update,
   in the previous one (all of them with momentum or weight decay), gathered
   in order into shared memory ``STAGE`` at a time; each thread then loads
   ``UNROLL`` weights at once before updating them, so that its loads overlap.
   A grid barrier after each hidden layer but the last, whose units the next
   layer needs all of;
2. each slice's share of the logits from its units of the last hidden layer,
   written beside the others'; a grid barrier;
3. every block sums the slices' shares in the same fixed order (the same logits,
   bit for bit, everywhere), then the loss and the output delta ``p - onehot(y)``;
4. backward: each slice its columns of ``W_L`` (a thread per weight,
   backpropagating into its units and updating them in the same pass), then,
   layer by layer, its rows of ``W_l``: each slice writes its share of
   ``δ_{l-1}`` for all units, a grid barrier, and each unit's owner sums the
   shares in a fixed order.

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
    STAGE,
    STAGE_PER_THREAD,
    UNROLL,
    activate_device,
    co_resident_blocks,
    cuda,
    derivative_device,
    exclusive_scan,
    grid_barrier,
    group_max,
    group_sum,
    kernel,
    launch,
)
from kernels.cuda.network import host_sizes, layer_place
from kernels.cuda.sgd import optimizer_step

GROUPS = EPOCH_THREADS // EPOCH_LANES  # the most rows a block computes at once in the forward pass
SCAN = 2 * EPOCH_THREADS  # the block scan's shared buffer (a shared array's shape must be a constant)
EPOCH_SHIFT = EPOCH_THREADS.bit_length() - 1  # log2 of the block
LANES_SHIFT = EPOCH_LANES.bit_length() - 1

# No integer division or remainder by a run-time value inside the sample loop: a 64-bit one costs ~140 ns on an
# H200 (bench/gpu_probe.py --parts), and a ``range`` with a run-time step divides for its trip count. Group
# sizes are powers of two (shifts and masks), loops with such steps are ``while`` loops, and slice bounds
# divide through a reciprocal computed once (:func:`floor_div`).

if cuda is not None:

    @cuda.jit(device=True, inline=True)
    def floor_div(a, b, inverse):
        """``a // b`` for ``0 <= a < 2**52`` and ``b > 0``, given ``inverse = 1 / b``: the float quotient is
        off by at most one, which one comparison each way corrects."""
        q = int(a * inverse)
        if (q + 1) * b <= a:
            q += 1
        elif q * b > a:
            q -= 1
        return q

    @cuda.jit(device=True, inline=True)
    def slice_range(n, s, n_slices, inverse):
        """Units ``[r0, r1)`` of ``n`` owned by slice ``s`` of ``n_slices`` (``inverse = 1 / n_slices``):
        ``n s // n_slices`` to ``n (s + 1) // n_slices``."""
        return floor_div(n * s, n_slices, inverse), floor_div(n * (s + 1), n_slices, inverse)

    @cuda.jit(device=True, inline=True)
    def shift_of(n):
        """log2 of the smallest power of two >= ``n``, at most the block's: a reduction group of
        ``1 << shift`` threads."""
        shift = 0
        while (1 << shift) < n and shift < EPOCH_SHIFT:
            shift += 1
        return shift

    @cuda.jit(device=True, inline=True)
    def sum_of_shares(buffer, scratch, base, stride, index, valid, tid, n_slices, span):
        """``Σ_s scratch[base + s * stride + index]`` over the slices' shares, summed in a fixed order by each
        group of ``span`` threads (a power of two; every thread of the group gets it; 0 where ``valid`` is
        false)."""
        acc = 0.0
        if valid:
            s = tid & (span - 1)
            while s < n_slices:
                acc += scratch[base + s * stride + index]
                s += span
        return group_sum(buffer, tid, acc, span)

    @cuda.jit(device=True, inline=True)
    def step_held(theta, velocity, q, w, v, grad, hyper, decay, plain):
        """One optimizer step of ``theta[q]``, whose value ``w`` and velocity ``v`` were loaded already, with
        gradient ``grad``; returns the new value.

        Plain SGD leaves a parameter with a zero gradient as it is, unwritten."""
        if plain and grad == 0:
            return w
        real = theta.dtype.type
        momentum = real(hyper[1])
        w, v = optimizer_step(w, v, grad, real(hyper[0]), momentum, hyper[2], decay)
        theta[q] = w
        if momentum != 0:
            velocity[q] = v
        return w

    @cuda.jit(device=True, inline=True)
    def step_parameter(theta, velocity, q, grad, hyper, decay, plain):
        """:func:`step_held` loading ``theta[q]`` and, with momentum, ``velocity[q]``."""
        real = theta.dtype.type
        v = velocity[q] if hyper[1] != 0 else real(0)
        return step_held(theta, velocity, q, theta[q], v, grad, hyper, decay, plain)

    @cuda.jit(device=True, inline=True)
    def input_needed(X, i, prev, k, keep_all):
        """Whether the first layer needs input ``k`` of sample ``i``: it counts in the forward sum, or the
        previous sample's pending update changes its weights (always, with momentum or weight decay)."""
        return X[i, k] != 0 or (prev >= 0 and (keep_all or X[prev, k] != 0))

    @cuda.jit(device=True, inline=True)
    def stage_inputs(staged_k, staged, scan, X, i, prev, k0, k1, keep_all, tid):
        """Stage the inputs ``k0 <= k < k1`` the first layer needs (:func:`input_needed`), in input order:
        ``staged_k[e] = k``, ``staged[0, e] = X[prev, k]`` (0 without a previous sample), ``staged[1, e] =
        X[i, k]``; returns how many. Each thread takes ``STAGE_PER_THREAD`` consecutive inputs and writes
        them at its place, an exclusive scan of the threads' counts: the same order on every run."""
        first = k0 + tid * STAGE_PER_THREAD
        last = min(first + STAGE_PER_THREAD, k1)
        count = 0
        for k in range(first, last):
            count += input_needed(X, i, prev, k, keep_all)
        e, total = exclusive_scan(scan, tid, count, EPOCH_THREADS)
        for k in range(first, last):
            if input_needed(X, i, prev, k, keep_all):
                staged_k[e] = k
                staged[0, e] = X[prev, k] if prev >= 0 else 0.0
                staged[1, e] = X[i, k]
                e += 1
        cuda.syncthreads()
        return total

    @cuda.jit(device=True, inline=True)
    def first_layer_row(theta, velocity, row, pending, staged_k, staged, count, lane, lanes, hyper, decay,
                        plain, update):
        """This thread's part of ``Σ_e w_k x_k`` over the staged inputs ``e = lane, lane + lanes, ...`` of a
        row of ``W_1`` starting at ``theta[row]``, each weight first given, where ``update``, the previous
        sample's pending step (gradient ``pending · x_prev[k]``). The loads of ``UNROLL`` weights are
        issued before any of their stores, so that they are in flight together."""
        real = theta.dtype.type
        held = cuda.local.array(UNROLL, np.float64)
        speeds = cuda.local.array(UNROLL, np.float64)
        momentum = hyper[1] != 0
        acc = real(0)
        e0 = lane
        while e0 < count:
            for u in range(UNROLL):
                e = e0 + u * lanes
                if e < count:
                    q = row + staged_k[e]
                    held[u] = theta[q]
                    speeds[u] = velocity[q] if momentum else 0.0
            for u in range(UNROLL):
                e = e0 + u * lanes
                if e < count:
                    w = real(held[u])
                    if update:
                        w = step_held(theta, velocity, row + staged_k[e], w, real(speeds[u]),
                                      pending * real(staged[0, e]), hyper, decay, plain)
                    acc += w * real(staged[1, e])
            e0 += UNROLL * lanes
        return acc

    @kernel(EPOCH_THREADS, cooperative=True)
    def sgd_epoch_kernel(theta, velocity, sizes, code, X, y, order, hyper, work, n_slices, loss_sum):
        """Per-sample SGD over ``order``; see the module. ``work`` is the batch-1 workspace: activations,
        deltas, then the slices' shares (logits, two buffers by sample parity; backward sums, two by layer
        parity) in the gradient area."""
        buffer = cuda.shared.array(EPOCH_THREADS, np.float64)
        probs = cuda.shared.array(MAX_CLASSES, np.float64)  # the logits, then the output delta p - onehot(y)
        staged_k = cuda.shared.array(STAGE, np.int32)  # the first layer's inputs this pass needs ...
        staged = cuda.shared.array((2, STAGE), np.float64)  # ... their values in the previous and this sample
        scan = cuda.shared.array(SCAN, np.int32)
        tid = cuda.threadIdx.x
        real = theta.dtype.type
        zero = real(0)
        decay = real(hyper[3])
        plain = hyper[1] == 0.0 and hyper[3] == 0.0  # else every weight of W_1 changes every step
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
        inverse = 1.0 / n_slices
        first_slice = cuda.blockIdx.x  # this block's slices: first_slice, first_slice + slice_step, ...
        slice_step = cuda.gridDim.x
        last_shift = shift_of(floor_div(n_last + n_slices - 1, n_slices, inverse))
        last_span = 1 << last_shift  # threads summing a class's logit share over the slice's units
        slice_shift = shift_of(n_slices)
        slice_span = 1 << slice_shift  # threads summing a value's shares over the slices
        class_shift = shift_of(n_classes)
        class_span = 1 << class_shift  # threads per unit of the last hidden layer in the backward pass
        total = 0.0
        prev = -1
        for t in range(order.shape[0]):
            i = order[t]
            shares = (t % 2) * n_slices * n_classes
            # 1. Forward through the hidden layers; the first applies the pending update of the previous sample,
            #    a pass per STAGE inputs over the inputs it needs (their sum goes through acts between passes).
            for l in range(1, n_layers):
                n_in = sizes[l - 1]
                w_off, b_off, a_l = layer_place(sizes, l)
                lane_shift = max(LANES_SHIFT, EPOCH_SHIFT - shift_of(floor_div(sizes[l] + n_slices - 1, n_slices,
                                                                               inverse)))
                lanes = 1 << lane_shift
                group = tid >> lane_shift
                lane = tid & (lanes - 1)
                passes = (n_in + STAGE - 1) // STAGE if l == 1 else 1
                for p in range(passes):
                    count = 0
                    if l == 1:
                        count = stage_inputs(staged_k, staged, scan, X, i, prev, p * STAGE,
                                             min(n_in, (p + 1) * STAGE), not plain, tid)
                    s = first_slice
                    while s < n_slices:
                        r0, r1 = slice_range(sizes[l], s, n_slices, inverse)
                        j = r0 + group
                        while j - group < r1:
                            acc = zero
                            if j < r1 and l == 1:
                                pending = deltas[j] if prev >= 0 else zero
                                acc = first_layer_row(theta, velocity, w_off + j * n_in, pending, staged_k, staged,
                                                      count, lane, lanes, hyper, decay, plain, prev >= 0)
                            elif j < r1:
                                row = w_off + j * n_in
                                k = lane
                                while k < n_in:
                                    acc += theta[row + k] * acts[a_l - n_in + k]
                                    k += lanes
                            dot = real(group_sum(buffer, tid, acc, lanes))
                            if lane == 0 and j < r1:
                                if p > 0:
                                    dot += acts[a_l + j]
                                if p == passes - 1:
                                    acts[a_l + j] = activate_device(dot + theta[b_off + j], code)
                                else:
                                    acts[a_l + j] = dot
                            j += EPOCH_THREADS >> lane_shift
                        s += slice_step
                if l < n_layers - 1:
                    grid_barrier()
            cuda.syncthreads()  # the last hidden layer's units are read by other threads of the block next
            # 2. Each slice's share of the logits, from its units of the last hidden layer.
            s = first_slice
            while s < n_slices:
                r0, r1 = slice_range(n_last, s, n_slices, inverse)
                c = tid >> last_shift
                while c - (tid >> last_shift) < n_classes:
                    acc = zero
                    if c < n_classes:
                        j = r0 + (tid & (last_span - 1))
                        while j < r1:
                            h = X[i, j] if from_inputs else acts[a_last + j]
                            acc += theta[w_out + c * n_last + j] * h
                            j += last_span
                    share = group_sum(buffer, tid, acc, last_span)
                    if (tid & (last_span - 1)) == 0 and c < n_classes:
                        if s == 0:
                            share += theta[b_out + c]
                        scratch[shares + s * n_classes + c] = share
                    c += EPOCH_THREADS >> last_shift
                s += slice_step
            grid_barrier()
            # 3. Every block: the logits (the shares summed in a fixed order), the loss and the output delta.
            c = tid >> slice_shift
            while c - (tid >> slice_shift) < n_classes:
                logit = sum_of_shares(buffer, scratch, shares, n_classes, c, c < n_classes, tid, n_slices, slice_span)
                if (tid & (slice_span - 1)) == 0 and c < n_classes:
                    probs[c] = real(logit)
                c += EPOCH_THREADS >> slice_shift
            cuda.syncthreads()
            label = y[i]
            z_label = probs[label]
            m = -math.inf
            c = tid & (class_span - 1)
            while c < n_classes:
                m = max(m, probs[c])
                c += class_span
            m = group_max(buffer, tid, m, class_span)
            exps = 0.0
            c = tid & (class_span - 1)
            while c < n_classes:
                exps += math.exp(probs[c] - m)
                c += class_span
            shift = m + math.log(group_sum(buffer, tid, exps, class_span))
            if cuda.blockIdx.x == 0 and tid == 0:
                total += shift - z_label
            for c in range(tid, n_classes, EPOCH_THREADS):
                probs[c] = real(math.exp(probs[c] - shift)) - (1.0 if c == label else 0.0)
            cuda.syncthreads()
            # 4. Backward: each slice its columns of W_L, backpropagating into its units of the last hidden layer.
            #    A group of class_span threads per unit, a class each: one weight per thread at a time.
            s = first_slice
            while s < n_slices:
                r0, r1 = slice_range(n_last, s, n_slices, inverse)
                j = r0 + (tid >> class_shift)
                while j - (tid >> class_shift) < r1:
                    back = zero
                    h = zero
                    if j < r1:
                        h = X[i, j] if from_inputs else acts[a_last + j]
                        c = tid & (class_span - 1)
                        while c < n_classes:
                            q = w_out + c * n_last + j
                            d = real(probs[c])
                            back += theta[q] * d
                            step_parameter(theta, velocity, q, d * h, hyper, decay, plain)
                            c += class_span
                    back = real(group_sum(buffer, tid, back, class_span))
                    if (tid & (class_span - 1)) == 0 and j < r1 and not from_inputs:
                        d = back * derivative_device(h, code)
                        deltas[a_last + j] = d
                        if n_layers == 2:  # layer 1: the bias now, the weights with the next sample
                            step_parameter(theta, velocity, layer_place(sizes, 1)[1] + j, d, hyper, zero, plain)
                    j += EPOCH_THREADS >> class_shift
                if s == 0:
                    for c in range(tid, n_classes, EPOCH_THREADS):
                        step_parameter(theta, velocity, b_out + c, real(probs[c]), hyper, zero, plain)
                s += slice_step
            cuda.syncthreads()
            # Then each hidden layer l >= 2: shares of δ_{l-1} from the slice's rows, updated in the same pass.
            for l in range(n_layers - 1, 1, -1):
                n_in = sizes[l - 1]
                w_off, b_off, a_l = layer_place(sizes, l)
                a_in = a_l - n_in
                back_shares = back_base + (l % 2) * n_slices * widest
                s = first_slice
                while s < n_slices:
                    r0, r1 = slice_range(sizes[l], s, n_slices, inverse)
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
                    s += slice_step
                grid_barrier()
                s = first_slice
                while s < n_slices:
                    r0, r1 = slice_range(n_in, s, n_slices, inverse)
                    k = r0 + (tid >> slice_shift)
                    while k - (tid >> slice_shift) < r1:
                        back = sum_of_shares(buffer, scratch, back_shares, n_in, k, k < r1, tid, n_slices, slice_span)
                        if (tid & (slice_span - 1)) == 0 and k < r1:
                            d = real(back) * derivative_device(acts[a_in + k], code)
                            deltas[a_in + k] = d
                            if l == 2:  # layer 1: the bias now, the weights with the next sample
                                step_parameter(theta, velocity, layer_place(sizes, 1)[1] + k, d, hyper, zero, plain)
                        k += EPOCH_THREADS >> slice_shift
                    s += slice_step
                cuda.syncthreads()
            prev = i
        # The last sample's pending first-layer update (once a launch: plain loops).
        if prev >= 0 and n_layers >= 2:
            n0 = sizes[0]
            for s in range(cuda.blockIdx.x, n_slices, cuda.gridDim.x):
                r0, r1 = slice_range(sizes[1], s, n_slices, inverse)
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
