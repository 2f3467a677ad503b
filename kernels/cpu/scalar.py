"""The scalar functions the CPU kernels inline: g(z) and g'(a) of :mod:`kernels.activations`.

The formulas are the shared ones except for sigmoid and tanh. For those numba
calls libm's ``exp``/``tanh`` once per element (it vectorises them only with
Intel's SVML, which is not a dependency here): about 25 ns each, 7× slower than
NumPy's SIMD loops. In float32 they are computed here from additions,
multiplications, one division and a bit shift, which LLVM vectorises; float64
keeps libm (sigmoid in the same stable form as below). :func:`sigmoid`,
:func:`tanh` and :func:`exp_nonpositive` (softmax's exponentials) pick the
version by type when numba compiles a kernel:

* ``exp(x)`` for ``x <= 0`` (:func:`exp_nonpositive32`): ``x = n ln 2 + r`` with
  ``|r| <= ln(2)/2`` (Cody-Waite, ln 2 split in two so ``r`` is exact), Cephes'
  degree-6 polynomial for ``exp(r)`` and ``2ⁿ`` built from its exponent bits, in
  two factors so that results down to the subnormals are right; ``x < -104``
  gives 0, as ``exp`` does in float32.
* ``tanh(x)`` (:func:`tanh32`): the rational approximation of Eigen's
  ``generic_fast_tanh_float``, an odd degree-13 polynomial over an even degree-6
  one, on ``x`` clamped to ±7.9988 (Eigen's clamp with fused multiply-adds,
  where the approximation rounds to ±1).
* ``sigmoid(z)`` (:func:`sigmoid32`): ``e = exp(-|z|)``, then ``1/(1+e)`` for
  ``z >= 0`` and ``e/(1+e)`` below, which never overflows.

``tests/test_kernels.py`` measures their error against float64 NumPy on a dense
grid (4.3 units in the last place at most for tanh, 3.7 for sigmoid above 10⁻³⁰;
libm's are within 1) and checks NaN, ±inf and ±0.
"""

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from kernels.activations import SIGMOID, TANH, activate, derivative
from kernels.cpu._jit import ERROR_MODEL, FASTMATH

_INLINE_OPTIONS = {"fastmath": set(FASTMATH), "error_model": ERROR_MODEL}

#: g(z) and g'(a) of :mod:`kernels.activations`, compiled for the CPU as they are written there.
activate_shared = njit(inline="always", **_INLINE_OPTIONS)(activate)
derivative_scalar = njit(inline="always", **_INLINE_OPTIONS)(derivative)

_F = np.float32
_LOG2_E = _F(1.44269504088896341)
_LN2_HIGH = _F(0.693359375)  # ln 2 = _LN2_HIGH + _LN2_LOW, _LN2_HIGH with few bits so n * _LN2_HIGH is exact
_LN2_LOW = _F(-2.12194440e-4)
_EXP_MIN = _F(-104.0)  # exp(-104) < half the smallest float32 subnormal: rounds to 0
_TANH_CLAMP = _F(7.99881172180175781)


# Straight-line code (NaN-propagating np.minimum/np.maximum instead of conditional expressions): these are
# inlined by type, and numba's typed inlining of a conditional expression raises a spurious
# NumbaIRAssumptionWarning on Python 3.11 (numba issue #9489).


@njit(inline="always", **_INLINE_OPTIONS)
def exp_nonpositive32(x):
    """``exp(x)`` for a float32 ``x <= 0`` (NaN stays NaN; right up to ``x = 88`` too); vectorisable."""
    x = np.maximum(x, _EXP_MIN)
    n = np.floor(x * _LOG2_E + _F(0.5))
    r = x - n * _LN2_HIGH
    r = r - n * _LN2_LOW
    p = _F(1.9875691500e-4)
    p = p * r + _F(1.3981999507e-3)
    p = p * r + _F(8.3334519073e-3)
    p = p * r + _F(4.1665795894e-2)
    p = p * r + _F(1.6666665459e-1)
    p = p * r + _F(5.0000001201e-1)
    p = p * r * r + r + _F(1.0)
    k = np.int32(np.fmax(n, _F(-150.0)))  # n in [-150, 0] (fmax: a NaN n gives -150, p is NaN anyway)
    half = k >> np.int32(1)  # 2ⁿ = 2^half · 2^(n - half), both normal numbers
    scale_a = np.int32((half + np.int32(127)) << np.int32(23)).view(np.float32)
    scale_b = np.int32((k - half + np.int32(127)) << np.int32(23)).view(np.float32)
    return p * scale_a * scale_b


@njit(inline="always", **_INLINE_OPTIONS)
def tanh32(z):
    """``tanh(z)`` for a float32 ``z``: Eigen's rational approximation; vectorisable."""
    clamped = np.minimum(np.maximum(z, -_TANH_CLAMP), _TANH_CLAMP)
    x2 = clamped * clamped
    p = x2 * _F(-2.76076847742355e-16) + _F(2.00018790482477e-13)
    p = p * x2 + _F(-8.60467152213735e-11)
    p = p * x2 + _F(5.12229709037114e-08)
    p = p * x2 + _F(1.48572235717979e-05)
    p = p * x2 + _F(6.37261928875436e-04)
    p = p * x2 + _F(4.89352455891786e-03)
    q = x2 * _F(1.19825839466702e-06) + _F(1.18534705686654e-04)
    q = q * x2 + _F(2.26843463243900e-03)
    q = q * x2 + _F(4.89352518554385e-03)
    return clamped * p / q


@njit(inline="always", **_INLINE_OPTIONS)
def sigmoid32(z):
    """``1 / (1 + exp(-z))`` for a float32 ``z``, from :func:`exp_nonpositive32`; vectorisable.

    With ``e = exp(-|z|)``: ``1 / (1 + e)`` for ``z >= 0``, ``e / (1 + e)`` below;
    the numerator is ``min(1, e + [z >= 0])``, exactly 1 or ``e``.
    """
    e = exp_nonpositive32(-np.abs(z))
    return np.minimum(_F(1.0), e + _F(z >= 0)) / (_F(1.0) + e)


@njit(inline="always", **_INLINE_OPTIONS)
def sigmoid_libm(z):
    """:func:`sigmoid32`'s formula with libm's ``exp`` (float64)."""
    e = math.exp(-abs(z))
    return np.minimum(1.0, e + (z >= 0)) / (1.0 + e)


@njit(inline="always", **_INLINE_OPTIONS)
def exp_libm(x):
    """``exp(x)`` from libm (float64)."""
    return math.exp(x)


@njit(inline="always", **_INLINE_OPTIONS)
def tanh_libm(z):
    """``tanh(z)`` from libm (float64)."""
    return math.tanh(z)


def exp_nonpositive(x):
    """``exp(x)`` for ``x <= 0`` (softmax's): :func:`exp_nonpositive32` in float32, libm otherwise."""
    return exp_libm(x)


def sigmoid(z):
    """``1 / (1 + exp(-z))``: :func:`sigmoid32` in float32, :func:`sigmoid_libm` otherwise."""
    return sigmoid_libm(z)


def tanh(z):
    """``tanh(z)``: :func:`tanh32` in float32, :func:`tanh_libm` otherwise."""
    return tanh_libm(z)


@overload(exp_nonpositive, inline="always", jit_options=_INLINE_OPTIONS)
def _exp_nonpositive_typed(x):
    return (exp_nonpositive32 if x == types.float32 else exp_libm).py_func


@overload(sigmoid, inline="always", jit_options=_INLINE_OPTIONS)
def _sigmoid_typed(z):
    return (sigmoid32 if z == types.float32 else sigmoid_libm).py_func


@overload(tanh, inline="always", jit_options=_INLINE_OPTIONS)
def _tanh_typed(z):
    return (tanh32 if z == types.float32 else tanh_libm).py_func


@njit(inline="always", **_INLINE_OPTIONS)
def activate_scalar(z, code):
    """g(z) for the activation ``code``, with :func:`sigmoid` and :func:`tanh` from this module."""
    if code == SIGMOID:
        return sigmoid(z)
    if code == TANH:
        return tanh(z)
    return activate_shared(z, code)
