"""Plain NumPy reference of every op: the oracle of the tests, the baseline of the benchmarks.

Written for clarity, straight from the formulas; works in float32 and float64.
Every function writes into the output arrays it is given, like the fast kernels.
"""

from kernels.numpy.activations import activation_backward, activation_forward
from kernels.numpy.linear import linear_backward, linear_forward
from kernels.numpy.network import (
    evaluate,
    minibatch_epoch,
    minibatch_step,
    mlp_backward,
    mlp_forward,
    predict_proba,
    sgd_epoch,
)
from kernels.numpy.sgd import count_nonfinite, optimizer_update, sgd_update
from kernels.numpy.softmax import cross_entropy, softmax, softmax_cross_entropy_backward

__all__ = [
    "activation_backward",
    "activation_forward",
    "count_nonfinite",
    "cross_entropy",
    "evaluate",
    "linear_backward",
    "linear_forward",
    "minibatch_epoch",
    "minibatch_step",
    "mlp_backward",
    "mlp_forward",
    "optimizer_update",
    "predict_proba",
    "sgd_epoch",
    "sgd_update",
    "softmax",
    "softmax_cross_entropy_backward",
]


def needs_compiling(dtype, ops):
    """NumPy compiles nothing."""
    return False
