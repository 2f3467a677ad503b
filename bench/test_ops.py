"""Single ops on each backend: linear forward/backward, activations, softmax-cross-entropy, SGD update.

Groups name the op and its shape. Each op is first checked against the NumPy
reference on the same inputs, then timed (synchronised on a GPU). The ``numpy``
entry is that reference, written for readability (leaky ReLU through
``np.where``, a batch-1 backward through full matrix products), not a tuned
NumPy: ``bench/report.py`` calls its column "× reference". Products report
GFLOP/s; per-element ops (activations, softmax, the SGD update) Gelem/s.
"""

import numpy as np
import pytest

import kernels.numpy as reference
from bench.conftest import let_blas_threads_sleep, library_backends, require_backend
from kernels.activations import ACTIVATIONS
from model.backends import get_backend

N_IN, N_OUT, N_CLASSES = 784, 128, 10


class OpCall:
    """An op of one backend with its inputs on the device, outputs read back for checking."""

    def __init__(self, backend_name, op_name, args, outputs):
        self.backend = get_backend(backend_name)
        self.op = getattr(self.backend.ops, op_name)
        self.args = [self.backend.to_device(a) if isinstance(a, np.ndarray) else a for a in args]
        self.outputs = outputs

    def __call__(self):
        self.op(*self.args)
        self.backend.synchronize()

    def results(self):
        return [self.backend.to_host(self.args[i]) for i in self.outputs]


def run(benchmark, backend, group, op_name, args, outputs, flops, expected, elements=None):
    require_backend(backend)
    call = OpCall(backend, op_name, args, outputs)
    call()  # compile, and check before timing
    for got, want in zip(call.results(), expected):
        # float32 sums of up to 1,024 products of N(0, 1) numbers, added in another order
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=5e-4)
    let_blas_threads_sleep()
    benchmark.group = group
    if elements is None:
        benchmark.extra_info.update(flops=flops, unit="GFLOP/s", label=backend)
    else:
        benchmark.extra_info.update(elements=elements, unit="Gelem/s", label=backend)
    benchmark(call)


def arrays(*shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for shape in shapes]


@pytest.mark.parametrize("backend", library_backends())
@pytest.mark.parametrize("batch", [1, 128, 1024])
def test_linear_forward(benchmark, backend, batch):
    X, W, b = arrays((batch, N_IN), (N_OUT, N_IN), N_OUT)
    expected = np.empty((batch, N_OUT), np.float32)
    reference.linear_forward(X, W, b, expected)
    run(benchmark, backend, f"linear forward ({batch}, {N_IN}) -> {N_OUT}", "linear_forward",
        [X, W, b, np.empty_like(expected)], [3], 2 * batch * N_IN * N_OUT, [expected])


@pytest.mark.parametrize("backend", library_backends())
@pytest.mark.parametrize("batch", [1, 128, 1024])
def test_linear_backward(benchmark, backend, batch):
    dZ, X, W = arrays((batch, N_OUT), (batch, N_IN), (N_OUT, N_IN))
    dW, db = np.empty((N_OUT, N_IN), np.float32), np.empty(N_OUT, np.float32)
    dX = np.empty((batch, N_IN), np.float32)
    reference.linear_backward(dZ, X, W, dW, db, dX)
    run(benchmark, backend, f"linear backward ({batch}, {N_IN}) -> {N_OUT}", "linear_backward",
        [dZ, X, W, np.empty_like(dW), np.empty_like(db), np.empty_like(dX)], [3, 4, 5],
        4 * batch * N_IN * N_OUT, [dW, db, dX])


@pytest.mark.parametrize("backend", library_backends())
@pytest.mark.parametrize("activation", sorted(set(ACTIVATIONS) - {"identity"}))
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_activation(benchmark, backend, activation, direction):
    code = ACTIVATIONS[activation]
    (Z,) = arrays((1024, N_OUT))
    A = np.empty_like(Z)
    reference.activation_forward(Z, code, A)
    if direction == "forward":
        run(benchmark, backend, f"{activation} forward (1024, {N_OUT})", "activation_forward",
            [Z, code, np.empty_like(Z)], [2], None, [A], elements=Z.size)
    else:
        (dA,) = arrays((1024, N_OUT), seed=1)
        dZ = np.empty_like(Z)
        reference.activation_backward(A, dA, code, dZ)
        run(benchmark, backend, f"{activation} backward (1024, {N_OUT})", "activation_backward",
            [A, dA, code, np.empty_like(Z)], [3], None, [dZ], elements=Z.size)


@pytest.mark.parametrize("backend", library_backends())
@pytest.mark.parametrize("batch", [1, 128, 1024])
def test_softmax_cross_entropy(benchmark, backend, batch):
    (Z,) = arrays((batch, N_CLASSES))
    y = np.random.default_rng(2).integers(0, N_CLASSES, batch)
    losses = np.empty(batch, np.float32)
    reference.cross_entropy(Z, y, losses)
    run(benchmark, backend, f"cross-entropy ({batch}, {N_CLASSES})", "cross_entropy",
        [Z, y, np.empty_like(losses)], [2], None, [losses], elements=Z.size)


@pytest.mark.parametrize("backend", library_backends())
@pytest.mark.parametrize("batch", [1, 128, 1024])
def test_softmax_cross_entropy_backward(benchmark, backend, batch):
    (Z,) = arrays((batch, N_CLASSES))
    y = np.random.default_rng(2).integers(0, N_CLASSES, batch)
    dZ = np.empty_like(Z)
    reference.softmax_cross_entropy_backward(Z, y, dZ)
    run(benchmark, backend, f"softmax-cross-entropy backward ({batch}, {N_CLASSES})",
        "softmax_cross_entropy_backward", [Z, y, np.empty_like(Z)], [2], None, [dZ], elements=Z.size)


@pytest.mark.parametrize("backend", library_backends())
def test_sgd_update(benchmark, backend):
    n_params = N_IN * N_OUT + N_OUT + N_OUT * N_CLASSES + N_CLASSES  # 101,770: the 784-128-10 net
    theta, grad = arrays(n_params, n_params)
    expected = theta.copy()
    reference.sgd_update(expected, grad, 0.01)
    require_backend(backend)
    call = OpCall(backend, "sgd_update", [theta, grad, 0.01], [0])
    call()
    np.testing.assert_allclose(call.results()[0], expected, rtol=1e-6, atol=1e-7)  # FMA or not
    benchmark.group = f"sgd update ({n_params} parameters)"
    benchmark.extra_info.update(elements=n_params, unit="Gelem/s", label=backend)
    benchmark(call)
