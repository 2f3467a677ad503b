"""The SGD update, with momentum and weight decay, and the check that it left every value finite, as
``@njit`` kernels. See :mod:`kernels.optimizer` for the rule."""

import math

import numpy as np
from numba import njit

from kernels.cpu._jit import ERROR_MODEL, FASTMATH, jit
from kernels.optimizer import sgd_step

_INLINE_OPTIONS = {"fastmath": set(FASTMATH), "error_model": ERROR_MODEL}
_sgd_step = njit(inline="always", **_INLINE_OPTIONS)(sgd_step)

#: Velocities smaller than this become 0. A velocity whose gradient stays zero (a pixel that was lit once and then
#: stays dark, a dead ReLU unit) decays by μ a step, and once it is small its products (``η v``, ``μ v``) are
#: subnormal floats, on which x86 arithmetic runs ~100× slower: per-sample momentum on MNIST took 48× as long as
#: plain SGD without a flush, and still 3× with a flush at float32's smallest normal number (2⁻¹²⁶), since ``η v``
#: is subnormal for the ~40 steps a velocity takes to decay from 2⁻¹²⁶/η to 2⁻¹²⁶. From 2⁻⁶⁰ (8.7e-19) no
#: product of a velocity with a step size or a decay coefficient (also cut at 2⁻⁶⁰) is subnormal, and a velocity
#: that small moves a weight by less than the weight's float32 or float64 resolution. (A float32 constant, so
#: that float32 loops stay in float32 and vectorise; GPUs handle subnormals at full speed and need no flush.)
VELOCITY_FLOOR = np.float32(2.0 ** -60)


@njit(inline="always", **_INLINE_OPTIONS)
def flush_velocity(v):
    """``v``, or 0 when it is smaller than :data:`VELOCITY_FLOOR` in magnitude."""
    return v if abs(v) >= VELOCITY_FLOOR else v - v


@njit(inline="always", **_INLINE_OPTIONS)
def optimizer_step(w, v, g, lr, momentum, nesterov, decay):
    """:func:`kernels.optimizer.sgd_step` as written there, the new velocity flushed (:func:`flush_velocity`)."""
    w, v = _sgd_step(w, v, g, lr, momentum, nesterov, decay)
    return w, flush_velocity(v)


@jit
def sgd_update(theta, grad, lr):
    """In place ``θ ← θ − η g``.

    Parameters
    ----------
    theta : ndarray, shape (P,)
    grad : ndarray, shape (P,)
    lr : float
    """
    step = theta.dtype.type(lr)
    for p in range(theta.shape[0]):
        theta[p] -= step * grad[p]


@jit
def optimizer_update(theta, velocity, grad, sizes, hyper):
    """In place, PyTorch's SGD step with momentum, Nesterov and weight decay on the weight matrices only.

    Parameters
    ----------
    theta, velocity, grad : ndarray, shape (P,)
    sizes : ndarray of int64, shape (L + 1,)
    hyper : tuple
        ``(lr, momentum, nesterov, weight_decay)``; the velocity is touched only with momentum.
    """
    real = theta.dtype.type
    lr, momentum, nesterov, decay = real(hyper[0]), real(hyper[1]), hyper[2], real(hyper[3])
    zero = real(0)
    start = 0
    for l in range(sizes.shape[0] - 1):
        n_weights = sizes[l + 1] * sizes[l]
        for p in range(start, start + n_weights + sizes[l + 1]):
            v = velocity[p] if momentum != 0 else zero
            theta[p], v = optimizer_step(theta[p], v, grad[p], lr, momentum, nesterov,
                                         decay if p < start + n_weights else zero)
            if momentum != 0:
                velocity[p] = v
        start += n_weights + sizes[l + 1]


@jit
def count_nonfinite(values, count):
    """``count[0] +=`` the number of NaN or infinite entries of ``values`` (P,); ``count`` int64 (1,).

    A first pass sums ``v · 0``, which is 0 for every finite ``v`` and NaN for a NaN or an infinity (the
    fastmath flags of :mod:`kernels.cpu._jit` leave out ``nnan``, so the product is not folded to 0): a pass
    of vector adds, where counting widens each test to an int64: 0.72 of the time (IQR 0.70-0.76) over 10,000
    MNIST images, 31 alternated rounds on the 2-core AMD EPYC, ~1 ms less in every ``fit``'s check of ``X``. The
    count itself is taken only where that sum is not 0: on bad data, in a call about to fail.
    """
    zero = values.dtype.type(0)
    probe = zero
    for p in range(values.shape[0]):
        probe += values[p] * zero
    if probe == zero:
        return
    bad = 0
    for p in range(values.shape[0]):
        bad += not math.isfinite(values[p])
    count[0] += bad
