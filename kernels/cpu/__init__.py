"""``@njit`` CPU kernels: the same ops, names and argument order as :mod:`kernels.numpy`.

Every kernel is compiled with the options of :mod:`kernels.cpu._jit` and cached
on disk, for float32 and float64 alike. Arrays must be C-contiguous; the model
converts its inputs once, at its boundary.
"""

from kernels import compilation
from kernels.cpu import minibatch as _minibatch
from kernels.cpu import network as _network
from kernels.cpu import per_sample as _per_sample
from kernels.cpu.activations import activation_backward, activation_forward
from kernels.cpu.linear import linear_backward, linear_forward
from kernels.cpu.minibatch import minibatch_epoch, minibatch_step
from kernels.cpu.network import evaluate, mlp_backward, mlp_forward, predict_proba
from kernels.cpu.per_sample import sgd_epoch
from kernels.cpu.sgd import count_nonfinite, optimizer_update, sgd_update
from kernels.cpu.softmax import cross_entropy, softmax, softmax_cross_entropy_backward

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
    """Whether running the fused ``ops`` (names among ``sgd_epoch``, ``minibatch_epoch``, ``evaluate``) in
    ``dtype`` compiles them first: their machine code is neither in memory nor in numba's disk cache."""
    entry_points = {"sgd_epoch": _per_sample.sgd_epoch, "minibatch_epoch": _minibatch.minibatch_epoch_variant,
                    "evaluate": _network.evaluate}
    return any(compilation.needs_compiling(entry_points[op], dtype) for op in ops)
