"""The backend registry: which op set runs the model, and where its arrays live.

=========  ====================  ==========================================
name       ops                   arrays
=========  ====================  ==========================================
``numpy``  :mod:`kernels.numpy`  host NumPy arrays (the reference)
``cpu``    :mod:`kernels.cpu`    host NumPy arrays, ``@njit`` kernels
``cuda``   :mod:`kernels.cuda`   numba device arrays, for a whole ``fit``
``auto``   cuda if a GPU is usable (not the simulator), else cpu
=========  ====================  ==========================================
"""

import ctypes
import importlib
import os
import sys

import numpy as np

from kernels import layout

BACKENDS = ("numpy", "cpu", "cuda", "auto")

#: Multiply-adds per call of an epoch op (see ``MLP._chunk_samples``), chosen so that one call takes
#: some 50 ms on the host backends (numpy pays Python's overhead on every sample; cpu runs about
#: 2·10¹⁰ of them per second on 784-128-10 with MNIST): Ctrl-C and progress respond that quickly.
#: A GPU call of the fused epoch kernels costs a launch, so it takes more work at once.
CHUNK_WORK = {"numpy": 1 << 25, "cpu": 1 << 31, "cuda": 1 << 34}


class HostBackend:
    """Arrays stay NumPy arrays on the host; transfers are copies or no-ops."""

    def __init__(self, name, ops_module):
        self.name = name
        self.ops = importlib.import_module(ops_module)
        self.chunk_work = CHUNK_WORK[name]

    def to_device(self, array):
        """The array the ops take: C-contiguous and starting on a cache line (:func:`kernels.layout.aligned`;
        no copy for an array that already is)."""
        return layout.aligned(array)

    def data_to_device(self, array):
        """The data (inputs, checked by :func:`model._checks.check_features`) as the ops take it: C-contiguous,
        wherever it starts. No copy of a C-contiguous array: the kernels read the data as fast 16 bytes into a
        cache line as on one (bench/RESULTS.md), and a copy would double the memory a large data set takes."""
        return np.ascontiguousarray(array)

    def to_host(self, array):
        """A host copy, detached from the model's buffers."""
        return np.array(array, copy=True)

    def zeros(self, shape, dtype):
        return layout.aligned_zeros(shape, dtype)

    def copy(self, array):
        return layout.aligned_copy(array)

    def assign(self, destination, source):
        """``destination[...] = source`` for two arrays of this backend."""
        destination[...] = source

    def synchronize(self):
        """Wait for queued work (nothing is queued on the host)."""


class CudaBackend(HostBackend):
    """Arrays are numba device arrays; the host sees them only through explicit copies."""

    def __init__(self):
        from kernels import cuda as cuda_ops

        cuda_ops.require_gpu()
        super().__init__("cuda", "kernels.cuda")
        self._cuda = cuda_ops.cuda

    def to_device(self, array):
        return self._cuda.to_device(np.ascontiguousarray(array))

    def data_to_device(self, array):
        return self.to_device(array)

    def to_host(self, array):
        return array.copy_to_host()

    def zeros(self, shape, dtype):
        return self._cuda.to_device(np.zeros(shape, dtype=dtype))

    def copy(self, array):
        duplicate = self._cuda.device_array_like(array)
        duplicate.copy_to_device(array)
        return duplicate

    def assign(self, destination, source):
        destination.copy_to_device(source)

    def synchronize(self):
        self._cuda.synchronize()


def cuda_driver_loads():
    """Whether the NVIDIA driver library loads: the cheap first question of ``backend='auto'``.

    Loading it takes about a millisecond, where importing ``numba.cuda`` to ask
    ``is_available()`` takes about half a second; so a machine without a driver
    (hence without a GPU) goes straight to ``cpu``. Where the driver loads,
    ``numba.cuda`` makes the real check. ``NUMBA_CUDA_DRIVER``, numba's own
    setting for a driver elsewhere, is left to numba.
    """
    if os.environ.get("NUMBA_CUDA_DRIVER"):
        return True
    names = {"win32": ("nvcuda.dll",), "darwin": ()}.get(sys.platform, ("libcuda.so.1", "libcuda.so"))
    for name in names:
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return True
    return False


def resolve_backend_name(name):
    """Check ``name`` and turn ``auto`` into ``cuda`` or ``cpu``."""
    if not isinstance(name, str):
        raise TypeError(f"backend must be a str, one of {BACKENDS}, got {type(name).__name__}")
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "auto":
        if not cuda_driver_loads():
            return "cpu"
        from kernels import cuda as cuda_ops

        return "cuda" if cuda_ops.is_available() else "cpu"
    return name


def get_backend(name):
    """The backend object for ``name`` (``numpy``, ``cpu``, ``cuda`` or ``auto``).

    Raises
    ------
    TypeError, ValueError
        For a name that is not a backend.
    RuntimeError
        For ``cuda`` without a usable GPU (nor the simulator); the message says
        how to get one.
    """
    resolved = resolve_backend_name(name)
    if resolved == "cuda":
        return CudaBackend()
    return HostBackend(resolved, f"kernels.{resolved}")
