"""Same model, data and arguments: the same weights bit for bit, in one process or many, at any load.

The fused CPU epochs hand their state back at the end of every call (the deferred
first-layer update, the transposed first layer) and choose their first-layer path
from the data, so the samples where the model cuts an epoch into calls, and the
samples the path choice looks at, must not depend on timing.
"""

import hashlib
import itertools
import subprocess
import sys

import pytest

import model.mlp as mlp_module
from model import MLP, load_digits
from tests.conftest import SIMULATOR

pytestmark = pytest.mark.skipif(SIMULATOR, reason="model tests run in the normal (non-simulated) process")

# 256-48-10 on the digits tiled four times and thinned to about a fifth of non-zero pixels: sparse enough for
# the CPU's zero-skipping paths; with SMALL_CHUNKS each epoch is cut into several calls.
CASES = [(batch_size, dtype) for batch_size in (1, 32) for dtype in ("float32", "float64")]
TRAIN = """
import numpy as np
from model import MLP, load_digits

def data():
    X, y = load_digits()
    X = np.tile(X, (1, 4))
    X[np.random.default_rng(5).random(X.shape) < 0.6] = 0
    return X, y

def train(batch_size, dtype, chunk_work=None):
    X, y = data()
    net = MLP([256, 48, 10], backend="cpu", dtype=dtype, seed=3)
    if chunk_work is not None:
        net._backend.chunk_work = chunk_work
    net.fit(X, y, epochs=2, lr=0.05, batch_size=batch_size)
    net.fit(X[:700], y[:700], epochs=1, lr=0.02, batch_size=batch_size)
    return net._host_theta()
"""
namespace = {}
exec(TRAIN, namespace)  # the same code in this process and in the fresh ones
train = namespace["train"]
SMALL_CHUNKS = 1 << 24  # a few hundred samples per call for 256-48-10


def digest(theta):
    return hashlib.sha256(theta.tobytes()).hexdigest()


@pytest.mark.parametrize("batch_size, dtype", CASES, ids=[f"batch{b}-{d}" for b, d in CASES])
def test_two_fits_in_one_process_are_identical(batch_size, dtype):
    first = train(batch_size, dtype, SMALL_CHUNKS)
    second = train(batch_size, dtype, SMALL_CHUNKS)
    assert first.tobytes() == second.tobytes()


@pytest.mark.parametrize("batch_size, dtype", CASES, ids=[f"batch{b}-{d}" for b, d in CASES])
def test_the_clock_changes_nothing(monkeypatch, batch_size, dtype):
    """A loaded machine (a clock whose steps jump between 1 µs and 10 s) gives the same weights bit for bit."""
    expected = train(batch_size, dtype)
    steps = itertools.cycle([1e-6, 10.0, 0.3, 1e-3])
    now = [0.0]

    def erratic_clock():
        now[0] += next(steps)
        return now[0]

    monkeypatch.setattr(mlp_module.time, "perf_counter", erratic_clock)
    assert train(batch_size, dtype).tobytes() == expected.tobytes()


@pytest.mark.parametrize("batch_size, dtype", CASES, ids=[f"batch{b}-{d}" for b, d in CASES])
def test_fresh_processes_give_the_same_weights(batch_size, dtype):
    script = TRAIN + f"\nimport hashlib\nprint(hashlib.sha256(train({batch_size}, {dtype!r}).tobytes()).hexdigest())\n"
    digests = {digest(train(batch_size, dtype))}
    for _ in range(2):
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                                check=True)
        digests.add(result.stdout.strip())
    assert len(digests) == 1


def test_epochs_are_cut_into_calls_of_fixed_length(monkeypatch):
    """The chunking itself: calls of the epoch op cover fixed runs of samples, whole batches, a function of
    the sizes and the backend only."""
    X, y = load_digits()
    net = MLP([64, 32, 10], backend="cpu", seed=0)
    monkeypatch.setattr(net._backend, "chunk_work", 3 * net.n_params * 100)  # 100 samples per call
    lengths = []
    original = net._backend.ops.sgd_epoch
    monkeypatch.setattr(net._backend.ops, "sgd_epoch", lambda *args: lengths.append(len(args[6])) or original(*args))
    net.fit(X, y, epochs=1)
    assert lengths == [100] * 17 + [97]
    assert net._chunk_samples(7) == 98  # whole batches
    assert MLP([64, 32, 10], backend="cpu")._chunk_samples(1) == (1 << 31) // (3 * net.n_params)
