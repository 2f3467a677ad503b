"""One training epoch of 784-128-10 (float32, 10,000 samples) per backend and peer.

Groups: ``epoch <data> batch <B>``; each table compares numpy, cpu, cuda (on a
real GPU) and torch (CPU, and CUDA on a GPU) on the same work: same initial
weights, sample order and learning rate. Each runner is first checked against
the NumPy reference on the first samples, then timed from the same start.
"""

import pytest

from bench.conftest import N_SAMPLES, all_backends, check_against_reference, make_runner, require_backend

WORKLOADS = [("mnist", 1), ("dense", 1), ("mnist", 32), ("mnist", 128), ("mnist", 1024), ("mnist", 8192),
             ("dense", 128), ("dense", 1024)]


@pytest.mark.parametrize("backend", all_backends())
@pytest.mark.parametrize("data, batch_size", WORKLOADS, ids=[f"{d}-batch{b}" for d, b in WORKLOADS])
def test_epoch(benchmark, datasets, initial_params, order, backend, data, batch_size):
    require_backend(backend)
    X, y = datasets[data]
    runner = make_runner(backend, initial_params, X, y, order)
    check_samples = 300 if batch_size == 1 else 3 * batch_size
    check_against_reference(runner, initial_params, X, y, order, batch_size, check_samples)
    benchmark.group = f"epoch {data} batch {batch_size}"
    benchmark.extra_info.update(items=N_SAMPLES, unit="samples")
    slow = batch_size == 1 and backend in ("numpy", "torch-cpu", "torch-cuda")
    benchmark.pedantic(runner.epoch, args=(batch_size,), setup=runner.reset, rounds=3 if slow else 7,
                       iterations=1)
