"""Where each weight, bias and activation lives in the flat buffers.

A network with layer sizes ``sizes = [n_0, n_1, ..., n_L]`` has ``L`` dense
layers. All its parameters live in one flat vector ``theta`` so that the SGD
update is one pass over one array (and one device allocation on a GPU)::

    theta = [ W_1 (n_1, n_0) | b_1 (n_1,) | W_2 (n_2, n_1) | b_2 (n_2,) | ... ]

Per-batch activations (and their gradients, the "deltas") use the same idea::

    acts  = [ A_1 (B, n_1) | A_2 (B, n_2) | ... | A_L (B, n_L) = logits ]

The fused ops (``minibatch_step``, ``sgd_epoch``, ``evaluate``) take one work
buffer laid out as ``[acts | deltas | grad | inputs]`` (``inputs``: room for a
gathered ``(B, n_0)`` batch); :func:`workspace_size` gives its length.
This module only does index arithmetic; it holds no numerics.
"""

import numpy as np


def as_sizes(sizes):
    """Layer sizes as the ``int64`` C-contiguous array the kernels expect."""
    return np.ascontiguousarray(sizes, dtype=np.int64)


def param_count(sizes):
    """Number of scalars in ``theta`` for layer sizes ``sizes``."""
    return int(sum(int(n_out) * int(n_in) + int(n_out) for n_in, n_out in zip(sizes[:-1], sizes[1:])))


def param_offsets(sizes):
    """Offsets of every ``W`` and ``b`` in ``theta``.

    Returns
    -------
    list of (int, int)
        ``(w_offset, b_offset)`` for each layer.
    """
    offsets = []
    offset = 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        n_in, n_out = int(n_in), int(n_out)
        offsets.append((offset, offset + n_out * n_in))
        offset += n_out * n_in + n_out
    return offsets


def param_views(theta, sizes):
    """``[(W, b), ...]`` views into ``theta``; ``W`` is ``(n_out, n_in)``.

    Works for NumPy arrays and numba device arrays alike.
    """
    views = []
    for (w_off, b_off), n_in, n_out in zip(param_offsets(sizes), sizes[:-1], sizes[1:]):
        n_in, n_out = int(n_in), int(n_out)
        views.append((theta[w_off:b_off].reshape(n_out, n_in), theta[b_off:b_off + n_out]))
    return views


def activation_count(sizes, batch):
    """Length of the ``acts`` (or ``deltas``) buffer for a batch of ``batch`` samples."""
    return int(batch) * int(sum(int(n) for n in sizes[1:]))


def activation_views(acts, sizes, batch):
    """``[A_1, ..., A_L]`` views into ``acts``; ``A_l`` is ``(batch, n_l)``."""
    views = []
    offset = 0
    for n in sizes[1:]:
        n = int(n)
        views.append(acts[offset:offset + batch * n].reshape(batch, n))
        offset += batch * n
    return views


def workspace_size(sizes, batch):
    """Length of the work buffer ``[acts | deltas | grad | inputs]`` for ``batch`` samples."""
    return 2 * activation_count(sizes, batch) + param_count(sizes) + int(batch) * int(sizes[0])


def workspace_views(work, sizes, batch):
    """``(acts, deltas, grad, inputs)`` views into a work buffer; ``inputs`` is ``(batch, n_0)``.

    Works for NumPy arrays and numba device arrays alike.
    """
    n_acts = activation_count(sizes, batch)
    n_params = param_count(sizes)
    n_inputs = int(batch) * int(sizes[0])
    start = 2 * n_acts + n_params
    return (work[:n_acts], work[n_acts:2 * n_acts], work[2 * n_acts:start],
            work[start:start + n_inputs].reshape(int(batch), int(sizes[0])))


def batch_starts(n, batch_size):
    """Where each batch of ``batch_size`` consecutive samples starts among ``n`` (the last may be short).

    Raises
    ------
    ValueError
        If ``batch_size`` < 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return range(0, n, batch_size)
