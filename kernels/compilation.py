"""Whether a backend's kernels for a dtype still have to be compiled: the first ``fit`` says so.

numba compiles a kernel at its first call for each argument type and caches the
machine code on disk; the first ``fit`` of a dtype on a machine takes some
15-30 s for it, later ones load the cache in well under a second. A dispatcher
knows what it compiled in this process, and its cache index on disk lists the
signatures compiled before; this module reads both. It relies on numba's cache
internals (``FunctionCache._cache_file._load_index``): where they are missing it
answers ``False``, so the worst outcome is a missing notice.
"""

import numpy as np


def _first_argument_dtype(signature):
    """The element type of the first argument of a numba signature, as a NumPy dtype (None if not an array)."""
    first = signature[0] if len(signature) else None
    dtype = getattr(first, "dtype", None)
    try:
        return np.dtype(str(dtype))
    except TypeError:
        return None


def needs_compiling(dispatcher, dtype):
    """Whether ``dispatcher`` has no machine code yet, in memory or in its disk cache, for calls whose first
    argument (the parameter vector of every fused kernel here) is an array of ``dtype``."""
    dtype = np.dtype(dtype)
    try:
        if any(_first_argument_dtype(signature) == dtype for signature in dispatcher.overloads):
            return False
        cache = getattr(dispatcher, "_cache", None)
        index_file = getattr(cache, "_cache_file", None)
        if index_file is None:
            return True
        return not any(_first_argument_dtype(key[0]) == dtype for key in index_file._load_index())
    except Exception:
        return False
