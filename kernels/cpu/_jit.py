"""The one place where the CPU kernels' compilation options are set.

``FASTMATH`` allows reassociation (vectorised reductions), contraction (FMA),
reciprocal and approximate functions, and ignores the sign of zero. It leaves
out ``nnan`` and ``ninf``: softmax starts from ``-inf`` and the training loop
must be able to see a NaN loss.
"""

import hashlib
import pathlib

from numba import njit

from kernels.activations import activate, derivative

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

#: Decorator of every CPU kernel: compiled once, cached on disk.
jit = njit(cache=True, fastmath=set(FASTMATH), nogil=True)

#: Decorator of the one parallel kernel (``network.minibatch_epoch_variant``). No cached kernel may call a
#: parallel one: numba's cache can then load mismatched code and crash (numba issues #8578 and
#: #10128; seen here as segfaults once several processes had filled the cache), so parallel
#: kernels are entry points, called from Python only.
jit_parallel = njit(cache=True, fastmath=set(FASTMATH), nogil=True, parallel=True)

#: g(z) and g'(a) of :mod:`kernels.activations`, compiled for the CPU.
activate_scalar = njit(inline="always", fastmath=set(FASTMATH))(activate)
derivative_scalar = njit(inline="always", fastmath=set(FASTMATH))(derivative)


def _drop_stale_cache():
    """Delete numba's cached CPU kernels when any kernel source changed since they were compiled.

    numba checks a cached function only against its *own* file; a kernel that
    calls a changed kernel of another file would load stale machine code (seen
    here: after an edit of ``linear.py``, ``network.py``'s cached kernels still
    ran the old products). A hash of every source the CPU kernels are built
    from, stored beside the cache, catches that.
    """
    package = pathlib.Path(__file__).resolve().parent
    sources = [*sorted(package.glob("*.py")), package.parent / "activations.py"]
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()
    cache = package / "__pycache__"
    stamp = cache / "kernels-source.sha256"
    try:
        if stamp.read_text() == digest:
            return
    except OSError:
        pass
    try:
        cache.mkdir(exist_ok=True)
        for stale in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
            stale.unlink()
        stamp.write_text(digest)
    except OSError:  # a read-only install: numba then caches elsewhere or not at all
        pass


_drop_stale_cache()
