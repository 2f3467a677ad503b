"""The arrays the CPU kernels read start on a cache line (``kernels.layout.ALIGNMENT``): the model's
weights, velocity, work buffers and converted data, and the kernels' own transposed weights; data already
in the model's dtype is read where it lies."""

import numpy as np
import pytest

from kernels import layout
from model import MLP, load_digits
from tests.conftest import SIMULATOR

pytestmark = pytest.mark.skipif(SIMULATOR, reason="host arrays: run in the normal (non-simulated) process")


def misaligned(array):
    """A C-contiguous copy of ``array`` that starts 16 bytes into a cache line, as NumPy often places them."""
    from bench.sweeps import placed

    return placed(np.asarray(array), 16)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (13, 5), (3, 4, 5)])
def test_aligned_allocations_start_on_a_cache_line(shape, dtype):
    values = np.arange(np.prod(shape)).reshape(shape).astype(dtype)
    for array in (layout.aligned_empty(shape, dtype), layout.aligned_zeros(shape, dtype),
                  layout.aligned_copy(values), layout.aligned(misaligned(values))):
        assert array.shape == shape and array.dtype == dtype
        assert layout.is_aligned(array)
    assert not layout.aligned_zeros(shape, dtype).any()
    np.testing.assert_array_equal(layout.aligned_copy(values), values)
    np.testing.assert_array_equal(layout.aligned(misaligned(values)), values)


def test_aligned_copies_only_what_needs_it():
    array = layout.aligned_copy(np.arange(12.0).reshape(3, 4))
    assert layout.aligned(array) is array
    converted = layout.aligned(array, np.float32)
    assert converted.dtype == np.float32 and layout.is_aligned(converted)
    np.testing.assert_array_equal(converted, array)
    transposed = layout.aligned(array.T)  # not C-contiguous: copied
    assert layout.is_aligned(transposed)
    np.testing.assert_array_equal(transposed, array.T)
    assert not layout.is_aligned(misaligned(array))


@pytest.mark.parametrize("batch", [1, 3, 128])
def test_the_gathered_inputs_start_on_a_cache_line(batch):
    sizes = [784, 100, 10]
    work = layout.aligned_zeros(layout.workspace_size(sizes, batch), np.float32)
    acts, deltas, grad, inputs = layout.workspace_views(work, sizes, batch)
    assert layout.is_aligned(inputs) and inputs.shape == (batch, 784)
    assert grad.shape == (layout.param_count(sizes),)
    assert np.shares_memory(work, inputs)
    assert not any(np.shares_memory(inputs, other) for other in (acts, deltas, grad))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cpu_transposed_weights_start_on_a_cache_line(dtype):
    from kernels.cpu.aligned import aligned_transpose

    W = misaligned(np.random.default_rng(0).standard_normal((37, 29)).astype(dtype))
    WT = aligned_transpose(W)
    assert WT.dtype == dtype and layout.is_aligned(WT)
    np.testing.assert_array_equal(WT, W.T)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_the_model_keeps_its_arrays_aligned(backend):
    X, y = load_digits()
    X, y = X[:200], y[:200]
    net = MLP([64, 16, 10], backend=backend, seed=0)
    assert layout.is_aligned(net._theta)
    misaligned_X = misaligned(X.astype(np.float64))  # another dtype than the model's, and misplaced
    net.fit(misaligned_X, y, epochs=1, batch_size=8, momentum=0.5)
    assert layout.is_aligned(net._theta) and layout.is_aligned(net._velocity)
    backend_ = net._backend
    for array in (backend_.to_device(misaligned_X), backend_.zeros((5, 3), np.float32), backend_.copy(misaligned_X)):
        assert layout.is_aligned(array)
    reference = MLP([64, 16, 10], backend=backend, seed=0)
    reference.fit(np.ascontiguousarray(X, np.float64), y, epochs=1, batch_size=8, momentum=0.5)
    for (W, b), (W_ref, b_ref) in zip(net.params, reference.params):  # where the data lies changes nothing
        np.testing.assert_array_equal(W, W_ref)
        np.testing.assert_array_equal(b, b_ref)


@pytest.mark.parametrize("batch_size", [1, 8, 200])
def test_data_of_the_models_dtype_is_read_where_it_lies(batch_size, monkeypatch):
    """The training data, C-contiguous in the model's dtype but 16 bytes into a cache line, is neither copied nor
    moved (the kernels read it in place: no second copy of a large data set) and trains to the same weights, bit for
    bit, as an aligned copy of it, per sample, in minibatches and through the BLAS path's in-place rows."""
    from kernels.cpu import minibatch_blas
    from model._checks import check_features

    if batch_size == 200:  # the whole data set in order, one step: the BLAS path reads it in place
        monkeypatch.setattr(minibatch_blas, "BLAS_MIN_MULTIPLY_ADDS", 1)
    X, y = load_digits()
    X, y = X[:200], y[:200]
    misaligned_X = misaligned(X.astype(np.float32))
    assert not layout.is_aligned(misaligned_X)
    assert check_features("X", misaligned_X, 64, np.dtype(np.float32)) is misaligned_X
    net = MLP([64, 16, 10], backend="cpu", seed=0)
    assert net._backend.data_to_device(misaligned_X) is misaligned_X
    net.fit(misaligned_X, y, epochs=2, batch_size=batch_size, shuffle=batch_size != 200)
    reference = MLP([64, 16, 10], backend="cpu", seed=0)
    reference.fit(layout.aligned_copy(misaligned_X), y, epochs=2, batch_size=batch_size, shuffle=batch_size != 200)
    for (W, b), (W_ref, b_ref) in zip(net.params, reference.params):
        np.testing.assert_array_equal(W, W_ref)
        np.testing.assert_array_equal(b, b_ref)


@pytest.mark.parametrize("sizes", [[784, 128, 10], [64, 16, 10], [5, 7, 3, 2]])
@pytest.mark.parametrize("batch", [1, 3, 16, 129])
def test_the_cpu_kernel_gathers_its_inputs_where_the_layout_puts_them(sizes, batch):
    """The fused minibatch kernel computes the inputs' offset itself (numba cannot call the layout's Python):
    both must round it up alike, or the gathered inputs would overrun the work buffer."""
    from kernels.cpu.minibatch import _step_layout

    work = layout.aligned_zeros(layout.workspace_size(sizes, batch), np.float32)
    assert _step_layout(layout.as_sizes(sizes), work, batch)[5] == layout.inputs_offset(sizes, batch)
