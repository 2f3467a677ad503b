"""Real MNIST, when ../shared/data/mnist is present: 784-128-10, one per-sample epoch, >= 95%."""

import pytest

from model import MLP, load_mnist
from tests.conftest import MNIST_DIR, SIMULATOR

pytestmark = [
    pytest.mark.skipif(not MNIST_DIR.exists(), reason="../shared/data/mnist is absent"),
    pytest.mark.skipif(SIMULATOR, reason="far too large for the CUDA simulator"),
]


def test_one_epoch_of_per_sample_sgd_reaches_95_percent():
    X, y = load_mnist(MNIST_DIR, "train")
    X_test, y_test = load_mnist(MNIST_DIR, "test")
    net = MLP([784, 128, 10], backend="cpu", seed=0)
    history = net.fit(X, y, epochs=1, lr=0.01, batch_size=1)
    accuracy = net.score(X_test, y_test)
    print(f"MNIST 784-128-10, one per-sample epoch: test accuracy {accuracy:.4f}, {history.seconds[0]:.2f}s")
    assert accuracy >= 0.95
