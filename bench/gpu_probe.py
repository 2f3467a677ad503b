"""What the GPU benchmarks alone do not say, for tuning the CUDA kernels on a real card (``bench/gpu_run.sh``).

- the per-sample epoch's time per sample against the number of slices the hidden units are cut into
  (a block per slice; :func:`kernels.cuda.per_sample.sgd_epoch_variant`), for 784-128-10 and
  784-256-128-10;
- the blocks the driver lets the per-sample kernel's cooperative launch have;
- the fused minibatch epoch's time per step at batch 128 and 8192 (784-128-10);
- the cost of an empty launch from Python, for the launch overhead of the epoch's chunks.

Medians of a few runs, synchronised. Prints a table; nothing here is asserted (the tests and the
benchmarks check the results).

    python bench/gpu_probe.py [--samples 2000]
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
    args = parser.parse_args()

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


if __name__ == "__main__":
    main()
