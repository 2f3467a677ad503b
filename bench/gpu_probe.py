"""What the GPU benchmarks alone do not say, for tuning the CUDA kernels on a real card (``bench/gpu_run.sh``).

- the per-sample epoch's time per sample against the number of slices the hidden units are cut into
  (a block per slice; :func:`kernels.cuda.per_sample.sgd_epoch_variant`), for 784-128-10 and
  784-256-128-10;
- the blocks the driver lets the per-sample kernel's cooperative launch have;
- the fused minibatch epoch's time per step at batch 128 and 8192 (784-128-10);
- the cost of an empty launch from Python, for the launch overhead of the epoch's chunks;
- with ``--parts``, what a per-sample step is made of: a grid barrier (16 and all co-resident blocks),
  a ``syncthreads``, one dependent global load (alone, and after a store), and the per-sample
  kernel on data that leave its first layer nothing to read, without a hidden layer, and with 16 inputs.

Medians of a few runs, synchronised. Prints a table; nothing here is asserted (the tests and the
benchmarks check the results).

    python bench/gpu_probe.py [--samples 2000] [--parts]
"""

import argparse
import functools
import statistics
import time

import numpy as np


def median_seconds(run, repeats, synchronize):
    run()
    synchronize()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000, help="samples of each timed per-sample run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", action="store_true", help="only the per-sample step's parts")
    args = parser.parse_args()
    if args.parts:
        per_sample_parts(args)
        return

    from numba import cuda

    from kernels import layout
    from kernels.cuda import per_sample
    from kernels.cuda._launch import EPOCH_THREADS, co_resident_blocks
    from kernels.cuda.minibatch import minibatch_epoch
    from kernels.optimizer import hyper
    from model import MLP

    rng = np.random.default_rng(0)
    device = cuda.get_current_device()
    print(getattr(device, "name", "simulator"), "SMs:", getattr(device, "MULTIPROCESSOR_COUNT", 1))

    @cuda.jit
    def empty(a):
        pass

    one = cuda.device_array(1)
    seconds = median_seconds(lambda: empty[1, 32](one), 200, cuda.synchronize)
    print(f"empty launch, one array argument: {seconds * 1e6:.1f} µs")

    for sizes in ([784, 128, 10], [784, 256, 128, 10]):
        n = 10_000
        X = (rng.random((n, sizes[0])) * (rng.random((n, sizes[0])) < 0.2)).astype(np.float32)
        y = rng.integers(0, sizes[-1], n)
        net = MLP(sizes, backend="cuda", seed=0)
        X_dev, y_dev = cuda.to_device(X), cuda.to_device(y)
        order = cuda.to_device(rng.permutation(n)[:args.samples].astype(np.int64))
        optimizer = hyper(0.01)
        velocity = net._velocity_for(optimizer)
        work = cuda.to_device(np.zeros(layout.workspace_size(sizes, 1), np.float32))
        loss_sum = cuda.to_device(np.zeros(1))
        most = layout.param_count(sizes) // (2 * sizes[-1] + 2 * max(sizes[1:-2], default=0))
        default = per_sample.slices_for(sizes)
        probe_args = (net._theta, velocity, net._sizes, net._activation, X_dev, y_dev, order,
                      tuple(float(h) for h in optimizer), work, 1, loss_sum)
        resident = co_resident_blocks(per_sample.sgd_epoch_kernel, EPOCH_THREADS, probe_args)
        print(f"per-sample {'-'.join(map(str, sizes))}: default {default} slices, {resident} co-resident blocks")
        for n_slices in sorted({1, 2, 4, 8, 16, 32, 64, 128, default} & set(range(1, most + 1))):
            run = functools.partial(per_sample.sgd_epoch_variant, net._theta, velocity, net._sizes,
                                    net._activation, X_dev, y_dev, order, optimizer, work, loss_sum, n_slices)
            seconds = median_seconds(run, args.repeats, cuda.synchronize)
            print(f"  {n_slices:4d} slices: {seconds / args.samples * 1e6:7.2f} µs/sample")

    sizes = [784, 128, 10]
    n = 10_000
    X = (rng.random((n, 784)) * (rng.random((n, 784)) < 0.2)).astype(np.float32)
    y = rng.integers(0, 10, n)
    X_dev, y_dev = cuda.to_device(X), cuda.to_device(y)
    order = cuda.to_device(rng.permutation(n).astype(np.int64))
    for batch in (128, 8192):
        net = MLP(sizes, backend="cuda", seed=0)
        optimizer = hyper(0.01)
        velocity = net._velocity_for(optimizer)
        work = cuda.to_device(np.zeros(layout.workspace_size(sizes, batch), np.float32))
        loss_sum = cuda.to_device(np.zeros(1))
        run = functools.partial(minibatch_epoch, net._theta, velocity, net._sizes, net._activation, X_dev, y_dev,
                                order, batch, optimizer, work, loss_sum)
        seconds = median_seconds(run, args.repeats, cuda.synchronize)
        steps = -(-n // batch)
        print(f"minibatch 784-128-10 batch {batch}: {seconds * 1e3:.2f} ms/epoch, {seconds / steps * 1e6:.1f} µs/step")


def per_sample_parts(args):
    """Time the pieces a per-sample step is built from (:func:`micro_kernels`), then the per-sample kernel on
    inputs that leave its first layer nothing to read, without a hidden layer, and with 16 inputs."""
    from numba import cuda

    from kernels import layout
    from kernels.cuda import per_sample
    from kernels.cuda._launch import SIMULATED
    from kernels.optimizer import hyper
    from model import MLP

    rng = np.random.default_rng(1)
    if not SIMULATED:  # the simulator cannot run kernels defined in a function (its cuda is not theirs)
        micro_kernels(args.repeats, rng)
    samples = args.samples
    for sizes, density in (([784, 128, 10], 0.2), ([784, 128, 10], 0.0), ([784, 10], 0.2), ([16, 128, 10], 0.2)):
        X = (rng.random((10_000, sizes[0])) * (rng.random((10_000, sizes[0])) < density)).astype(np.float32)
        y = rng.integers(0, sizes[-1], 10_000)
        net = MLP(sizes, backend="cuda", seed=0)
        optimizer = hyper(0.01)
        velocity = net._velocity_for(optimizer)
        work = cuda.to_device(np.zeros(layout.workspace_size(sizes, 1), np.float32))
        loss_sum = cuda.to_device(np.zeros(1))
        order = cuda.to_device(rng.permutation(10_000)[:samples].astype(np.int64))
        X_dev, y_dev = cuda.to_device(X), cuda.to_device(y)
        for n_slices in sorted({1, per_sample.slices_for(sizes)}):
            run = functools.partial(per_sample.sgd_epoch_variant, net._theta, velocity, net._sizes, net._activation,
                                    X_dev, y_dev, order, optimizer, work, loss_sum, n_slices)
            seconds = median_seconds(run, args.repeats, cuda.synchronize)
            print(f"per-sample {'-'.join(map(str, sizes))}, inputs {density:.0%} nonzero, {n_slices} slices: "
                  f"{seconds / samples * 1e6:.2f} µs/sample")


def micro_kernels(repeats, rng):
    """Time the grid barrier, ``syncthreads``, a dependent load and a 64-bit remainder, each ``n`` times in one
    launch."""
    from numba import cuda

    from kernels.cuda._launch import EPOCH_THREADS, co_resident_blocks, grid_barrier

    n = 2000  # loop trips of each micro-kernel

    @cuda.jit
    def barriers(count):
        for _ in range(count):
            grid_barrier()

    @cuda.jit
    def block_syncs(count):
        for _ in range(count):
            cuda.syncthreads()

    @cuda.jit
    def load_chain(nxt, sink, count, store):
        """One thread follows ``j = nxt[j]``: each load waits for the one before; with ``store`` a store
        to ``sink`` (another array) comes between them."""
        if cuda.grid(1) == 0:
            j = 0
            for t in range(count):
                j = nxt[j]
                if store:
                    sink[j] = t
            sink[0] = j

    @cuda.jit
    def divisions(count, divisor, sink):
        """A chain of 64-bit remainders by a divisor known only at run time (each waits for the last)."""
        x = cuda.grid(1)
        for t in range(count):
            x = (x * 7 + t) % divisor
        sink[cuda.grid(1)] = x

    def timed(compiled, grid, threads, *arguments):
        """µs per loop trip of ``compiled[grid, threads](*arguments)``."""
        return median_seconds(lambda: compiled[grid, threads](*arguments), repeats, cuda.synchronize) / n * 1e6

    barriers.max_threads = EPOCH_THREADS
    resident = co_resident_blocks(barriers, EPOCH_THREADS, (n,))
    for grid in sorted({1, min(16, resident), resident}):
        print(f"grid barrier, {grid} blocks x {EPOCH_THREADS}: {timed(barriers, grid, EPOCH_THREADS, n):.3f} µs")
    print(f"syncthreads, {EPOCH_THREADS} threads: {timed(block_syncs, 1, EPOCH_THREADS, n) * 1e3:.1f} ns")
    for entries in (1024, 1 << 20):  # within L1, then L2
        cycle = rng.permutation(entries)  # one cycle through every entry, in random order
        nxt = np.empty(entries, np.int64)
        nxt[cycle] = np.roll(cycle, -1)
        nxt = cuda.to_device(nxt)
        sink = cuda.device_array(entries, np.int64)
        for store in (False, True):
            micro = timed(load_chain, 1, 32, nxt, sink, n, store)
            print(f"dependent load, {entries * 8 // 1024} KiB{' after a store' if store else ''}: {micro * 1e3:.0f} ns")
    sink = cuda.device_array(EPOCH_THREADS, np.int64)
    print(f"64-bit remainder: {timed(divisions, 1, EPOCH_THREADS, n, 1000003, sink) * 1e3:.1f} ns")


if __name__ == "__main__":
    main()
