"""Data loading: the bundled digits, IDX parsing and validation, the seeded split."""

import gzip
import hashlib

import numpy as np
import pytest

from model.data import load_digits, load_mnist, read_idx, train_validation_split
from tests.conftest import MNIST_DIR


def test_bundled_digits():
    X, y = load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32 and X.flags.c_contiguous
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0 and X.max() == 1
    assert set(np.unique(y)) == set(range(10))
    assert load_digits("float64")[0].dtype == np.float64


def write_idx(path, array, magic_type=0x08, compress=False):
    header = bytes([0, 0, magic_type, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        data = gzip.compress(data)
    path.write_bytes(data)


def write_mnist_files(directory, compress=True, truncate=None):
    """Four small IDX files (5 train, 3 test samples) in ``directory``; ``truncate`` names one to cut short."""
    rng = np.random.default_rng(0)
    suffix = ".gz" if compress else ""
    for split, n in (("train", 5), ("t10k", 3)):
        images, labels = rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n)
        write_idx(directory / f"{split}-images-idx3-ubyte{suffix}", images, compress=compress)
        write_idx(directory / f"{split}-labels-idx1-ubyte{suffix}", labels, compress=compress)
    if truncate is not None:
        damaged = directory / truncate
        damaged.write_bytes(damaged.read_bytes()[:-12])


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_load_mnist_from_idx_files(tmp_path, compress):
    write_mnist_files(tmp_path, compress)
    X, y = load_mnist(tmp_path)
    assert X.shape == (5, 784) and X.dtype == np.float32 and 0 <= X.min() and X.max() <= 1
    assert y.dtype == np.int64
    assert load_mnist(tmp_path, "test")[0].shape == (3, 784)


def test_idx_validation(tmp_path):
    images = np.zeros((2, 4, 4))
    good = tmp_path / "images"
    write_idx(good, images)
    assert read_idx(good, 2051).shape == (2, 4, 4)
    with pytest.raises(ValueError, match="magic number 2051, expected 2049"):
        read_idx(good, 2049)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(good.read_bytes()[:-5])
    with pytest.raises(ValueError, match="43 bytes, expected 48"):
        read_idx(truncated, 2051)
    tiny = tmp_path / "tiny"
    tiny.write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tiny, 2051)
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_mnist(tmp_path, "validation")


def test_a_truncated_gzip_file_is_a_value_error_naming_it(tmp_path):
    write_mnist_files(tmp_path, truncate="t10k-labels-idx1-ubyte.gz")
    assert load_mnist(tmp_path, "train")[0].shape == (5, 784)
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte\.gz: damaged gzip file"):
        load_mnist(tmp_path, "test")


def test_mismatched_mnist_counts(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 28)))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(2))
    with pytest.raises(ValueError, match="do not match"):
        load_mnist(tmp_path)


def test_split_is_seeded_and_disjoint():
    X = np.arange(100.0).reshape(50, 2)
    y = np.arange(50)
    first = train_validation_split(X, y, 0.2, seed=3)
    second = train_validation_split(X, y, 0.2, seed=3)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    _, y_train, X_val, y_val = first
    assert len(y_val) == 10 and len(y_train) == 40
    assert not set(y_train) & set(y_val)
    np.testing.assert_array_equal(X_val[:, 0], 2 * y_val)
    with pytest.raises(ValueError, match="validation_fraction"):
        train_validation_split(X, y, 1.5)


@pytest.mark.skipif(not MNIST_DIR.exists(), reason="../shared/data/mnist is absent")
def test_real_mnist():
    with gzip.open(MNIST_DIR / "train-labels-idx1-ubyte.gz") as handle:
        assert hashlib.md5(handle.read()).hexdigest() == "a25bea736e30d166cdddb491f175f624"
    X, y = load_mnist(MNIST_DIR, "test")
    assert X.shape == (10000, 784) and y.shape == (10000,)
    assert 0.15 < np.count_nonzero(X) / X.size < 0.25  # about 19% of MNIST pixels are non-zero


class LabelIndexedSeries:
    """What a pandas Series with a shuffled index does: ``series[i]`` looks ``i`` up as a label."""

    def __init__(self, values, index):
        self.values = np.asarray(values)
        self.position = {label: p for p, label in enumerate(index)}

    def __len__(self):
        return len(self.values)

    def __getitem__(self, labels):
        return self.values[[self.position[label] for label in np.atleast_1d(labels)]]

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)


def test_split_takes_rows_by_position_not_by_label():
    """With labels indexed by a shuffled index (``df.sample(frac=1)``), rows must stay beside their labels."""
    X = np.arange(100.0).reshape(50, 2)
    y = np.arange(50)
    shuffled_index = np.random.default_rng(1).permutation(50)
    expected = train_validation_split(X, y, 0.2, seed=3)
    for y_like in (LabelIndexedSeries(y, shuffled_index), y.tolist()):
        got = train_validation_split(X.tolist(), y_like, 0.2, seed=3)
        for part, want in zip(got, expected):
            assert isinstance(part, np.ndarray)
            np.testing.assert_array_equal(part, want)


def test_split_of_pandas_frames_with_a_shuffled_index():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": np.arange(50.0), "b": np.arange(50.0) * 2, "label": np.arange(50)})
    frame = frame.sample(frac=1, random_state=0)
    X_train, y_train, X_val, y_val = train_validation_split(frame[["a", "b"]], frame["label"], 0.2, seed=3)
    np.testing.assert_array_equal(X_train[:, 0], y_train)
    np.testing.assert_array_equal(X_val[:, 0], y_val)


def test_load_features_reads_npy_and_idx_images(tmp_path):
    from model.data import load_features

    pixels = np.random.default_rng(0).integers(0, 256, (4, 28, 28)).astype(np.uint8)
    np.save(tmp_path / "raw.npy", pixels)
    write_idx(tmp_path / "images-idx3-ubyte.gz", pixels, compress=True)
    (tmp_path / "images-idx3-ubyte.gz").rename(tmp_path / "images.gz")
    for path in (tmp_path / "raw.npy", tmp_path / "images.gz"):
        X = load_features(path)
        assert X.shape == (4, 784) and X.dtype == np.float32 and X.flags.c_contiguous
        np.testing.assert_array_equal(X, pixels.reshape(4, 784) / np.float32(255))  # as load_mnist scales
    features = np.random.default_rng(1).random((3, 64))
    np.save(tmp_path / "floats.npy", features)
    np.testing.assert_array_equal(load_features(tmp_path / "floats.npy", "float64"), features)  # taken as they are
    assert load_features(tmp_path / "floats.npy").shape == (3, 64)
    np.save(tmp_path / "one.npy", features[0])
    assert load_features(tmp_path / "one.npy").shape == (1, 64)  # a single sample


@pytest.mark.parametrize("content, message", [
    (np.array(["a"]), "expected a numeric array of samples"),
    (np.array([{"a": 1}], dtype=object), "not a numeric .npy array"),
])
def test_load_features_refuses_what_is_not_samples(tmp_path, content, message):
    from model.data import load_features

    np.save(tmp_path / "x.npy", content, allow_pickle=True)
    with pytest.raises(ValueError, match=message):
        load_features(tmp_path / "x.npy")
    (tmp_path / "labels").write_bytes(b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + b"\x01\x02\x03")
    with pytest.raises(ValueError, match="magic number 2049, expected 2051"):
        load_features(tmp_path / "labels")
