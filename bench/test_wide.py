"""Wide nets, where the products take the time: one epoch, float32, throughput in GFLOP/s.

On the CPU: 784-1024-1024-10 on 10,000 samples at batch 256 and 1024. On a GPU:
784-1024-1024-10 on 60,000 samples at batch 1024 and 8192, and 784-4096-4096-10
at batch 8192. Each entry trains from the same weights, in the same order, at the
same learning rate, and is checked against the NumPy reference before it is
timed. The multiply-adds of an epoch are counted as the products do them:
forward, weight gradients, and input gradients below the first layer.
"""

import numpy as np
import pytest

from bench.conftest import (
    MNIST_DIR,
    Paired,
    check_against_reference,
    library_backends,
    make_runner,
    reference_epoch,
    require_backend,
    time_entry,
)
from bench.peers import peer_names, torch_devices
from bench.sweeps import square_operands
from kernels import layout
from kernels.cpu.minibatch_blas import step_multiply_adds
from model import MLP, load_mnist

CPU_CASES = [([784, 1024, 1024, 10], 10_000, 256), ([784, 1024, 1024, 10], 10_000, 1024)]
GPU_CASES = [([784, 1024, 1024, 10], 60_000, 1024), ([784, 1024, 1024, 10], 60_000, 8192),
             ([784, 4096, 4096, 10], 60_000, 8192)]
CPU_ENTRIES = ["numpy", "cpu", *peer_names(("cpu",))]
GPU_ENTRIES = ["cuda", *peer_names(("cuda",), ("torch-eager", "torch-hand"))]
#: Square products for NumPy's sgemm rate on this machine, measured in the same run as the wide nets.
SGEMM_SIZES = [1024, 2048]
#: The square product timed before every round of a CPU wide net (:class:`bench.conftest.Paired`): the report's
#: "paired rounds" column is the entry's rate as a share of it, round by round.
PAIRED_SGEMM_SIZE = 2048
#: Rounds of a wide-net entry: ~1 s each on two cores, plus the paired product and the BLAS threads' settling.
WIDE_ROUNDS = 5


def epoch_flops(sizes, n_samples):
    """Floating-point operations of one epoch: 2 per multiply-add of the products (forward, dW, and dX below
    the first layer), counted as the cpu backend counts a step's (:func:`step_multiply_adds`)."""
    return 2 * step_multiply_adds(sizes, n_samples)


@pytest.fixture(scope="module")
def wide_data():
    """60,000 MNIST training images (synthetic ones of the same shape when absent), and an order."""
    if MNIST_DIR.exists():
        X, y = load_mnist(MNIST_DIR, "train")
    else:
        rng = np.random.default_rng(3)
        X = (rng.random((60_000, 784)) * 0.25).astype(np.float32)
        y = rng.integers(0, 10, 60_000)
    return layout.aligned(X), y, np.random.default_rng(4).permutation(60_000).astype(np.int64)


@pytest.fixture(scope="module")
def paired_sgemm():
    """NumPy's ``2048³`` float32 product as a :class:`bench.conftest.Paired` run."""
    A, B, C = square_operands(PAIRED_SGEMM_SIZE)
    return Paired(f"numpy sgemm {PAIRED_SGEMM_SIZE}³", lambda: np.matmul(A, B, out=C),
                  flops=2 * PAIRED_SGEMM_SIZE ** 3, settle=True)


def run_wide(benchmark, wide_data, backend, sizes, n_samples, batch_size, device, paired=None):
    require_backend(backend)
    X, y, order = wide_data
    X, y, order = X[:n_samples], y[:n_samples], order[order < n_samples]
    params = MLP(sizes, backend="numpy", seed=0).params
    runner = make_runner(backend, params, X, y, order)
    check_against_reference(runner, params, X, y, order, batch_size, 2 * batch_size)
    expected = reference_epoch(params, X, y, order, batch_size, ("wide", tuple(sizes), n_samples, batch_size))
    benchmark.group = f"wide {'-'.join(map(str, sizes))} {device} {n_samples // 1000}k batch {batch_size}"
    time_entry(benchmark, runner, backend, batch_size, WIDE_ROUNDS if paired else 3, expected, params, (X, y),
               paired=paired, flops=epoch_flops(sizes, n_samples), unit="GFLOP/s")


@pytest.mark.parametrize("backend", CPU_ENTRIES)
@pytest.mark.parametrize("sizes, n_samples, batch_size", CPU_CASES, ids=[f"batch{b}" for _, _, b in CPU_CASES])
def test_wide_cpu(benchmark, wide_data, paired_sgemm, backend, sizes, n_samples, batch_size):
    run_wide(benchmark, wide_data, backend, sizes, n_samples, batch_size, "cpu", paired_sgemm)


@pytest.mark.parametrize("backend", GPU_ENTRIES)
@pytest.mark.parametrize("sizes, n_samples, batch_size", GPU_CASES,
                         ids=[f"{s[1]}-batch{b}" for s, _, b in GPU_CASES])
def test_wide_gpu(benchmark, wide_data, backend, sizes, n_samples, batch_size):
    if "cuda" not in library_backends() or "cuda" not in torch_devices():
        pytest.skip("no GPU with numba-cuda and torch")
    run_wide(benchmark, wide_data, backend, sizes, n_samples, batch_size, "gpu")


@pytest.mark.parametrize("size", SGEMM_SIZES)
def test_numpy_sgemm(benchmark, size):
    """NumPy's float32 matrix product (its BLAS, all its threads): the machine's product rate, for the ratio
    ``bench/report.py`` prints beside the wide nets' rates."""
    A, B, C = square_operands(size)
    np.matmul(A, B, out=C)
    np.testing.assert_allclose(C[:4, :4], A[:4].astype(np.float64) @ B[:, :4], rtol=1e-3, atol=1e-3)
    benchmark.group = "sgemm numpy"
    benchmark.extra_info.update(flops=2 * size ** 3, unit="GFLOP/s", label=f"numpy sgemm {size}³")
    benchmark.pedantic(np.matmul, args=(A, B), kwargs={"out": C}, rounds=7, iterations=1)
