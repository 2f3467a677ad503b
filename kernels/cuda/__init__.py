"""``numba.cuda`` kernels: the same ops, names and argument order as :mod:`kernels.numpy`.

The ops here are thin host launchers taking numba device arrays (``sizes`` stays
a host sequence). Importing this module never fails: without numba-cuda, or
without a GPU, :func:`is_available` is False and :func:`require_gpu` says what
to do. With ``NUMBA_ENABLE_CUDASIM=1`` set before numba is imported, the same
kernels run on numba's CUDA simulator (slowly), which is how they are tested
without a GPU.
"""

from kernels.cuda._launch import SIMULATED, cuda
from kernels.cuda.activations import activation_backward, activation_forward
from kernels.cuda.linear import linear_backward, linear_forward, matmul
from kernels.cuda.minibatch import minibatch_epoch, minibatch_step
from kernels.cuda.network import evaluate, mlp_backward, mlp_forward, predict_proba
from kernels.cuda.per_sample import sgd_epoch
from kernels.cuda.sgd import count_nonfinite, optimizer_update, sgd_update
from kernels.cuda.softmax import cross_entropy, softmax, softmax_cross_entropy_backward

__all__ = [
    "SIMULATED",
    "activation_backward",
    "activation_forward",
    "count_nonfinite",
    "cross_entropy",
    "cuda",
    "evaluate",
    "is_available",
    "linear_backward",
    "linear_forward",
    "matmul",
    "minibatch_epoch",
    "minibatch_step",
    "mlp_backward",
    "mlp_forward",
    "optimizer_update",
    "predict_proba",
    "require_gpu",
    "sgd_epoch",
    "sgd_update",
    "softmax",
    "softmax_cross_entropy_backward",
]

HOW_TO_GET_A_GPU = (
    "run on a machine with an NVIDIA GPU and driver, with numba-cuda installed "
    "(pip install 'numba-mlp[cuda]'); or use backend='cpu' (backend='auto' falls back to it); "
    "or, to run these kernels without a GPU on numba's slow CUDA simulator, set "
    "NUMBA_ENABLE_CUDASIM=1 in the environment before numba is imported"
)


def is_available():
    """True when a real CUDA GPU is usable (the simulator does not count)."""
    if cuda is None or SIMULATED:
        return False
    try:
        return bool(cuda.is_available())
    except Exception:  # a broken driver or toolkit is "not available", not a crash
        return False


def require_gpu():
    """Raise ``RuntimeError`` saying how to get one, unless a GPU (or the simulator) is usable."""
    if cuda is None:
        raise RuntimeError(f"backend='cuda' needs numba-cuda, which is not installed: {HOW_TO_GET_A_GPU}")
    if SIMULATED:
        return
    if not is_available():
        raise RuntimeError(f"backend='cuda' found no usable CUDA GPU (numba.cuda.is_available() is False): "
                           f"{HOW_TO_GET_A_GPU}")


def needs_compiling(dtype, ops):
    """Whether running the fused ``ops`` (names among ``sgd_epoch``, ``minibatch_epoch``, ``evaluate``) in
    ``dtype`` compiles their kernels first: the machine code is neither in memory nor in numba's disk cache."""
    from kernels import compilation
    from kernels.cuda import minibatch, per_sample, softmax

    entry_points = {"sgd_epoch": per_sample.sgd_epoch_kernel, "minibatch_epoch": minibatch.minibatch_epoch_kernel,
                    "evaluate": softmax.evaluate_rows}
    return any(compilation.needs_compiling(entry_points[op], dtype) for op in ops)
