"""The CUDA backend without a GPU.

* In the normal process: every CUDA kernel compiles to PTX for Hopper (sm_90) and
  Ampere (sm_80) in float32 and float64 (``numba.cuda.compile_ptx`` needs no GPU
  and catches typing errors the simulator lets through).
* In the simulator process (``NUMBA_ENABLE_CUDASIM=1``, or on a real GPU with
  ``NUMBA_MLP_TEST_CUDA=1``): the model on ``backend="cuda"`` trains to the cpu
  backend's weights, per-sample and minibatch.
  (``tests/test_kernels.py`` checks each kernel against the reference there.)
"""

import importlib
import pkgutil

import numpy as np
import pytest

from tests.conftest import CUDA_UNDER_TEST, SIMULATOR, last_update_overflows

cuda_ops = pytest.importorskip("kernels.cuda")
if cuda_ops.cuda is None:
    pytest.skip("numba-cuda is not installed", allow_module_level=True)


def kernel_signatures(dtype, n_layers):
    """Argument types of every kernel, as the launchers call them."""
    from numba import types

    real = types.float32 if dtype == np.float32 else types.float64
    A1, A2 = types.Array(real, 1, "C"), types.Array(real, 2, "C")
    I1, F1 = types.Array(types.int64, 1, "C"), types.Array(types.float64, 1, "C")
    sizes = types.UniTuple(types.int64, n_layers + 1)
    flag, code = types.boolean, types.int64
    product = (A2, A2, A2, flag, flag, code, code, A1, A2)
    return {
        "matmul_tiled": product,
        "matmul_small": product,
        "activation_kernel": (A2, A2, code, A2, flag),
        "softmax_rows": (A2, I1, I1, flag, code, A2, A1, F1),
        "sgd_update_kernel": (A1, A1, types.float64),
        "count_nonfinite_kernel": (A1, I1),
        "gather_rows": (A2, I1, A2),
        "sgd_epoch_kernel": (A1, sizes, code, A2, I1, I1, types.float64, A1, A1, F1),
    }


def all_kernels():
    """Every ``@cuda.jit`` kernel (not device function) defined in the kernels.cuda package."""
    import kernels.cuda as package

    found = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"kernels.cuda.{info.name}")
        for name, value in vars(module).items():
            if hasattr(value, "py_func") and hasattr(value, "configure") and value.__module__ == module.__name__:
                if not getattr(value, "targetoptions", {}).get("device", False):
                    found[name] = value
    return found


@pytest.fixture
def target_device(monkeypatch):
    """Let device functions compile without a driver.

    numba-cuda (seen with 0.30.4) compiles a ``@cuda.jit(device=True)`` function
    called from a kernel for the *current device's* compute capability, which it
    asks the driver for, even inside ``compile_ptx``; with no driver that raises.
    This hands it the capability being compiled for instead.
    """
    import types

    import numba.cuda.dispatcher as dispatcher

    def use(cc):
        monkeypatch.setattr(dispatcher, "get_current_device", lambda: types.SimpleNamespace(compute_capability=cc))

    return use


@pytest.mark.skipif(SIMULATOR, reason="compile_ptx is not part of the simulator")
@pytest.mark.parametrize("cc", [(9, 0), (8, 0)], ids=["sm90", "sm80"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_every_kernel_compiles_to_ptx(cc, dtype, target_device):
    from numba import cuda

    target_device(cc)
    kernels = all_kernels()
    for n_layers in (1, 2, 3):
        signatures = kernel_signatures(dtype, n_layers)
        assert set(kernels) == set(signatures), "a kernel has no PTX signature in this test"
        for name, kernel in kernels.items():
            if n_layers > 1 and name != "sgd_epoch_kernel":
                continue
            ptx, _ = cuda.compile_ptx(kernel.py_func, signatures[name], cc=cc)
            assert f".target sm_{cc[0]}{cc[1]}" in ptx, name
            assert ".entry" in ptx, name


@pytest.mark.skipif(SIMULATOR, reason="checked in the normal process")
def test_importing_kernels_never_needs_a_gpu():
    assert cuda_ops.is_available() in (True, False)
    if not cuda_ops.is_available():
        with pytest.raises(RuntimeError, match="backend='cuda' found no usable CUDA GPU"):
            cuda_ops.require_gpu()


simulated = pytest.mark.skipif(not CUDA_UNDER_TEST, reason="runs in the CUDA simulator process (or on a GPU)")


@simulated
@pytest.mark.parametrize("batch_size", [1, 5])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cuda_fit_matches_cpu(batch_size, dtype):
    from model import MLP

    rng = np.random.default_rng(0)
    X = rng.random((12, 6))
    X[X < 0.4] = 0
    y = rng.integers(0, 3, 12)
    X_val, y_val = rng.random((4, 6)), rng.integers(0, 3, 4)
    nets = {b: MLP([6, 5, 4, 3], activation="tanh", backend=b, dtype=dtype, seed=1) for b in ("cpu", "cuda")}
    histories = {b: net.fit(X, y, epochs=2, lr=0.1, batch_size=batch_size, validation_data=(X_val, y_val))
                 for b, net in nets.items()}
    tol = {"float64": {"rtol": 1e-9, "atol": 1e-12}, "float32": {"rtol": 1e-4, "atol": 1e-5}}[dtype]
    for (W, b), (W_ref, b_ref) in zip(nets["cuda"].params, nets["cpu"].params):
        np.testing.assert_allclose(W, W_ref, **tol)
        np.testing.assert_allclose(b, b_ref, **tol)
    np.testing.assert_allclose(histories["cuda"].train_loss, histories["cpu"].train_loss, **tol)
    np.testing.assert_allclose(histories["cuda"].val_loss, histories["cpu"].val_loss, **tol)
    assert histories["cuda"].val_accuracy == histories["cpu"].val_accuracy


@simulated
def test_cuda_model_api(tmp_path):
    from model import MLP

    rng = np.random.default_rng(1)
    X, y = rng.random((9, 4)), rng.integers(0, 3, 9)
    net = MLP([4, 5, 3], backend="cuda", dtype="float64", seed=0)
    reference = MLP([4, 5, 3], backend="cpu", dtype="float64", seed=0)
    assert net.backend == "cuda"
    np.testing.assert_allclose(net.predict_proba(X), reference.predict_proba(X), rtol=1e-12)
    np.testing.assert_array_equal(net.predict(X), reference.predict(X))
    assert net.score(X, y) == reference.score(X, y)
    assert net.loss(X, y) == pytest.approx(reference.loss(X, y), rel=1e-12)
    for (dW, db), (dW_ref, db_ref) in zip(net.gradients(X, y), reference.gradients(X, y)):
        np.testing.assert_allclose(dW, dW_ref, rtol=1e-10)
        np.testing.assert_allclose(db, db_ref, rtol=1e-10)
    net.save(tmp_path / "m.npz")
    loaded = MLP.load(tmp_path / "m.npz", backend="cuda")
    np.testing.assert_array_equal(loaded.params[0][0], net.params[0][0])


@simulated
@pytest.mark.parametrize("batch_size", [1, 2])
def test_cuda_divergence_on_the_very_last_update_is_caught(batch_size):
    from model import MLP

    X, y, lr = last_update_overflows("float64", batch_size)
    net = MLP([4, 6, 3], backend="cuda", dtype="float64", seed=0)
    before = net._host_theta()
    with pytest.raises(FloatingPointError, match="weights became NaN or infinite"):
        net.fit(X, y, epochs=1, lr=lr, batch_size=batch_size, shuffle=False)
    np.testing.assert_array_equal(net._host_theta(), before)


@simulated
def test_cuda_scores_a_nan_model_as_cpu_does():
    from model import MLP

    rng = np.random.default_rng(2)
    X, y = rng.random((20, 4)), rng.integers(0, 3, 20)
    results = {}
    for backend in ("cpu", "cuda"):
        net = MLP([4, 5, 3], backend=backend, dtype="float64", seed=0)
        theta = net._host_theta()
        theta[-2] = np.nan  # b_2[1]: logit 1 is NaN, NumPy's arg-max picks it
        net._backend.assign(net._theta, net._backend.to_device(theta))
        results[backend] = (net.score(X, y), np.isnan(net.loss(X, y)))
    assert results["cuda"] == results["cpu"] == (np.mean(y == 1), True)


@simulated
def test_cuda_validation_set_larger_than_the_training_set():
    from model import MLP

    rng = np.random.default_rng(3)
    X, y = rng.random((40, 4)), rng.integers(0, 3, 40)
    net = MLP([4, 5, 3], backend="cuda", dtype="float64", seed=0)
    history = net.fit(X[:3], y[:3], epochs=1, validation_data=(X[10:40], y[10:40]))
    assert history.val_loss[0] == pytest.approx(net.loss(X[10:40], y[10:40]), rel=1e-12)


@simulated
def test_host_arrays_in_a_launch_are_an_error():
    """numba's implicit-copy performance warning is raised as an error by the test configuration."""
    import warnings

    from numba import cuda

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Host array used in CUDA kernel")
        theta = cuda.to_device(np.zeros(4))
        cuda_ops.sgd_update(theta, cuda.to_device(np.ones(4)), 0.5)
        np.testing.assert_allclose(theta.copy_to_host(), -0.5)
