"""The minibatch SGD epoch as one persistent, cooperative ``numba.cuda`` kernel.

Reference: :func:`kernels.numpy.network.minibatch_epoch` (one unfused
``minibatch_step`` per batch). One launch runs a chunk of steps; no Python runs
between them. Each step is a sequence of phases that the blocks share out
(products tile by tile through :func:`kernels.cuda.linear.product_tile`, rows,
parameters), separated by grid barriers, ``2L + 2`` per step for ``L`` layers:

1. forward, one phase per layer: ``A_l = g(A_{l-1} W_lᵀ + b_l)``, the batch's
   rows of ``X`` read in place through ``order`` (never copied out);
2. the output rows, a thread each: per-row loss and ``δ_L = (softmax - onehot(y)) / B``;
3. backward, one phase per layer: ``dW_l = δ_lᵀ A_{l-1}`` with ``db_l`` beside it,
   and ``δ_{l-1} = (δ_l W_l) · g'(A_{l-1})``, in the gradient area;
4. the optimizer step of every parameter (:func:`kernels.cuda.sgd.update_parameters`).

A product with few tiles and a deep reduction is cut along K
(:func:`kernels.cuda.linear.split_depth`): its pieces write partial tiles to
a scratch buffer and, after one more grid barrier, every block sums a share of
the partials in split order and applies the epilogue
(:func:`kernels.cuda.linear.finish_split`).

Block 0 sums each step's per-row losses in a fixed order while the others go
on: the result is the same on every run. Co-residency of the blocks is
guaranteed by the cooperative launch, its grid at most what the driver fits.
"""

import math
import warnings

import numpy as np

from kernels import layout
from kernels.activations import IDENTITY
from kernels.cuda._launch import (
    ACTIVATION_GRADIENT,
    BIAS_ACTIVATION,
    PLAIN,
    ROW_SUM,
    SPLIT_ITEMS,
    TILE_BLOCK,
    TILE_K,
    TILE_PAD,
    TILE_THREADS,
    co_resident_blocks,
    cuda,
    grid_barrier,
    group_sum,
    kernel,
    launch,
)
from kernels.cuda.linear import (
    FROM_P,
    FROM_Q,
    FROM_R,
    FROM_X,
    finish_split,
    partials_size_device,
    product_tile,
    split_scratch,
    tile_count,
    tile_count_device,
)
from kernels.cuda.linear import operand_device as address
from kernels.cuda.linear import split_depth_device as split_depth
from kernels.cuda.network import host_sizes, layer_place
from kernels.cuda.sgd import update_parameters

# A phase's product descriptor (a row of int64 in shared memory): addresses of A, B, C, the vector and the gate,
# the shape, the options, then the split bookkeeping: splits of K, their depth, pieces, where the partials start.
A, B, C, VEC, GATE, SHAPE = 0, 3, 6, 9, 12, 15
OPTIONS = 18
SPLITS, DEPTH, PIECES, PARTS = 23, 24, 25, 26
FIELDS = 27


def product_shape(n_in, n_out, batch, forward, second):
    """``(M, N, K)`` of layer ``(n_in → n_out)``'s product in a step of ``batch`` samples: forward ``A_l``
    (batch, n_out) over n_in; backward ``dW_l`` (n_out, n_in) over the batch, or, ``second``, ``δ_{l-1}``
    (batch, n_in) over n_out."""
    if forward:
        return batch, n_out, n_in
    if not second:
        return n_out, n_in, batch
    return batch, n_in, n_out


if cuda is not None:
    product_shape_device = cuda.jit(device=True, inline=True)(product_shape)

    @cuda.jit(device=True, inline=True)
    def output_rows(work, logits_at, deltas_at, losses_at, n_classes, batch, y, rows, first, stride):
        """Each output row's loss, and ``δ_L = (softmax - onehot(y)) / B``: a thread per row, rows ``first,
        first + stride, ...`` (few classes: the products, not these rows, take a step's time)."""
        for i in range(first, batch, stride):
            label = y[rows[i]]
            z = work[logits_at + i * n_classes:logits_at + (i + 1) * n_classes]
            m = z[0]
            for k in range(1, n_classes):
                m = max(m, z[k])
            total = 0.0
            for k in range(n_classes):
                total += math.exp(z[k] - m)
            shift = m + math.log(total)
            work[losses_at + i] = shift - z[label]
            for k in range(n_classes):
                p = math.exp(z[k] - shift)
                work[deltas_at + i * n_classes + k] = ((p - 1.0) if k == label else p) / batch

    @cuda.jit(device=True, inline=True)
    def phase_product(sizes, n_layers, code, l, forward, second, batch, deltas_at, grad_at):
        """The product of layer ``l`` a phase computes, as :func:`kernels.cuda.linear.product_tile` takes it:
        ``(a, b, c, vec, gate, shape, options)``. Forward: ``A_l = g(A_{l-1} W_lᵀ + b_l)``; backward: ``dW_l =
        δ_lᵀ A_{l-1}`` with ``db_l = Σ δ_l`` beside it, or, ``second``, ``δ_{l-1} = (δ_l W_l) · g'(A_{l-1})``."""
        n_in = sizes[l - 1]
        n_out = sizes[l]
        w_at, b_at, units = layer_place(sizes, l)
        acts_at = batch * units  # A_l in work; A_{l-1} is n_in units per sample before it
        # The inputs of layer l: the batch's rows of X, or the previous layer's activations.
        inputs = address(FROM_X, 0, 0) if l == 1 else address(FROM_Q, acts_at - batch * n_in, n_in)
        shape = product_shape_device(n_in, n_out, batch, forward, second)
        if forward:
            return (inputs, address(FROM_P, w_at, n_in), address(FROM_Q, acts_at, n_out), address(FROM_P, b_at, 0),
                    inputs, shape, (0, 1, int(l == 1), BIAS_ACTIVATION, IDENTITY if l == n_layers else code))
        deltas = address(FROM_Q, deltas_at + acts_at, n_out)
        if not second:
            return (deltas, inputs, address(FROM_Q, grad_at + w_at, n_in), address(FROM_Q, grad_at + b_at, 0),
                    inputs, shape, (1, 0, int(l == 1), ROW_SUM, IDENTITY))
        return (deltas, address(FROM_P, w_at, n_in), address(FROM_Q, deltas_at + acts_at - batch * n_in, n_in),
                address(FROM_Q, grad_at + b_at, 0), inputs, shape, (0, 0, 0, ACTIVATION_GRADIENT, code))

    @cuda.jit(device=True, inline=True)
    def describe(descriptors, which, sizes, n_layers, code, l, forward, batch, deltas_at, grad_at):
        """Row ``which`` of the phase's descriptors (see the field offsets above): the product's operands,
        shape and options, its splits of K and their depth, its pieces, and where its partials start in the
        scratch (the second product's after the first's). No product (a forward phase's second, the first
        layer's δ): no pieces."""
        second = which == 1
        if second and (forward or l == 1):
            descriptors[which, PIECES] = 0
            descriptors[which, SPLITS] = 1
            return
        a, b, c, vec, gate, shape, options = phase_product(sizes, n_layers, code, l, forward, second, batch,
                                                           deltas_at, grad_at)
        depth = split_depth(shape[0], shape[1], shape[2])
        splits = (shape[2] + depth - 1) // depth
        parts = 0
        if second:
            parts = partials_size_device(descriptors[0, SHAPE], descriptors[0, SHAPE + 1], descriptors[0, SPLITS])
        descriptors[which, SPLITS] = splits
        descriptors[which, DEPTH] = depth
        descriptors[which, PIECES] = tile_count_device(shape[0], shape[1]) * splits
        descriptors[which, PARTS] = parts
        for f in range(3):
            descriptors[which, A + f] = a[f]
            descriptors[which, B + f] = b[f]
            descriptors[which, C + f] = c[f]
            descriptors[which, VEC + f] = vec[f]
            descriptors[which, GATE + f] = gate[f]
            descriptors[which, SHAPE + f] = shape[f]
        for f in range(5):
            descriptors[which, OPTIONS + f] = options[f]

    @cuda.jit(device=True, inline=True)
    def field(descriptors, which, at):
        """The address (or shape) at ``at`` in descriptor ``which``."""
        return descriptors[which, at], descriptors[which, at + 1], descriptors[which, at + 2]

    @cuda.jit(device=True, inline=True)
    def options_of(descriptors, which, epilogue):
        """The product's options with ``epilogue`` in place of its own."""
        return (descriptors[which, OPTIONS], descriptors[which, OPTIONS + 1], descriptors[which, OPTIONS + 2],
                epilogue, descriptors[which, OPTIONS + 4])

    @kernel(TILE_BLOCK, cooperative=True)
    def minibatch_epoch_kernel(theta, velocity, sizes, code, X, y, order, batch_size, hyper, work, scratch, loss_sum):
        """Minibatch SGD over ``order``, ``batch_size`` consecutive samples a step; see the module.

        The products address their operands in ``X`` (the data, its rows taken through
        the step's samples), ``theta`` and ``work`` (laid out as
        :func:`kernels.layout.workspace_views` for the step's batch: activations,
        deltas, the gradient, then the rows' losses); a split product's partials go
        to ``scratch`` (:func:`scratch_size` values).
        """
        sA = cuda.shared.array((2, TILE_K, TILE_PAD), theta.dtype)
        sB = cuda.shared.array((2, TILE_K, TILE_PAD), theta.dtype)
        buffer = cuda.shared.array(TILE_BLOCK, np.float64)
        descriptors = cuda.shared.array((2, FIELDS), np.int64)
        tid = cuda.threadIdx.y * TILE_THREADS + cuda.threadIdx.x
        block = cuda.blockIdx.x
        blocks = cuda.gridDim.x
        n_layers = sizes.shape[0] - 1
        n_classes = sizes[n_layers]
        n_params = 0
        per_sample = 0  # activations of one sample
        for l in range(1, n_layers + 1):
            n_params += sizes[l] * sizes[l - 1] + sizes[l]
            per_sample += sizes[l]
        total = 0.0
        n = order.shape[0]
        for start in range(0, n, batch_size):
            rows = order[start:min(start + batch_size, n)]
            batch = rows.shape[0]
            deltas_at = batch * per_sample
            grad_at = 2 * batch * per_sample
            losses_at = grad_at + n_params
            # Phases 0 .. L-1 forward, L the output rows, L+1 .. 2L backward; one product call site for all.
            for phase in range(2 * n_layers + 1):
                if phase == n_layers:
                    _, _, units = layer_place(sizes, n_layers)
                    output_rows(work, batch * units, deltas_at + batch * units, losses_at, n_classes, batch, y, rows,
                                block * TILE_BLOCK + tid, blocks * TILE_BLOCK)
                    grid_barrier()
                    if block == 0:  # this step's loss, in a fixed order, while the other blocks start backward
                        acc = 0.0
                        for i in range(tid, batch, TILE_BLOCK):
                            acc += work[losses_at + i]
                        acc = group_sum(buffer, tid, acc, TILE_BLOCK)
                        if tid == 0:
                            total += acc
                    continue
                forward = phase < n_layers
                l = phase + 1 if forward else 2 * n_layers + 1 - phase  # the layer: 1..L, then L..1
                # One product forward; backward dW_l, and δ_{l-1} below the first layer. Each is cut into pieces
                # (tile, split of K); the pieces of both are shared out among the blocks. Thread 0 describes the
                # products in shared memory and every thread reads what a piece needs from there: values
                # computed before the loop and kept would cost registers the product has none to spare of.
                cuda.syncthreads()  # the last phase's readers are done with the descriptors
                if tid == 0:
                    for which in range(2):
                        describe(descriptors, which, sizes, n_layers, code, l, forward, batch, deltas_at, grad_at)
                cuda.syncthreads()
                piece = block
                while piece < descriptors[0, PIECES] + descriptors[1, PIECES]:
                    which = 1 if piece >= descriptors[0, PIECES] else 0
                    index = piece - which * descriptors[0, PIECES]
                    splits = descriptors[which, SPLITS]
                    split = index % splits
                    depth = descriptors[which, DEPTH]
                    k_begin = split * depth
                    k_end = min(descriptors[which, SHAPE + 2], k_begin + depth)
                    c = field(descriptors, which, C)
                    vec = field(descriptors, which, VEC)
                    epilogue = descriptors[which, OPTIONS + 3]
                    if splits > 1:  # a partial tile into the scratch, (splits, M, N), its row sums after them,
                        m = descriptors[which, SHAPE]  # (splits, M); the epilogue is left to finish_split
                        n_cols = descriptors[which, SHAPE + 1]
                        parts = descriptors[which, PARTS]
                        c = (FROM_R, parts + split * m * n_cols, n_cols)
                        vec = (FROM_R, parts + splits * m * n_cols + split * m, 0)
                        epilogue = ROW_SUM if epilogue == ROW_SUM else PLAIN
                    product_tile(X, theta, work, scratch, rows, field(descriptors, which, A),
                                 field(descriptors, which, B), c, vec, field(descriptors, which, GATE),
                                 field(descriptors, which, SHAPE), options_of(descriptors, which, epilogue),
                                 index // splits, (k_begin, k_end), sA, sB)
                    piece += blocks
                if descriptors[0, SPLITS] > 1 or descriptors[1, SPLITS] > 1:
                    grid_barrier()  # every partial written
                    for which in range(2):
                        if descriptors[which, SPLITS] > 1:
                            finish_split(X, theta, work, scratch, rows, field(descriptors, which, C),
                                         field(descriptors, which, VEC), field(descriptors, which, GATE),
                                         field(descriptors, which, SHAPE),
                                         options_of(descriptors, which, descriptors[which, OPTIONS + 3]),
                                         descriptors[which, PARTS], block * TILE_BLOCK + tid, blocks * TILE_BLOCK)
                grid_barrier()
            # 4. The optimizer step of every parameter.
            update_parameters(theta, velocity, work[grad_at:grad_at + n_params], sizes, n_layers, hyper,
                              block * TILE_BLOCK + tid, blocks * TILE_BLOCK)
            grid_barrier()
        if block == 0 and tid == 0:
            loss_sum[0] += total


_DEVICE_SIZES = {}


def device_sizes(sizes):
    """``sizes`` as an int64 device array, copied once per architecture and kept.

    The fused kernel takes the sizes as an array, not a tuple: with a tuple its
    per-layer loops have compile-time trip counts, get unrolled, and the kernel
    needed more registers the more layers it had (it spilled at three hidden
    layers in float64); with an array one compiled kernel serves every depth.
    """
    if sizes not in _DEVICE_SIZES:
        _DEVICE_SIZES[sizes] = cuda.to_device(np.array(sizes, np.int64))
    return _DEVICE_SIZES[sizes]


def scratch_size(sizes, batch):
    """Values a step of ``batch`` samples needs for its split products' partials (the most any phase needs:
    see :func:`kernels.cuda.linear.split_depth`)."""
    most = 0
    for l, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        most = max(most, split_scratch(*product_shape(n_in, n_out, batch, True, False)))
        below = split_scratch(*product_shape(n_in, n_out, batch, False, True)) if l > 0 else 0  # δ_{l-1}
        most = max(most, split_scratch(*product_shape(n_in, n_out, batch, False, False)) + below)  # dW_l, db_l
    return most


_SCRATCH = {}


def scratch_for(dtype, size):
    """A device array of at least ``size`` values of ``dtype`` for the split products' partials: allocated at
    a fit's first epoch call and kept (one per dtype, grown when a larger one is needed), never copied."""
    dtype = np.dtype(dtype)
    if dtype not in _SCRATCH or _SCRATCH[dtype].shape[0] < size:
        _SCRATCH[dtype] = cuda.device_array(max(size, 1), dtype)
    return _SCRATCH[dtype]


def minibatch_epoch(theta, velocity, sizes, activation, X, y, order, batch_size, hyper, work, loss_sum):
    """Minibatch SGD over ``order``, one step per ``batch_size`` consecutive samples (the last may be short):
    one cooperative launch; see the module and the reference.

    Parameters
    ----------
    work : device array, shape (>= layout.workspace_size(sizes, batch_size),)
    """
    sizes = host_sizes(sizes)
    layout.batch_starts(order.shape[0], batch_size)  # checks batch_size as the other backends do
    n = order.shape[0]
    if n == 0:
        return
    batch_size = min(batch_size, n)
    if work.shape[0] < layout.workspace_size(sizes, batch_size):
        raise ValueError(f"work holds {work.shape[0]} values, a step of {batch_size} samples needs "
                         f"{layout.workspace_size(sizes, batch_size)}")
    scratch = scratch_for(theta.dtype, max(scratch_size(sizes, batch) for batch in {batch_size, n % batch_size or
                                                                                     batch_size}))
    args = (theta, velocity, device_sizes(sizes), activation, X, y, order, batch_size, tuple(float(h) for h in hyper),
            work, scratch, loss_sum)
    widest_product = max(max(tile_count(batch_size, n_out), tile_count(n_out, n_in))
                         for n_in, n_out in zip(sizes, sizes[1:]))
    blocks = min(max(widest_product, SPLIT_ITEMS), co_resident_blocks(minibatch_epoch_kernel, TILE_BLOCK, args))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Grid size .* will likely result in GPU under-utilization")
        launch(minibatch_epoch_kernel, blocks, (TILE_THREADS, TILE_THREADS), *args)


def minibatch_step(theta, velocity, sizes, activation, X, y, batch, hyper, work, loss_sum):
    """One SGD step on the mean loss of the samples ``batch``: :func:`minibatch_epoch` over that one batch."""
    minibatch_epoch(theta, velocity, sizes, activation, X, y, batch, max(batch.shape[0], 1), hyper, work, loss_sum)
