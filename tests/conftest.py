"""Shared fixtures: the backend under test, per-dtype tolerances, poisoned outputs.

The kernel tests run against ``kernels.cpu`` in the normal pytest process. With
``NUMBA_ENABLE_CUDASIM=1`` (set before numba is imported, hence a separate
pytest process, see ``tests/run.sh``) the very same tests run against
``kernels.cuda`` on numba's CUDA simulator, on tiny shapes; with
``NUMBA_MLP_TEST_CUDA=1`` they run against ``kernels.cuda`` on a real GPU.
"""

import os
import pathlib
import zlib

import numpy as np
import pytest

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
#: The kernel tests target kernels.cuda on the simulator, or on a real GPU with NUMBA_MLP_TEST_CUDA=1
#: (bench/gpu_run.sh); otherwise kernels.cpu.
CUDA_UNDER_TEST = SIMULATOR or os.environ.get("NUMBA_MLP_TEST_CUDA") == "1"
#: The real MNIST: ``../shared/data/mnist`` beside the checkout, or where ``NUMBA_MLP_MNIST_DIR`` says (a GPU
#: machine gets a copy carried inside the tree, see ``bench/gpu_run.sh``).
MNIST_DIR = pathlib.Path(os.environ.get("NUMBA_MLP_MNIST_DIR")
                         or pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist")

#: Tolerances chosen per dtype: float64 results must agree to rounding error;
#: float32 ones to what summing a few hundred float32 products in another order allows.
TOLERANCES = {
    np.dtype(np.float64): {"rtol": 1e-10, "atol": 1e-12},
    np.dtype(np.float32): {"rtol": 2e-4, "atol": 2e-5},
}


def tolerance(dtype):
    return TOLERANCES[np.dtype(dtype)]


#: Where each op takes ``sizes``, which stays on the host (a tuple for the CUDA kernels).
SIZES_POSITION = {"mlp_forward": 1, "mlp_backward": 1, "evaluate": 1, "predict_proba": 1, "minibatch_step": 2,
                  "minibatch_epoch": 2, "sgd_epoch": 2, "optimizer_update": 3}


class HostOps:
    """The ops under test with host arrays in and out (device copies for CUDA)."""

    def __init__(self, name):
        self.name = name
        if name == "cuda":
            import kernels.cuda as ops

            self.ops = ops
            self._cuda = ops.cuda
        else:
            import kernels.cpu as ops

            self.ops = ops
            self._cuda = None

    def put(self, array):
        if self._cuda is None:
            return array.copy()
        return self._cuda.to_device(array)

    def get(self, array):
        if self._cuda is None:
            return array
        return array.copy_to_host()

    def call(self, op_name, *args, outputs=()):
        """Run op ``op_name`` on copies of ``args``; return the host values of the positions in ``outputs``.

        Arrays are copied (to the device, for CUDA) and the ones listed in
        ``outputs`` are read back; a network op's ``sizes`` stays on the host.
        """
        host_positions = {SIZES_POSITION.get(op_name)}
        device_args = [
            self.put(a) if isinstance(a, np.ndarray) and p not in host_positions else a
            for p, a in enumerate(args)
        ]
        getattr(self.ops, op_name)(*device_args)
        return [self.get(device_args[i]) for i in outputs]


@pytest.fixture(scope="session")
def under_test():
    return HostOps("cuda" if CUDA_UNDER_TEST else "cpu")


@pytest.fixture(params=[np.float64, np.float32], ids=["float64", "float32"])
def dtype(request):
    return np.dtype(request.param)


@pytest.fixture
def rng(request):
    """A fresh generator per test, seeded from the test's name (reproducible, not shared)."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def poisoned(shape, dtype):
    """An output array full of NaN, so that an element a kernel forgets to write fails the test."""
    return np.full(shape, np.nan, dtype=dtype)


def last_update_overflows(dtype, batch_size):
    """Data and a learning rate with which the one update of an epoch (one sample, or one batch of 2)
    overflows the weights, while its loss, measured before the update, is finite.

    Only the weights the update leaves show the divergence: no later loss does.
    """
    scale, lr = (1e18, 1e25) if np.dtype(dtype) == np.float32 else (1e154, 1e160)
    rng = np.random.default_rng(0)
    return (rng.random((batch_size, 4)) * scale).astype(dtype), rng.integers(0, 3, batch_size), lr
