"""Data sets: the bundled 8×8 digits, MNIST from IDX files, and a seeded split.

Nothing here downloads anything.
"""

import gzip
import os
import zlib
from importlib import resources

import numpy as np

DIGITS_FILE = "digits.csv.gz"
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049


def load_digits(dtype="float32"):
    """The classic 8×8 handwritten digits, bundled in the package.

    1,797 samples of 64 pixels (the UCI optdigits test set, the copy that
    scikit-learn ships; CC BY 4.0, see ``model/data/LICENSE-digits.txt``).

    Returns
    -------
    X : ndarray of ``dtype``, shape (1797, 64)
        Pixels scaled from 0..16 to [0, 1].
    y : ndarray of int64, shape (1797,)
        Labels 0..9.
    """
    with resources.files("model").joinpath("data", DIGITS_FILE).open("rb") as raw:
        table = np.loadtxt(gzip.open(raw), delimiter=",", dtype=np.int64)
    X = np.ascontiguousarray(table[:, :64], dtype=dtype) / np.asarray(16, dtype=dtype)
    y = np.ascontiguousarray(table[:, 64])
    return X, y


def _open_maybe_gzip(path):
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def _find(directory, name):
    for candidate in (name, name + ".gz"):
        path = os.path.join(directory, candidate)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"MNIST file {name}[.gz] not found in {directory!r}")


def read_idx(path, expected_magic):
    """Read one IDX file (raw or gzipped) and check its magic number and size.

    Returns
    -------
    ndarray of uint8
        Shape ``(n,)`` for labels, ``(n, rows, cols)`` for images.
    """
    try:
        with _open_maybe_gzip(path) as handle:
            data = handle.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:  # a truncated or corrupt .gz
        raise ValueError(f"{path}: damaged gzip file ({error})") from None
    if len(data) < 8:
        raise ValueError(f"{path}: not an IDX file (only {len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise ValueError(f"{path}: magic number {magic}, expected {expected_magic}")
    n_dims = data[3]
    header = 4 + 4 * n_dims
    dims = [int.from_bytes(data[4 + 4 * d:8 + 4 * d], "big") for d in range(n_dims)]
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise ValueError(f"{path}: {len(data)} bytes, expected {expected} for shape {tuple(dims)}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def load_mnist(path, split="train", dtype="float32"):
    """MNIST from the four standard IDX files (raw or ``.gz``) in directory ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        Directory holding ``train-images-idx3-ubyte[.gz]`` and the three others.
    split : {"train", "test"}

    Returns
    -------
    X : ndarray of ``dtype``, shape (n, 784)
        Pixels in [0, 1].
    y : ndarray of int64, shape (n,)
    """
    if split not in MNIST_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    images_name, labels_name = MNIST_FILES[split]
    images = read_idx(_find(path, images_name), _IDX_IMAGES_MAGIC)
    labels = read_idx(_find(path, labels_name), _IDX_LABELS_MAGIC)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"{path}: {split} images {images.shape} do not match labels {labels.shape}")
    X = images.reshape(images.shape[0], -1).astype(dtype) / np.asarray(255, dtype=dtype)
    return np.ascontiguousarray(X), labels.astype(np.int64)


def train_validation_split(X, y, validation_fraction=0.1, seed=0):
    """Shuffle with ``numpy.random.default_rng(seed)`` and split off a validation set.

    Rows are taken by position: array-likes (lists, pandas DataFrames and
    Series, whatever their index) are converted to NumPy arrays first.

    Parameters
    ----------
    X : array_like, shape (N, ...)
    y : array_like, shape (N,)
    validation_fraction : float in (0, 1)
    seed : int

    Returns
    -------
    X_train, y_train, X_validation, y_validation : ndarray
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim == 0 or y.ndim == 0:
        raise ValueError(f"X and y must be sequences of samples, got shapes {X.shape} and {y.shape}")
    n = X.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"y must have one label per row of X ({n}), got {y.shape[0]}")
    if isinstance(validation_fraction, bool) or not isinstance(validation_fraction, (int, float, np.floating)):
        raise TypeError(f"validation_fraction must be a number, got {type(validation_fraction).__name__}")
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    n_validation = round(n * validation_fraction)
    if not 0 < n_validation < n:
        raise ValueError(f"validation_fraction={validation_fraction} leaves an empty side of {n} samples")
    order = np.random.default_rng(seed).permutation(n)
    validation, train = order[:n_validation], order[n_validation:]
    return X[train], y[train], X[validation], y[validation]


def load_features(path, dtype="float32"):
    """Samples to predict from a file: an ``.npy`` array or an IDX image file (raw or ``.gz``).

    Each sample is flattened to a row. Pixels stored as ``uint8`` (every IDX
    image file, and ``.npy`` files of raw pixels) are scaled from 0..255 to
    [0, 1], as :func:`load_mnist` does; other numbers are taken as they are.

    Returns
    -------
    ndarray of ``dtype``, shape (n, n_features)

    Raises
    ------
    OSError
        The file cannot be read.
    ValueError
        Neither a numeric ``.npy`` array with one sample per row nor an IDX image file.
    """
    if str(path).endswith(".npy"):
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as error:  # a pickled object array, or not an .npy file at all
            raise ValueError(f"{path}: not a numeric .npy array ({error})") from None
        if array.dtype.kind not in "biuf" or array.ndim < 1:
            raise ValueError(f"{path}: expected a numeric array of samples, got dtype {array.dtype} "
                             f"and shape {array.shape}")
    else:
        array = read_idx(path, _IDX_IMAGES_MAGIC)
    rows = array.reshape(array.shape[0], -1) if array.ndim > 1 else array.reshape(1, -1)
    if array.dtype == np.uint8:
        return np.ascontiguousarray(rows.astype(dtype) / np.asarray(255, dtype=dtype))
    return np.ascontiguousarray(rows, dtype=dtype)
