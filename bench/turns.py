"""The targets' comparisons of the suite, timed by turns: the cpu backend against each peer.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m bench.turns [--rounds 9] [--only NAME]

In one run of the suite the entries of a group are timed one after the other,
and on this project's shared machine two entries running the same code have come
out 1.4× apart in one group. Here every entry of a workload runs once per round,
in turns (:func:`bench.sweeps.alternate`), each from the same weights (reset
untimed) with its threads matched as in the suite, and the ratio
``peer time ÷ cpu time`` is taken within each round: its median and IQR are the
figures a slow spell of the machine moves least. Workloads (``--only`` picks
one): ``per-sample``, ``batch-128``, ``batch-1024`` (784-128-10 on 10,000
MNIST images, or their synthetic stand-in without ``../shared``) and
``wide-256``, ``wide-1024`` (784-1024-1024-10). Each runner is checked against
the NumPy reference on its first samples before it is timed, as in the suite.
"""

import argparse
from functools import partial

import numpy as np

from bench import peers
from bench.conftest import (
    N_SAMPLES,
    SIZES,
    check_against_reference,
    kernel_threads,
    make_runner,
    matched_threads,
    mnist_data,
)
from bench.sweeps import alternate
from model import MLP

WORKLOADS = {"per-sample": (SIZES, 1), "batch-128": (SIZES, 128), "batch-1024": (SIZES, 1024),
             "wide-256": ([784, 1024, 1024, 10], 256), "wide-1024": ([784, 1024, 1024, 10], 1024)}
#: Peers left out of a workload: torch's nn+autograd loop takes seconds a per-sample epoch (it is in the suite),
#: and scikit-learn has no per-sample mode.
SKIPPED = {"per-sample": ("torch-eager-cpu", "sklearn")}


def timed_epoch(runner, name, batch_size):
    with matched_threads(name, kernel_threads(batch_size)):
        runner.epoch(batch_size)


def compare(workload, rounds, data):
    sizes, batch_size = WORKLOADS[workload]
    X, y = data
    order = np.random.default_rng(1).permutation(N_SAMPLES).astype(np.int64)
    params = MLP(sizes, backend="numpy", seed=0).params
    names = ["cpu"] + [name for name in peers.peer_names() if peers.available(name)
                       and name not in SKIPPED.get(workload, ())]
    runners = {}
    for name in names:
        runner = make_runner(name, params, X, y, order)
        check_against_reference(runner, params, X, y, order, batch_size, 300 if batch_size == 1 else 3 * batch_size)
        if hasattr(runner, "prepare"):
            runner.prepare(batch_size)  # JAX compiles, scikit-learn builds, for the whole epoch: untimed
        runners[name] = runner
    result = alternate({name: partial(timed_epoch, runner, name, batch_size) for name, runner in runners.items()},
                       rounds, setups={name: runner.reset for name, runner in runners.items()})
    print(f"\n{workload}: {'-'.join(map(str, sizes))}, batch {batch_size}, {N_SAMPLES:,} samples, {rounds} rounds")
    for name, (median, ratio, iqr) in result.items():
        label = "cpu" if name == "cpu" else peers.label(name)
        print(f"  {label:<42} {median * 1e3:9.1f} ms   time ÷ cpu {ratio:.2g} (IQR {iqr:.2g})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--only", choices=list(WORKLOADS))
    args = parser.parse_args(argv)
    data = mnist_data()
    for workload in WORKLOADS:
        if args.only in (None, workload):
            compare(workload, args.rounds, data)


if __name__ == "__main__":
    main()
