"""Momentum, Nesterov, weight decay and learning-rate schedules in ``MLP.fit``, on every host backend.

The oracle is ``torch.optim.SGD`` (skipped without torch); the CUDA backend is
checked the same way in ``tests/test_cuda.py`` on the simulator.
"""

import numpy as np
import pytest

from model import MLP, load_digits
from model.schedule import ADAPTIVE_MIN_LR
from tests.conftest import SIMULATOR

pytestmark = pytest.mark.skipif(SIMULATOR, reason="model tests run in the normal (non-simulated) process")

#: (momentum, nesterov, weight_decay) cases of the comparison with torch.
SETTINGS = {"momentum": (0.9, False, 0.0), "nesterov": (0.8, True, 0.0), "weight decay": (0.0, False, 0.01),
            "nesterov + weight decay": (0.9, True, 0.005)}


def torch_sgd(params, X, y, lr, batch_size, epochs, momentum, nesterov, weight_decay, activation="tanh"):
    """The same training in PyTorch, float64: ``nn.Linear`` layers, ``CrossEntropyLoss``, ``optim.SGD`` with the
    weight decay on the weight matrices only; the samples in order."""
    torch = pytest.importorskip("torch")
    layers = []
    for index, (W, b) in enumerate(params):
        linear = torch.nn.Linear(W.shape[1], W.shape[0]).double()
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W))
            linear.bias.copy_(torch.from_numpy(b))
        layers.append(linear)
        if index < len(params) - 1:
            layers.append(torch.nn.Tanh() if activation == "tanh" else torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    groups = [{"params": [m.weight for m in linears], "weight_decay": weight_decay},
              {"params": [m.bias for m in linears], "weight_decay": 0.0}]
    optimizer = torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
    loss = torch.nn.CrossEntropyLoss()
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(epochs):
        for start in range(0, len(X), batch_size):
            optimizer.zero_grad()
            loss(net(X_t[start:start + batch_size]), y_t[start:start + batch_size]).backward()
            optimizer.step()
    return [(m.weight.detach().numpy(), m.bias.detach().numpy()) for m in linears]


@pytest.fixture(scope="module")
def small_digits():
    X, y = load_digits("float64")
    return X[:50], y[:50]


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("batch_size", [1, 16], ids=["per-sample", "minibatch"])
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_fit_matches_torch_sgd(small_digits, backend, batch_size, setting):
    """Three epochs, float64, a short last batch (50 = 3 × 16 + 2): the weights agree to 1e-9 relative."""
    X, y = small_digits
    momentum, nesterov, weight_decay = SETTINGS[setting]
    net = MLP([64, 12, 8, 10], activation="tanh", backend=backend, dtype="float64", seed=1)
    # lr 0.01: with μ = 0.9 a per-sample step of 0.05 is effectively 0.5, where float64 rounding grows to 1e-9
    expected = torch_sgd(net.params, X, y, 0.01, batch_size, 3, momentum, nesterov, weight_decay)
    net.fit(X, y, epochs=3, lr=0.01, batch_size=batch_size, shuffle=False, momentum=momentum, nesterov=nesterov,
            weight_decay=weight_decay)
    for (W, b), (W_ref, b_ref) in zip(net.params, expected):
        np.testing.assert_allclose(W, W_ref, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(b, b_ref, rtol=1e-9, atol=1e-12)


def test_plain_sgd_is_unchanged_by_zero_momentum(small_digits):
    """momentum=0, weight_decay=0, a constant rate: the plain kernels, bit for bit."""
    X, y = small_digits
    nets = [MLP([64, 12, 10], backend="cpu", seed=2) for _ in range(2)]
    nets[0].fit(X, y, epochs=2, lr=0.05)
    nets[1].fit(X, y, epochs=2, lr=0.05, momentum=0.0, nesterov=False, weight_decay=0.0, lr_schedule="constant")
    assert nets[0]._host_theta().tobytes() == nets[1]._host_theta().tobytes()
    assert nets[1]._velocity is None  # plain SGD allocates no velocity


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"momentum": -0.1}, ValueError, "momentum must be a finite number >= 0"),
    ({"momentum": 1.0}, ValueError, r"momentum must be in \[0, 1\)"),
    ({"momentum": float("nan")}, ValueError, "momentum must be a finite number"),
    ({"momentum": "0.9"}, TypeError, "momentum must be a real number"),
    ({"nesterov": True}, ValueError, "nesterov=True needs momentum > 0"),
    ({"nesterov": 1, "momentum": 0.9}, TypeError, "nesterov must be a bool"),
    ({"weight_decay": -1e-4}, ValueError, "weight_decay must be a finite number >= 0"),
    ({"lr_schedule": "cosine"}, ValueError, "lr_schedule must be one of"),
    ({"lr_schedule": 3}, TypeError, "lr_schedule must be one of"),
    ({"lr_schedule": "invscaling", "power_t": -0.5}, ValueError, "power_t must be a finite number >= 0"),
    ({"lr_schedule": "adaptive"}, ValueError, "lr_schedule='adaptive' needs patience"),
    ({"tol": -1.0}, ValueError, "tol must be a finite number >= 0"),
    ({"callback": "stop"}, TypeError, "callback must be callable"),
])
def test_bad_optimizer_settings_fail_before_any_weight_changes(small_digits, kwargs, error, pattern):
    X, y = small_digits
    net = MLP([64, 8, 10], backend="cpu", seed=0)
    before = net._host_theta()
    with pytest.raises(error, match=pattern):
        net.fit(X, y, epochs=1, **kwargs)
    np.testing.assert_array_equal(net._host_theta(), before)


def test_invscaling_follows_scikit_learn(small_digits):
    """η of an epoch is η₀ / (t + 1)^p, t the samples trained on before it, over successive fits too."""
    X, y = small_digits
    net = MLP([64, 8, 10], backend="cpu", seed=0)
    first = net.fit(X, y, epochs=3, lr=0.1, lr_schedule="invscaling", power_t=0.25)
    second = net.fit(X, y, epochs=1, lr=0.1, lr_schedule="invscaling", power_t=0.25)
    np.testing.assert_allclose(first.lr + second.lr, [0.1 / (t + 1) ** 0.25 for t in (0, 50, 100, 150)])


def test_adaptive_divides_by_five_then_stops(small_digits):
    """With no improvement (a tolerance no loss can beat) after the first epoch, every `patience` epochs the rate
    is divided by 5, until it would fall below 10⁻⁶."""
    X, y = small_digits
    history = MLP([64, 8, 10], backend="cpu", seed=0).fit(X, y, epochs=100, lr=0.01, lr_schedule="adaptive",
                                                          patience=2, tol=1e9)
    assert history.lr[:7] == pytest.approx([0.01, 0.01, 0.01, 0.002, 0.002, 0.0004, 0.0004])
    assert history.stopped_early and min(history.lr) >= ADAPTIVE_MIN_LR and history.lr[-1] / 5 < ADAPTIVE_MIN_LR


def test_a_callable_schedule_and_a_callback(small_digits):
    X, y = small_digits
    seen = []
    history = MLP([64, 8, 10], backend="cpu", seed=0).fit(
        X, y, epochs=10, lr=1.0, lr_schedule=lambda epoch, history: 0.1 / epoch,
        callback=lambda history: seen.append(len(history)) or len(history) == 3)
    assert history.lr == pytest.approx([0.1, 0.05, 0.1 / 3]) and seen == [1, 2, 3] and history.stopped_early
    with pytest.raises(ValueError, match="the learning rate lr_schedule returned must be a finite number > 0"):
        MLP([64, 8, 10], backend="cpu", seed=0).fit(X, y, epochs=2, lr_schedule=lambda epoch, history: -1.0)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("batch_size", [1, 16])
def test_a_saved_model_resumes_training_exactly(tmp_path, small_digits, backend, batch_size):
    """Velocity, shuffling generator and schedule time are saved: train 1 + 1 epochs through a file = 2 epochs."""
    X, y = small_digits
    settings = {"lr": 0.05, "batch_size": batch_size, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3,
                "lr_schedule": "invscaling"}
    straight = MLP([64, 12, 10], backend=backend, seed=5)
    straight.fit(X, y, epochs=2, **settings)
    resumed = MLP([64, 12, 10], backend=backend, seed=5)
    resumed.fit(X, y, epochs=1, **settings)
    resumed.save(tmp_path / "m.npz")
    resumed = MLP.load(tmp_path / "m.npz", backend=backend)
    resumed.fit(X, y, epochs=1, **settings)
    assert resumed._host_theta().tobytes() == straight._host_theta().tobytes()


def test_set_params_forgets_the_velocity(small_digits):
    X, y = small_digits
    net = MLP([64, 8, 10], backend="cpu", seed=0)
    net.fit(X, y, epochs=1, momentum=0.9)
    assert net._velocity is not None
    net.set_params(net.params)
    assert net._velocity is None
