"""Dense layer ``Z = X Wᵀ + b`` and its gradients as ``numba.cuda`` kernels.

One tile routine, :func:`product_tile`, computes every product of the package:
``C = op(A) op(B)`` with either operand optionally transposed, the batch rows
of the data optionally gathered through an index (so that a minibatch is never
copied out of ``X``), and a fused epilogue (bias and activation in the forward
pass, the activation derivative in the backward pass, the bias gradient beside
the weight gradient).

Operands are addressed, not passed: each is a small tuple of ints
``(buffer, offset, leading dimension)`` into one of four arrays, the data ``X``
(2-D, rows optionally gathered) or the flat ``P``, ``Q``, ``R``. The fused
minibatch kernel passes ``X``, ``theta`` and its work buffer once and chooses a
phase's operands with integers; choosing among array variables instead cost it
so many registers that it spilled (``tests/test_cuda.py`` checks).

A block of ``TILE_THREADS²`` threads computes a ``TILE × TILE`` tile of C, each
thread a ``TILE_OUTPUTS²`` register tile of outputs ``TILE_THREADS`` apart (so a
warp's shared-memory reads hit distinct banks); the reduction runs through two
shared-memory stages of depth ``TILE_K``, the next one loaded from global memory
into registers while the current one is multiplied, one barrier per stage.

* :func:`matmul_tiled`: the standalone product, a grid-stride loop over tiles;
  the fused minibatch kernel (:mod:`kernels.cuda.minibatch`) calls the same routine.
* :func:`matmul_small`: for a C of at most ``SMALL_ROWS`` rows (the course's
  B = 1 matrix-vector product), one block per output element, its threads
  splitting the reduction.

Reference: :mod:`kernels.numpy.linear`.
"""

import numpy as np

from kernels.activations import IDENTITY
from kernels.cuda._launch import (
    ACTIVATION_GRADIENT,
    BIAS_ACTIVATION,
    MAX_SPLITS,
    PLAIN,
    ROW_SUM,
    SMALL_ROWS,
    SPLIT_ITEMS,
    SPLIT_MIN_K,
    THREADS,
    TILE,
    TILE_BLOCK,
    TILE_K,
    TILE_OUTPUTS,
    TILE_PAD,
    TILE_THREADS,
    activate_device,
    cuda,
    derivative_device,
    grid_for,
    group_sum,
    kernel,
    launch,
)

_LOADS = TILE * TILE_K // TILE_BLOCK  # elements of each operand's stage loaded per thread


def tile_count(M, N):
    """Tiles of an (M, N) product."""
    return ((M + TILE - 1) // TILE) * ((N + TILE - 1) // TILE)


def split_depth(M, N, K):
    """The reduction depth of each split of an (M, N, K) product, a multiple of ``TILE_K``: split-K.

    A product with few tiles and a deep reduction (the first layer's forward
    product at batch 128: 4 tiles over K = 784; a weight gradient at batch 8192:
    26 tiles over K = 8192) would keep a few multiprocessors busy through a long
    serial loop. Its K is cut into splits, so that tiles × splits is about
    ``SPLIT_ITEMS``, each split at least ``SPLIT_MIN_K`` deep, at most
    ``MAX_SPLITS`` of them; each (tile, split) computes a partial tile, and the
    partials are summed in split order afterwards (:func:`finish_split`), so the
    result does not depend on which block ran what. A function of the shape
    alone, never of the GPU: the same sums on every card. ``K`` itself (one
    split) where splitting would not pay.
    """
    tiles = ((M + TILE - 1) // TILE) * ((N + TILE - 1) // TILE)  # tile_count, here for the device too
    wanted = min(MAX_SPLITS, (SPLIT_ITEMS + tiles - 1) // tiles, K // SPLIT_MIN_K)
    if wanted <= 1:
        return K
    depth = (K + wanted - 1) // wanted
    return (depth + TILE_K - 1) // TILE_K * TILE_K


def partials_size(M, N, splits):
    """Scratch values the partials of an (M, N) product cut into ``splits`` take: a C and a row-sum vector
    per split (none for one split)."""
    return 0 if splits == 1 else splits * (M * N + M)


def split_scratch(M, N, K):
    """Scratch values the partials of an (M, N, K) product take (:func:`split_depth`)."""
    depth = split_depth(M, N, K)
    return partials_size(M, N, (K + depth - 1) // depth)


if cuda is not None:
    tile_count_device = cuda.jit(device=True, inline=True)(tile_count)
    split_depth_device = cuda.jit(device=True, inline=True)(split_depth)
    partials_size_device = cuda.jit(device=True, inline=True)(partials_size)

FROM_X, FROM_P, FROM_Q, FROM_R = 0, 1, 2, 3  # the buffer an operand lives in


def operand(buffer, offset=0, leading=0):
    """An operand's address: ``(buffer, offset, leading dimension)`` of a row-major matrix; rows of ``X``
    are addressed directly (offset and leading dimension are ignored)."""
    return (buffer, offset, leading)


if cuda is not None:
    operand_device = cuda.jit(device=True, inline=True)(operand)

    @cuda.jit(device=True, inline=True)
    def epilogue_value(value, i, j, epilogue, code, vec, gate):
        """The fused epilogue of output ``C[i, j]`` for array operands (:func:`matmul_small`)."""
        if epilogue == BIAS_ACTIVATION:
            return activate_device(value + vec[j], code)
        if epilogue == ACTIVATION_GRADIENT:
            return value * derivative_device(gate[i, j], code)
        return value

    @cuda.jit(device=True, inline=True)
    def fetch(X, P, Q, R, rows, gathered, address, r, c):
        """Element ``(r, c)`` of the matrix at ``address``; ``X``'s row index goes through ``rows`` when
        ``gathered``."""
        buffer = address[0]
        if buffer == FROM_X:
            return X[rows[r] if gathered else r, c]
        index = address[1] + r * address[2] + c
        if buffer == FROM_P:
            return P[index]
        if buffer == FROM_Q:
            return Q[index]
        return R[index]

    @cuda.jit(device=True, inline=True)
    def store(P, Q, R, address, r, c, value):
        """``matrix[r, c] = value`` for the matrix at ``address`` (in ``P``, ``Q`` or ``R``)."""
        index = address[1] + r * address[2] + c
        if address[0] == FROM_P:
            P[index] = value
        elif address[0] == FROM_Q:
            Q[index] = value
        else:
            R[index] = value

    @cuda.jit(device=True, inline=True)
    def stage_place(k_major, idx):
        """Where element ``idx`` of a shared stage sits, ``(kk, oo)``: consecutive ``idx`` walk the contiguous
        axis of the operand (stored (K, O) when ``k_major``, else (O, K)), so a warp's loads are coalesced."""
        if k_major:
            return idx // TILE, idx % TILE
        return idx % TILE_K, idx // TILE_K

    @cuda.jit(device=True, inline=True)
    def stage_value(X, P, Q, R, rows, gathered, address, k_major, k, K, o, O):
        """``op(src)[k, o]``, zero outside (K, O), for the operand at ``address`` (stored (K, O) when ``k_major``,
        else (O, K))."""
        value = P.dtype.type(0)
        if k < K and o < O:
            if k_major:
                value = fetch(X, P, Q, R, rows, gathered, address, k, o)
            else:
                value = fetch(X, P, Q, R, rows, gathered, address, o, k)
        return value

    @cuda.jit(device=True, inline=True)
    def product_tile(X, P, Q, R, rows, a, b, c, vec, gate, shape, options, tile, k_range, sA, sB):
        """Tile number ``tile`` of ``C = op(A) op(B)`` with the epilogue; every thread of the block calls it.

        ``a``, ``b``, ``c``, ``gate``, ``vec``: :func:`operand` addresses (a
        vector's leading dimension is 0). ``shape`` is ``(M, N, K)``; ``options`` is
        ``(transpose_a, transpose_b, gather, epilogue, code)``: ``op(A)`` is
        ``Aᵀ`` when ``transpose_a`` (A stored (K, M)), else A (M, K); ``op(B)``
        is ``Bᵀ`` when ``transpose_b`` (B stored (N, K)), else B (K, N); with
        ``gather`` the operand in ``X`` has its rows taken through ``rows``.
        ``vec`` is the bias (``BIAS_ACTIVATION``) or receives the row sums of
        ``op(A)`` (``ROW_SUM``); ``gate`` holds the activations whose
        derivative multiplies C (``ACTIVATION_GRADIENT``). ``k_range`` is
        ``(k_begin, k_end)``: the reduction runs over that part of K only (a
        split of :func:`split_depth`; ``(0, K)`` for the whole product).
        ``sA``, ``sB``: the kernel's shared stages, (2, TILE_K, TILE_PAD) each.
        """
        acc = cuda.local.array((TILE_OUTPUTS, TILE_OUTPUTS), P.dtype)
        row_sum = cuda.local.array(TILE_OUTPUTS, P.dtype)
        a_frag = cuda.local.array(TILE_OUTPUTS, P.dtype)
        b_frag = cuda.local.array(TILE_OUTPUTS, P.dtype)
        a_next = cuda.local.array(_LOADS, P.dtype)
        b_next = cuda.local.array(_LOADS, P.dtype)
        zero = P.dtype.type(0)
        M, N, _ = shape
        k_begin, K = k_range  # the reduction's end stands for K below: nothing past it is read
        transpose_a, transpose_b, gather, epilogue, code = options
        ta = transpose_a != 0
        k_major_b = transpose_b == 0
        ty = cuda.threadIdx.y
        tx = cuda.threadIdx.x
        t = ty * TILE_THREADS + tx
        tiles_n = (N + TILE - 1) // TILE
        m0 = (tile // tiles_n) * TILE
        n0 = (tile % tiles_n) * TILE
        sums_rows = epilogue == ROW_SUM and n0 == 0 and tx == 0
        for r in range(TILE_OUTPUTS):
            row_sum[r] = zero
            for q in range(TILE_OUTPUTS):
                acc[r, q] = zero
        # Stage 0, then for each stage: fetch the next into registers, multiply this one, store the next.
        for e in range(_LOADS):
            kk, oo = stage_place(ta, t + e * TILE_BLOCK)
            sA[0, kk, oo] = stage_value(X, P, Q, R, rows, gather != 0, a, ta, k_begin + kk, K, m0 + oo, M)
            kk, oo = stage_place(k_major_b, t + e * TILE_BLOCK)
            sB[0, kk, oo] = stage_value(X, P, Q, R, rows, gather != 0, b, k_major_b, k_begin + kk, K, n0 + oo, N)
        cuda.syncthreads()
        stage = 0
        for k0 in range(k_begin, K, TILE_K):
            k_next = k0 + TILE_K
            if k_next < K:
                for e in range(_LOADS):
                    kk, oo = stage_place(ta, t + e * TILE_BLOCK)
                    a_next[e] = stage_value(X, P, Q, R, rows, gather != 0, a, ta, k_next + kk, K, m0 + oo, M)
                    kk, oo = stage_place(k_major_b, t + e * TILE_BLOCK)
                    b_next[e] = stage_value(X, P, Q, R, rows, gather != 0, b, k_major_b, k_next + kk, K, n0 + oo, N)
            for kk in range(TILE_K):
                for r in range(TILE_OUTPUTS):
                    a_frag[r] = sA[stage, kk, ty + TILE_THREADS * r]
                    b_frag[r] = sB[stage, kk, tx + TILE_THREADS * r]
                for r in range(TILE_OUTPUTS):
                    if sums_rows:
                        row_sum[r] += a_frag[r]
                    for q in range(TILE_OUTPUTS):
                        acc[r, q] += a_frag[r] * b_frag[q]
            if k_next < K:
                for e in range(_LOADS):
                    kk, oo = stage_place(ta, t + e * TILE_BLOCK)
                    sA[1 - stage, kk, oo] = a_next[e]
                    kk, oo = stage_place(k_major_b, t + e * TILE_BLOCK)
                    sB[1 - stage, kk, oo] = b_next[e]
            cuda.syncthreads()
            stage = 1 - stage
        for r in range(TILE_OUTPUTS):
            i = m0 + ty + TILE_THREADS * r
            if i < M:
                for q in range(TILE_OUTPUTS):
                    j = n0 + tx + TILE_THREADS * q
                    if j < N:
                        value = acc[r, q]
                        if epilogue == BIAS_ACTIVATION:
                            value = activate_device(value + fetch(X, P, Q, R, rows, False, vec, 0, j), code)
                        elif epilogue == ACTIVATION_GRADIENT:
                            value *= derivative_device(fetch(X, P, Q, R, rows, False, gate, i, j), code)
                        store(P, Q, R, c, i, j, value)
                if sums_rows:
                    store(P, Q, R, vec, 0, i, row_sum[r])

    @cuda.jit(device=True, inline=True)
    def finish_split(X, P, Q, R, rows, c, vec, gate, shape, options, parts_at, first, stride):
        """C, and the row sums with ``ROW_SUM``, from the partials of a split product (:func:`split_depth`):
        summed in split order, then the epilogue. The partials lie in ``R`` from ``parts_at``: a C per
        split, (splits, M, N), then a row-sum vector per split, (splits, M). Elements ``first, first +
        stride, ...``: the whole grid shares the work out.
        """
        M, N, K = shape
        epilogue = options[3]
        code = options[4]
        depth = split_depth_device(M, N, K)
        splits = (K + depth - 1) // depth
        size = M * N
        for idx in range(first, size, stride):
            i = idx // N
            j = idx - i * N
            value = R[parts_at + idx]
            for s in range(1, splits):
                value += R[parts_at + s * size + idx]
            if epilogue == BIAS_ACTIVATION:
                value = activate_device(value + fetch(X, P, Q, R, rows, False, vec, 0, j), code)
            elif epilogue == ACTIVATION_GRADIENT:
                value *= derivative_device(fetch(X, P, Q, R, rows, False, gate, i, j), code)
            store(P, Q, R, c, i, j, value)
        if epilogue == ROW_SUM:
            sums_at = parts_at + splits * size
            for i in range(first, M, stride):
                value = R[sums_at + i]
                for s in range(1, splits):
                    value += R[sums_at + s * M + i]
                store(P, Q, R, vec, 0, i, value)

    @kernel(TILE_BLOCK)
    def matmul_tiled(X, P, Q, R, rows, a, b, c, vec, gate, shape, options):
        """``C = op(A) op(B)`` with the epilogue (see :func:`product_tile`), a grid-stride loop over tiles."""
        sA = cuda.shared.array((2, TILE_K, TILE_PAD), P.dtype)
        sB = cuda.shared.array((2, TILE_K, TILE_PAD), P.dtype)
        for tile in range(cuda.blockIdx.x, tile_count_device(shape[0], shape[1]), cuda.gridDim.x):
            product_tile(X, P, Q, R, rows, a, b, c, vec, gate, shape, options, tile, (0, shape[2]), sA, sB)

    @kernel(THREADS)
    def matmul_small(A, B, C, transpose_a, transpose_b, epilogue, code, vec, gate):
        """``C = op(A) op(B)`` for a C of few rows: one block of THREADS threads per output element.

        Same arguments as :func:`matmul_tiled` without the gather (the ``ROW_SUM``
        epilogue is not supported here). Grid-stride over the outputs; a
        shared-memory tree reduction.
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
            total = group_sum(partial, tid, acc, THREADS)
            if tid == 0:
                C[i, j] = epilogue_value(total, i, j, epilogue, code, vec, gate)


_NO_ROWS = {}


def no_rows():
    """A placeholder index for products without a gather (one small device array, reused)."""
    if "rows" not in _NO_ROWS:
        _NO_ROWS["rows"] = cuda.to_device(np.zeros(1, np.int64))
    return _NO_ROWS["rows"]


def matmul(A, B, C, transpose_a=False, transpose_b=False, epilogue=PLAIN, code=IDENTITY, vec=None, gate=None):
    """Launch ``C = op(A) op(B)`` with an epilogue on C-contiguous device arrays (see :func:`product_tile`).

    ``vec`` is the bias (``BIAS_ACTIVATION``) or receives the row sums
    (``ROW_SUM``); ``gate`` the activations of ``ACTIVATION_GRADIENT``; unused
    ones may be left ``None``. For the tile routine, A takes the ``X`` slot, B,
    C and the vector (or the gate) the flat ``P``, ``Q`` and ``R``.
    """
    M, N = C.shape
    if M <= SMALL_ROWS and epilogue != ROW_SUM:
        vec = C[0] if vec is None else vec
        gate = C if gate is None else gate
        launch(matmul_small, grid_for(M * N, 1), THREADS, A, B, C, transpose_a, transpose_b, epilogue, code, vec,
               gate)
        return
    K = A.shape[0] if transpose_a else A.shape[1]
    extra = gate.ravel() if epilogue == ACTIVATION_GRADIENT else (C.ravel()[:1] if vec is None else vec)
    launch(matmul_tiled, grid_for(tile_count(M, N), 1), (TILE_THREADS, TILE_THREADS), A, B.ravel(), C.ravel(), extra,
           no_rows(), operand(FROM_X), operand(FROM_P, 0, B.shape[1]), operand(FROM_Q, 0, N), operand(FROM_R),
           operand(FROM_R, 0, N), (M, N, K), (int(transpose_a), int(transpose_b), 0, epilogue, code))


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
