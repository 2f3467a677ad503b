"""The MLP model: training against the course's algorithm, accuracy, determinism, stopping rules."""

import copy
import os
import pickle
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from model import MLP, load_digits, train_validation_split
from tests.conftest import SIMULATOR, last_update_overflows

pytestmark = pytest.mark.skipif(SIMULATOR, reason="model tests run in the normal (non-simulated) process")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits()
    return train_validation_split(X, y, 0.25, seed=1)


def course_sgd(params, X, y, lr, epochs, g, g_prime):
    """Per-sample SGD written straight from the course, for one hidden layer, in float64.

    f(x) = softmax(Wᵒ h + bᵒ), h = g(Wʰ x + bʰ); l = -log f(x)_y; θ ← θ − η ∇θ l, sample by sample.
    """
    (Wh, bh), (Wo, bo) = [(W.astype(np.float64), b.astype(np.float64)) for W, b in params]
    for _ in range(epochs):
        for x, label in zip(X.astype(np.float64), y):
            a = Wh @ x + bh
            h = g(a)
            o = Wo @ h + bo
            f = np.exp(o - o.max())
            f /= f.sum()
            grad_o = f - np.eye(len(f))[label]  # ∂l/∂o = f(x) - e(y)
            grad_h = Wo.T @ grad_o
            grad_a = grad_h * g_prime(a)
            Wo -= lr * np.outer(grad_o, h)
            bo -= lr * grad_o
            Wh -= lr * np.outer(grad_a, x)
            bh -= lr * grad_a
    return [(Wh, bh), (Wo, bo)]


COURSE_ACTIVATIONS = {
    "sigmoid": (lambda a: 1 / (1 + np.exp(-a)), lambda a: np.exp(-a) / (1 + np.exp(-a)) ** 2),
    "tanh": (np.tanh, lambda a: 1 - np.tanh(a) ** 2),
    "relu": (lambda a: np.maximum(a, 0), lambda a: (a > 0).astype(float)),
}


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("activation", sorted(COURSE_ACTIVATIONS))
def test_per_sample_fit_is_the_course_algorithm(digits, backend, activation):
    X, y = digits[0][:300], digits[1][:300]
    net = MLP([64, 16, 10], activation=activation, backend=backend, dtype="float64", seed=3)
    expected = course_sgd(net.params, X, y, 0.05, 2, *COURSE_ACTIVATIONS[activation])
    net.fit(X, y, epochs=2, lr=0.05, batch_size=1, shuffle=False)
    for (W, b), (W_ref, b_ref) in zip(net.params, expected):
        np.testing.assert_allclose(W, W_ref, rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(b, b_ref, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("batch_size", [1, 7, 64])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_backends_train_to_the_same_weights(digits, batch_size, dtype):
    """Same seed, same shuffled order, same result on the reference and the cpu backend."""
    X, y, X_val, y_val = digits
    results = []
    for backend in ("numpy", "cpu"):
        net = MLP([64, 20, 12, 10], backend=backend, dtype=dtype, seed=7)
        history = net.fit(X, y, epochs=2, lr=0.02, batch_size=batch_size, validation_data=(X_val, y_val))
        results.append((net._host_theta(), history))
    (theta_ref, hist_ref), (theta, hist) = results
    tol = {"float32": {"rtol": 1e-3, "atol": 1e-4}, "float64": {"rtol": 1e-9, "atol": 1e-11}}[dtype]
    np.testing.assert_allclose(theta, theta_ref, **tol)
    np.testing.assert_allclose(hist.train_loss, hist_ref.train_loss, **tol)
    np.testing.assert_allclose(hist.val_loss, hist_ref.val_loss, **tol)


@pytest.mark.parametrize("seed", range(3))
def test_digits_reaches_96_percent(seed):
    """The command line's default run (per-sample SGD, 64-128-10) on three different splits."""
    X, y = load_digits()
    X_rest, y_rest, X_test, y_test = train_validation_split(X, y, 0.25, seed=seed)
    X_train, y_train, X_val, y_val = train_validation_split(X_rest, y_rest, 0.1, seed=seed)
    net = MLP([64, 128, 10], backend="cpu", seed=seed)
    history = net.fit(X_train, y_train, epochs=50, lr=0.05, validation_data=(X_val, y_val), patience=5)
    assert net.score(X_test, y_test) >= 0.96
    assert history.train_loss[-1] < history.train_loss[0]


def test_every_backend_starts_from_the_same_weights():
    a = MLP([10, 7, 3], backend="numpy", dtype="float64", seed=5).params
    b = MLP([10, 7, 3], backend="cpu", dtype="float64", seed=5).params
    for (Wa, ba), (Wb, bb) in zip(a, b):
        np.testing.assert_array_equal(Wa, Wb)
        np.testing.assert_array_equal(ba, bb)
        assert not ba.any()


@pytest.mark.parametrize("activation, expected_std", [("relu", np.sqrt(2 / 400)), ("tanh", np.sqrt(2 / 500))])
def test_initialisation_scale(activation, expected_std):
    """He for the relu family, Glorot for sigmoid/tanh."""
    (W, _), _ = MLP([400, 100, 2], activation=activation, backend="numpy", seed=0).params
    assert abs(W.std() - expected_std) < 0.05 * expected_std


def test_patience_stops_and_restores_the_best_weights(digits):
    X, y, X_val, y_val = digits
    net = MLP([64, 64, 10], backend="cpu", seed=0)
    history = net.fit(X[:200], y[:200], epochs=200, lr=0.05, validation_data=(X_val, y_val), patience=2)
    assert history.stopped_early and len(history) < 200
    assert history.best_epoch == int(np.argmin(history.val_loss)) + 1
    assert len(history) == history.best_epoch + 2
    assert net.loss(X_val, y_val) == pytest.approx(min(history.val_loss), rel=1e-5)


def test_history_records_every_epoch(digits):
    X, y, X_val, y_val = digits
    history = MLP([64, 10], backend="cpu", seed=0).fit(X, y, epochs=3, validation_data=(X_val, y_val))
    assert len(history) == 3
    for key in ("train_loss", "val_loss", "val_accuracy", "seconds"):
        assert len(history[key]) == 3
    assert all(s > 0 for s in history.seconds)
    assert all(0 <= a <= 1 for a in history.val_accuracy)
    assert not history.stopped_early and not history.interrupted


def test_epochs_zero_changes_nothing(digits):
    net = MLP([64, 10], backend="cpu", seed=0)
    before = net._host_theta()
    assert len(net.fit(digits[0], digits[1], epochs=0)) == 0
    np.testing.assert_array_equal(net._host_theta(), before)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_divergence_raises_and_keeps_the_last_good_epoch(digits, backend):
    X, y = digits[0], digits[1]
    net = MLP([64, 32, 10], backend=backend, seed=0)
    net.fit(X, y, epochs=1, lr=0.01)
    good = net._host_theta()
    with pytest.raises(FloatingPointError, match="diverged"):
        net.fit(X, y, epochs=3, lr=1e30)
    np.testing.assert_array_equal(net._host_theta(), good)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("batch_size", [1, 2])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_divergence_on_the_very_last_update_is_caught(backend, batch_size, dtype):
    """The last update of the last epoch overflows: no later loss shows it, the weights do."""
    X, y, lr = last_update_overflows(dtype, batch_size)
    net = MLP([4, 6, 3], backend=backend, dtype=dtype, seed=0)
    before = net._host_theta()
    with pytest.raises(FloatingPointError, match=r"epoch 1: \d+ weights became NaN or infinite") as caught:
        net.fit(X, y, epochs=1, lr=lr, batch_size=batch_size, shuffle=False)
    np.testing.assert_array_equal(net._host_theta(), before)
    assert len(caught.value.history) == 0
    history = net.fit(X / X.max(), y, epochs=1, lr=0.1, batch_size=batch_size)
    assert np.isfinite(history.train_loss[0]) and np.isfinite(net._host_theta()).all()


def test_divergence_keeps_the_history_so_far(digits, monkeypatch):
    X, y = digits[0], digits[1]
    net = MLP([64, 16, 10], backend="cpu", seed=0)
    epoch = net._epoch
    calls = []

    def third_epoch_diverges(*args, **kwargs):
        epoch(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            args[6][0] = np.nan  # loss_sum

    monkeypatch.setattr(net, "_epoch", third_epoch_diverges)
    with pytest.raises(FloatingPointError, match="diverged in epoch 3") as caught:
        net.fit(X, y, epochs=5, validation_data=(digits[2], digits[3]))
    history = caught.value.history
    assert len(history) == 2 and [record.epoch for record in history] == [1, 2]
    assert net.loss(digits[2], digits[3]) == pytest.approx(history.val_loss[-1], rel=1e-6)


@pytest.mark.parametrize("where", ["hidden weight", "output bias"])
def test_a_nan_model_scores_alike_on_every_backend(digits, where):
    """NaN logits: the arg-max is NumPy's (the first NaN), the loss is NaN, on every backend."""
    X, y = digits[2], digits[3]
    scores = {}
    for backend in ("numpy", "cpu"):
        net = MLP([64, 16, 10], backend=backend, seed=0)
        theta = net._host_theta()
        theta[0 if where == "hidden weight" else -7] = np.nan  # W_1[0, 0] or b_2[3]
        net._backend.assign(net._theta, net._backend.to_device(theta))
        assert np.isnan(net.loss(X, y))
        scores[backend] = net.score(X, y)
    expected = np.mean(y == (0 if where == "hidden weight" else 3))
    assert scores == {"numpy": expected, "cpu": expected}


def test_history_reads_as_records_and_as_metrics(digits):
    X, y, X_val, y_val = digits
    history = MLP([64, 16, 10], backend="cpu", seed=0).fit(X, y, epochs=3, validation_data=(X_val, y_val))
    records = list(history)
    assert [record.epoch for record in records] == [1, 2, 3]
    assert history[0] == records[0] and history[-1] == records[2] and history[1:] == records[1:]
    assert history[2].train_loss == history["train_loss"][2] == history.train_loss[2]
    assert history[0]._asdict().keys() == {"epoch", "train_loss", "val_loss", "val_accuracy", "seconds", "lr"}
    with pytest.raises(IndexError, match="3 epochs"):
        history[3]
    with pytest.raises(KeyError, match="'accuracy'"):
        history["accuracy"]
    with pytest.raises(TypeError, match="epoch numbers"):
        history[1.0]


@pytest.mark.parametrize("handling", ["ignored", "the program's own"])
def test_fit_leaves_a_program_s_own_sigint_handling_alone(digits, monkeypatch, handling):
    """A background job ignores SIGINT, a server handles it: fit must not turn it into an early stop."""
    X, y = digits[0][:200], digits[1][:200]
    received = []
    handler = signal.SIG_IGN if handling == "ignored" else (lambda signum, frame: received.append(signum))
    previous = signal.signal(signal.SIGINT, handler)
    try:
        net = MLP([64, 16, 10], backend="cpu", seed=0)
        epoch = net._epoch

        def interrupted_epoch(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGINT)
            epoch(*args, **kwargs)

        monkeypatch.setattr(net, "_epoch", interrupted_epoch)
        history = net.fit(X, y, epochs=3)
        assert not history.interrupted and len(history) == 3
        assert signal.getsignal(signal.SIGINT) is handler
        assert received == ([] if handling == "ignored" else [signal.SIGINT] * 3)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_pickle_and_deepcopy(digits):
    """Host weights and the backend by name; a copy trains on exactly as the original does."""
    X, y = digits[0], digits[1]
    net = MLP([64, 16, 10], activation="tanh", backend="cpu", dtype="float64", seed=4)
    net.fit(X, y, epochs=1, lr=0.05)
    for twin in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        assert repr(twin) == repr(net)
        np.testing.assert_array_equal(twin._host_theta(), net._host_theta())
        np.testing.assert_array_equal(twin.predict_proba(X), net.predict_proba(X))
    twin = copy.deepcopy(net)
    for model in (net, twin):
        model.fit(X, y, epochs=1, lr=0.05)  # the same shuffled order: the generator's state was copied
    np.testing.assert_array_equal(twin._host_theta(), net._host_theta())


def test_ctrl_c_stops_fit_cleanly(digits):
    X, y = digits[0], digits[1]
    net = MLP([64, 32, 10], backend="cpu", seed=0)
    net.fit(X, y, epochs=1)  # compile outside the timed part
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    started = time.perf_counter()
    timer.start()
    history = net.fit(X, y, epochs=100_000, lr=0.01)
    stopped = time.perf_counter() - started
    timer.join()
    assert history.interrupted
    assert 0 < len(history) < 100_000
    assert stopped < 0.5 + 0.5  # within a fraction of a second of the signal
    assert np.isfinite(net._host_theta()).all()
    assert net.score(X, y) > 0.9  # a consistent, usable model
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_predictions(digits):
    X, y = digits[0], digits[1]
    net = MLP([64, 16, 10], backend="cpu", seed=0)
    net.fit(X, y, epochs=3, lr=0.02)
    probs = net.predict_proba(X)
    assert probs.shape == (len(X), 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    labels = net.predict(X)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, probs.argmax(axis=1))
    assert net.score(X, y) == pytest.approx(np.mean(labels == y))
    np.testing.assert_allclose(net.loss(X, y), -np.mean(np.log(probs[np.arange(len(y)), y])), rtol=1e-4)


def test_predict_in_several_evaluation_batches():
    rng = np.random.default_rng(0)
    X = rng.random((2500, 5))
    net = MLP([5, 4, 3], backend="cpu", seed=0)
    reference = MLP([5, 4, 3], backend="numpy", seed=0)
    np.testing.assert_allclose(net.predict_proba(X), reference.predict_proba(X), rtol=1e-5)


def test_gradients_match_the_reference_and_finite_differences():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((8, 5)), rng.integers(0, 3, 8)
    nets = [MLP([5, 4, 3], activation="tanh", backend=b, dtype="float64", seed=2) for b in ("numpy", "cpu")]
    grads = [net.gradients(X, y) for net in nets]
    for (dW, db), (dW_ref, db_ref), (W, b) in zip(grads[1], grads[0], nets[0].params):
        assert dW.shape == W.shape and db.shape == b.shape
        np.testing.assert_allclose(dW, dW_ref, rtol=1e-10)
        np.testing.assert_allclose(db, db_ref, rtol=1e-10)
    net = nets[1]
    params = net.params
    h = 1e-6
    W = params[0][0]
    for index in [(0, 0), (3, 4), (1, 2)]:
        shifted = []
        for sign in (1, -1):
            trial = [(w.copy(), b.copy()) for w, b in params]
            trial[0][0][index] += sign * h
            net.set_params(trial)
            shifted.append(net.loss(X, y))
        assert grads[1][0][0][index] == pytest.approx((shifted[0] - shifted[1]) / (2 * h), rel=1e-5)
    assert W.shape == (4, 5)


def test_inputs_are_converted_once(digits):
    """float64, int and non-contiguous X are accepted (converted at the boundary)."""
    X, y = digits[0], digits[1]
    net = MLP([64, 10], backend="cpu", seed=0)
    wide = np.zeros((len(X), 128))
    wide[:, ::2] = X
    net.fit(wide[:, ::2], y.astype(np.int32), epochs=1)
    assert 0 <= net.score((X * 16).astype(np.int64) / 16, y) <= 1
    assert net.predict(X.tolist()).shape == (len(X),)


def test_set_params_round_trip():
    net = MLP([4, 3, 2], backend="cpu", seed=0)
    params = [(W + 1, b - 1) for W, b in net.params]
    net.set_params(params)
    for (W, b), (W_new, b_new) in zip(net.params, params):
        np.testing.assert_array_equal(W, W_new.astype(np.float32))
        np.testing.assert_array_equal(b, b_new.astype(np.float32))


def test_auto_backend_falls_back_to_cpu_without_a_gpu():
    from kernels import cuda as cuda_ops

    net = MLP([3, 2], backend="auto")
    assert net.backend == ("cuda" if cuda_ops.is_available() else "cpu")


def test_auto_backend_without_a_driver_does_not_import_numba_cuda():
    """Without an NVIDIA driver, ``auto`` answers ``cpu`` at once, without the ~0.5 s import of numba.cuda."""
    script = ("import sys; from model.backends import cuda_driver_loads, resolve_backend_name; "
              "print(cuda_driver_loads(), resolve_backend_name('auto'), 'numba.cuda' in sys.modules)")
    environment = {key: value for key, value in os.environ.items() if key != "NUMBA_CUDA_DRIVER"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment,
                            timeout=300, check=True)
    driver_loads, backend, imported = result.stdout.split()
    if driver_loads == "True":
        pytest.skip("an NVIDIA driver is present: auto asks numba.cuda")
    assert (backend, imported) == ("cpu", "False")


def test_cuda_driver_probe(monkeypatch):
    from model import backends

    def no_library(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.delenv("NUMBA_CUDA_DRIVER", raising=False)
    monkeypatch.setattr(backends.ctypes, "CDLL", no_library)
    assert not backends.cuda_driver_loads()
    assert backends.resolve_backend_name("auto") == "cpu"
    monkeypatch.setenv("NUMBA_CUDA_DRIVER", "/opt/driver/libcuda.so")  # numba's setting: numba decides
    assert backends.cuda_driver_loads()
    loaded = []
    monkeypatch.delenv("NUMBA_CUDA_DRIVER")
    monkeypatch.setattr(backends.ctypes, "CDLL", loaded.append)
    assert backends.cuda_driver_loads() == (backends.sys.platform != "darwin")


def test_cuda_backend_without_gpu_says_how_to_get_one():
    from kernels import cuda as cuda_ops

    if cuda_ops.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="NUMBA_ENABLE_CUDASIM"):
        MLP([3, 2], backend="cuda")


def test_verbose_shows_progress_within_long_epochs(digits, capsys, monkeypatch):
    import model.mlp as mlp_module

    monkeypatch.setattr(mlp_module._Progress, "LOG_INTERVAL", 0.0)
    net = MLP([64, 16, 10], backend="cpu", seed=0)
    monkeypatch.setattr(net._backend, "chunk_work", 3 * net.n_params * 16)  # small chunks: many progress points
    net.fit(digits[0], digits[1], epochs=1, verbose=True)
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("epoch 1/1") and line.endswith("%") for line in lines)
    assert lines[-1].startswith("epoch 1/1  train loss")


def test_history_plot_draws_loss_and_accuracy(digits, tmp_path):
    pytest.importorskip("matplotlib")
    X, y, X_val, y_val = digits
    history = MLP([64, 16, 10], backend="cpu", seed=0).fit(X, y, epochs=4, validation_data=(X_val, y_val),
                                                           patience=2)
    figure = history.plot(tmp_path / "curves.svg")
    loss_axes, accuracy_axes = figure.axes
    train, validation = loss_axes.get_lines()[:2]
    np.testing.assert_array_equal(train.get_ydata(), history.train_loss)
    np.testing.assert_array_equal(validation.get_ydata(), history.val_loss)
    np.testing.assert_array_equal(accuracy_axes.get_lines()[0].get_ydata(), history.val_accuracy)
    assert (tmp_path / "curves.svg").read_text().lstrip().startswith("<?xml")
    no_validation = MLP([64, 8, 10], backend="cpu", seed=0).fit(X, y, epochs=2)
    no_validation.plot(tmp_path / "train-only.png")
    assert (tmp_path / "train-only.png").stat().st_size > 0


def test_history_plot_errors(monkeypatch, tmp_path):
    from model import History

    with pytest.raises(ValueError, match="no epochs to plot"):
        History().plot(tmp_path / "c.png")
    history = History(train_loss=[1.0], val_loss=[None], val_accuracy=[None], seconds=[0.1], lr=[0.1])
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'numba-mlp\[plot\]'"):
        history.plot(tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_verbose_fit_says_when_it_compiles(digits, monkeypatch, capsys, backend):
    """The first fit of a dtype compiles for 15-30 s: a verbose fit says so before it starts, and only then."""
    X, y, X_val, y_val = digits
    net = MLP([64, 8, 10], backend=backend, seed=0)
    net.fit(X[:50], y[:50], epochs=1, verbose=True)
    capsys.readouterr()
    net.fit(X[:50], y[:50], epochs=1, verbose=True)  # compiled by now, in memory
    assert "compiling" not in capsys.readouterr().out
    asked = []

    def needs_compiling(dtype, ops):
        asked.append((np.dtype(dtype), ops))
        return True

    monkeypatch.setattr(net._backend.ops, "needs_compiling", needs_compiling)
    net.fit(X[:50], y[:50], epochs=1, batch_size=10, validation_data=(X_val, y_val), verbose=True)
    out = capsys.readouterr().out
    assert out.startswith(f"compiling {backend} kernels for float32, first run only")
    assert asked == [(np.dtype(np.float32), ("minibatch_epoch", "evaluate"))]


def test_cpu_kernels_know_whether_they_are_cached(tmp_path):
    """An empty cache directory: the kernels need compiling; the in-process dispatcher knows once compiled."""
    script = ("import kernels.cpu as k, kernels.numpy as n; "
              "print(k.needs_compiling('float64', ('sgd_epoch',)), n.needs_compiling('float64', ('sgd_epoch',)))")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300,
                            check=True)
    assert result.stdout.split() == ["True", "False"]
    import kernels.cpu

    X, y = load_digits("float64")
    MLP([64, 8, 10], backend="cpu", dtype="float64", seed=0).fit(X[:20], y[:20], epochs=1)
    assert not kernels.cpu.needs_compiling("float64", ("sgd_epoch",))
