"""The experiments behind the cpu backend's thresholds, timed by alternation.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/sweeps.py [--rounds 9] [--only NAME]

On a shared machine, two entries timed one after the other can come out 1.3×
apart running the same code. :func:`alternate` times competing variants in
turns instead (each round runs every variant once, the order rotating), and
reports the median of each variant's time divided by the first's *within* rounds, with
its interquartile range. Experiments (``--only`` picks one):

``per-sample-density``
    The per-sample epoch (784-128-10, 2,000 samples) with and without skipping
    zero features, on inputs with random zeros at densities 0.2-1.0: where
    listing the non-zero features stops paying (``SGD_MAX_DENSITY``).
``minibatch-density``
    The fused minibatch epoch (batch 128, 10,000 samples) with the sparse and
    the dense first layer at the same densities (``SPARSE_MAX_DENSITY``).
``blas-spin``
    A two-thread cpu minibatch epoch timed right after a NumPy (BLAS) call, and
    0.3 s after one: what OpenBLAS's spinning threads cost a parallel numba
    kernel that follows them (``bench.conftest.BLAS_SETTLE_SECONDS``).
``sparse-parts``
    The fused kernel's sparse first layer on one thread: the product over the
    non-zero inputs and the update, with their GFLOP/s.
``alignment``
    The sparse first layer's parts and the fused minibatch epochs with their arrays on a cache line and
    16 bytes into one (``kernels.layout.ALIGNMENT``).
``vector-width``
    The epochs (per sample, with momentum, batches of 128 and 1,024) with the cpu
    kernels vectorised for 512-bit and for 256-bit registers, each in a process
    of its own (``kernels.cpu._jit.VECTOR_WIDTH_ATTRIBUTE``).
``listing``
    The same epochs with each sample's non-zero inputs listed a register at a
    time and by a loop of scalars, each in a process of its own
    (``kernels.cpu.simd.VECTOR_LISTING``).
``blas-shapes``
    Each BLAS product of a 784-1024-1024-10 step (batches of 256 and 1,024), called as the
    BLAS path calls it, against NumPy's 2048³ sgemm: its rate as a share of sgemm's, and
    the share the step's products reach together, the most an epoch of the BLAS path
    could reach were everything else free.
``paths``
    The fused minibatch kernel against the BLAS path on 784-128-10 and
    784-1024-1024-10 at several batch sizes, inputs 19% non-zero (``BLAS_MIN_MULTIPLY_ADDS``, on the
    multiply-adds the fused kernel does: its first layer's on the non-zero inputs only).
"""

import argparse
import time
from functools import partial

import numpy as np

from kernels import layout
from kernels.activations import RELU
from kernels.cpu.blas import gemm
from kernels.cpu.minibatch import minibatch_epoch_variant, parallel_threads
from kernels.cpu.minibatch_blas import fused_multiply_adds, minibatch_epoch_blas, step_multiply_adds
from kernels.cpu.per_sample import sgd_epoch_variant
from kernels.optimizer import hyper
from model import MLP

DENSITIES = (0.2, 0.3, 0.5, 0.7, 0.85, 1.0)
#: The share of non-zero pixels in MNIST, given to the random-zero inputs that stand in for it here.
MNIST_DENSITY = 0.19


def alternate(variants, rounds, pause=0.3, setups=None):
    """Time each ``variants[name]()`` once per round, in an order that rotates from round to round.

    ``setups[name]()``, when given, runs untimed before each of ``name``'s calls (a reset of the weights).
    Returns ``{name: (median seconds, median ratio to the first variant, IQR of that ratio)}``; the ratios
    are taken within rounds, so that a slow spell of the machine shifts both sides of each.
    """
    names = list(variants)
    setups = setups or {}
    for function in variants.values():  # compile, warm the caches
        function()
    seconds = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            if name in setups:
                setups[name]()
            time.sleep(pause)
            started = time.perf_counter()
            variants[name]()
            seconds[name].append(time.perf_counter() - started)
    first = np.array(seconds[names[0]])
    result = {}
    for name in names:
        ratios = np.array(seconds[name]) / first
        result[name] = (float(np.median(seconds[name])), float(np.median(ratios)),
                        float(np.subtract(*np.percentile(ratios, [75, 25]))))
    return result


def print_result(title, result):
    print(f"\n{title}")
    for name, (median, ratio, iqr) in result.items():
        print(f"  {name:<40} {median * 1e3:8.1f} ms   time ÷ first {ratio:.2g} (IQR {iqr:.2g})")


def random_zeros(n, density, seed=0):
    """Inputs in [0, 1) with a ``1 - density`` share of exact zeros at random, and random labels."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, 784)).astype(np.float32)
    X[rng.random(X.shape) >= density] = 0
    return layout.aligned(X), rng.integers(0, 10, n)  # as the model passes its data


def net_start(sizes):
    net = MLP(list(sizes), backend="cpu", seed=0)
    return layout.aligned_copy(net._theta), layout.as_sizes(sizes)


def density_sweep(title, n_samples, batch_size, variants_of, rounds):
    """For each density of :data:`DENSITIES`: ``variants_of(theta, sizes, X, y, order, work)`` timed by turns
    on 784-128-10 with ``n_samples`` random-zero inputs."""
    theta0, sizes = net_start([784, 128, 10])
    work = layout.aligned_zeros(layout.workspace_size(sizes, batch_size), np.float32)
    order = np.arange(n_samples, dtype=np.int64)
    for density in DENSITIES:
        X, y = random_zeros(n_samples, density)
        print_result(f"{title}, density {density}",
                     alternate(variants_of(layout.aligned_copy(theta0), sizes, X, y, order, work), rounds))


def per_sample_density(rounds):
    def variants_of(theta, sizes, X, y, order, work):
        return {name: partial(sgd_epoch_variant, theta, sizes, RELU, X, y, order, 0.01, work, np.zeros(1), True,
                              skip, True)
                for name, skip in (("skip zero features", True), ("take every row", False))}
    density_sweep("per-sample epoch: skipping zero features", 2000, 1, variants_of, rounds)


def minibatch_density(rounds):
    def variants_of(theta, sizes, X, y, order, work):
        return {name: partial(minibatch_epoch_variant, theta, theta[:1], sizes, RELU, X, y, order, 128,
                              hyper(0.01), work, np.zeros(1), parallel_threads(), max_density)
                for name, max_density in (("sparse first layer", 2.0), ("dense first layer", -1.0))}
    density_sweep("minibatch epoch (batch 128): first-layer path", 10_000, 128, variants_of, rounds)


def blas_spin(rounds):
    theta0, sizes = net_start([784, 128, 10])
    X, y = random_zeros(10_000, MNIST_DENSITY)
    order = np.arange(10_000, dtype=np.int64)
    work = layout.aligned_zeros(layout.workspace_size(sizes, 128), np.float32)
    A = np.random.default_rng(1).random((512, 512)).astype(np.float32)
    theta = layout.aligned_copy(theta0)

    def epoch():
        minibatch_epoch_variant(theta, theta[:1], sizes, RELU, X, y, order, 128, hyper(0.01), work, np.zeros(1),
                                parallel_threads(), 2.0)

    def after_blas(wait):
        def run():
            A @ A  # wakes OpenBLAS's threads; they spin for a while once it returns
            time.sleep(wait)
            started = time.perf_counter()
            epoch()
            return time.perf_counter() - started
        return run

    # The timed part is the epoch alone: each variant returns its own time.
    timings = {"epoch right after a BLAS call": [], "epoch 0.3 s after a BLAS call": []}
    runs = {"epoch right after a BLAS call": after_blas(0.0), "epoch 0.3 s after a BLAS call": after_blas(0.3)}
    for r in range(rounds):
        for name in list(runs)[r % 2:] + list(runs)[:r % 2]:
            time.sleep(0.3)
            timings[name].append(runs[name]())
    first = np.array(timings["epoch right after a BLAS call"])
    print("\nBLAS spin: a two-thread minibatch epoch (batch 128) after a NumPy product")
    for name, values in timings.items():
        ratios = np.array(values) / first
        print(f"  {name:<40} {np.median(values) * 1e3:8.1f} ms   time ÷ first {np.median(ratios):.2g} "
              f"(IQR {np.subtract(*np.percentile(ratios, [75, 25])):.2g})")


def paths(rounds):
    X, y = random_zeros(10_000, MNIST_DENSITY)
    order = np.random.default_rng(1).permutation(10_000).astype(np.int64)
    for sizes, batch_sizes in (([784, 128, 10], (128, 256, 1024)), ([784, 1024, 1024, 10], (32, 64, 256))):
        theta0, sizes = net_start(sizes)
        for batch_size in batch_sizes:
            work = layout.aligned_zeros(layout.workspace_size(sizes, batch_size), np.float32)
            theta = layout.aligned_copy(theta0)
            variants = {
                "fused kernel": partial(minibatch_epoch_variant, theta, theta[:1], sizes, RELU, X, y, order,
                                        batch_size, hyper(0.01), work, np.zeros(1), parallel_threads(), 0.25),
                "BLAS path": partial(minibatch_epoch_blas, theta, theta[:1], sizes, RELU, X, y, order, batch_size,
                                     hyper(0.01), work, np.zeros(1)),
            }
            fused_count = fused_multiply_adds(sizes, batch_size, MNIST_DENSITY)
            print_result(f"{'-'.join(map(str, sizes))} batch {batch_size} "
                         f"({step_multiply_adds(sizes, batch_size) / 2 ** 20:.0f}·2²⁰ multiply-adds a step, "
                         f"{fused_count / 2 ** 20:.0f}·2²⁰ in the fused kernel)",
                         alternate(variants, max(3, rounds // 3)))


def step_products(sizes, batch_size, seed=0):
    """``{name: (run, flops)}``: the BLAS calls of one step of :func:`minibatch_epoch_blas` (plain SGD), on random
    operands of their shapes: each layer's forward product, its input gradient (above the first layer) and its
    weight step fused into the gradient's product (``β = 1``)."""
    rng = np.random.default_rng(seed)

    def operand(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    products = {}
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        A, W, Z, D = operand(batch_size, n_in), operand(n_out, n_in), operand(batch_size, n_out), operand(
            batch_size, n_out)
        flops = 2 * batch_size * n_in * n_out
        products[f"layer {l + 1} forward ({batch_size}×{n_in} · {n_in}×{n_out})"] = (
            partial(gemm, A, W, Z, transpose_b=True), flops)
        if l > 0:
            products[f"layer {l + 1} input gradient ({batch_size}×{n_out} · {n_out}×{n_in})"] = (
                partial(gemm, D, W, np.empty_like(A)), flops)
        products[f"layer {l + 1} weight step ({n_out}×{batch_size} · {batch_size}×{n_in}, β = 1)"] = (
            partial(gemm, D, A, W, transpose_a=True, alpha=-1e-6, beta=1.0), flops)
    return products


def square_operands(size, seed=0):
    """Two random float32 ``size × size`` matrices and a product buffer: NumPy's sgemm, the rate the wide nets'
    products are measured against."""
    rng = np.random.default_rng(seed)
    A, B = (rng.standard_normal((size, size)).astype(np.float32) for _ in range(2))
    return A, B, np.empty((size, size), np.float32)


def blas_shapes(rounds):
    size = 2048
    A, B, C = square_operands(size)
    sgemm_flops = 2 * size ** 3
    for batch_size in (256, 1024):
        products = step_products([784, 1024, 1024, 10], batch_size)
        # Each product repeated to about one sgemm's work, so that every variant takes ~0.1 s.
        times = {name: max(1, round(sgemm_flops / flops)) for name, (_, flops) in products.items()}
        variants = {f"numpy sgemm {size}³": partial(np.matmul, A, B, out=C),
                    **{name: partial(repeat, run, times[name]) for name, (run, _) in products.items()}}
        result = alternate(variants, rounds)
        sgemm_seconds = result[f"numpy sgemm {size}³"][0]
        print(f"\n784-1024-1024-10, batch {batch_size}: each product's rate as a share of NumPy's {size}³ sgemm "
              f"({sgemm_flops / sgemm_seconds / 1e9:.0f} GFLOP/s here), the ratio taken within each round")
        step_seconds = step_at_sgemm = 0.0
        for name, (_, flops) in products.items():
            median, ratio, _ = result[name]
            share = times[name] * flops / sgemm_flops / ratio
            step_seconds += median / times[name]
            step_at_sgemm += flops / sgemm_flops * sgemm_seconds
            print(f"  {name:<52} {times[name] * flops / median / 1e9:6.1f} GFLOP/s  {100 * share:4.0f}% of sgemm")
        print(f"  the step's products together: {1e3 * step_seconds:.2f} ms, {100 * step_at_sgemm / step_seconds:.0f}% "
              f"of sgemm's rate (the most an epoch of the BLAS path could reach)")


def placed(array, offset):
    """A C-contiguous copy of ``array`` starting ``offset`` bytes into a cache line (NumPy puts large arrays 16
    bytes in; the model, at 0: :func:`kernels.layout.aligned`)."""
    buffer = layout.aligned_empty(array.nbytes + layout.ALIGNMENT, np.uint8)
    copy = buffer[offset:offset + array.nbytes].view(array.dtype).reshape(array.shape)
    copy[...] = array
    return copy


def sparse_layer(batch_size, offset=0):
    """``{"sparse product": run, "sparse update": run}`` on one thread, and their multiply-adds: the fused kernel's
    sparse first layer on one ``batch_size`` batch of inputs 19% non-zero at random, every array ``offset`` bytes
    into a cache line."""
    from kernels.cpu.minibatch import list_rows, sparse_rows_product, sparse_rows_update

    X, _ = random_zeros(batch_size, MNIST_DENSITY)
    rows = np.arange(batch_size, dtype=np.int64)
    rng = np.random.default_rng(1)
    W1T = (0.05 * rng.standard_normal((784, 128))).astype(np.float32)
    G = rng.standard_normal((batch_size, 128)).astype(np.float32)
    X, W1T, G, Z = (placed(a, offset) for a in (X, W1T, G, np.zeros((batch_size, 128), np.float32)))
    listing = (np.empty((batch_size, 784), np.int32), placed(np.empty((batch_size, 784), np.float32), offset),
               np.empty(batch_size, np.int64))
    list_rows(X, rows, listing, 0, batch_size)  # each sample's non-zero inputs, as the kernel lists them
    parts = {"sparse product": partial(sparse_rows_product, listing, W1T, Z, 0, batch_size),
             "sparse update": partial(sparse_rows_update, listing, G, W1T, 0, 784, np.float32(-1e-9))}
    return parts, int(listing[2].sum()) * 128


def sparse_parts(rounds):
    """The fused kernel's sparse first layer, one thread, one 1,024-sample batch of MNIST-like inputs (19%
    non-zero at random): the product ``Z = X W_1ᵀ`` over each sample's non-zero inputs, and the update of
    ``W_1ᵀ`` (sorting the (sample, feature) pairs by feature, then accumulating)."""
    parts, multiply_adds = sparse_layer(1024)
    result = alternate(parts, rounds, pause=0.05)
    print_result(f"sparse first layer, batch 1024, one thread ({multiply_adds / 1e6:.0f}M multiply-adds each)", result)
    for name in ("sparse product", "sparse update"):
        print(f"  {name}: {2 * multiply_adds / result[name][0] / 1e9:.0f} GFLOP/s")


def repeat(function, times):
    for _ in range(times):
        function()


def alignment(rounds):
    """Arrays on a cache line against 16 bytes into one: the sparse first layer's parts on one thread (batches of
    128 and 1,024), and the fused minibatch epochs with the data, weights and workspace placed either way (the
    kernel's own transposed ``W_1ᵀ`` is aligned in both)."""
    from kernels.cpu.minibatch import minibatch_epoch

    for batch_size in (128, 1024):
        placements = {offset: sparse_layer(batch_size, offset)[0] for offset in (16, 0)}
        for part in ("sparse product", "sparse update"):
            print_result(f"{part}, 8,192 samples in batches of {batch_size}, one thread", alternate(
                {f"{offset} bytes in": partial(repeat, parts[part], 8192 // batch_size)
                 for offset, parts in placements.items()}, rounds, pause=0.05))
    theta0, sizes = net_start([784, 128, 10])
    X, y = random_zeros(10_000, MNIST_DENSITY)
    order = np.random.default_rng(1).permutation(10_000).astype(np.int64)

    def epoch(batch_size, offset):
        data = placed(X, offset)
        work = placed(np.zeros(layout.workspace_size(sizes, batch_size), np.float32), offset)
        theta = placed(theta0, offset)

        def run():
            theta[...] = theta0
            minibatch_epoch(theta, theta[:1], sizes, RELU, data, y, order, batch_size, hyper(0.01), work, np.zeros(1))
        return run

    for batch_size in (128, 1024):
        print_result(f"fused minibatch epoch, batch {batch_size}", alternate(
            {f"{offset} bytes in": epoch(batch_size, offset) for offset in (16, 0)}, rounds))


#: Run by :func:`vector_width` in a fresh process per variant: the kernels compiled with the given
#: ``prefer-vector-width`` (into that variant's own numba cache), one untimed epoch, then one timed epoch of each
#: workload, printed as ``name seconds`` lines.
#: The body of a process that times :func:`workloads` once each (after one untimed run) with a setting of the kernels
#: made by ``{setup}`` before they compile, ``sys.argv[1]`` the setting, printing ``name seconds`` lines.
SETTING_SCRIPT = """
import sys, time
{setup}
from bench.sweeps import workloads
for name, run in workloads().items():
    run()
    started = time.perf_counter()
    run()
    print(name, time.perf_counter() - started)
"""


def workloads():
    """The epochs :func:`vector_width` times: 784-128-10 on 10,000 inputs 19% non-zero at random."""
    from kernels.cpu.minibatch import minibatch_epoch
    from kernels.cpu.per_sample import sgd_epoch

    theta0, sizes = net_start([784, 128, 10])
    X, y = random_zeros(10_000, MNIST_DENSITY)
    order = np.random.default_rng(1).permutation(10_000).astype(np.int64)

    def per_sample(momentum):
        def run():
            theta = layout.aligned_copy(theta0)
            work = layout.aligned_zeros(layout.workspace_size(sizes, 1), np.float32)
            sgd_epoch(theta, np.zeros_like(theta), sizes, RELU, X, y, order, hyper(0.01, momentum), work, np.zeros(1))
        return run

    def minibatch(batch_size):
        def run():
            theta = layout.aligned_copy(theta0)
            work = layout.aligned_zeros(layout.workspace_size(sizes, batch_size), np.float32)
            minibatch_epoch(theta, theta[:1], sizes, RELU, X, y, order, batch_size, hyper(0.01), work, np.zeros(1))
        return run

    return {"per-sample": per_sample(0.0), "per-sample-momentum-0.9": per_sample(0.9), "batch-128": minibatch(128),
            "batch-1024": minibatch(1024)}


def in_processes(setup, settings, rounds):
    """:func:`workloads` timed with each of ``settings`` (the ``{setup}`` line of :data:`SETTING_SCRIPT` makes it)
    in a process of its own with its own numba cache, the processes taking turns: ``{setting: {name: [seconds]}}``,
    one time a round."""
    import os
    import pathlib
    import subprocess
    import sys
    import tempfile

    root = pathlib.Path(__file__).resolve().parent.parent
    script = SETTING_SCRIPT.format(setup=setup)
    seconds = {setting: {} for setting in settings}
    with tempfile.TemporaryDirectory() as caches:
        for r in range(rounds + 1):  # round 0 compiles into each cache and is not counted
            for setting in settings[r % len(settings):] + settings[:r % len(settings)]:
                environment = {**os.environ, "NUMBA_CACHE_DIR": os.path.join(caches, setting),
                               "PYTHONPATH": str(root)}
                output = subprocess.run([sys.executable, "-c", script, setting], capture_output=True,
                                        text=True, env=environment, check=True, cwd=root).stdout
                if r > 0:
                    for line in output.splitlines():
                        name, value = line.split()
                        seconds[setting].setdefault(name, []).append(float(value))
    return seconds


def print_settings(title, seconds):
    """The times of :func:`in_processes`, each setting's against the first's (median of the within-round ratios)."""
    first, *others = seconds
    print(f"\n{title}")
    for name in seconds[first]:
        base = np.array(seconds[first][name])
        line = f"  {name:<26} {first} {np.median(base) * 1e3:7.1f} ms"
        for other in others:
            times = np.array(seconds[other][name])
            ratios = times / base
            line += (f"   {other} {np.median(times) * 1e3:7.1f} ms, ÷ {first} {np.median(ratios):.2g} "
                     f"(IQR {np.subtract(*np.percentile(ratios, [75, 25])):.2g})")
        print(line)


def vector_width(rounds):
    """The cpu kernels vectorised for 512-bit and for 256-bit registers (``kernels.cpu._jit.VECTOR_WIDTH_ATTRIBUTE``),
    each in its own process and numba cache, the processes taking turns."""
    setup = ("from kernels.cpu import _jit; "
             "_jit.VECTOR_WIDTH_ATTRIBUTE = '\"prefer-vector-width\"=\"' + sys.argv[1] + '\"'")
    print_settings("vector width: the cpu kernels for 512-bit registers (shipped), then for 256-bit (LLVM's default "
                   "on Intel's AVX-512 CPUs)", in_processes(setup, ["512", "256"], rounds))


def listing(rounds):
    """The epochs with each sample's non-zero inputs listed a register at a time (``kernels.cpu.simd.VECTOR_LISTING``:
    AVX-512's compressing store, or AVX2's packing table) and by the loop of scalars, each in its own process."""
    setup = "from kernels.cpu import network; network.VECTOR_LISTING = sys.argv[1] == 'register'"
    print_settings("listing the non-zero inputs: a register at a time (shipped with AVX2 and AVX-512), then by the "
                   "loop of scalars", in_processes(setup, ["register", "scalar"], rounds))


EXPERIMENTS = {"per-sample-density": per_sample_density, "minibatch-density": minibatch_density,
               "blas-spin": blas_spin, "blas-shapes": blas_shapes, "paths": paths, "vector-width": vector_width,
               "sparse-parts": sparse_parts, "alignment": alignment, "listing": listing}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--only", choices=list(EXPERIMENTS))
    args = parser.parse_args(argv)
    for name, experiment in EXPERIMENTS.items():
        if args.only in (None, name):
            experiment(args.rounds)


if __name__ == "__main__":
    main()
