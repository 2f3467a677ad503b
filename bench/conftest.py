"""Shared workloads of the benchmarks: data, initial weights, sample order, and the runners.

Training workloads are 784-128-10, float32, 10,000 samples: real MNIST from
``../shared/data/mnist`` when present, else synthetic data of the same shape.
Every runner starts each timed round from the same initial weights, visits the
samples in the same order with the same learning rate, and is checked against
the NumPy reference before it is timed.
"""

import os
import pathlib
import time

import numpy as np
import pytest

from bench.peers import TorchMLP, torch_devices
from kernels import layout
from kernels.optimizer import hyper
from model import MLP, load_mnist
from model.backends import get_backend

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
MNIST_DIR = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
SIZES = [784, 128, 10]
N_SAMPLES = 10_000
LR = 0.01


def gpu_present():
    from kernels import cuda as cuda_ops

    return cuda_ops.is_available()


def library_backends():
    """numba-mlp backends to compare: numpy and cpu, cuda on a real (not simulated) GPU."""
    return ["numpy", "cpu"] + (["cuda"] if gpu_present() else [])


def all_backends():
    return library_backends() + [f"torch-{device}" for device in torch_devices()]


def synthetic_dense(seed=0):
    """Dense inputs in [0, 0.25) (MNIST's mean intensity is 0.13) labelled by a random linear teacher."""
    rng = np.random.default_rng(seed)
    X = (rng.random((N_SAMPLES, SIZES[0])) * 0.25).astype(np.float32)
    y = (X @ rng.standard_normal((SIZES[0], SIZES[-1]))).argmax(axis=1).astype(np.int64)
    return X, y


@pytest.fixture(scope="session")
def datasets():
    """``{"mnist": (X, y), "dense": (X, y)}``; "mnist" is synthetic when the real files are absent."""
    if MNIST_DIR.exists():
        X, y = load_mnist(MNIST_DIR, "train")
        mnist = (np.ascontiguousarray(X[:N_SAMPLES]), y[:N_SAMPLES])
    else:
        mnist = synthetic_dense(1)
    return {"mnist": mnist, "dense": synthetic_dense(0)}


@pytest.fixture(scope="session")
def initial_params():
    return MLP(SIZES, backend="numpy", seed=0).params


@pytest.fixture(scope="session")
def order():
    return np.random.default_rng(1).permutation(N_SAMPLES).astype(np.int64)


def sizes_of(params):
    """Layer sizes of ``[(W, b), ...]``."""
    return [params[0][0].shape[1]] + [W.shape[0] for W, _ in params]


class LibraryRunner:
    """An ``MLP`` on one backend with its data already on the device, reset before each round."""

    def __init__(self, backend, params, X, y, order):
        self.sizes = sizes_of(params)
        self.net = MLP(self.sizes, backend=backend, seed=0)
        self.net.set_params(params)
        self.backend = self.net._backend
        self.X, self.y, self.order = (self.backend.to_device(a) for a in (X, y, order))
        self.start = self.backend.copy(self.net._theta)
        self.loss_sum = self.backend.zeros(1, np.float64)
        self.work = None

    def reset(self):
        self.backend.assign(self.net._theta, self.start)
        self.backend.synchronize()

    def epoch(self, batch_size, samples=None):
        size = layout.workspace_size(self.sizes, batch_size)
        if self.work is None or self.work.shape[0] < size:
            self.work = self.backend.zeros(size, np.float32)
        order = self.order if samples is None else self.order[:samples]
        self.net._epoch(self.X, self.y, order, hyper(LR), batch_size, self.work, self.loss_sum)
        self.backend.synchronize()

    def params(self):
        return self.net.params


class PeerRunner:
    """torch on one device, its data already there, reset before each round."""

    def __init__(self, device, params, X, y, order):
        self.params0 = params
        self.device = device
        self.model = TorchMLP(params, device)
        self.X, self.y, self.order = (self.model.put(a) for a in (X, y, order))

    def reset(self):
        self.model = TorchMLP(self.params0, self.device)

    def epoch(self, batch_size, samples=None):
        order = self.order if samples is None else self.order[:samples]
        self.model.epoch(self.X, self.y, order, LR, batch_size)

    def params(self):
        return self.model.params()


def make_runner(name, params, X, y, order):
    if name.startswith("torch-"):
        return PeerRunner(name.split("-", 1)[1], params, X, y, order)
    return LibraryRunner(name, params, X, y, order)


#: OpenBLAS's worker threads spin for 0.1-0.2 s after each call before they sleep. Measured here, a
#: two-thread cpu epoch (batch 128) timed right after the NumPy reference took 2-2.3× as long as one
#: timed 0.2 s later: the spinning threads held the cores. Every benchmark waits this long after
#: its reference check, so that whatever is timed has the machine to itself.
BLAS_SETTLE_SECONDS = 0.3


def let_blas_threads_sleep():
    """Wait until the BLAS threads the reference check woke up have gone back to sleep."""
    time.sleep(BLAS_SETTLE_SECONDS)


def flat_theta(params):
    """``[(W, b), ...]`` as the flat float32 ``theta`` the kernels take (see :mod:`kernels.layout`)."""
    return np.concatenate([np.concatenate([W.ravel(), b]) for W, b in params]).astype(np.float32)


def check_against_reference(runner, params, X, y, order, batch_size, samples):
    """Train ``samples`` samples with the runner and with the NumPy reference; compare the weights."""
    reference = LibraryRunner("numpy", params, X, y, order)
    reference.epoch(batch_size, samples)
    runner.reset()
    runner.epoch(batch_size, samples)
    for (W, b), (W_ref, b_ref) in zip(runner.params(), reference.params()):
        np.testing.assert_allclose(W, W_ref, rtol=2e-3, atol=2e-4)
        np.testing.assert_allclose(b, b_ref, rtol=2e-3, atol=2e-4)
    runner.reset()
    let_blas_threads_sleep()


def require_backend(name):
    """Skip where a backend cannot run here (checked again at run time)."""
    if name == "cuda" and (SIMULATED or not gpu_present()):
        pytest.skip("no real GPU")
    if name.startswith("torch-") and name.split("-", 1)[1] not in torch_devices():
        pytest.skip(f"{name} is not available")
    if name in ("numpy", "cpu", "cuda"):
        get_backend(name)
