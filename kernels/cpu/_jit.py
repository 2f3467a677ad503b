"""The one place where the CPU kernels' compilation options are set.

``FASTMATH`` allows reassociation (vectorised reductions), contraction (FMA),
reciprocal and approximate functions, and ignores the sign of zero. It leaves
out ``nnan`` and ``ninf``: softmax starts from ``-inf`` and the training loop
must be able to see a NaN loss.
"""

from numba import njit

from kernels.activations import activate, derivative

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

#: Decorator of every CPU kernel: compiled once, cached on disk.
jit = njit(cache=True, fastmath=set(FASTMATH), nogil=True)

#: Decorator of the few kernels that split their work across threads with ``prange``.
jit_parallel = njit(cache=True, fastmath=set(FASTMATH), nogil=True, parallel=True)

#: g(z) and g'(a) of :mod:`kernels.activations`, compiled for the CPU.
activate_scalar = njit(inline="always", fastmath=set(FASTMATH))(activate)
derivative_scalar = njit(inline="always", fastmath=set(FASTMATH))(derivative)
