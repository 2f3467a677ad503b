"""The vector-register intrinsics of the CPU kernels (``kernels.cpu.simd``) against NumPy.

Each case places its operands at offsets that are not multiples of a register, on rows whose lengths leave a
remainder, and poisons what a kernel writes, so a lane read or written in the wrong place fails.
"""

import numpy as np
import pytest
from numba import njit

from tests.conftest import SIMULATOR, tolerance

if SIMULATOR:
    pytest.skip("CPU kernels", allow_module_level=True)

from kernels.cpu import network, simd
from kernels.cpu.simd import (
    BLOCK_REGISTERS,
    REGISTER_BITS,
    VECTOR_LISTING,
    block_fma,
    block_lanes,
    block_load,
    block_store,
    block_zeros,
    register_lanes,
)


@njit
def lanes_of(array):
    return block_lanes(array), register_lanes(array)


@njit
def weighted_row_sum(W, rows, coefficients, z, start):
    """``z[start:start + lanes] = Σ_t coefficients[t] W[rows[t], start:start + lanes]``, in one block."""
    total = block_zeros(z)
    for t in range(rows.shape[0]):
        total = block_fma(coefficients[t], block_load(W[rows[t]], start), total)
    block_store(z, start, total)


@njit
def add_scaled(a, start, scale, b, out):
    """``out[start:start + lanes] = a[start:start + lanes] + scale · b[start:start + lanes]``."""
    block_store(out, start, block_fma(scale, block_load(b, start), block_load(a, start)))


def test_lanes_follow_the_registers(dtype):
    block, register = lanes_of(np.zeros(3, dtype))
    assert register == REGISTER_BITS // (8 * dtype.itemsize)
    assert block == BLOCK_REGISTERS * register


def test_block_sum_of_rows(rng, dtype):
    lanes = lanes_of(np.zeros(1, dtype))[0]
    W = rng.standard_normal((11, 3 * lanes + 5)).astype(dtype)
    rows = rng.integers(0, 11, 40)
    coefficients = rng.standard_normal(40).astype(dtype)
    for start in (0, 1, lanes + 3, W.shape[1] - lanes):
        z = np.full(W.shape[1], np.nan, dtype)
        weighted_row_sum(W, rows, coefficients, z, start)
        expected = coefficients.astype(np.float64) @ W[rows, start:start + lanes].astype(np.float64)
        np.testing.assert_allclose(z[start:start + lanes], expected, **tolerance(dtype))
        assert np.isnan(np.delete(z, np.arange(start, start + lanes))).all(), "wrote outside its lanes"


def test_block_fma_of_one_row(rng, dtype):
    lanes = lanes_of(np.zeros(1, dtype))[0]
    a, b = (rng.standard_normal(lanes + 9).astype(dtype) for _ in range(2))
    out = np.full(lanes + 9, np.nan, dtype)
    add_scaled(a, 9, dtype.type(-0.75), b, out)
    np.testing.assert_allclose(out[9:], a[9:] - 0.75 * b[9:], **tolerance(dtype))
    assert np.isnan(out[:9]).all()


@pytest.mark.parametrize("n", [5, 16, 301, 784])
def test_nonzero_union_lists_nan_and_not_negative_zero(rng, dtype, n):
    """Non-zero entries of either row, in order (a register at a time with AVX2 or AVX-512,
    :func:`list_nonzero_lanes`, the last ones one by one); a NaN counts as non-zero, a negative zero as zero."""
    x, x_prev = (np.where(rng.random(n) < 0.2, rng.standard_normal(n), 0.0).astype(dtype) for _ in range(2))
    x[n // 3] = np.nan
    x[n // 2] = -0.0
    for prev in (x, x_prev):
        indices = np.full(n, -1, np.int32)
        count = network.nonzero_union(x, prev, indices)
        np.testing.assert_array_equal(indices[:count], np.flatnonzero((x != 0) | (prev != 0)))


@pytest.mark.parametrize("listing", ["scalar loop", "compressing store", "packing table"])
def test_nonzero_union_every_way(rng, dtype, listing, monkeypatch):
    """``kernels.cpu.network.nonzero_union`` compiled with the loop of scalars and with each way of
    :func:`list_nonzero_lanes` (AVX-512's compressing store, which LLVM emulates on other CPUs, and the packing
    table of narrower registers) lists the same indices, on rows from all zeros to all non-zero."""
    lanes = lanes_of(np.zeros(1, dtype))[1]
    if listing == "packing table" and lanes > 8:
        pytest.skip(f"the table has a row per mask: 2**{lanes} rows are not built")
    monkeypatch.setattr(network, "VECTOR_LISTING", listing != "scalar loop")
    monkeypatch.setattr(simd, "COMPRESS_STORE", listing == "compressing store")  # read as the intrinsic compiles
    union = njit(network.nonzero_union.py_func)  # numba reads the module's globals when it compiles
    for n in (7, 8, 9, 100, 784):
        for density in (0.0, 0.3, 0.9, 1.0):
            x, x_prev = (np.where(rng.random(n) < density, rng.random(n) + 0.5, 0.0).astype(dtype) for _ in range(2))
            indices = np.full(n, -1, np.int32)
            count = union(x, x_prev, indices)
            np.testing.assert_array_equal(indices[:count], np.flatnonzero((x != 0) | (x_prev != 0)))


def test_packing_table_rows_list_each_masks_lanes():
    """Row ``m`` of the table that packs a register's listed lanes without AVX-512 holds the positions of ``m``'s
    set bits, in order."""
    from llvmlite import ir

    module = ir.Module()
    for lanes in (2, 4, 8):
        table = simd._packing_table(module, lanes)
        assert simd._packing_table(module, lanes) is table, "one table per module and width"
        rows = table.initializer.constant
        assert len(rows) == 2 ** lanes
        for mask in (0, 1, 2 ** lanes - 1, 0b10 % 2 ** lanes, 0b101 % 2 ** lanes):
            positions = [lane for lane in range(lanes) if mask >> lane & 1]
            assert [c.constant for c in rows[mask].constant][:len(positions)] == positions


def test_wrong_operands_fail_to_compile():
    from numba.core.errors import TypingError

    with pytest.raises(TypingError, match="expected a C-contiguous 1-D float array"):
        add_scaled(np.zeros(64, np.int64), 0, 1.0, np.zeros(64, np.int64), np.zeros(64, np.int64))
    if VECTOR_LISTING:
        with pytest.raises(TypingError, match="indices must be a C-contiguous 1-D int32 array"):
            njit(network.nonzero_union.py_func)(np.zeros(64), np.zeros(64), np.zeros(64, np.int64))
