"""Argument checks of the model's public API.

Each check raises ``TypeError`` or ``ValueError`` naming the argument, what was
expected and what was given, before any weight changes.
"""

import numbers

import numpy as np

from kernels import layout

DTYPES = ("float32", "float64")


def check_dtype(dtype):
    """Normalise ``dtype`` to the native ``np.dtype('float32')`` or ``np.dtype('float64')``.

    A byte-swapped float (``">f4"`` on a little-endian machine) means the same
    numbers: it becomes the native dtype, the only kind every backend runs.
    """
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be one of {DTYPES}, got {dtype!r}") from None
    if resolved.name not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {resolved.name!r}")
    return np.dtype(resolved.name)


def check_fits_dtype(name, array, dtype):
    """``array`` cast to ``dtype``, refusing values that are not finite or overflow it.

    Raises
    ------
    ValueError
        Naming ``name``, the largest magnitude given and the dtype's range.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        converted = np.asarray(array).astype(dtype)
    # min and max are NaN or infinite exactly when some value is: two passes, no temporary array.
    if not (np.isfinite(converted.min()) and np.isfinite(converted.max())):
        if not np.isfinite(array).all():
            raise ValueError(f"{name} must hold finite numbers, got NaN or infinite values")
        raise ValueError(f"{name} holds values too large for {np.dtype(dtype).name}: largest magnitude "
                         f"{float(np.max(np.abs(array))):.6g}, {np.dtype(dtype).name} holds at most "
                         f"{float(np.finfo(dtype).max):.6g}")
    return converted


def check_layer_sizes(layer_sizes):
    """Layer sizes as a tuple of ints ``>= 1``, at least two of them."""
    if isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__iter__"):
        raise TypeError(f"layer_sizes must be a sequence of ints, got {type(layer_sizes).__name__}")
    sizes = tuple(layer_sizes)
    if len(sizes) < 2:
        raise ValueError(f"layer_sizes needs at least two sizes (inputs and classes), got {list(sizes)}")
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral):
            raise TypeError(f"layer_sizes must hold ints, got {size!r} of type {type(size).__name__}")
        if size < 1:
            raise ValueError(f"layer_sizes must all be >= 1, got {list(sizes)}")
    if sizes[-1] < 2:
        raise ValueError(f"layer_sizes must end with at least 2 classes, got {sizes[-1]}")
    return tuple(int(s) for s in sizes)


def check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_optional_int(name, value, minimum):
    return None if value is None else check_int(name, value, minimum)


def check_positive_float(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} of type {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def check_non_negative_float(name, value):
    """A finite real number >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} of type {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


def check_fraction(name, value):
    """A real number in [0, 1)."""
    value = check_non_negative_float(name, value)
    if value >= 1:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return value


#: Input dtypes :func:`check_features` converts with numba's one-pass copy.
NUMBA_COPIES = tuple(np.dtype(t) for t in (np.float32, np.float64, np.int32, np.int64, np.uint32, np.uint64))


def check_features(name, X, n_features, dtype):
    """``X`` as a C-contiguous, writable ``(N, n_features)`` array of ``dtype``, finite, N >= 1: ``X`` itself when it
    is one, else a copy on a cache line."""
    if isinstance(X, np.ndarray):
        array = X
    else:
        try:
            array = np.asarray(X)
        except (TypeError, ValueError) as error:
            raise TypeError(f"{name} must be a 2-D array of numbers: {error}") from None
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.bool_)
    ):
        raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty: shape {array.shape}")
    if array.shape[1] != n_features:
        raise ValueError(f"{name} must have {n_features} features (columns), got {array.shape[1]}")
    # As the kernels read it: one copy at most, made here onto a cache line, counting NaN and infinite values as it
    # goes (numba, one pass); none for a C-contiguous, writable array of the dtype already, wherever it starts (the
    # kernels read data 16 bytes into a line as fast: bench/RESULTS.md). (Imported here: `import model` does not
    # load numba.)
    from kernels.cpu.aligned import copy_counting_nonfinite
    from kernels.cpu.sgd import count_nonfinite

    as_it_is = array.dtype == np.dtype(dtype) and array.flags.c_contiguous and array.flags.writeable
    if array.dtype.isnative and array.dtype in NUMBA_COPIES and not as_it_is:
        converted = layout.aligned_empty(array.shape, dtype)
        bad = copy_counting_nonfinite(array, converted)
    else:  # as it is when it is the kernels' array already; bool, float16, small integers, long double and
        # byte-swapped inputs as NumPy converts them
        converted = array if as_it_is else layout.aligned(array, dtype)
        count = np.zeros(1, np.int64)
        count_nonfinite(converted.reshape(-1), count)
        bad = int(count[0])
    if bad:
        raise ValueError(f"{name} holds {bad} NaN or infinite values; all values must be finite")
    return converted


def check_labels(name, y, n_samples, n_classes):
    """``y`` as an int64 ``(n_samples,)`` array with values in ``[0, n_classes)``."""
    array = np.asarray(y)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class labels, got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n_samples,), got shape {array.shape}")
    if array.shape[0] != n_samples:
        raise ValueError(f"{name} must have one label per sample ({n_samples}), got {array.shape[0]}")
    labels = array.astype(np.int64)
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(
            f"{name} must hold labels in [0, {n_classes - 1}], got values in [{labels.min()}, {labels.max()}]"
        )
    return np.ascontiguousarray(labels)
