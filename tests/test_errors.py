"""Bad input gets a clear TypeError/ValueError naming the argument, before any weight changes."""

import numpy as np
import pytest

from kernels import layout
from model import MLP
from tests.conftest import SIMULATOR

pytestmark = pytest.mark.skipif(SIMULATOR, reason="model tests run in the normal (non-simulated) process")


@pytest.fixture
def trained():
    rng = np.random.default_rng(0)
    X = rng.random((40, 6)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    net = MLP([6, 5, 3], backend="cpu", seed=0)
    net.fit(X, y, epochs=1)
    return net, X, y


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"layer_sizes": [5]}, ValueError, "layer_sizes.*at least two"),
    ({"layer_sizes": [5, 0, 3]}, ValueError, "layer_sizes.*>= 1"),
    ({"layer_sizes": [5, 1]}, ValueError, "layer_sizes.*2 classes"),
    ({"layer_sizes": [5, 2.5, 3]}, TypeError, "layer_sizes.*ints"),
    ({"layer_sizes": 5}, TypeError, "layer_sizes.*sequence"),
    ({"layer_sizes": [5, 3], "activation": "swish"}, ValueError, "activation.*'swish'"),
    ({"layer_sizes": [5, 3], "activation": 1}, TypeError, "activation must be a str"),
    ({"layer_sizes": [5, 3], "backend": "tpu"}, ValueError, "backend.*'tpu'"),
    ({"layer_sizes": [5, 3], "backend": None}, TypeError, "backend must be a str"),
    ({"layer_sizes": [5, 3], "dtype": "float16"}, ValueError, "dtype.*float16"),
    ({"layer_sizes": [5, 3], "dtype": "banana"}, TypeError, "dtype"),
    ({"layer_sizes": [5, 3], "seed": -1}, ValueError, "seed must be >= 0"),
])
def test_constructor_rejects(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        MLP(**kwargs)


def bad_fit_inputs(X, y):
    nan_X = X.copy()
    nan_X[3, 2] = np.nan
    inf_X = X.copy()
    inf_X[0, 0] = np.inf
    return [
        ({"X": X[0]}, ValueError, r"X must be 2-D .* got shape \(6,\)"),
        ({"X": X[:, :5]}, ValueError, "X must have 6 features.*got 5"),
        ({"X": nan_X}, ValueError, "X holds 1 NaN or infinite"),
        ({"X": inf_X}, ValueError, "X holds 1 NaN or infinite"),
        ({"X": X.astype(str)}, TypeError, "X must hold numbers"),
        ({"X": X[:0], "y": y[:0]}, ValueError, "X is empty"),
        ({"y": y.astype(np.float64)}, TypeError, "y must hold integer class labels"),
        ({"y": y + 3}, ValueError, r"y must hold labels in \[0, 2\]"),
        ({"y": y - 1}, ValueError, r"y must hold labels in \[0, 2\]"),
        ({"y": y[:-1]}, ValueError, "y must have one label per sample"),
        ({"y": y[:, None]}, ValueError, "y must be 1-D"),
        ({"lr": 0}, ValueError, "lr must be a finite number > 0"),
        ({"lr": -0.1}, ValueError, "lr must be a finite number > 0"),
        ({"lr": float("nan")}, ValueError, "lr must be a finite number > 0"),
        ({"lr": float("inf")}, ValueError, "lr must be a finite number > 0"),
        ({"lr": "0.1"}, TypeError, "lr must be a real number"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"batch_size": 2.0}, TypeError, "batch_size must be an int"),
        ({"epochs": -1}, ValueError, "epochs must be >= 0"),
        ({"patience": 0, "validation_data": (X, y)}, ValueError, "patience must be >= 1"),
        ({"patience": 2}, ValueError, "patience needs validation_data"),
        ({"shuffle": "yes"}, TypeError, "shuffle must be a bool"),
        ({"validation_data": X}, TypeError, "validation_data must be a"),
        ({"validation_data": (X[:, :4], y)}, ValueError, r"validation_data\[0\] \(X_val\) must have 6 features"),
        ({"validation_data": (X, y[:3])}, ValueError, r"validation_data\[1\] \(y_val\) must have one label"),
    ]


def test_fit_rejects_bad_input_before_any_weight_changes(trained):
    net, X, y = trained
    before = net._host_theta()
    for overrides, error, pattern in bad_fit_inputs(X, y):
        kwargs = {"X": X, "y": y, "epochs": 1, **overrides}
        with pytest.raises(error, match=pattern):
            net.fit(kwargs.pop("X"), kwargs.pop("y"), **kwargs)
        np.testing.assert_array_equal(net._host_theta(), before, err_msg=str(overrides))
    assert net.score(X, y) >= 0  # still usable


@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_inference_rejects_bad_X(trained, method):
    net, X, _ = trained
    with pytest.raises(ValueError, match="X must have 6 features"):
        getattr(net, method)(X[:, :3])
    with pytest.raises(ValueError, match="X must be 2-D"):
        getattr(net, method)(X[0])


@pytest.mark.parametrize("method", ["score", "loss", "gradients"])
def test_scoring_rejects_bad_labels(trained, method):
    net, X, y = trained
    with pytest.raises(ValueError, match="y must hold labels"):
        getattr(net, method)(X, y + 10)


def test_set_params_rejects_bad_shapes_and_keeps_the_weights(trained):
    net, _, _ = trained
    before = net._host_theta()
    params = net.params
    with pytest.raises(ValueError, match=r"params\[0\]\[0\] \(W\) must have shape \(5, 6\)"):
        net.set_params([(params[0][0].T, params[0][1]), params[1]])
    with pytest.raises(ValueError, match=r"2 \(W, b\) pairs"):
        net.set_params(params[:1])
    with pytest.raises(ValueError, match="finite"):
        net.set_params([(params[0][0] * np.nan, params[0][1]), params[1]])
    np.testing.assert_array_equal(net._host_theta(), before)


def test_set_params_refuses_values_that_overflow_the_dtype(trained):
    """A float64 1e39 is finite but not a float32: refused, naming the parameter, instead of becoming inf."""
    net, _, _ = trained
    before = net._host_theta()
    params = net.params
    with pytest.raises(ValueError, match=r"params\[1\]\[1\] \(b\) holds values too large for float32: "
                                         r"largest magnitude 1e\+39"):
        net.set_params([params[0], (params[1][0], np.full(3, 1e39))])
    np.testing.assert_array_equal(net._host_theta(), before)
    wide = MLP([6, 5, 3], backend="cpu", dtype="float64", seed=0)
    wide.set_params([params[0], (params[1][0], np.full(3, 1e39))])
    assert wide.params[1][1][0] == 1e39  # fits a float64 model


def test_lr_must_fit_the_dtype(trained):
    net, X, y = trained
    before = net._host_theta()
    with pytest.raises(ValueError, match="lr must fit the model's float32"):
        net.fit(X, y, epochs=1, lr=1e300)
    np.testing.assert_array_equal(net._host_theta(), before)


@pytest.mark.parametrize("dtype", [">f4", ">f8", "<f4"])
def test_byte_swapped_dtypes_become_native(tmp_path, dtype):
    """``>f4`` names the same numbers as float32: the model runs them natively on every backend."""
    rng = np.random.default_rng(0)
    X, y = rng.random((20, 4)).astype(dtype), rng.integers(0, 3, 20)
    for backend in ("numpy", "cpu"):
        net = MLP([4, 5, 3], backend=backend, dtype=dtype, seed=0)
        assert net.dtype == np.dtype(dtype).newbyteorder("=") and net.dtype.isnative
        net.fit(X, y, epochs=1, batch_size=4)
        net.save(tmp_path / f"{backend}.npz")
        loaded = MLP.load(tmp_path / f"{backend}.npz", backend="cpu")
        np.testing.assert_array_equal(loaded._host_theta(), net._host_theta())


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_validation_set_larger_than_the_training_set(backend):
    rng = np.random.default_rng(0)
    X, y = rng.random((400, 6)), rng.integers(0, 3, 400)
    net = MLP([6, 5, 3], backend=backend, seed=0)
    history = net.fit(X[:10], y[:10], epochs=2, validation_data=(X[100:400], y[100:400]))
    assert len(history) == 2 and np.isfinite(history.val_loss).all()
    assert history.val_loss[-1] == pytest.approx(net.loss(X[100:400], y[100:400]), rel=1e-6)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_a_batch_larger_than_the_data_is_the_whole_data(backend):
    """``batch_size=10**8`` on 100 samples trains as ``batch_size=100`` and allocates for 100 samples."""
    import tracemalloc

    rng = np.random.default_rng(0)
    X, y = rng.random((100, 6)), rng.integers(0, 3, 100)
    nets = [MLP([6, 5, 3], backend=backend, seed=0) for _ in range(2)]
    nets[0].fit(X, y, epochs=2, batch_size=100)
    tracemalloc.start()
    nets[1].fit(X, y, epochs=2, batch_size=10**8)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20
    np.testing.assert_array_equal(nets[1]._host_theta(), nets[0]._host_theta())


def test_architecture_is_read_only(trained):
    net, _, _ = trained
    for name, value in (("activation", "tanh"), ("layer_sizes", (6, 2, 3)), ("dtype", np.float64), ("seed", 4)):
        with pytest.raises(AttributeError):
            setattr(net, name, value)
    assert repr(net) == "MLP([6, 5, 3], activation='relu', backend='cpu', dtype='float32', seed=0)"


INPUT_KINDS = {
    "float32": lambda X: X.astype(np.float32),
    "float64": lambda X: X,
    "int32": lambda X: (X * 10).astype(np.int32),
    "uint64": lambda X: (X * 10).astype(np.uint64),
    "int8": lambda X: (X * 10).astype(np.int8),
    "bool": lambda X: X > 0.5,
    "float16": lambda X: X.astype(np.float16),
    "big-endian float32": lambda X: X.astype(">f4"),
    "Fortran order": lambda X: np.asfortranarray(X),
    "every other column": lambda X: np.repeat(X, 2, axis=1)[:, ::2],
    "read-only": lambda X: np.lib.stride_tricks.as_strided(X, writeable=False),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", list(INPUT_KINDS))
def test_inputs_convert_to_aligned_model_arrays(dtype, kind):
    """Every kind of 2-D numeric input becomes a C-contiguous, writable array of the model's dtype with the same
    values: the input itself where it is one already, else a copy on a cache line (numba's one-pass copy where it
    can, NumPy's otherwise); and a NaN or infinite value in any of them, also one that only the conversion makes
    (1e39 in float32), is named before anything runs."""
    from model._checks import check_features

    X = np.random.default_rng(0).random((33, 7))
    given = INPUT_KINDS[kind](X)
    converted = check_features("X", given, 7, np.dtype(dtype))
    assert converted.dtype == np.dtype(dtype) and converted.flags.c_contiguous and converted.flags.writeable
    taken_as_it_is = kind == dtype
    assert (converted is given) == taken_as_it_is
    assert taken_as_it_is or layout.is_aligned(converted)
    np.testing.assert_array_equal(converted, np.asarray(given).astype(dtype))
    if np.asarray(given).dtype.kind == "f":
        for bad, count in ((np.nan, 1), (np.inf, 2), (-np.inf, 1)):
            spoiled = np.array(given, dtype=np.asarray(given).dtype)  # writable, C order
            spoiled.flat[[5, 77][:count]] = bad
            with pytest.raises(ValueError, match=f"X holds {count} NaN or infinite values"):
                check_features("X", spoiled, 7, np.dtype(dtype))
    if dtype == "float32" and kind == "float64":
        with pytest.raises(ValueError, match="X holds 1 NaN or infinite values"):
            check_features("X", np.where(np.arange(X.size).reshape(X.shape) == 9, 1e39, X), 7, np.dtype(dtype))
