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
This module only does index arithmetic and allocation; it holds no numerics.

Host arrays the kernels read in their inner loops start on a cache line
(:data:`ALIGNMENT` bytes, :func:`aligned`): a 512-bit load or store that straddles
two lines costs two. NumPy starts its large arrays 16 bytes into a line. On
this project's machine (``bench/sweeps.py --only alignment``, one thread), the
fused kernel's sparse first layer took 0.68-0.73 of the time for its product
and 0.80-0.82 for its update with every array aligned.
"""

import numpy as np

#: Bytes at which :func:`aligned` arrays start: a cache line, and one 512-bit vector.
ALIGNMENT = 64


def is_aligned(array):
    """Whether ``array`` is C-contiguous and starts at a multiple of :data:`ALIGNMENT` bytes (an empty
    array, which holds nothing to read, always does)."""
    return bool(array.flags.c_contiguous) and (array.size == 0 or array.ctypes.data % ALIGNMENT == 0)


def aligned_empty(shape, dtype):
    """An uninitialised C-contiguous array whose data starts at a multiple of :data:`ALIGNMENT` bytes."""
    dtype = np.dtype(dtype)
    n_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buffer = np.empty(n_bytes + ALIGNMENT, np.uint8)
    start = -buffer.ctypes.data % ALIGNMENT
    return buffer[start:start + n_bytes].view(dtype).reshape(shape)


def aligned_zeros(shape, dtype):
    """:func:`aligned_empty`, filled with zeros."""
    array = aligned_empty(shape, dtype)
    array[...] = 0
    return array


def aligned_copy(array, dtype=None):
    """A C-contiguous, :data:`ALIGNMENT`-byte-aligned copy of ``array``, in ``dtype`` (its own by default)."""
    array = np.asarray(array)
    copy = aligned_empty(array.shape, array.dtype if dtype is None else dtype)
    copy[...] = array
    return copy


def aligned(array, dtype=None):
    """``array`` as a C-contiguous, :data:`ALIGNMENT`-byte-aligned array of ``dtype`` (its own by default):
    the array itself when it already is one, else :func:`aligned_copy`."""
    array = np.asarray(array)
    if (dtype is None or array.dtype == np.dtype(dtype)) and is_aligned(array):
        return array
    return aligned_copy(array, dtype)


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


def inputs_offset(sizes, batch):
    """Where the gathered inputs start in the work buffer: after ``[acts | deltas | grad]``, rounded up to a
    multiple of :data:`ALIGNMENT` bytes of float32 (so that, in an aligned buffer, they start on a line)."""
    end = 2 * activation_count(sizes, batch) + param_count(sizes)
    step = ALIGNMENT // 4
    return -(-end // step) * step


def workspace_size(sizes, batch):
    """Length of the work buffer ``[acts | deltas | grad | inputs]`` for ``batch`` samples."""
    return inputs_offset(sizes, batch) + int(batch) * int(sizes[0])


def workspace_views(work, sizes, batch):
    """``(acts, deltas, grad, inputs)`` views into a work buffer; ``inputs`` is ``(batch, n_0)``.

    Works for NumPy arrays and numba device arrays alike.
    """
    n_acts = activation_count(sizes, batch)
    n_params = param_count(sizes)
    start = inputs_offset(sizes, batch)
    n_inputs = int(batch) * int(sizes[0])
    return (work[:n_acts], work[n_acts:2 * n_acts], work[2 * n_acts:2 * n_acts + n_params],
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
