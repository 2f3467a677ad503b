"""One training epoch of 784-128-10 (float32, 10,000 samples) per backend and peer.

Groups: ``epoch <data> batch <B>``; each table compares numpy (the reference),
cpu, cuda (on a real GPU) and the peers of :mod:`bench.peers` (torch eager and
hand-written, on the CPU and on a GPU; JAX; scikit-learn for minibatches) on the
same work: same initial weights, sample order and learning rate, threads matched
to the cpu kernel's. Each runner is checked against the NumPy reference on the
first samples before it is timed, and on the whole epoch after.

Each peer's round is paired with an epoch of this library's backend on the peer's
device (cpu, or cuda for torch on a GPU), timed just before it
(:class:`bench.conftest.Paired`; on the CPU 0.3 s apart, for threads to sleep):
the report's "paired rounds" column then gives, in each peer's row, the peer's
time as a multiple of the backend's round by round, which this shared machine's
slow spells move less than a ratio of two medians timed a minute apart.
"""

import pytest

from bench import peers
from bench.conftest import (
    N_SAMPLES,
    all_backends,
    check_against_reference,
    gpu_present,
    make_runner,
    paired_epoch,
    reference_epoch,
    require_backend,
    time_entry,
)

WORKLOADS = [("mnist", 1), ("dense", 1), ("mnist", 32), ("mnist", 128), ("mnist", 1024), ("mnist", 8192),
             ("dense", 128), ("dense", 1024)]
#: Entries that take seconds per sample-by-sample epoch: fewer rounds.
SLOW_PER_SAMPLE = ("numpy", "torch-eager-cpu", "torch-eager-cuda", "torch-hand-cpu", "torch-hand-cuda", "sklearn")


@pytest.mark.parametrize("backend", all_backends())
@pytest.mark.parametrize("data, batch_size", WORKLOADS, ids=[f"{d}-batch{b}" for d, b in WORKLOADS])
def test_epoch(benchmark, datasets, initial_params, order, backend, data, batch_size):
    require_backend(backend)
    if backend == "sklearn" and batch_size == 1:
        pytest.skip("scikit-learn's Python loop over 10,000 single-sample batches is not a per-sample trainer")
    X, y = datasets[data]
    runner = make_runner(backend, initial_params, X, y, order)
    check_samples = 300 if batch_size == 1 else 3 * batch_size
    check_against_reference(runner, initial_params, X, y, order, batch_size, check_samples)
    expected = reference_epoch(initial_params, X, y, order, batch_size, (data, batch_size))
    benchmark.group = f"epoch {data} batch {batch_size}"
    slow = batch_size == 1 and backend in SLOW_PER_SAMPLE
    time_entry(benchmark, runner, backend, batch_size, 3 if slow else 7, expected, initial_params, (X, y),
               paired=paired_library_epoch(backend, initial_params, X, y, order, batch_size),
               items=N_SAMPLES, unit="samples")


def paired_library_epoch(name, params, X, y, order, batch_size):
    """For a peer, a :class:`bench.conftest.Paired` epoch of this library's backend on the peer's device (None
    for the library's own entries, and for a GPU peer where the cuda backend cannot run). On the CPU each run
    waits for the other's threads to sleep; a GPU run ends synchronised and keeps no CPU threads busy, and
    ``bench/gpu_run.sh`` has minutes, not the seconds those waits would add."""
    if name in ("numpy", "cpu", "cuda"):
        return None
    _, device = peers.kind_and_device(name)
    if device == "cuda" and not gpu_present():
        return None
    return paired_epoch(device, make_runner(device, params, X, y, order), batch_size, settle=device == "cpu")
