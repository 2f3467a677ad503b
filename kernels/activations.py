"""Activation functions shared by every backend: names, codes and scalar formulas.

The scalar formulas below are written once, in plain Python, and compiled for
each target: ``kernels.cpu`` wraps them with ``numba.njit`` and ``kernels.cuda``
with ``numba.cuda.jit(device=True)``. (On the CPU, sigmoid and tanh come from
:mod:`kernels.cpu.scalar` instead: in float32 they are vectorisable
approximations of libm's, within a few units in the last place.) The NumPy reference in
``kernels.numpy.activations`` is an independent vectorised implementation, so the
tests compare two separately written versions.

Every derivative is expressed through the activation's *output* ``a = g(z)``,
so the backward pass only needs the stored activations:

==============  ====================================  ===============================
name            g(z)                                  g'(z) written with a = g(z)
==============  ====================================  ===============================
``identity``    z                                     1
``relu``        max(z, 0)                             1 if a > 0 else 0
``leaky_relu``  z if z > 0 else 0.01 z                1 if a > 0 else 0.01
``sigmoid``     1 / (1 + exp(-z)), stable form        a (1 - a)
``tanh``        tanh(z)                               1 - a²
==============  ====================================  ===============================
"""

import math

IDENTITY = 0
RELU = 1
LEAKY_RELU = 2
SIGMOID = 3
TANH = 4

#: Activation name -> integer code understood by every kernel.
ACTIVATIONS = {
    "identity": IDENTITY,
    "relu": RELU,
    "leaky_relu": LEAKY_RELU,
    "sigmoid": SIGMOID,
    "tanh": TANH,
}

#: Negative-side slope of ``leaky_relu`` (torch's default).
LEAKY_SLOPE = 0.01


def activation_code(name):
    """Return the integer code of activation ``name``.

    Raises
    ------
    TypeError
        If ``name`` is not a string.
    ValueError
        If ``name`` is not one of :data:`ACTIVATIONS`.
    """
    if not isinstance(name, str):
        raise TypeError(f"activation must be a str, got {type(name).__name__}")
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}"
        ) from None


def activate(z, code):
    """g(z) for the activation ``code``; ``z`` a scalar of the array dtype."""
    if code == RELU:
        return z if z > 0 else z * 0
    if code == LEAKY_RELU:
        return z if z > 0 else z * LEAKY_SLOPE
    if code == SIGMOID:
        # Stable for large |z|: exp is only ever taken of a non-positive number.
        if z >= 0:
            return 1 / (1 + math.exp(-z))
        e = math.exp(z)
        return e / (1 + e)
    if code == TANH:
        return math.tanh(z)
    return z


def derivative(a, code):
    """g'(z) written through the output ``a = g(z)``."""
    if code == RELU:
        return 1.0 if a > 0 else 0.0
    if code == LEAKY_RELU:
        return 1.0 if a > 0 else LEAKY_SLOPE
    if code == SIGMOID:
        return a * (1 - a)
    if code == TANH:
        return 1 - a * a
    return 1.0
