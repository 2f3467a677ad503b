"""What every CUDA kernel shares: the ``numba.cuda`` import, launch constants, the kernel decorator,
block reductions and the grid barrier.

Launch constants are fixed once, at import, from whether numba's CUDA simulator
is on (``NUMBA_ENABLE_CUDASIM=1``): the simulator runs every thread as a Python
thread, so it gets tiny blocks, and tiny grids so that every grid-stride loop
really loops. They are module constants because shared-memory shapes and the
register tiles must be compile-time constants of the kernels.

Every kernel is declared with :func:`kernel`, which fixes its largest block
(``launch_bounds``: the compiler then caps its registers so that a block of that
size fits an SM) and is the only way the launchers launch it (:func:`launch`
refuses a larger block).
"""

import os

try:
    from numba import cuda
except ImportError:  # pragma: no cover - numba without numba-cuda
    cuda = None

from kernels.activations import activate, derivative

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"

if SIMULATED:
    THREADS = 8  # threads of the 1-D kernels (a power of two)
    ROW_THREADS = 4  # threads per row of the softmax row kernel (a power of two)
    TILE_THREADS = 2  # threads per side of a product block (TILE_THREADS² threads)
    TILE_OUTPUTS = 2  # outputs per thread per side
    TILE_K = 4  # reduction depth of one shared-memory stage
    EPOCH_THREADS = 4  # threads per block of the per-sample kernel (a power of two)
    EPOCH_LANES = 2  # threads that share one weight row in the per-sample kernel (a power of two)
    STAGE_PER_THREAD = 2  # inputs each thread of the per-sample kernel stages per pass (a pass stages 8)
    UNROLL = 2  # weights a thread of the per-sample kernel loads at once before updating them
    MAX_BLOCKS = 3  # grid-stride loops then loop several times
    SPLIT_ITEMS = 4  # split-K (kernels.cuda.linear.split_depth): about this many (tile, split) pieces a product
    SPLIT_MIN_K = 4  # the shallowest split
    MAX_SPLITS = 8
else:
    THREADS = 256
    ROW_THREADS = 32  # one warp per row
    TILE_THREADS = 16
    TILE_OUTPUTS = 4
    # Depth 4: at 8 the fused minibatch kernel (which holds a whole step's state besides) fits in float32
    # (244 registers) but spills in float64; tests/test_cuda.py checks both.
    TILE_K = 4
    EPOCH_THREADS = 256
    EPOCH_LANES = 32  # at least one warp per weight row
    # The per-sample kernel stages a sample's inputs that matter (nonzero here or in the previous sample)
    # in shared memory, 1024 a pass; a thread then updates and reads its weights 4 loads at a time.
    STAGE_PER_THREAD = 4
    UNROLL = 4
    MAX_BLOCKS = 8192
    # Split-K of the fused minibatch kernel's products (kernels.cuda.linear.split_depth): about one piece per
    # multiprocessor of an H100/H200 (132), each at least 8 stages deep. Measured on an H200 before splitting
    # (bench/RESULTS.md): a stage of 4 took ~0.8 µs, so the 196 stages of a lone 64 × 64 × 784 tile took
    # most of a batch-128 step, and a weight gradient's 2048 stages at batch 8192 most of that step.
    SPLIT_ITEMS = 128
    SPLIT_MIN_K = 32
    MAX_SPLITS = 64

STAGE = EPOCH_THREADS * STAGE_PER_THREAD  # inputs the per-sample kernel stages in shared memory per pass
TILE = TILE_THREADS * TILE_OUTPUTS  # a product block computes a TILE × TILE tile of C
TILE_PAD = TILE + 1  # padded shared-memory rows: no bank conflicts
TILE_BLOCK = TILE_THREADS * TILE_THREADS  # threads of a product block
#: Rows of C up to which the standalone products use one block per output element instead of tiles.
SMALL_ROWS = 4
#: Classes the per-sample kernel keeps in shared memory; more take the minibatch kernel with batch 1.
MAX_CLASSES = 1024

# Epilogues of the matrix products.
PLAIN = 0  # C = op(A) op(B)
BIAS_ACTIVATION = 1  # C = g(op(A) op(B) + vec[j])                 (forward)
ACTIVATION_GRADIENT = 2  # C = (op(A) op(B)) · g'(gate[i, j])      (backward, into dZ)
ROW_SUM = 3  # C = op(A) op(B), and vec[i] = Σ_k op(A)[i, k]      (dW and db together)
UPDATE = 4  # C -= step (op(A) op(B) ...), vec -= step Σ_k op(A)[i, k]: an optimizer step fused into dW, db


def kernel(max_threads, cooperative=False):
    """Decorator of every kernel: cached on disk, compiled for blocks of at most ``max_threads`` threads.

    ``max_threads`` becomes the kernel's ``launch_bounds`` (``.maxntid`` in its
    PTX), so the compiler keeps its registers within what a block of that size
    may have; :func:`launch` refuses larger blocks. ``cooperative`` marks a
    kernel that meets at grid-wide barriers (numba launches it cooperatively, so
    its blocks are guaranteed to be resident together). The simulator takes no
    launch bounds.
    """
    def decorate(function):
        if SIMULATED:
            compiled = cuda.jit(cache=True)(function)
        else:
            compiled = cuda.jit(cache=True, launch_bounds=max_threads)(function)
        compiled.max_threads = max_threads
        compiled.cooperative = cooperative
        return compiled

    return decorate


def launch(compiled, blocks, threads, *args):
    """``compiled[blocks, threads](*args)``, with ``threads`` (an int or a 2-D tuple) within its launch bounds."""
    count = threads[0] * threads[1] if isinstance(threads, tuple) else threads
    if count > compiled.max_threads:
        raise ValueError(f"{compiled.__name__}: a block of {count} threads exceeds its launch bound of "
                         f"{compiled.max_threads}")
    compiled[blocks, threads](*args)


_co_resident = {}


def co_resident_blocks(compiled, threads, args):
    """Blocks of ``threads`` threads of ``compiled`` the GPU can hold at once: its multiprocessors times the
    blocks the driver's occupancy calculation fits on one (1 on the simulator, which runs cooperative grids
    of one block only). A cooperative launch larger than this fails instead of deadlocking."""
    if SIMULATED:
        return 1
    argument_types = tuple(compiled.typeof_pyval(argument) for argument in args)
    key = (compiled, argument_types, threads)
    if key not in _co_resident:
        _co_resident[key] = compiled.compile(argument_types).max_cooperative_grid_blocks(threads)
    return _co_resident[key]


if cuda is not None:
    activate_device = cuda.jit(device=True, inline=True)(activate)
    derivative_device = cuda.jit(device=True, inline=True)(derivative)

    @cuda.jit(device=True, inline=True)
    def group_sum(buffer, tid, value, span):
        """Sum ``value`` over each group of ``span`` consecutive threads of the block (``span`` a power of
        two dividing the block); every thread gets its group's total.

        A tree in shared memory (``buffer`` holds a value per thread), so the order of
        the additions, hence the result, is the same on every run. Every thread of the
        block must call it.
        """
        buffer[tid] = value
        member = tid & (span - 1)  # tid % span: a 64-bit remainder costs ~140 ns on an H200, a mask nothing
        stride = span >> 1
        while stride > 0:
            cuda.syncthreads()
            if member < stride:
                buffer[tid] += buffer[tid + stride]
            stride >>= 1
        cuda.syncthreads()
        total = buffer[tid - member]
        cuda.syncthreads()  # the buffer may be reused at once
        return total

    @cuda.jit(device=True, inline=True)
    def group_max(buffer, tid, value, span):
        """:func:`group_sum` for the maximum."""
        buffer[tid] = value
        member = tid & (span - 1)
        stride = span >> 1
        while stride > 0:
            cuda.syncthreads()
            if member < stride:
                buffer[tid] = max(buffer[tid], buffer[tid + stride])
            stride >>= 1
        cuda.syncthreads()
        total = buffer[tid - member]
        cuda.syncthreads()
        return total

    @cuda.jit(device=True, inline=True)
    def exclusive_scan(scan, tid, value, threads):
        """``(Σ_{t < tid} value_t, Σ_t value_t)`` over the block's ``threads`` threads (a power of two):
        a Hillis-Steele scan in shared memory, ``scan`` holding two values per thread. Every thread of the
        block must call it."""
        src = 0
        scan[tid] = value
        offset = 1
        while offset < threads:
            cuda.syncthreads()
            running = scan[src * threads + tid]
            if tid >= offset:
                running += scan[src * threads + tid - offset]
            src = 1 - src
            scan[src * threads + tid] = running
            offset *= 2
        cuda.syncthreads()
        inclusive = scan[src * threads + tid]
        total = scan[src * threads + threads - 1]
        cuda.syncthreads()  # the scan buffer may be reused at once
        return inclusive - value, total

    @cuda.jit(device=True, inline=True)
    def grid_barrier():
        """Every thread of the (cooperatively launched) grid waits here for all the others; memory written
        before it is visible to every block after it."""
        cuda.cg.this_grid().sync()


def grid_for(n_items, threads=THREADS):
    """Blocks for a grid-stride loop over ``n_items`` (at least 1, at most MAX_BLOCKS)."""
    return max(1, min(MAX_BLOCKS, (n_items + threads - 1) // threads))


def span_for(n, limit):
    """The smallest power of two >= ``n``, at most ``limit`` (a power of two): a reduction's group size."""
    span = 1
    while span < n and span < limit:
        span *= 2
    return span
