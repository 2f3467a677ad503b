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
    ROW_SUM,
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
from kernels.cuda.linear import FROM_P, FROM_Q, FROM_X, product_tile, tile_count, tile_count_device
from kernels.cuda.linear import operand_device as address
from kernels.cuda.network import host_sizes, layer_place
from kernels.cuda.sgd import update_parameters

if cuda is not None:

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

    @kernel(TILE_BLOCK, cooperative=True)
    def minibatch_epoch_kernel(theta, velocity, sizes, code, X, y, order, batch_size, hyper, work, loss_sum):
        """Minibatch SGD over ``order``, ``batch_size`` consecutive samples a step; see the module.

        The products address their operands in ``X`` (the data, its rows taken through
        the step's samples), ``theta`` and ``work`` (laid out as
        :func:`kernels.layout.workspace_views` for the step's batch: activations,
        deltas, the gradient, then the rows' losses).
        """
        sA = cuda.shared.array((2, TILE_K, TILE_PAD), theta.dtype)
        sB = cuda.shared.array((2, TILE_K, TILE_PAD), theta.dtype)
        buffer = cuda.shared.array(TILE_BLOCK, np.float64)
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
                n_in = sizes[l - 1]
                n_out = sizes[l]
                w_at, b_at, units = layer_place(sizes, l)
                acts_at = batch * units  # A_l in work; A_{l-1} is n_in units per sample before it
                # The inputs of layer l: the batch's rows of X, or the previous layer's activations.
                inputs = address(FROM_X, 0, 0) if l == 1 else address(FROM_Q, acts_at - batch * n_in, n_in)
                first_tiles = tile_count_device(batch, n_out) if forward else tile_count_device(n_out, n_in)
                second_tiles = 0 if forward or l == 1 else tile_count_device(batch, n_in)
                for tile in range(block, first_tiles + second_tiles, blocks):
                    if forward:  # A_l = g(A_{l-1} W_lᵀ + b_l)
                        a, b, c = inputs, address(FROM_P, w_at, n_in), address(FROM_Q, acts_at, n_out)
                        vec = address(FROM_P, b_at, 0)
                        shape = (batch, n_out, n_in)
                        options = (0, 1, int(l == 1), BIAS_ACTIVATION, IDENTITY if l == n_layers else code)
                        index = tile
                    elif tile < first_tiles:  # dW_l = δ_lᵀ A_{l-1}, db_l = Σ δ_l
                        a, b, c = (address(FROM_Q, deltas_at + acts_at, n_out), inputs,
                                   address(FROM_Q, grad_at + w_at, n_in))
                        vec = address(FROM_Q, grad_at + b_at, 0)
                        shape = (n_out, n_in, batch)
                        options = (1, 0, int(l == 1), ROW_SUM, IDENTITY)
                        index = tile
                    else:  # δ_{l-1} = (δ_l W_l) · g'(A_{l-1})
                        a, b, c = (address(FROM_Q, deltas_at + acts_at, n_out), address(FROM_P, w_at, n_in),
                                   address(FROM_Q, deltas_at + acts_at - batch * n_in, n_in))
                        vec = address(FROM_Q, grad_at + b_at, 0)
                        shape = (batch, n_in, n_out)
                        options = (0, 0, 0, ACTIVATION_GRADIENT, code)
                        index = tile - first_tiles
                    product_tile(X, theta, work, theta, rows, a, b, c, vec, inputs, shape, options, index, sA, sB)
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


def minibatch_epoch(theta, velocity, sizes, activation, X, y, order, batch_size, hyper, work, loss_sum):
    """Minibatch SGD over ``order``, one step per ``batch_size`` consecutive samples (the last may be short):
    one cooperative launch; see the module and the reference.

    Parameters
    ----------
    work : device array, shape (>= layout.workspace_size(sizes, batch_size),)
    """
    sizes = host_sizes(sizes)
    layout.batch_starts(order.shape[0], batch_size)  # checks batch_size as the other backends do
    if order.shape[0] == 0:
        return
    batch_size = min(batch_size, order.shape[0])
    if work.shape[0] < layout.workspace_size(sizes, batch_size):
        raise ValueError(f"work holds {work.shape[0]} values, a step of {batch_size} samples needs "
                         f"{layout.workspace_size(sizes, batch_size)}")
    args = (theta, velocity, device_sizes(sizes), activation, X, y, order, batch_size, tuple(float(h) for h in hyper),
            work, loss_sum)
    widest_product = max(max(tile_count(batch_size, n), tile_count(n, n_in)) for n_in, n in zip(sizes, sizes[1:]))
    blocks = min(widest_product, co_resident_blocks(minibatch_epoch_kernel, TILE_BLOCK, args))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Grid size .* will likely result in GPU under-utilization")
        launch(minibatch_epoch_kernel, blocks, (TILE_THREADS, TILE_THREADS), *args)


def minibatch_step(theta, velocity, sizes, activation, X, y, batch, hyper, work, loss_sum):
    """One SGD step on the mean loss of the samples ``batch``: :func:`minibatch_epoch` over that one batch."""
    minibatch_epoch(theta, velocity, sizes, activation, X, y, batch, max(batch.shape[0], 1), hyper, work, loss_sum)
