"""Every op of the backend under test against the NumPy reference, on fresh random inputs.

Outputs are poisoned with NaN before each call, so an unwritten element fails.
"""

import os
import pathlib

import numpy as np
import pytest

import kernels.numpy as reference
from kernels import layout
from kernels.activations import ACTIVATIONS
from kernels.optimizer import hyper
from tests.conftest import CUDA_UNDER_TEST, SIMULATOR, poisoned, tolerance

# (B, n_in, n_out): batch 1 (the course's matrix-vector product), odd sizes, a
# size that leaves remainders in every blocking, and the MNIST layer on the CPU.
LINEAR_SHAPES = [(1, 7, 5), (3, 5, 9), (5, 13, 3), (17, 33, 19)]
if not SIMULATOR:
    LINEAR_SHAPES += [(1, 784, 128), (16, 70, 31), (130, 784, 128)]
if CUDA_UNDER_TEST and not SIMULATOR:  # a real GPU: several tiles and a grid-stride loop
    LINEAR_SHAPES += [(1000, 300, 200)]

ACTIVATION_NAMES = sorted(ACTIVATIONS)


def simulator_runs_only(wanted, reason):
    """On the CUDA simulator (~10⁴× slower), skip the cases that are not ``wanted``; elsewhere run them all."""
    if SIMULATOR and not wanted:
        pytest.skip(f"on the simulator: {reason}")


def random_array(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def assert_sums_close(got, terms_a, terms_b, addend=None):
    """``got ≈ terms_a @ terms_b (+ addend)`` within the worst-case rounding error of any order of summation.

    Each element is a sum of ``n`` products (``n`` = the inner dimension, plus one
    for an addend); summed in any order, with or without fused multiply-adds, its
    error is at most ``γ_n Σ|aᵢ bᵢ|`` (Higham's ``γ_n = n u / (1 - n u)``, ``u``
    the unit roundoff), plus the final rounding ``u |exact|``. The exact values
    are computed in extended precision. A fixed tolerance fails correct GPU
    results where large terms cancel, and hides wrong ones where they are small.
    """
    u = np.finfo(got.dtype).eps / 2
    exact = terms_a.astype(np.longdouble) @ terms_b.astype(np.longdouble)
    magnitude = np.abs(terms_a).astype(np.longdouble) @ np.abs(terms_b).astype(np.longdouble)
    n = terms_a.shape[-1]
    if addend is not None:
        exact = exact + addend
        magnitude = magnitude + np.abs(addend)
        n += 1
    bound = n * u / (1 - n * u) * magnitude + u * np.abs(exact) + np.finfo(got.dtype).tiny
    error = np.abs(got.astype(np.longdouble) - exact)
    worst = np.unravel_index(np.argmax(error - bound), error.shape)
    assert np.all(error <= bound), f"error {float(error[worst]):.3g} > bound {float(bound[worst]):.3g} at {worst}"


@pytest.mark.parametrize("shape", LINEAR_SHAPES, ids=str)
def test_linear_forward(under_test, rng, dtype, shape):
    batch, n_in, n_out = shape
    X = random_array(rng, (batch, n_in), dtype)
    W = random_array(rng, (n_out, n_in), dtype)
    b = random_array(rng, n_out, dtype)
    (got,) = under_test.call("linear_forward", X, W, b, poisoned((batch, n_out), dtype), outputs=[3])
    assert_sums_close(got, X, W.T, b)


@pytest.mark.parametrize("shape", LINEAR_SHAPES, ids=str)
@pytest.mark.parametrize("with_input_gradient", [True, False], ids=["dX", "no-dX"])
def test_linear_backward(under_test, rng, dtype, shape, with_input_gradient):
    batch, n_in, n_out = shape
    dZ = random_array(rng, (batch, n_out), dtype)
    dZ[:, ::3] = 0  # rows of zeros, as inactive ReLU units give
    X = random_array(rng, (batch, n_in), dtype)
    W = random_array(rng, (n_out, n_in), dtype)
    args = [dZ, X, W, poisoned((n_out, n_in), dtype), poisoned(n_out, dtype),
            poisoned(X.shape, dtype) if with_input_gradient else None]
    got = under_test.call("linear_backward", *args, outputs=[3, 4, 5] if with_input_gradient else [3, 4])
    assert_sums_close(got[0], dZ.T, X)  # dW = dZᵀ X
    assert_sums_close(got[1], dZ.T, np.ones(batch, dtype))  # db = Σ_batch dZ
    if with_input_gradient:
        assert_sums_close(got[2], dZ, W)  # dX = dZ W


def test_the_product_bound_catches_a_wrong_element(rng):
    """The bound is tight enough that a product missing a term of its sum (its largest) fails it."""
    A, B = random_array(rng, (16, 784), np.float32), random_array(rng, (784, 8), np.float32)
    C = (A @ B).astype(np.float32)
    assert_sums_close(C, A, B)
    k = np.argmax(np.abs(A[3] * B[:, 5]))
    C[3, 5] -= A[3, k] * B[k, 5]
    with pytest.raises(AssertionError, match=r"at \(np.int64\(3\), np.int64\(5\)\)"):
        assert_sums_close(C, A, B)


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize("shape", [(1, 5), (4, 37)], ids=str)
def test_activation_forward_backward(under_test, rng, dtype, activation, shape):
    code = ACTIVATIONS[activation]
    Z = random_array(rng, shape, dtype, scale=3.0)
    Z.flat[:3] = [0.0, 60.0, -60.0]  # the kink, and |z| large enough to overflow a naive sigmoid
    A = np.empty(shape, dtype)
    reference.activation_forward(Z, code, A)
    (got_A,) = under_test.call("activation_forward", Z, code, poisoned(shape, dtype), outputs=[2])
    np.testing.assert_allclose(got_A, A, **tolerance(dtype))
    assert np.isfinite(got_A).all()

    dA = random_array(rng, shape, dtype)
    dZ = np.empty(shape, dtype)
    reference.activation_backward(A, dA, code, dZ)
    (got_dZ,) = under_test.call("activation_backward", A, dA, code, poisoned(shape, dtype), outputs=[3])
    np.testing.assert_allclose(got_dZ, dZ, **tolerance(dtype))


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_activation_derivative_against_finite_differences(under_test, activation):
    """g'(z), computed from a = g(z), against (g(z + h) - g(z - h)) / 2h in float64."""
    code = ACTIVATIONS[activation]
    z = np.array([[-3.0, -0.7, -0.01, 0.02, 0.5, 2.5]])
    h = 1e-6

    def g(values):
        (out,) = under_test.call("activation_forward", values, code, poisoned(values.shape, np.float64),
                                 outputs=[2])
        return out

    a = g(z)
    (slope,) = under_test.call("activation_backward", a, np.ones_like(z), code, poisoned(z.shape, np.float64),
                               outputs=[3])
    numeric = (g(z + h) - g(z - h)) / (2 * h)
    np.testing.assert_allclose(slope, numeric, rtol=1e-6, atol=1e-8)


# Worst error, in float32 units in the last place, against float64 NumPy over the grid below (the CPU's
# float32 sigmoid and tanh are the vectorised approximations of kernels.cpu.scalar; libm is within 1).
FLOAT32_ULPS = {"sigmoid": 4.0, "tanh": 5.0}


@pytest.mark.parametrize("activation", sorted(FLOAT32_ULPS))
def test_float32_sigmoid_tanh_accuracy_and_special_values(under_test, activation):
    """Error over a dense grid of float32 inputs, both tails and the subnormal results, then NaN, ±inf, ±0."""
    code = ACTIVATIONS[activation]
    points = 20_001 if SIMULATOR else 2_000_001
    z = np.concatenate([np.linspace(-110, 110, points), np.linspace(-1e-3, 1e-3, points // 10),
                        -np.logspace(-30, 2.1, points // 20), np.logspace(-30, 2.1, points // 20)])
    z = z.astype(np.float32)[None, :]
    (got,) = under_test.call("activation_forward", z, code, poisoned(z.shape, np.float32), outputs=[2])
    exact = np.tanh(z.astype(np.float64)) if activation == "tanh" else 1 / (1 + np.exp(-z.astype(np.float64)))
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    normal = np.abs(exact) > 1e-30
    assert np.max(np.abs(got - exact)[normal] / ulp[normal]) <= FLOAT32_ULPS[activation]
    assert np.max(np.abs(got - exact)[~normal]) <= 1e-30  # subnormal results, down to 0
    special = np.array([[np.nan, np.inf, -np.inf, 0.0, -0.0, 200.0, -200.0]], np.float32)
    (got,) = under_test.call("activation_forward", special, code, poisoned(special.shape, np.float32), outputs=[2])
    expected = [np.nan, 1, -1, 0, 0, 1, -1] if activation == "tanh" else [np.nan, 1, 0, 0.5, 0.5, 1, 0]
    np.testing.assert_array_equal(got[0], np.array(expected, np.float32))


@pytest.mark.parametrize("shape", [(1, 2), (3, 10), (9, 7)], ids=str)
def test_softmax_and_cross_entropy(under_test, rng, dtype, shape):
    batch, n_classes = shape
    Z = random_array(rng, shape, dtype, scale=4.0)
    Z[0, 0] = 80.0  # exp would overflow without the max shift
    y = rng.integers(0, n_classes, batch)
    probs = np.empty(shape, dtype)
    losses = np.empty(batch, dtype)
    dZ = np.empty(shape, dtype)
    reference.softmax(Z, probs)
    reference.cross_entropy(Z, y, losses)
    reference.softmax_cross_entropy_backward(Z, y, dZ)

    (got_probs,) = under_test.call("softmax", Z, poisoned(shape, dtype), outputs=[1])
    np.testing.assert_allclose(got_probs, probs, **tolerance(dtype))
    np.testing.assert_allclose(got_probs.sum(axis=1), 1.0, rtol=1e-5 if dtype == np.float32 else 1e-12)
    (got_losses,) = under_test.call("cross_entropy", Z, y, poisoned(batch, dtype), outputs=[2])
    np.testing.assert_allclose(got_losses, losses, **tolerance(dtype))
    assert np.isfinite(got_losses).all()
    (got_dZ,) = under_test.call("softmax_cross_entropy_backward", Z, y, poisoned(shape, dtype), outputs=[2])
    np.testing.assert_allclose(got_dZ, dZ, **tolerance(dtype))


def test_softmax_of_minus_infinity_is_zero(under_test, dtype):
    """A logit of -inf (a masked class) gets probability exactly 0 and no NaN anywhere; softmax starts from -inf."""
    Z = np.array([[-np.inf, 0.0, 1.0], [2.0, -np.inf, -np.inf]], dtype)
    y = np.array([2, 0])
    (probs,) = under_test.call("softmax", Z, poisoned(Z.shape, dtype), outputs=[1])
    expected = np.array([[0.0, 1 / (1 + np.e), np.e / (1 + np.e)], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(probs, expected, **tolerance(dtype))
    assert probs[0, 0] == 0 and probs[1, 1] == 0 and probs[1, 2] == 0
    (losses,) = under_test.call("cross_entropy", Z, y, poisoned(2, dtype), outputs=[2])
    np.testing.assert_allclose(losses, -np.log(expected[[0, 1], [2, 0]]), **tolerance(dtype))
    (dZ,) = under_test.call("softmax_cross_entropy_backward", Z, y, poisoned(Z.shape, dtype), outputs=[2])
    np.testing.assert_allclose(dZ, (expected - np.eye(3)[y]) / 2, **tolerance(dtype))


def test_cross_entropy_never_takes_log_zero(under_test):
    """A hopeless prediction (probability underflows to 0) gives a large finite loss, not inf."""
    Z = np.array([[0.0, 1000.0]], dtype=np.float32)
    (losses,) = under_test.call("cross_entropy", Z, np.array([0]), poisoned(1, np.float32), outputs=[2])
    np.testing.assert_allclose(losses, [1000.0], rtol=1e-6)


def test_cross_entropy_gradient_against_finite_differences(under_test, rng):
    Z = rng.standard_normal((4, 6))
    y = rng.integers(0, 6, 4)
    (dZ,) = under_test.call("softmax_cross_entropy_backward", Z, y, poisoned(Z.shape, np.float64), outputs=[2])

    def mean_loss(logits):
        losses = np.empty(4)
        reference.cross_entropy(logits, y, losses)
        return losses.mean()

    numeric = np.zeros_like(Z)
    h = 1e-6
    for index in np.ndindex(Z.shape):
        bump = np.zeros_like(Z)
        bump[index] = h
        numeric[index] = (mean_loss(Z + bump) - mean_loss(Z - bump)) / (2 * h)
    np.testing.assert_allclose(dZ, numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("n_params", [1, 37, 1000])
def test_sgd_update(under_test, rng, dtype, n_params):
    theta = random_array(rng, n_params, dtype)
    grad = random_array(rng, n_params, dtype)
    expected = theta.copy()
    reference.sgd_update(expected, grad, 0.05)
    (got,) = under_test.call("sgd_update", theta, grad, 0.05, outputs=[0])
    np.testing.assert_allclose(got, expected, **tolerance(dtype))


@pytest.mark.parametrize("n_values", [1, 37, 1000])
def test_count_nonfinite(under_test, rng, dtype, n_values):
    values = random_array(rng, n_values, dtype)
    bad = rng.permutation(n_values)[:n_values // 3]
    values[bad] = rng.choice([np.nan, np.inf, -np.inf], bad.shape[0])
    values[values == 0] = np.finfo(dtype).max  # the largest finite value is finite
    expected = np.array([5])
    reference.count_nonfinite(values, expected)
    (got,) = under_test.call("count_nonfinite", values, np.array([5]), outputs=[1])
    assert expected[0] == 5 + bad.shape[0] and got[0] == expected[0]


# ----------------------------------------------------------------- network ops
NETWORKS = [[5, 3], [6, 7, 4], [9, 8, 5, 3]]


def random_network(rng, sizes, dtype, n_samples):
    theta = random_array(rng, layout.param_count(sizes), dtype, scale=0.5)
    X = random_array(rng, (n_samples, sizes[0]), dtype)
    y = rng.integers(0, sizes[-1], n_samples)
    return layout.as_sizes(sizes), theta, X, y


@pytest.mark.parametrize("sizes", NETWORKS, ids=str)
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_forward_backward_evaluate_predict(under_test, rng, dtype, sizes, activation):
    batch = 6
    sizes, theta, X, y = random_network(rng, sizes, dtype, batch)
    code = ACTIVATIONS[activation]
    n_acts = layout.activation_count(sizes, batch)
    acts, deltas, grad = np.empty(n_acts, dtype), np.empty(n_acts, dtype), np.empty(theta.shape, dtype)
    reference.mlp_forward(theta, sizes, code, X, acts)
    reference.mlp_backward(theta, sizes, code, X, y, acts, deltas, grad)

    (got_acts,) = under_test.call("mlp_forward", theta, sizes, code, X, poisoned(n_acts, dtype), outputs=[4])
    np.testing.assert_allclose(got_acts, acts, **tolerance(dtype))
    (got_grad,) = under_test.call("mlp_backward", theta, sizes, code, X, y, acts, poisoned(n_acts, dtype),
                                  poisoned(theta.shape, dtype), outputs=[7])
    np.testing.assert_allclose(got_grad, grad, **tolerance(dtype))

    work = np.zeros(layout.workspace_size(sizes, batch), dtype)
    stats = np.zeros(2)
    reference.evaluate(theta, sizes, code, X, y, work, stats)
    (got_stats,) = under_test.call("evaluate", theta, sizes, code, X, y, work, np.zeros(2), outputs=[6])
    np.testing.assert_allclose(got_stats, stats, **tolerance(dtype))

    probs = np.empty((batch, sizes[-1]), dtype)
    reference.predict_proba(theta, sizes, code, X, work, probs)
    (got_probs,) = under_test.call("predict_proba", theta, sizes, code, X, work,
                                   poisoned(probs.shape, dtype), outputs=[5])
    np.testing.assert_allclose(got_probs, probs, **tolerance(dtype))


@pytest.mark.parametrize("nan_at", ["output bias 1", "hidden weight", "every logit but 0"])
def test_evaluate_counts_nan_logits_as_numpy_argmax_does(under_test, rng, dtype, nan_at):
    """NaN logits: the predicted class is NumPy's arg-max (the first NaN), the summed loss NaN, on every backend."""
    sizes, theta, X, y = random_network(rng, [5, 4, 3], dtype, 12)
    y[:4] = [0, 1, 2, 1]
    if nan_at == "output bias 1":
        theta[-2] = np.nan
    elif nan_at == "hidden weight":
        theta[0] = np.nan  # W_1[0, 0]: a NaN hidden unit, so every logit
    else:
        theta[-2:] = np.nan
    work = np.zeros(layout.workspace_size(sizes, 12), dtype)
    stats = np.zeros(2)
    reference.evaluate(theta, sizes, 1, X, y, work, stats)
    (got,) = under_test.call("evaluate", theta, sizes, 1, X, y, work, np.zeros(2), outputs=[6])
    first_nan = {"output bias 1": 1, "hidden weight": 0, "every logit but 0": 1}[nan_at]
    assert np.isnan(stats[0]) and stats[1] == np.count_nonzero(y == first_nan)
    np.testing.assert_array_equal(got, stats)


@pytest.mark.parametrize("sizes", NETWORKS, ids=str)
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_backward_against_finite_differences(under_test, rng, sizes, activation):
    """The gradient of the mean loss, float64, against central differences on every parameter."""
    sizes, theta, X, y = random_network(rng, sizes, np.float64, 4)
    code = ACTIVATIONS[activation]
    n_acts = layout.activation_count(sizes, 4)
    acts = np.empty(n_acts)
    reference.mlp_forward(theta, sizes, code, X, acts)
    (grad,) = under_test.call("mlp_backward", theta, sizes, code, X, y, acts, np.empty(n_acts),
                              poisoned(theta.shape, np.float64), outputs=[7])

    def mean_loss(parameters):
        stats = np.zeros(2)
        reference.evaluate(parameters, sizes, code, X, y, np.empty(layout.workspace_size(sizes, 4)), stats)
        return stats[0] / 4

    h = 1e-6
    numeric = np.array([
        (mean_loss(theta + h * e) - mean_loss(theta - h * e)) / (2 * h) for e in np.eye(theta.shape[0])
    ])
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)


#: Optimizer settings the training ops are checked with: plain SGD, momentum, Nesterov with weight decay.
OPTIMIZERS = {"plain": hyper(0.1), "momentum": hyper(0.02, 0.9), "nesterov+decay": hyper(0.02, 0.8, True, 0.01)}


def initial_velocity(theta):
    """A velocity as if a step had been taken already, so that momentum acts from the first step on."""
    return (np.random.default_rng(9).standard_normal(theta.shape) * 0.01).astype(theta.dtype)


def train_op(runner, op_name, theta, sizes, code, X, y, order, hyper_parameters, batch_size=None, work=None):
    """Run a training op (``sgd_epoch``, ``minibatch_step``, ``minibatch_epoch``) from ``theta`` and a velocity
    that has seen a step already (so momentum acts from the start); return theta, velocity and the loss sum.

    ``runner`` is ``reference`` (the NumPy module) or the backend under test.
    """
    velocity = initial_velocity(theta)
    rows = order.shape[0] if batch_size is None else batch_size
    work = np.full(layout.workspace_size(sizes, rows), np.nan, theta.dtype) if work is None else work
    args = [theta.copy(), velocity, sizes, code, X, y, order, hyper_parameters, work, np.zeros(1)]
    if batch_size is not None:
        args.insert(7, batch_size)
    if runner is reference:
        runner.__dict__[op_name](*args)
        return args[0], args[1], args[-1]
    return tuple(runner.call(op_name, *args, outputs=[0, 1, len(args) - 1]))


def check_trained(got, expected, dtype):
    """Weights, velocity and loss of :func:`train_op` against the reference's, to ``dtype``'s tolerance."""
    for value, want in zip(got, expected):
        np.testing.assert_allclose(value, want, **tolerance(dtype))


@pytest.mark.parametrize("sizes", NETWORKS, ids=str)
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "leaky_relu"])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_minibatch_step(under_test, rng, dtype, sizes, activation, optimizer):
    simulator_runs_only(activation == "relu" and (optimizer == "plain" or sizes == [6, 7, 4]),
                        "relu, the optimizers with one hidden layer")
    sizes, theta, X, y = random_network(rng, sizes, dtype, 20)
    code = ACTIVATIONS[activation]
    batch = rng.permutation(20)[:7]
    expected = train_op(reference, "minibatch_step", theta, sizes, code, X, y, batch, OPTIMIZERS[optimizer])
    got = train_op(under_test, "minibatch_step", theta, sizes, code, X, y, batch, OPTIMIZERS[optimizer])
    check_trained(got, expected, dtype)


@pytest.mark.parametrize("sizes", NETWORKS, ids=str)
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize("data", ["sparse", "dense"])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_sgd_epoch_matches_unfused_steps(under_test, rng, dtype, sizes, activation, data, optimizer):
    """The fused per-sample epoch against the reference: one unfused step per sample, in order."""
    simulator_runs_only((sizes == [6, 7, 4] and (optimizer == "plain" or (activation == "relu" and data == "sparse")))
                        or (activation == "relu" and data == "sparse" and optimizer == "plain"),
                        "every activation and optimizer with one hidden layer, the other depths with relu")
    sizes, theta, X, y = random_network(rng, sizes, dtype, 12)
    if data == "sparse":  # 40% non-zero: the CPU kernel lists each sample's non-zero inputs
        X[rng.random(X.shape) < 0.6] = 0
        X[3] = rng.standard_normal(X.shape[1])  # one dense sample among them
    code = ACTIVATIONS[activation]
    order = np.concatenate([rng.permutation(12)[:4 if SIMULATOR else 12], [3, 3]])  # a sample may repeat
    work = np.empty(layout.workspace_size(sizes, 1), dtype)
    expected = train_op(reference, "sgd_epoch", theta, sizes, code, X, y, order, OPTIMIZERS[optimizer], work=work)
    got = train_op(under_test, "sgd_epoch", theta, sizes, code, X, y, order, OPTIMIZERS[optimizer])
    check_trained(got, expected, dtype)


@pytest.mark.parametrize("optimizer", ["plain", "momentum"])
def test_sgd_epoch_chunks_compose(under_test, rng, optimizer):
    """Two calls on the halves of an order give the one-call result: the model's chunking is exact."""
    sizes, theta, X, y = random_network(rng, [6, 5, 4, 3] if SIMULATOR else [9, 8, 5, 3], np.float64, 10)
    order = rng.permutation(10)[:6 if SIMULATOR else 10]
    whole = train_op(under_test, "sgd_epoch", theta, sizes, 1, X, y, order, OPTIMIZERS[optimizer])
    state = [theta.copy(), initial_velocity(theta), np.zeros(1)]
    work = np.empty(layout.workspace_size(sizes, 1))
    for part in (order[:4], order[4:]):
        state = under_test.call("sgd_epoch", state[0], state[1], sizes, 1, X, y, part, OPTIMIZERS[optimizer], work,
                                state[2], outputs=[0, 1, 9])
    for value, want in zip(state, whole):
        np.testing.assert_allclose(value, want, rtol=1e-12)


def minibatch_epoch_case(rng, sizes, dtype, n_samples, density):
    """A network, data with about ``density`` non-zero inputs, and an order whose last batch is short."""
    sizes, theta, X, y = random_network(rng, sizes, dtype, n_samples)
    X[rng.random(X.shape) >= density] = 0
    order = np.concatenate([rng.permutation(n_samples), rng.permutation(n_samples)[:2]])
    return sizes, theta, X, y, order


def expected_minibatch_epoch(theta, sizes, code, X, y, order, batch_size, lr):
    """The reference's weights and loss after plain minibatch SGD at learning rate ``lr``."""
    expected, _, expected_loss = train_op(reference, "minibatch_epoch", theta, sizes, code, X, y, order, hyper(lr),
                                          batch_size)
    return expected, expected_loss


def check_cpu_minibatch_variant(theta, sizes, X, y, order, batch_size, threads, max_density, optimizer="plain"):
    """``kernels.cpu.minibatch.minibatch_epoch_variant`` (relu) gives the reference's weights, velocity and loss."""
    from kernels.cpu.minibatch import minibatch_epoch_variant

    code = ACTIVATIONS["relu"]
    parameters = hyper(0.05) if optimizer == "plain" else OPTIMIZERS[optimizer]  # lr 0.1 drifts past float32's bound
    expected = train_op(reference, "minibatch_epoch", theta, sizes, code, X, y, order, parameters, batch_size)
    got = [theta.copy(), initial_velocity(theta), np.zeros(1)]
    minibatch_epoch_variant(got[0], got[1], sizes, code, X, y, order, batch_size, parameters,
                            poisoned(layout.workspace_size(sizes, batch_size), theta.dtype), got[2], threads,
                            max_density)
    check_trained(got, expected, theta.dtype)


@pytest.mark.parametrize("sizes", NETWORKS, ids=str)
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("density", [0.2, 1.0], ids=["sparse", "dense"])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_minibatch_epoch_matches_steps(under_test, rng, dtype, sizes, activation, density, optimizer):
    """The fused minibatch epoch against one reference step per batch, on sparse and dense inputs."""
    simulator_runs_only(activation == "relu" and density == 1.0 and (optimizer == "plain" or sizes == [6, 7, 4]),
                        "relu on dense data, the optimizers with one hidden layer")
    sizes, theta, X, y, order = minibatch_epoch_case(rng, sizes, dtype, 8, density)
    code = ACTIVATIONS[activation]
    expected = train_op(reference, "minibatch_epoch", theta, sizes, code, X, y, order, OPTIMIZERS[optimizer], 4)
    got = train_op(under_test, "minibatch_epoch", theta, sizes, code, X, y, order, OPTIMIZERS[optimizer], 4)
    check_trained(got, expected, dtype)


@pytest.mark.parametrize("sizes", NETWORKS, ids=str)
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("in_order", [False, True], ids=["shuffled", "in order"])
def test_minibatch_epoch_blas_path_matches_steps(rng, dtype, sizes, activation, optimizer, in_order):
    """The BLAS path of the cpu minibatch epoch (large layers) against one reference step per batch; samples in
    order are read in place (the first batch, 0-3) or gathered (the others, 6 5 4 7 and 8, with ``in_order``)."""
    if SIMULATOR:
        pytest.skip("a cpu kernel")
    from kernels.cpu.minibatch_blas import minibatch_epoch_blas

    sizes, theta, X, y, order = minibatch_epoch_case(rng, sizes, dtype, 9, 0.5)
    if in_order:
        order = np.array([0, 1, 2, 3, 6, 5, 4, 7, 8], np.int64)
    X_before = X.copy()
    code = ACTIVATIONS[activation]
    expected = train_op(reference, "minibatch_epoch", theta, sizes, code, X, y, order, OPTIMIZERS[optimizer], 4)
    got = [theta.copy(), initial_velocity(theta), np.zeros(1)]
    minibatch_epoch_blas(got[0], got[1], sizes, code, X, y, order, 4, OPTIMIZERS[optimizer],
                         poisoned(layout.workspace_size(sizes, 4), dtype), got[2])
    check_trained(got, expected, dtype)
    np.testing.assert_array_equal(X, X_before)


def recorded_paths(monkeypatch, min_multiply_adds):
    """The list to which ``kernels.cpu.minibatch.minibatch_epoch`` appends the path of each call ("blas" or
    "fused"), recorded instead of run, the BLAS path taken from ``min_multiply_adds`` multiply-adds a step."""
    from kernels.cpu import minibatch, minibatch_blas

    taken = []
    monkeypatch.setattr(minibatch, "minibatch_epoch_blas", lambda *args: taken.append("blas"))
    monkeypatch.setattr(minibatch, "minibatch_epoch_variant", lambda *args: taken.append("fused"))
    monkeypatch.setattr(minibatch_blas, "BLAS_MIN_MULTIPLY_ADDS", min_multiply_adds)
    return taken


def test_minibatch_epoch_takes_the_blas_path_for_large_products(rng, monkeypatch):
    """``kernels.cpu.minibatch_epoch`` hands large steps to the BLAS path, small ones to the fused kernel."""
    from kernels.cpu import minibatch

    taken = recorded_paths(monkeypatch, 1000)
    sizes, theta, X, y, order = minibatch_epoch_case(rng, [20, 10, 3], np.float64, 40, 1.0)
    work = np.empty(layout.workspace_size(sizes, 40))
    for batch_size in (2, 40):  # 2·(3·230 − 200) = 980 multiply-adds a step, then 19,600
        minibatch.minibatch_epoch(theta, theta[:1], sizes, 1, X, y, order, batch_size, hyper(0.1), work, np.zeros(1))
    assert taken == ["fused", "blas"]


def test_a_call_of_fewer_samples_than_a_batch_takes_the_path_of_full_steps(rng, monkeypatch):
    """The path is chosen for a step of ``batch_size`` samples, or of all of ``X`` where it has fewer: the last
    chunk of an epoch (2 samples here) takes the BLAS path with the epoch's full steps, not the fused kernel."""
    from kernels.cpu import minibatch

    taken = recorded_paths(monkeypatch, 1000)
    sizes, theta, X, y, order = minibatch_epoch_case(rng, [20, 10, 3], np.float64, 40, 1.0)
    work = np.empty(layout.workspace_size(sizes, 40))
    minibatch.minibatch_epoch(theta, theta[:1], sizes, 1, X, y, order[:2], 40, hyper(0.1), work, np.zeros(1))
    # X of 2 samples: no step can have more, so the step of 2 (980 multiply-adds) stays fused.
    minibatch.minibatch_epoch(theta, theta[:1], sizes, 1, X[:2], y[:2], order[order < 2][:2], 40, hyper(0.1), work,
                              np.zeros(1))
    assert taken == ["blas", "fused"]


def test_the_path_choice_counts_the_sparse_first_layers_work(rng, monkeypatch):
    """On sparse inputs the fused kernel multiplies only the non-zero ones: a step BLAS takes on dense data stays
    with the fused kernel there (its first layer, 2·40·200 of the 19,600 multiply-adds, done at density ~0.2)."""
    from kernels.cpu import minibatch, minibatch_blas
    from kernels.cpu.network import input_density

    assert minibatch_blas.fused_multiply_adds([20, 10, 3], 40, 0.2) == 19_600 - 12_800
    assert minibatch_blas.fused_multiply_adds([20, 10, 3], 40) == minibatch_blas.step_multiply_adds([20, 10, 3], 40)
    taken = recorded_paths(monkeypatch, 10_000)
    for density in (1.0, 0.2):
        sizes, theta, X, y, order = minibatch_epoch_case(rng, [20, 10, 3], np.float64, 40, density)
        assert (input_density(X) <= minibatch.SPARSE_MAX_DENSITY) == (density < 1)
        work = np.empty(layout.workspace_size(sizes, 40))
        minibatch.minibatch_epoch(theta, theta[:1], sizes, 1, X, y, order, 40, hyper(0.1), work, np.zeros(1))
    assert taken == ["blas", "fused"]


def test_minibatch_epoch_rejects_an_empty_batch_size(under_test, rng):
    sizes, theta, X, y, order = minibatch_epoch_case(rng, [5, 3], np.float64, 6, 1.0)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        under_test.call("minibatch_epoch", theta, theta[:1], sizes, 1, X, y, order, 0, hyper(0.1),
                        np.empty(layout.workspace_size(sizes, 1)), np.zeros(1))


@pytest.mark.skipif(CUDA_UNDER_TEST, reason="the CPU kernel's paths and thread counts")
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("max_density", [-1.0, 2.0], ids=["dense-path", "sparse-path"])
@pytest.mark.parametrize("density", [0.2, 1.0], ids=["sparse-data", "dense-data"])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_minibatch_epoch_paths_and_threads(rng, dtype, threads, max_density, density, optimizer):
    """Each first-layer path of the CPU kernel, on either kind of data, shared among 1-3 threads, large
    enough to go parallel, gives the reference's weights, with every optimizer."""
    sizes, theta, X, y, order = minibatch_epoch_case(rng, [301, 66, 20, 10], dtype, 400, density)
    check_cpu_minibatch_variant(theta, sizes, X, y, order, 130, threads, max_density, optimizer)


@pytest.mark.skipif(CUDA_UNDER_TEST, reason="the CPU kernel's threads")
@pytest.mark.parametrize("density", [0.2, 1.0], ids=["sparse", "dense"])
def test_minibatch_epoch_is_the_same_on_any_number_of_threads(rng, dtype, density):
    """Weights and loss bit for bit on 1, 2 or 3 threads: results must not depend on the machine's cores."""
    from kernels.cpu.minibatch import SPARSE_MAX_DENSITY, minibatch_epoch_variant

    sizes, theta, X, y, order = minibatch_epoch_case(rng, [301, 66, 20, 10], dtype, 400, density)
    for optimizer in ("plain", "nesterov+decay"):
        results = set()
        for threads in (1, 2, 3):
            got, velocity, loss = theta.copy(), initial_velocity(theta), np.zeros(1)
            minibatch_epoch_variant(got, velocity, sizes, 1, X, y, order, 130, OPTIMIZERS[optimizer],
                                    np.zeros(layout.workspace_size(sizes, 130), dtype), loss, threads,
                                    SPARSE_MAX_DENSITY)
            results.add(got.tobytes() + velocity.tobytes() + loss.tobytes())
        assert len(results) == 1, optimizer


@pytest.mark.skipif(CUDA_UNDER_TEST, reason="the CPU kernels' first-layer path")
def test_fused_epochs_choose_their_path_from_the_data_alone(rng):
    """The density that picks the first-layer path is sampled from rows spread over X, not from the samples a call
    visits: every call of a training run chooses alike."""
    from kernels.cpu.network import DENSITY_SAMPLE, input_density

    X = rng.random((1000, 20))
    X[:500] = 0  # a call visiting only these would have judged the data empty
    assert input_density(X) == pytest.approx(0.5, abs=0.01)
    assert input_density(X[:10]) == 0.0 and input_density(X[:DENSITY_SAMPLE]) == 0.0


@pytest.mark.skipif(CUDA_UNDER_TEST, reason="the CPU kernels' work split")
@pytest.mark.parametrize("n, n_chunks, align",
                         [(128, 2, 4), (10, 2, 4), (128, 64, 4), (784, 3, 4), (3, 8, 8), (0, 2, 4)])
def test_chunks_cover_the_range_once(n, n_chunks, align):
    """Threads' ranges are disjoint, cover [0, n) and start at multiples of ``align``, even with many threads."""
    from kernels.cpu.minibatch import chunk

    covered = []
    for t in range(n_chunks):
        start, stop = chunk(n, t, n_chunks, align)
        assert start <= stop and (start == stop or start % align == 0)
        covered.extend(range(start, stop))
    assert covered == list(range(n))


@pytest.mark.skipif(CUDA_UNDER_TEST, reason="the CPU kernels' on-disk cache")
def test_cache_of_changed_sources_is_dropped(monkeypatch, tmp_path):
    """Cached CPU kernels compiled from other sources are deleted, in numba's cache directory when one is set."""
    import hashlib
    import os

    import numba

    from kernels.cpu import _jit

    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path))
    source_directory = os.path.dirname(os.path.abspath(_jit.__file__))
    in_cache_dir = tmp_path / f"cpu_{hashlib.sha1(source_directory.encode()).hexdigest()}"
    assert _jit.cache_directories()[-1] == in_cache_dir  # numba's own choice: test_cache_directory_is_numbas
    in_cache_dir.mkdir()
    kernel_files = [in_cache_dir / f"per_sample.sgd_epoch-1.py311{suffix}" for suffix in (".nbi", ".1.nbc")]
    for path in kernel_files:
        path.write_bytes(b"old")
    (in_cache_dir / "kernels-source.sha256").write_text("digest of other sources")
    _jit.drop_stale_cache([in_cache_dir])
    assert not any(path.exists() for path in kernel_files)
    assert (in_cache_dir / "kernels-source.sha256").read_text() == _jit.source_digest()
    for path in kernel_files:  # compiled from these sources: kept
        path.write_bytes(b"current")
    _jit.drop_stale_cache([in_cache_dir])
    assert all(path.exists() for path in kernel_files)


@pytest.mark.skipif(CUDA_UNDER_TEST, reason="the CPU kernels' cache directory")
def test_cache_directory_is_numbas(tmp_path):
    """numba's own choice of directory under NUMBA_CACHE_DIR is the one the stale-cache check looks at."""
    import subprocess
    import sys

    script = ("import numpy as np; from kernels.cpu import _jit; from kernels.cpu.softmax import row_log_sum_exp; "
              "row_log_sum_exp(np.zeros(3)); print(_jit.cache_directories()[-1])")
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment,
                            timeout=600, check=True)
    directory = pathlib.Path(result.stdout.strip())
    assert directory.parent == tmp_path
    assert list(directory.glob("softmax.row_log_sum_exp-*.nbi"))


@pytest.mark.skipif(CUDA_UNDER_TEST, reason="the CPU kernels' compile options")
def test_cpu_kernels_vectorise_with_the_widest_registers(rng):
    """Every CPU kernel is compiled through the pipeline that sets ``prefer-vector-width=512``: the attribute is
    in a kernel's LLVM IR, callees included, the results are unchanged, and on an AVX-512 CPU the loop uses zmm
    registers (LLVM's tuning for Intel's AVX-512 CPUs would otherwise keep it to 256-bit ymm)."""
    import importlib
    import pkgutil

    import llvmlite.binding as llvm
    from numba import njit
    from numba.core.registry import CPUDispatcher

    import kernels.cpu
    from kernels.cpu import _jit

    dispatchers = [value for info in pkgutil.iter_modules(kernels.cpu.__path__)
                   for value in vars(importlib.import_module(f"kernels.cpu.{info.name}")).values()
                   if isinstance(value, CPUDispatcher) and value.py_func.__module__.startswith("kernels.cpu")]
    assert len(dispatchers) > 30
    for dispatcher in dispatchers:  # the parallel kernel's loops are in the kernels it calls; inlined helpers are
        options = dispatcher.targetoptions  # compiled as part of their callers
        if not options.get("parallel") and options.get("inline") != "always":
            assert dispatcher._compiler.pipeline_class is _jit.WideVectorCompiler, dispatcher.py_func

    def axpy_loop(a, x, y):
        for i in range(x.shape[0]):
            y[i] += a * x[i]

    inner = njit(fastmath=set(_jit.FASTMATH), pipeline_class=_jit.WideVectorCompiler)(axpy_loop)

    @njit(fastmath=set(_jit.FASTMATH), pipeline_class=_jit.WideVectorCompiler)
    def outer(a, x, y):
        inner(a, x, y)

    x = rng.standard_normal(1000).astype(np.float32)
    y = rng.standard_normal(1000).astype(np.float32)
    expected = y + np.float32(2) * x
    outer(np.float32(2), x, y)
    np.testing.assert_allclose(y, expected, rtol=1e-6)
    for function in (inner, outer):
        assert _jit.VECTOR_WIDTH_ATTRIBUTE in function.inspect_llvm(function.signatures[0])
    if "+avx512f" in llvm.get_host_cpu_features().flatten():
        assert "zmm" in inner.inspect_asm(inner.signatures[0])


@pytest.mark.skipif(CUDA_UNDER_TEST, reason="the CPU kernels' threads")
@pytest.mark.parametrize("layer, expected", [("omp", "all"), ("tbb", "all"), ("workqueue", 1), (None, "all")])
def test_parallel_threads_avoid_the_workqueue_layer(monkeypatch, layer, expected):
    """numba's workqueue layer (no OpenMP/TBB) costs more per parallel region than a step saves: one thread."""
    import numba

    from kernels.cpu import minibatch

    def threading_layer():
        if layer is None:
            raise ValueError("Threading layer is not initialized.")
        return layer

    monkeypatch.setattr(numba, "threading_layer", threading_layer)
    assert minibatch.parallel_threads() == (numba.get_num_threads() if expected == "all" else expected)


@pytest.mark.skipif(CUDA_UNDER_TEST, reason="the CPU kernel's choice of path")
@pytest.mark.parametrize("index_limit, expected", [(1 << 30, "sparse allowed"), (1000, "dense")])
def test_minibatch_epoch_keeps_its_sparse_index_small(monkeypatch, rng, index_limit, expected):
    """The sparse path's (batch, n_0) index and values must fit SPARSE_MAX_INDEX_BYTES, else the dense path runs."""
    from kernels.cpu import minibatch as network

    seen = []
    variant = network.minibatch_epoch_variant
    monkeypatch.setattr(network, "SPARSE_MAX_INDEX_BYTES", index_limit)
    monkeypatch.setattr(network, "minibatch_epoch_variant", lambda *args: seen.append(args[-1]) or variant(*args))
    sizes, theta, X, y, order = minibatch_epoch_case(rng, [40, 8, 3], np.float64, 30, 0.1)
    expected_theta, expected_loss = expected_minibatch_epoch(theta, sizes, 1, X, y, order, 10, 0.1)
    loss = np.zeros(1)
    network.minibatch_epoch(theta, theta[:1], sizes, 1, X, y, order, 10, hyper(0.1),
                            np.empty(layout.workspace_size(sizes, 10)), loss)
    assert seen == [network.SPARSE_MAX_DENSITY if expected == "sparse allowed" else -1.0]
    np.testing.assert_allclose(theta, expected_theta, **tolerance(np.float64))
    np.testing.assert_allclose(loss, expected_loss, **tolerance(np.float64))


@pytest.mark.skipif(CUDA_UNDER_TEST, reason="the CPU kernel's register blocks")
@pytest.mark.parametrize("n1", [128, 150])
def test_minibatch_epoch_sparse_layer_in_register_blocks(rng, dtype, n1):
    """Hidden layers as wide as a block of registers (128 float32 or 64 float64 lanes with AVX-512) and wider by a
    remainder: the sparse product and update sum a block's columns in registers, the rest in loops of scalars."""
    sizes, theta, X, y, order = minibatch_epoch_case(rng, [90, n1, 10], dtype, 300, 0.2)
    for optimizer in ("plain", "momentum"):
        check_cpu_minibatch_variant(theta, sizes, X, y, order, 70, 2, 2.0, optimizer)


@pytest.mark.skipif(CUDA_UNDER_TEST, reason="the CPU kernel's listing of non-zero inputs")
@pytest.mark.parametrize("data_dtype", [np.float32, np.float64])
def test_minibatch_epoch_lists_values_where_they_fit(rng, dtype, data_dtype):
    """The sparse path keeps each sample's non-zero values in the work buffer's inputs area (of the weights'
    dtype) where that dtype holds the data's, else in an array of its own (float64 data beside float32 weights,
    whose values must not be rounded early): the reference's weights and loss either way, over a short last batch,
    on a poisoned buffer."""
    from kernels.cpu.minibatch import minibatch_epoch_variant

    sizes, theta, X, y, order = minibatch_epoch_case(rng, [90, 20, 5], dtype, 300, 0.2)
    X = X.astype(data_dtype)
    expected = train_op(reference, "minibatch_epoch", theta, sizes, ACTIVATIONS["relu"], X, y, order, hyper(0.05),
                        64)
    got = [theta.copy(), initial_velocity(theta), np.zeros(1)]
    minibatch_epoch_variant(got[0], got[1], sizes, ACTIVATIONS["relu"], X, y, order, 64, hyper(0.05),
                            poisoned(layout.workspace_size(sizes, 64), dtype), got[2], 2, 2.0)
    check_trained(got, expected, dtype)


@pytest.mark.skipif(CUDA_UNDER_TEST, reason="the CPU kernel's sparse update")
def test_minibatch_epoch_sparse_update_in_blocks(rng, dtype):
    """Batches longer than the sparse update's block of samples (two blocks and a short one)."""
    from kernels.cpu.minibatch import UPDATE_ROWS

    batch_size = 2 * UPDATE_ROWS + 7
    sizes, theta, X, y, order = minibatch_epoch_case(rng, [40, 16, 10], dtype, 2 * batch_size + 50, 0.2)
    for optimizer in ("plain", "momentum"):
        check_cpu_minibatch_variant(theta, sizes, X, y, order, batch_size, 2, 2.0, optimizer)


@pytest.mark.skipif(SIMULATOR, reason="too large for the simulator")
@pytest.mark.parametrize("batch", [64, 130])
def test_minibatch_step_large_enough_to_share_among_threads(under_test, rng, dtype, batch):
    """Products above the parallel threshold are cut into ranges: the result must not change."""
    sizes, theta, X, y = random_network(rng, [301, 66, 10], dtype, 400)
    order = rng.permutation(400)[:batch]
    expected = train_op(reference, "minibatch_step", theta, sizes, 1, X, y, order, hyper(0.05))
    got = train_op(under_test, "minibatch_step", theta, sizes, 1, X, y, order, hyper(0.05))
    check_trained(got, expected, dtype)


@pytest.mark.skipif(CUDA_UNDER_TEST, reason="the CPU kernel's lazy momentum")
@pytest.mark.parametrize("optimizer", ["momentum", "nesterov+decay", "decay only"])
def test_lazy_momentum_catches_up_long_gaps(rng, dtype, optimizer):
    """Inputs 5% non-zero over 300 samples: rows of W_1ᵀ skip hundreds of steps and catch up with Mʲ; the result is
    the reference's, and the same as visiting every row at every sample."""
    from kernels.cpu.per_sample_momentum import sgd_epoch_momentum

    parameters = {"momentum": hyper(0.02, 0.9), "nesterov+decay": hyper(0.02, 0.8, True, 0.01),
                  "decay only": hyper(0.02, 0.0, False, 0.01)}[optimizer]
    sizes, theta, X, y = random_network(rng, [60, 9, 7, 4], dtype, 100)
    X[rng.random(X.shape) >= 0.05] = 0
    order = rng.integers(0, 100, 300)
    expected = train_op(reference, "sgd_epoch", theta, sizes, 1, X, y, order, parameters)
    results = []
    for visit_every_row in (False, True):
        got = [theta.copy(), initial_velocity(theta), np.zeros(1)]
        sgd_epoch_momentum(got[0], got[1], sizes, 1, X, y, order, parameters,
                           poisoned(layout.workspace_size(sizes, 1), dtype), got[2], not visit_every_row)
        check_trained(got, expected, dtype)
        results.append(got)
    for lazy, every in zip(*results):
        np.testing.assert_allclose(lazy, every, **tolerance(dtype))


@pytest.mark.skipif(CUDA_UNDER_TEST, reason="the CPU kernel's lazy momentum")
@pytest.mark.parametrize("optimizer", ["momentum", "nesterov+decay", "decay only"])
def test_lazy_momentum_pending_steps_outlive_the_delta_ring(rng, dtype, optimizer):
    """A row's step waits for its next visit with its sample's δ_1 in a ring of HISTORY samples: inputs lit once in
    a long while (and one input lit in two samples 2.5 rings apart, one lit in consecutive samples) must be brought
    up to date before their δ_1 leaves the ring, the same as the reference."""
    from kernels.cpu.per_sample_momentum import HISTORY, sgd_epoch_momentum

    parameters = {"momentum": hyper(0.02, 0.9), "nesterov+decay": hyper(0.02, 0.8, True, 0.01),
                  "decay only": hyper(0.02, 0.0, False, 0.01)}[optimizer]
    n = 3 * HISTORY + 37
    sizes, theta, X, y = random_network(rng, [30, 6, 3], dtype, n)
    X[rng.random(X.shape) >= 0.01] = 0
    X[:, 0] = 0
    X[[3, 3 + 5 * HISTORY // 2], 0] = 1.5
    X[:, 1] = 0
    X[[HISTORY - 1, HISTORY], 1] = -0.7
    order = np.arange(n)
    expected = train_op(reference, "sgd_epoch", theta, sizes, 1, X, y, order, parameters)
    got = [theta.copy(), initial_velocity(theta), np.zeros(1)]
    sgd_epoch_momentum(got[0], got[1], sizes, 1, X, y, order, parameters,
                       poisoned(layout.workspace_size(sizes, 1), dtype), got[2], True)
    check_trained(got, expected, dtype)


@pytest.mark.parametrize("library", ["numpy's BLAS", "fallback"])
@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
@pytest.mark.parametrize("alpha, beta", [(1.0, 0.0), (-0.3, 1.0), (2.0, 0.5)])
def test_blas_gemm(rng, dtype, monkeypatch, library, transpose_a, transpose_b, alpha, beta):
    """``kernels.cpu.blas.gemm``: ``C = α op(A) op(B) + β C`` through NumPy's OpenBLAS, and without it."""
    if SIMULATOR:
        pytest.skip("a cpu kernel")
    from kernels.cpu import blas

    if library == "fallback":
        monkeypatch.setattr(blas, "_GEMM", {})
    elif blas.LIBRARY is None:
        pytest.skip("this NumPy ships no scipy-openblas library")
    M, N, K = 37, 29, 53
    A = rng.standard_normal((K, M) if transpose_a else (M, K)).astype(dtype)
    B = rng.standard_normal((N, K) if transpose_b else (K, N)).astype(dtype)
    C0 = rng.standard_normal((M, N)).astype(dtype)
    C = np.full((M, N), np.nan, dtype) if beta == 0.0 else C0.copy()  # β = 0 must not read C
    blas.gemm(A, B, C, transpose_a, transpose_b, alpha, beta)
    op_a = A.T if transpose_a else A
    op_b = B.T if transpose_b else B
    assert_sums_close(C, alpha * op_a.astype(np.longdouble), op_b, beta * C0.astype(np.longdouble))
