"""save/load: an .npz without pickle, written atomically, validated when read."""

import os
import zipfile

import numpy as np
import pytest

from model import MLP
from tests.conftest import SIMULATOR

pytestmark = pytest.mark.skipif(SIMULATOR, reason="model tests run in the normal (non-simulated) process")


@pytest.fixture
def trained():
    rng = np.random.default_rng(0)
    X = rng.random((50, 8))
    y = rng.integers(0, 4, 50)
    net = MLP([8, 6, 5, 4], activation="tanh", backend="cpu", dtype="float64", seed=0)
    net.fit(X, y, epochs=2, lr=0.05)
    return net, X, y


def test_round_trip(tmp_path, trained):
    net, X, _ = trained
    path = tmp_path / "model.npz"
    net.save(path)
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary left behind
    for backend in ("cpu", "numpy"):
        loaded = MLP.load(path, backend=backend)
        assert loaded.layer_sizes == net.layer_sizes
        assert loaded.activation == "tanh" and loaded.dtype == np.float64
        np.testing.assert_array_equal(loaded._host_theta(), net._host_theta())
        np.testing.assert_allclose(loaded.predict_proba(X), net.predict_proba(X), rtol=1e-12)


def test_file_holds_no_pickle(tmp_path, trained):
    net, _, _ = trained
    path = tmp_path / "m.npz"
    net.save(path)
    with np.load(path, allow_pickle=False) as archive:
        assert {"format", "version", "layer_sizes", "activation", "dtype", "theta"} <= set(archive.files)


def test_save_overwrites_atomically(tmp_path, trained):
    net, _, _ = trained
    path = tmp_path / "m.npz"
    path.write_bytes(b"old")
    net.save(str(path))
    assert MLP.load(path).layer_sizes == net.layer_sizes


def test_truncated_file(tmp_path, trained):
    net, _, _ = trained
    path = tmp_path / "m.npz"
    net.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable numba-mlp model file"):
        MLP.load(path)


def test_foreign_files(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a readable"):
        MLP.load(text)
    other = tmp_path / "other.npz"
    np.savez(other, weights=np.zeros(3))
    with pytest.raises(ValueError, match="not a numba-mlp model file"):
        MLP.load(other)
    with pytest.raises(FileNotFoundError):
        MLP.load(tmp_path / "missing.npz")


def _rewrite(path, **changes):
    with np.load(path) as archive:
        contents = {key: archive[key] for key in archive.files}
    contents.update(changes)
    np.savez(path, **contents)


@pytest.mark.parametrize("changes, pattern", [
    ({"theta": np.zeros(7)}, "theta has shape"),
    ({"theta": np.zeros(131, np.float32)}, "theta has shape .* dtype float32"),
    ({"layer_sizes": np.array([8, 0, 4])}, "layer_sizes"),
    ({"activation": np.array("swish")}, "unknown activation"),
    ({"version": np.array(99)}, "format version 99"),
    ({"dtype": np.array("int8")}, "dtype"),
])
def test_mismatched_contents(tmp_path, trained, changes, pattern):
    net, _, _ = trained
    path = tmp_path / "m.npz"
    net.save(path)
    _rewrite(path, **changes)
    with pytest.raises(ValueError, match=pattern):
        MLP.load(path)


def test_non_finite_weights(tmp_path, trained):
    net, _, _ = trained
    path = tmp_path / "m.npz"
    net.save(path)
    theta = net._host_theta()
    theta[0] = np.nan
    _rewrite(path, theta=theta)
    with pytest.raises(ValueError, match="NaN"):
        MLP.load(path)


def test_bad_backend_fails_before_reading(tmp_path, trained):
    net, _, _ = trained
    path = tmp_path / "m.npz"
    net.save(path)
    with pytest.raises(ValueError, match="backend"):
        MLP.load(path, backend="gpu")
    assert zipfile.is_zipfile(path)


def test_an_npy_file_is_refused_with_a_value_error(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(ValueError, match="not a numba-mlp model file"):
        MLP.load(path)


def test_new_files_get_the_usual_mode_and_replaced_ones_keep_theirs(tmp_path, trained):
    net, _, _ = trained
    previous = os.umask(0o027)
    try:
        net.save(tmp_path / "new.npz")
    finally:
        os.umask(previous)
    assert (tmp_path / "new.npz").stat().st_mode & 0o777 == 0o640
    shared = tmp_path / "shared.npz"
    shared.write_bytes(b"old")
    shared.chmod(0o664)
    net.save(shared)
    assert shared.stat().st_mode & 0o777 == 0o664


def test_saving_through_a_symlink_writes_the_file_it_names(tmp_path, trained):
    net, _, _ = trained
    target = tmp_path / "models" / "best.npz"
    target.parent.mkdir()
    target.write_bytes(b"old")
    link = tmp_path / "latest.npz"
    link.symlink_to(target)
    net.save(link)
    assert link.is_symlink() and link.resolve() == target
    np.testing.assert_array_equal(MLP.load(target)._host_theta(), net._host_theta())
    assert sorted(os.listdir(target.parent)) == ["best.npz"]
