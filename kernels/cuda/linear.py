"""Dense layer ``Z = X Wᵀ + b`` and its gradients as ``numba.cuda`` kernels.

One product kernel serves every case, ``C = op(A) op(B)`` with either operand
optionally transposed, and a fused epilogue (bias + activation in the forward
pass, the activation derivative in the backward pass, the bias gradient beside
the weight gradient):

* :func:`matmul_tiled`: shared-memory tiles of ``TILE × TILE`` outputs, each
  thread holding ``TILE_OUTPUTS²`` accumulators in registers; grid-stride over tiles;
* :func:`matmul_small`: for a C of at most ``SMALL_ROWS`` rows (the course's
  B = 1 matrix-vector product), one block per output element, its threads
  splitting the reduction, so the GPU is not wasted on one thread per row.

Reference: :mod:`kernels.numpy.linear`.
"""

from kernels.activations import IDENTITY
from kernels.cuda._launch import (
    ACTIVATION_GRADIENT,
    BIAS_ACTIVATION,
    PLAIN,
    ROW_SUM,
    SMALL_ROWS,
    THREADS,
    TILE,
    TILE_K,
    TILE_OUTPUTS,
    TILE_PAD,
    TILE_THREADS,
    activate_device,
    block_sum,
    cuda,
    derivative_device,
    grid_for,
)

_BLOCK = TILE_THREADS * TILE_THREADS
_LOADS = TILE * TILE_K // _BLOCK  # elements of each shared tile loaded per thread

if cuda is not None:

    @cuda.jit(device=True, inline=True)
    def epilogue_value(value, i, j, epilogue, code, vec, gate):
        """The fused epilogue of output ``C[i, j]``."""
        if epilogue == BIAS_ACTIVATION:
            return activate_device(value + vec[j], code)
        if epilogue == ACTIVATION_GRADIENT:
            return value * derivative_device(gate[i, j], code)
        return value

    @cuda.jit(device=True, inline=True)
    def load_tile_element(tile, src, k_major, k0, K, o0, O, idx):
        """Element ``idx`` of the shared tile ``tile[kk, oo] = op(src)[k0 + kk, o0 + oo]`` (zero outside).

        ``src`` is stored (K, O) when ``k_major``, else (O, K); consecutive ``idx``
        walk its contiguous axis, so a warp's loads are coalesced.
        """
        if k_major:
            oo = idx % TILE
            kk = idx // TILE
            inside = k0 + kk < K and o0 + oo < O
            tile[kk, oo] = src[k0 + kk, o0 + oo] if inside else tile.dtype.type(0)
        else:
            kk = idx % TILE_K
            oo = idx // TILE_K
            inside = k0 + kk < K and o0 + oo < O
            tile[kk, oo] = src[o0 + oo, k0 + kk] if inside else tile.dtype.type(0)

    @cuda.jit(cache=True)
    def matmul_tiled(A, B, C, transpose_a, transpose_b, epilogue, code, vec, gate):
        """``C = op(A) op(B)`` (M, N) with the epilogue; a block per TILE × TILE tile.

        ``op(A)`` is ``Aᵀ`` when ``transpose_a`` (A stored (K, M)), else A (M, K);
        ``op(B)`` is ``Bᵀ`` when ``transpose_b`` (B stored (N, K)), else B (K, N).
        Tiles are loaded along the contiguous axis of each operand (coalesced).
        """
        sA = cuda.shared.array((TILE_K, TILE_PAD), C.dtype)
        sB = cuda.shared.array((TILE_K, TILE_PAD), C.dtype)
        acc = cuda.local.array((TILE_OUTPUTS, TILE_OUTPUTS), C.dtype)
        row_sum = cuda.local.array(TILE_OUTPUTS, C.dtype)
        zero = C.dtype.type(0)
        M = C.shape[0]
        N = C.shape[1]
        K = A.shape[0] if transpose_a else A.shape[1]
        ty = cuda.threadIdx.y
        tx = cuda.threadIdx.x
        t = ty * TILE_THREADS + tx
        tiles_n = (N + TILE - 1) // TILE
        n_tiles = ((M + TILE - 1) // TILE) * tiles_n
        for tile in range(cuda.blockIdx.x, n_tiles, cuda.gridDim.x):
            m0 = (tile // tiles_n) * TILE
            n0 = (tile % tiles_n) * TILE
            sums_rows = epilogue == ROW_SUM and n0 == 0 and tx == 0
            for r in range(TILE_OUTPUTS):
                row_sum[r] = zero
                for c in range(TILE_OUTPUTS):
                    acc[r, c] = zero
            for k0 in range(0, K, TILE_K):
                for e in range(_LOADS):
                    idx = t + e * _BLOCK
                    load_tile_element(sA, A, transpose_a, k0, K, m0, M, idx)
                    load_tile_element(sB, B, not transpose_b, k0, K, n0, N, idx)
                cuda.syncthreads()
                for kk in range(TILE_K):
                    for r in range(TILE_OUTPUTS):
                        a = sA[kk, ty + TILE_THREADS * r]
                        if sums_rows:
                            row_sum[r] += a
                        for c in range(TILE_OUTPUTS):
                            acc[r, c] += a * sB[kk, tx + TILE_THREADS * c]
                cuda.syncthreads()
            for r in range(TILE_OUTPUTS):
                i = m0 + ty + TILE_THREADS * r
                if i < M:
                    for c in range(TILE_OUTPUTS):
                        j = n0 + tx + TILE_THREADS * c
                        if j < N:
                            C[i, j] = epilogue_value(acc[r, c], i, j, epilogue, code, vec, gate)
                    if sums_rows:
                        vec[i] = row_sum[r]

    @cuda.jit(cache=True)
    def matmul_small(A, B, C, transpose_a, transpose_b, epilogue, code, vec, gate):
        """``C = op(A) op(B)`` for a C of few rows: one block of THREADS threads per output element.

        Same arguments as :func:`matmul_tiled` (the ``ROW_SUM`` epilogue is not
        supported here). Grid-stride over the outputs; a shared-memory tree reduction.
        """
        partial = cuda.shared.array(THREADS, C.dtype)
        zero = C.dtype.type(0)
        M = C.shape[0]
        N = C.shape[1]
        K = A.shape[0] if transpose_a else A.shape[1]
        tid = cuda.threadIdx.x
        for out in range(cuda.blockIdx.x, M * N, cuda.gridDim.x):
            i = out // N
            j = out % N
            acc = zero
            for k in range(tid, K, THREADS):
                a = A[k, i] if transpose_a else A[i, k]
                b = B[j, k] if transpose_b else B[k, j]
                acc += a * b
            partial[tid] = acc
            total = block_sum(partial, tid, THREADS)
            if tid == 0:
                C[i, j] = epilogue_value(total, i, j, epilogue, code, vec, gate)
            cuda.syncthreads()


def matmul(A, B, C, transpose_a=False, transpose_b=False, epilogue=PLAIN, code=IDENTITY, vec=None, gate=None):
    """Launch ``C = op(A) op(B)`` with an epilogue on device arrays.

    ``vec`` is the bias (``BIAS_ACTIVATION``) or receives the row sums of
    ``op(A)`` (``ROW_SUM``); ``gate`` holds the activations whose derivative
    multiplies C (``ACTIVATION_GRADIENT``). Unused ones may be left ``None``.
    """
    vec = C[0] if vec is None else vec
    gate = C if gate is None else gate
    M, N = C.shape
    if M <= SMALL_ROWS and epilogue != ROW_SUM:
        matmul_small[grid_for(M * N, 1), THREADS](A, B, C, transpose_a, transpose_b, epilogue, code, vec, gate)
    else:
        n_tiles = ((M + TILE - 1) // TILE) * ((N + TILE - 1) // TILE)
        matmul_tiled[grid_for(n_tiles, 1), (TILE_THREADS, TILE_THREADS)](
            A, B, C, transpose_a, transpose_b, epilogue, code, vec, gate
        )


def linear_forward(X, W, b, out):
    """``out = X Wᵀ + b``; X (B, n_in), W (n_out, n_in), b (n_out,), out (B, n_out)."""
    matmul(X, W, out, transpose_b=True, epilogue=BIAS_ACTIVATION, code=IDENTITY, vec=b)


def linear_backward(dZ, X, W, dW, db, dX):
    """``dW = dZᵀ X`` and ``db = Σ_batch dZ`` in one launch, ``dX = dZ W`` (skipped when ``dX`` is None).

    dZ (B, n_out), X (B, n_in), W (n_out, n_in), dW (n_out, n_in), db (n_out,), dX (B, n_in).
    """
    matmul(dZ, X, dW, transpose_a=True, epilogue=ROW_SUM, vec=db)
    if dX is not None:
        matmul(dZ, W, dX)
