"""The one place where the CPU kernels' compilation options are set.

``FASTMATH`` allows reassociation (vectorised reductions), contraction (FMA),
reciprocal and approximate functions, and ignores the sign of zero. It leaves
out ``nnan`` and ``ninf``: softmax starts from ``-inf`` and the training loop
must be able to see a NaN loss.

``ERROR_MODEL`` is NumPy's: a float division by zero gives ``inf`` or NaN
instead of raising ``ZeroDivisionError``. Under numba's default (Python's) model
every division checks its divisor and may raise, which keeps LLVM from
vectorising any loop that divides (sigmoid and tanh in :mod:`kernels.cpu.scalar`
ran 6-30× slower). No kernel here divides by zero on valid input.
"""

import hashlib
import os
import pathlib

import numba
from numba import njit
from numba.core import lowering
from numba.core.compiler import CompilerBase, DefaultPassBuilder
from numba.core.compiler_machinery import register_pass
from numba.core.typed_passes import NativeLowering

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})
ERROR_MODEL = "numpy"

#: LLVM function attribute set on every CPU kernel: vectorise with the widest registers the CPU has.
#: LLVM's tuning for Intel's AVX-512 CPUs (Skylake-X to Emerald Rapids) prefers 256-bit vectors, so
#: without it numba's loops use half of each AVX-512 register: on this project's Xeon (Emerald Rapids)
#: the epochs ran 1.1-1.4x faster with it (``bench/sweeps.py --only vector-width``, bench/RESULTS.md).
#: It changes nothing on a CPU without AVX-512. (LLVM's preference dates from Skylake-X, whose clock drops
#: under sustained 512-bit work; it has been measured here on Emerald Rapids only.)
VECTOR_WIDTH_ATTRIBUTE = '"prefer-vector-width"="512"'


class WideVectorLower(lowering.Lower):
    """numba's lowering, with :data:`VECTOR_WIDTH_ATTRIBUTE` on the function it emits.

    llvmlite's ``FunctionAttributes`` accepts only a fixed list of attribute names and
    emits each name as written, so the string attribute is added to the set directly.
    """

    def pre_lower(self):
        super().pre_lower()
        set.add(self.function.attributes, VECTOR_WIDTH_ATTRIBUTE)


@register_pass(mutates_CFG=True, analysis_only=False)
class WideVectorNativeLowering(NativeLowering):
    """numba's ``NativeLowering`` pass through :class:`WideVectorLower`."""

    _name = "wide_vector_native_lowering"

    @property
    def lowering_class(self):
        return WideVectorLower


class WideVectorCompiler(CompilerBase):
    """numba's nopython pipeline with :class:`WideVectorNativeLowering` in place of ``NativeLowering``.

    The attribute must be on each function whose loops LLVM vectorises: a kernel's
    callees are optimised in their own modules before they are inlined, so a
    per-call-site setting would not reach them; a pipeline given to every kernel does.
    """

    def define_pipelines(self):
        manager = DefaultPassBuilder.define_nopython_pipeline(self.state)
        manager.passes = [(WideVectorNativeLowering if pass_class is NativeLowering else pass_class, description)
                          for pass_class, description in manager.passes]
        manager.finalize()
        return [manager]


#: Decorator of every CPU kernel: compiled once, cached on disk.
jit = njit(cache=True, fastmath=set(FASTMATH), error_model=ERROR_MODEL, nogil=True, pipeline_class=WideVectorCompiler)

#: Decorator of the one parallel kernel (``minibatch.minibatch_epoch_variant``). No cached kernel may call a
#: parallel one: numba's cache can then load mismatched code and crash (numba issues #8578 and
#: #10128; seen here as segfaults once several processes had filled the cache), so parallel
#: kernels are entry points, called from Python only.
jit_parallel = njit(cache=True, fastmath=set(FASTMATH), error_model=ERROR_MODEL, nogil=True, parallel=True)


#: This package's directory, as numba names it (``os.path.abspath`` of the source file's directory).
SOURCE_DIRECTORY = os.path.dirname(os.path.abspath(__file__))


def cache_directories():
    """The directories where numba caches these kernels.

    The in-tree ``__pycache__`` and, when ``NUMBA_CACHE_DIR`` is set, the
    sub-directory numba picks there: the source directory's name and the SHA-1
    of its absolute path (``get_suitable_cache_subpath`` in ``numba.core.caching``).
    """
    directories = [pathlib.Path(SOURCE_DIRECTORY) / "__pycache__"]
    if numba.config.CACHE_DIR:
        digest = hashlib.sha1(SOURCE_DIRECTORY.encode()).hexdigest()
        directories.append(pathlib.Path(numba.config.CACHE_DIR) / f"{os.path.basename(SOURCE_DIRECTORY)}_{digest}")
    return directories


def source_digest():
    """SHA-256 of every source the CPU kernels are built from: this package and the shared modules beside it
    (``kernels/activations.py``, ``kernels/optimizer.py``, ...)."""
    package = pathlib.Path(SOURCE_DIRECTORY)
    sources = [*sorted(package.glob("*.py")), *sorted(package.parent.glob("*.py"))]
    return hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()


def drop_stale_cache(directories=None):
    """Delete numba's cached CPU kernels when any kernel source changed since they were compiled.

    numba checks a cached function only against its *own* file; a kernel that
    calls a changed kernel of another file would load stale machine code (seen
    here: after an edit of ``linear.py``, ``network.py``'s cached kernels still
    ran the old products). A hash of every source the CPU kernels are built
    from, stored beside each cache, catches that.

    Parameters
    ----------
    directories : list of pathlib.Path, optional
        The cache directories to check; :func:`cache_directories` by default.
    """
    digest = source_digest()
    for cache in cache_directories() if directories is None else directories:
        stamp = cache / "kernels-source.sha256"
        try:
            if stamp.read_text() == digest:
                continue
        except OSError:
            pass
        try:
            cache.mkdir(parents=True, exist_ok=True)
            for stale in [*cache.glob("*.nbi"), *cache.glob("*.nbc")]:
                stale.unlink()
            stamp.write_text(digest)
        except OSError:  # a read-only install: numba then caches elsewhere or not at all
            pass


drop_stale_cache()
