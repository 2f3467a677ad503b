"""What every CUDA kernel shares: the ``numba.cuda`` import, launch constants, device functions.

Launch constants are fixed once, at import, from whether numba's CUDA simulator
is on (``NUMBA_ENABLE_CUDASIM=1``): the simulator runs every thread as a Python
thread, so it gets tiny blocks, and tiny grids so that every grid-stride loop
really loops. They are module constants because the shared-memory shapes must
be compile-time constants of the kernels.
"""

import os

try:
    from numba import cuda
except ImportError:  # pragma: no cover - numba without numba-cuda
    cuda = None

from kernels.activations import activate, derivative

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"

if SIMULATED:
    TILE_THREADS = 2  # threads per side of a GEMM block (TILE_THREADS² threads)
    TILE_OUTPUTS = 2  # outputs per thread per side
    TILE_K = 4  # reduction depth of one shared-memory tile
    THREADS = 8  # threads of the 1-D kernels (a power of two)
    ROW_THREADS = 4  # threads per row of the softmax kernel (a power of two)
    EPOCH_THREADS = 8  # threads of the single-block per-sample SGD kernel
    EPOCH_LANES = 4  # threads per weight row in that kernel
    MAX_BLOCKS = 3  # grid-stride loops then loop several times
else:
    TILE_THREADS = 16
    TILE_OUTPUTS = 4
    TILE_K = 16
    THREADS = 256
    ROW_THREADS = 32  # one warp per row
    EPOCH_THREADS = 512
    EPOCH_LANES = 32  # one warp per weight row
    MAX_BLOCKS = 8192

TILE = TILE_THREADS * TILE_OUTPUTS  # a block computes a TILE × TILE tile of C
TILE_PAD = TILE + 1  # padded shared-memory rows: no bank conflicts
#: Rows of C up to which the products use one block per output element instead of tiles.
SMALL_ROWS = 4

# Epilogues of the matrix products.
PLAIN = 0  # C = op(A) op(B)
BIAS_ACTIVATION = 1  # C = g(op(A) op(B) + vec[j])                 (forward)
ACTIVATION_GRADIENT = 2  # C = (op(A) op(B)) · g'(gate[i, j])      (backward, into dZ)
ROW_SUM = 3  # C = op(A) op(B), and vec[i] = Σ_k op(A)[i, k]      (dW and db together)

if cuda is not None:
    activate_device = cuda.jit(device=True, inline=True)(activate)
    derivative_device = cuda.jit(device=True, inline=True)(derivative)

    @cuda.jit(device=True, inline=True)
    def block_sum(buffer, tid, size):
        """Tree-sum ``buffer[:size]`` in shared memory (``size`` a power of two); every thread of
        the block calls it after writing its element; returns the total."""
        cuda.syncthreads()
        stride = size // 2
        while stride > 0:
            if tid < stride:
                buffer[tid] += buffer[tid + stride]
            cuda.syncthreads()
            stride //= 2
        return buffer[0]

    @cuda.jit(device=True, inline=True)
    def block_max(buffer, tid, size):
        """:func:`block_sum` for the maximum."""
        cuda.syncthreads()
        stride = size // 2
        while stride > 0:
            if tid < stride:
                buffer[tid] = max(buffer[tid], buffer[tid + stride])
            cuda.syncthreads()
            stride //= 2
        return buffer[0]


def grid_for(n_items, threads=THREADS):
    """Blocks for a grid-stride loop over ``n_items`` (at least 1, at most MAX_BLOCKS)."""
    return max(1, min(MAX_BLOCKS, (n_items + threads - 1) // threads))
