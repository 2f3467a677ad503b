"""What bounds issue 11's open targets (the wide nets' share of sgemm, the cold start), timed by turns.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m bench.limits [--rounds 9] [--only NAME]

``blas-ablation``
    The BLAS path's epoch of 784-1024-1024-10 (10,000 MNIST images, batches of
    256 and 1,024) as shipped, with its BLAS calls skipped, and with its numba
    kernels skipped as well, in turns with NumPy's 2048³ sgemm: the epoch's rate
    as a share of sgemm's, the share of its time outside BLAS (numba kernels and
    Python), and the rate of its BLAS calls alone. Skipping a call changes what the
    next one computes on, not how long it takes, so the differences are the skipped
    work's time. Then each product's shape, timed call by call inside three epochs
    (``bench/sweeps.py --only blas-shapes`` times each product alone, warm), and
    what skipping each numba kernel alone saves.
``numba-products``
    On one thread, each large product of a 784-1024-1024-10 step at batch 256 by
    OpenBLAS (``kernels.cpu.blas.gemm``) and by this library's own ``@njit``
    products (``kernels.cpu.linear``: register-blocked dot products for ``A Wᵀ``,
    row updates for the others), by turns: how far a product written in numba is
    from the BLAS whose rate the wide nets' target is set against.
``sgemm-pause``
    NumPy's 2048³ sgemm as the suite's paired rounds time it (one product after
    0.3 s for the threads to sleep, a 31 MB array read just before it, as an epoch
    would leave the caches), against one timed right after an untimed product,
    and against four in a row: whether the rate the wide nets are measured against
    is lowered by its product's being the first after a pause.
``feature-major``
    Each large product of a 784-1024-1024-10 step at batch 256 and 1,024 as the
    BLAS path makes it (activations batch-major, (B, n): forward ``A Wᵀ``, input
    gradient ``D W``, weight step ``Dᵀ A``) and as it would with activations
    feature-major ((n, B): forward ``W Aᵀ``, ``Wᵀ Dᵀ``, ``Dᵀ (Aᵀ)ᵀ``), each checked
    against the other, then the step's products in each layout by turns.
``first-layer-columns``
    The first layer's forward product and weight step (784 → 1024) on MNIST
    batches of 256 and 1,024, dense as the BLAS path does them, against the same
    over only the input columns some sample of the batch has non-zero (rows of
    ``W_1ᵀ`` gathered, products NN and TN, the rows written back), each checked
    against the other, by turns. The variant is handed ``W_1ᵀ`` (the model
    calls the BLAS path one step at a time on wide nets, where it would have to
    transpose ``W_1`` each step); its gathers are NumPy's indexing.
``cold-start``
    ``python -m model train --epochs 1`` of this checkout and of an earlier
    revision (``--against``, default: the last commit before issue 11's work; a
    ``git worktree`` in a temporary folder), and numba alone calling one cached
    function, in fresh processes with warm caches, by turns: whether the command
    "stays as it is" on this machine, and how far it is from numba's own floor.
    ``--python`` runs them under another interpreter, such as one in a virtual
    environment with only the README's first install (numba and NumPy; without
    SciPy, which numba imports at its first call where it is installed).
"""

import argparse
import contextlib
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from functools import partial

import numpy as np

from bench.sweeps import alternate, net_start, square_operands
from kernels import layout
from kernels.activations import RELU
from kernels.cpu import minibatch_blas
from kernels.cpu.minibatch_blas import minibatch_epoch_blas, step_multiply_adds
from kernels.optimizer import hyper

ROOT = pathlib.Path(__file__).resolve().parents[1]
#: The last commit before issue 11's work (peers, BLAS path, the split of ``kernels/cpu/network.py``).
BEFORE_ISSUE_11 = "dd6053b"
#: The BLAS path's calls into OpenBLAS, and its numba kernels, as ``kernels.cpu.minibatch_blas`` names them.
BLAS_CALLS = ("gemm",)
NUMBA_KERNELS = ("gather_rows", "bias_activation", "loss_rows", "activation_derivative_mask", "bias_gradient",
                 "sgd_update")


@contextlib.contextmanager
def timed_products(seconds, flops):
    """``kernels.cpu.minibatch_blas``'s ``gemm`` timed call by call, for the block: ``seconds[shape]`` and
    ``flops[shape]`` add up each call's, ``shape`` being ``(op(A) op(B), M, N, K)`` as in ``"NT", 256, 1024, 784``."""
    gemm = minibatch_blas.gemm

    def timed(A, B, C, transpose_a=False, transpose_b=False, alpha=1.0, beta=0.0):
        M, N = C.shape
        K = A.shape[0] if transpose_a else A.shape[1]
        shape = ("T" if transpose_a else "N") + ("T" if transpose_b else "N"), M, N, K
        started = time.perf_counter()
        gemm(A, B, C, transpose_a, transpose_b, alpha, beta)
        seconds[shape] = seconds.get(shape, 0.0) + time.perf_counter() - started
        flops[shape] = flops.get(shape, 0) + 2 * M * N * K

    minibatch_blas.gemm = timed
    try:
        yield
    finally:
        minibatch_blas.gemm = gemm


@contextlib.contextmanager
def skipped(names):
    """``kernels.cpu.minibatch_blas``'s functions ``names`` replaced by ones that do nothing, for the block."""
    saved = {name: getattr(minibatch_blas, name) for name in names}
    try:
        for name in names:
            setattr(minibatch_blas, name, lambda *args, **kwargs: None)
        yield
    finally:
        for name, function in saved.items():
            setattr(minibatch_blas, name, function)


def blas_ablation(rounds):
    from bench.conftest import mnist_data

    X, y = mnist_data()
    order = np.random.default_rng(1).permutation(X.shape[0]).astype(np.int64)
    theta0, sizes = net_start([784, 1024, 1024, 10])
    size = 2048
    A, B, C = square_operands(size)
    sgemm_flops = 2 * size ** 3

    def epoch(skip, theta, batch_size, work):
        with skipped(skip):
            minibatch_epoch_blas(theta, theta[:1], sizes, RELU, X, y, order, batch_size, hyper(0.001), work,
                                 np.zeros(1))

    for batch_size in (256, 1024):
        work = layout.aligned_zeros(layout.workspace_size(sizes, batch_size), np.float32)

        # Each variant on weights of its own: those of a skipped product's epoch drift on whatever lies in the work
        # buffer, and the shipped epoch's must stay those of a training run.
        variants = {"epoch as shipped": partial(epoch, (), layout.aligned_copy(theta0), batch_size, work),
                    "BLAS calls skipped": partial(epoch, BLAS_CALLS, layout.aligned_copy(theta0), batch_size, work),
                    "BLAS calls and numba kernels skipped": partial(epoch, BLAS_CALLS + NUMBA_KERNELS,
                                                                    layout.aligned_copy(theta0), batch_size, work),
                    f"numpy sgemm {size}³": partial(np.matmul, A, B, out=C)}
        result = alternate(variants, rounds)
        epoch_flops = 2 * sum(step_multiply_adds(sizes, min(batch_size, X.shape[0] - start))
                              for start in range(0, X.shape[0], batch_size))
        full, no_blas, python = (result[name][0] for name in list(variants)[:3])
        sgemm_rate = sgemm_flops / result[f"numpy sgemm {size}³"][0]
        # sgemm's time over the epoch's within each round, times the epoch's FLOPs over sgemm's: the epoch's share.
        epoch_share = epoch_flops / sgemm_flops * result[f"numpy sgemm {size}³"][1]
        print(f"\n784-1024-1024-10, batch {batch_size}, {X.shape[0]:,} samples; NumPy's {size}³ sgemm "
              f"{sgemm_rate / 1e9:.0f} GFLOP/s in these rounds; medians of {rounds} rounds:")
        print(f"  epoch as shipped          {full * 1e3:7.1f} ms, {epoch_flops / full / 1e9:5.1f} GFLOP/s, "
              f"{100 * epoch_share:.0f}% of sgemm (ratio within rounds)")
        print(f"  outside BLAS              {no_blas * 1e3:7.1f} ms ({100 * no_blas / full:.1f}% of the epoch): "
              f"numba kernels {(no_blas - python) * 1e3:.1f} ms, Python {python * 1e3:.1f} ms")
        print(f"  the BLAS calls alone      {(full - no_blas) * 1e3:7.1f} ms, "
              f"{100 * epoch_flops / (full - no_blas) / sgemm_rate:.0f}% of sgemm's rate")
        seconds, flops = {}, {}
        with timed_products(seconds, flops):
            for _ in range(3):
                time.sleep(0.3)
                variants["epoch as shipped"]()
        print("  each product's shape, timed call by call in three more epochs (ms an epoch, share of the sgemm "
              "rate above):")
        for shape in sorted(seconds, key=seconds.get, reverse=True):
            kind, M, N, K = shape
            rate = flops[shape] / seconds[shape]
            label = f"{kind} ({M}×{K})·({K}×{N})"
            print(f"    {label:<28} {seconds[shape] / 3 * 1e3:7.1f} ms {100 * rate / sgemm_rate:5.0f}%")
        # Each numba kernel's own time: the epoch without its BLAS calls, with and without that kernel.
        without_blas = {"BLAS calls skipped": variants["BLAS calls skipped"]}
        without_blas.update({name: partial(epoch, (*BLAS_CALLS, name), layout.aligned_copy(theta0), batch_size, work)
                             for name in NUMBA_KERNELS})
        kernels = alternate(without_blas, rounds, pause=0.05)
        print("  each numba kernel, skipped alone (with the BLAS calls), what its absence saves an epoch:")
        for name in NUMBA_KERNELS:
            print(f"    {name:<28} {(kernels['BLAS calls skipped'][0] - kernels[name][0]) * 1e3:7.1f} ms")


def numba_products(rounds):
    from threadpoolctl import threadpool_limits

    from bench.sweeps import repeat
    from kernels.cpu.blas import gemm
    from kernels.cpu.linear import gemm_nt, gemm_rows

    rng = np.random.default_rng(0)

    def operand(*shape):
        return layout.aligned(rng.standard_normal(shape).astype(np.float32))

    batch_size = 256
    lr = 1e-3
    # name: (OpenBLAS's call, numba's call, each writing its argument; that argument's start; multiply-adds)
    products = {}
    for n_in, n_out in ((784, 1024), (1024, 1024)):
        A, W, D = operand(batch_size, n_in), operand(n_out, n_in), operand(batch_size, n_out)
        products[f"forward A·Wᵀ ({batch_size}×{n_in}·{n_in}×{n_out})"] = (
            lambda Z, A=A, W=W: gemm(A, W, Z, transpose_b=True), lambda Z, A=A, W=W: gemm_nt(A, W, Z),
            operand(batch_size, n_out), batch_size * n_in * n_out)
        if n_in == 1024:
            products[f"input gradient D·W ({batch_size}×{n_out}·{n_out}×{n_in})"] = (
                lambda G, D=D, W=W: gemm(D, W, G),
                lambda G, D=D, W=W: gemm_rows(D, W, G, 0, G.shape[0], False, 1.0, False),
                operand(batch_size, n_in), batch_size * n_in * n_out)
        products[f"weight step W -= η Dᵀ·A ({n_out}×{batch_size}·{batch_size}×{n_in})"] = (
            lambda W, D=D, A=A: gemm(D, A, W, transpose_a=True, alpha=-lr, beta=1.0),
            lambda W, D=D, A=A: gemm_rows(D, A, W, 0, W.shape[0], True, -lr, True),
            W, batch_size * n_in * n_out)
    print(f"\none thread, batch {batch_size}: each product by OpenBLAS and by this library's numba kernels, "
          f"each repeated 5 times a round, medians of {rounds} rounds")
    with threadpool_limits(limits=1, user_api="blas"):
        for name, (blas, numba, start, multiply_adds) in products.items():
            by_blas, by_numba = start.copy(), start.copy()
            blas(by_blas)
            numba(by_numba)
            np.testing.assert_allclose(by_numba, by_blas, rtol=1e-4, atol=1e-3, err_msg=name)
            result = alternate({"OpenBLAS": partial(repeat, partial(blas, by_blas), 5),
                                "numba": partial(repeat, partial(numba, by_numba), 5)}, rounds, pause=0.1)
            flops = 5 * 2 * multiply_adds
            print(f"  {name:<52} OpenBLAS {flops / result['OpenBLAS'][0] / 1e9:5.1f} GFLOP/s, numba "
                  f"{flops / result['numba'][0] / 1e9:5.1f} GFLOP/s: {1 / result['numba'][1]:.2f} of OpenBLAS's rate "
                  f"(IQR of the time ratio {result['numba'][2]:.2g})")


def sgemm_pause(rounds, size=2048):
    from bench.conftest import BLAS_SETTLE_SECONDS

    A, B, C = square_operands(size)
    other_data = np.random.default_rng(1).random((10_000, 784)).astype(np.float32)  # the wide nets' MNIST, 31 MB

    def product():
        np.matmul(A, B, out=C)

    def timed(before, times):
        other_data.sum()
        time.sleep(BLAS_SETTLE_SECONDS)
        for _ in range(before):
            product()
        started = time.perf_counter()
        for _ in range(times):
            product()
        return (time.perf_counter() - started) / times

    variants = {"one product after the pause (as paired)": partial(timed, 0, 1),
                "one product right after an untimed one": partial(timed, 1, 1),
                "four in a row after the pause, mean": partial(timed, 0, 4)}
    seconds = {name: [] for name in variants}
    names = list(variants)
    for run in variants.values():
        run()
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            seconds[name].append(variants[name]())
    warm = np.array(seconds[names[1]])
    print(f"\nNumPy's {size}³ sgemm, one product's time, medians of {rounds} rounds, ÷ the warm one's within rounds")
    for name, values in seconds.items():
        ratios = np.array(values) / warm
        print(f"  {name:<42} {np.median(values) * 1e3:6.1f} ms, {2 * size ** 3 / np.median(values) / 1e9:5.1f} "
              f"GFLOP/s, ÷ warm {np.median(ratios):#.3g} (IQR {np.subtract(*np.percentile(ratios, [75, 25])):.2g})")


def feature_major(rounds, batch_sizes=(256, 1024), seed=0):
    from bench.sweeps import repeat
    from kernels.cpu.blas import gemm

    rng = np.random.default_rng(seed)

    def operand(*shape):
        return layout.aligned(rng.standard_normal(shape).astype(np.float32))

    lr = 1e-3
    for batch_size in batch_sizes:
        layouts = {"batch-major (shipped)": [], "feature-major": []}
        for l, (n_in, n_out) in enumerate(((784, 1024), (1024, 1024))):
            A, D, W = operand(batch_size, n_in), operand(batch_size, n_out), operand(n_out, n_in)
            AT, DT = np.ascontiguousarray(A.T), np.ascontiguousarray(D.T)
            Z, ZT = np.empty((batch_size, n_out), np.float32), np.empty((n_out, batch_size), np.float32)
            stepped, stepped_alike = W.copy(), W.copy()
            # (name, the shipped call, the feature-major call, their results as the same matrix); the first layer's
            # input is X's rows, batch-major in either layout
            calls = [("forward", partial(gemm, A, W, Z, transpose_b=True),
                      partial(gemm, W, A, ZT, transpose_b=True) if l == 0 else partial(gemm, W, AT, ZT),
                      lambda Z=Z, ZT=ZT: (Z, ZT.T)),
                     ("weight step", partial(gemm, D, A, stepped, transpose_a=True, alpha=-lr, beta=1.0),
                      partial(gemm, DT, A, stepped_alike, alpha=-lr, beta=1.0) if l == 0 else partial(
                          gemm, DT, AT, stepped_alike, transpose_b=True, alpha=-lr, beta=1.0),
                      lambda W=stepped, WA=stepped_alike: (W, WA))]
            if l > 0:
                G, GT = np.empty_like(A), np.empty_like(AT)
                calls.append(("input gradient", partial(gemm, D, W, G), partial(gemm, W, DT, GT, transpose_a=True),
                              lambda G=G, GT=GT: (G, GT.T)))
            for name, shipped, feature, results in calls:
                shipped()
                feature()
                np.testing.assert_allclose(*results(), rtol=1e-4, atol=1e-4, err_msg=f"layer {l + 1} {name}")
                layouts["batch-major (shipped)"].append(shipped)
                layouts["feature-major"].append(feature)
        step_products = {name: partial(repeat, partial(_run_all, calls), 5) for name, calls in layouts.items()}
        result = alternate(step_products, rounds, pause=0.1)
        print(f"\n784-1024-1024-10, batch {batch_size}: a step's five large products in each layout, each product "
              f"checked against the other layout's, 5 steps a round, medians of {rounds} rounds")
        for name, (median, ratio, iqr) in result.items():
            print(f"  {name:<24} {median / 5 * 1e3:7.3f} ms a step, ÷ shipped {ratio:#.3g} (IQR {iqr:.2g})")


def _run_all(calls):
    for call in calls:
        call()


def first_layer_columns(rounds, batch_sizes=(256, 1024)):
    from bench.conftest import mnist_data
    from kernels.cpu.blas import gemm

    X, _ = mnist_data()
    order = np.random.default_rng(1).permutation(X.shape[0]).astype(np.int64)
    rng = np.random.default_rng(0)
    W = layout.aligned((rng.standard_normal((1024, X.shape[1])) * 0.05).astype(np.float32))
    lr = 1e-3
    for batch_size in batch_sizes:
        batches = [np.ascontiguousarray(X[order[s:s + batch_size]])
                   for s in range(0, X.shape[0] - batch_size + 1, batch_size)]
        D = (rng.standard_normal((batch_size, W.shape[0])) * 1e-3).astype(np.float32)
        Z = np.empty((batch_size, W.shape[0]), np.float32)
        dense_W, columns_WT = W.copy(), np.ascontiguousarray(W.T)

        def dense(W=dense_W, batches=batches, D=D, Z=Z):
            for Xb in batches:
                gemm(Xb, W, Z, transpose_b=True)
                gemm(D, Xb, W, transpose_a=True, alpha=-lr, beta=1.0)

        def non_zero_columns(WT=columns_WT, batches=batches, D=D, Z=Z):
            for Xb in batches:
                columns = np.flatnonzero((Xb != 0).any(axis=0))
                X_columns, WT_rows = np.ascontiguousarray(Xb[:, columns]), WT[columns]
                gemm(X_columns, WT_rows, Z)
                gemm(X_columns, D, WT_rows, transpose_a=True, alpha=-lr, beta=1.0)
                WT[columns] = WT_rows

        first = batches[:1]
        Z_alike = Z.copy()
        dense(batches=first)
        non_zero_columns(batches=first, Z=Z_alike)
        np.testing.assert_allclose(Z_alike, Z, rtol=1e-4, atol=1e-4, err_msg="forward")
        np.testing.assert_allclose(columns_WT.T, dense_W, rtol=1e-5, atol=1e-6, err_msg="weight step")
        share = np.median([np.count_nonzero((Xb != 0).any(axis=0)) / X.shape[1] for Xb in batches])
        result = alternate({"dense (shipped)": dense, "non-zero columns, W_1ᵀ given": non_zero_columns}, rounds)
        print(f"\nfirst layer 784 → 1024, {len(batches)} MNIST batches of {batch_size} (a batch's non-zero columns: "
              f"median {100 * share:.0f}% of {X.shape[1]}), forward product and weight step, each checked against "
              f"the other, medians of {rounds} rounds")
        for name, (median, ratio, iqr) in result.items():
            print(f"  {name:<32} {median * 1e3:7.1f} ms, ÷ shipped {ratio:#.3g} (IQR {iqr:.2g})")


def timed_run(python, arguments, path, cache_dir):
    """Seconds a fresh ``python arguments`` takes in ``path``, with numba's cache in ``cache_dir``."""
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(path)}
    started = time.perf_counter()
    subprocess.run([python, *arguments], check=True, env=environment, cwd=path, timeout=600,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def cold_start(rounds, against=BEFORE_ISSUE_11, python=sys.executable):
    from bench.test_cold_start import COMMAND_LINE, FLOOR_FROZEN_SCRIPT, FLOOR_MODULE

    with tempfile.TemporaryDirectory() as scratch:
        scratch = pathlib.Path(scratch)
        earlier = scratch / "earlier"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(earlier), against],
                       check=True)
        try:
            floor = scratch / "floor"
            floor.mkdir()
            (floor / "floor_module.py").write_text(FLOOR_MODULE)
            commands = {"command line, this checkout": (COMMAND_LINE, ROOT),
                        f"command line at {against}": (COMMAND_LINE, earlier),
                        "numba alone + gc.freeze()": (["-c", FLOOR_FROZEN_SCRIPT], floor)}
            variants = {name: partial(timed_run, python, arguments, path, scratch / f"cache-{index}")
                        for index, (name, (arguments, path)) in enumerate(commands.items())}
            for run in variants.values():  # fills each cache: alternate()'s own warm-up call is then a warm run
                run()
            result = alternate(variants, rounds)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(earlier)], check=True)
    print(f"\ncold start, cache warm, {python}: medians of {rounds} rounds, each time ÷ this checkout's "
          f"within rounds")
    for name, (median, ratio, iqr) in result.items():
        print(f"  {name:<32} {median:5.2f} s   ÷ this checkout {ratio:#.2g} (IQR {iqr:.2g})")


EXPERIMENTS = {"blas-ablation": blas_ablation, "numba-products": numba_products, "sgemm-pause": sgemm_pause,
               "feature-major": feature_major, "first-layer-columns": first_layer_columns, "cold-start": cold_start}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--only", choices=list(EXPERIMENTS))
    parser.add_argument("--against", default=BEFORE_ISSUE_11, help="cold-start: the earlier revision")
    parser.add_argument("--python", default=sys.executable, help="cold-start: the interpreter of the runs")
    args = parser.parse_args(argv)
    for name, experiment in EXPERIMENTS.items():
        if args.only in (None, name):
            if name == "cold-start":
                experiment(args.rounds, args.against, args.python)
            else:
                experiment(args.rounds)

if __name__ == "__main__":
    main()
