"""numba.cuda kernels (placeholder until the CUDA backend lands)."""

try:
    from numba import cuda
except ImportError:  # pragma: no cover - numba without CUDA support
    cuda = None


def is_available():
    return False


def require_gpu():
    raise RuntimeError("backend='cuda' is not available yet")
