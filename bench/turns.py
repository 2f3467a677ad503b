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
``wide-256``, ``wide-1024`` (784-1024-1024-10); ``momentum`` times the cpu
backend's per-sample epoch with each optimiser setting against plain SGD, its own
baseline (issue 10's "within 2×"); ``estimator-128``, ``estimator-1024`` time
one ``partial_fit`` epoch of ``model.sklearn.MLPClassifier`` against
scikit-learn's (issue 10's "≥ 1.5× faster"), as ``bench/test_sklearn.py`` does,
and skip without scikit-learn. Each runner is checked against the NumPy
reference on its first samples before it is timed, as in the suite.
"""

import argparse
from functools import partial

import numpy as np

from bench import peers
from bench.conftest import (
    LR,
    N_SAMPLES,
    SIZES,
    PeerRunner,
    check_against_reference,
    kernel_threads,
    make_runner,
    matched_threads,
    mnist_data,
)
from bench.sweeps import alternate
from kernels.optimizer import hyper
from model import MLP

WORKLOADS = {"per-sample": (SIZES, 1), "batch-128": (SIZES, 128), "batch-1024": (SIZES, 1024),
             "wide-256": ([784, 1024, 1024, 10], 256), "wide-1024": ([784, 1024, 1024, 10], 1024),
             "momentum": (SIZES, 1), "estimator-128": (SIZES, 128), "estimator-1024": (SIZES, 1024)}
#: The cpu backend's entries of a workload that compares optimiser settings, the first the baseline; the other
#: workloads time the cpu backend with plain SGD against the peers.
SETTINGS = {"momentum": {"cpu, plain SGD": hyper(LR), "cpu, momentum 0.9": hyper(LR, 0.9),
                         "cpu, momentum 0.9, Nesterov, weight decay 1e-4": hyper(LR, 0.9, True, 1e-4)}}
#: The entries of the estimator workloads, the first the baseline: (label, threads as whose, runner class).
ESTIMATORS = [("model.sklearn.MLPClassifier (cpu)", "cpu", peers.ProjectEstimator),
              ("scikit-learn MLPClassifier", "sklearn", peers.ScikitLearnSGD)]
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
    if workload in SETTINGS:  # label: (threads as whose, runner, optimizer)
        entries = {label: ("cpu", partial(make_runner, "cpu", params, X, y, order, optimizer), optimizer)
                   for label, optimizer in SETTINGS[workload].items()}
    elif workload.startswith("estimator"):
        if not peers.available("sklearn"):  # model.sklearn needs it too
            print(f"\n{workload}: skipped, scikit-learn is not installed")
            return
        entries = {label: (name, lambda kind=kind: PeerRunner(kind(params, X, y, order)), None)
                   for label, name, kind in ESTIMATORS}
    else:
        entries = {name: (name, partial(make_runner, name, params, X, y, order), None)
                   for name in ["cpu"] + [name for name in peers.peer_names() if peers.available(name)
                                          and name not in SKIPPED.get(workload, ())]}
    runners = {}
    for label, (_, make, optimizer) in entries.items():
        runner = make()
        check_against_reference(runner, params, X, y, order, batch_size, 300 if batch_size == 1 else 3 * batch_size,
                                optimizer)
        if hasattr(runner, "prepare"):
            runner.prepare(batch_size)  # JAX compiles, scikit-learn builds, for the whole epoch: untimed
        runners[label] = runner
    result = alternate({label: partial(timed_epoch, runner, entries[label][0], batch_size)
                        for label, runner in runners.items()},
                       rounds, setups={label: runner.reset for label, runner in runners.items()})
    baseline = next(iter(entries))
    print(f"\n{workload}: {'-'.join(map(str, sizes))}, batch {batch_size}, {N_SAMPLES:,} samples, {rounds} rounds")
    for label, (median, ratio, iqr) in result.items():
        shown = label if label == "cpu" or label not in peers.peer_names() else peers.label(label)
        print(f"  {shown:<50} {median * 1e3:9.1f} ms   time ÷ {baseline} {ratio:.2g} (IQR {iqr:.2g})")


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
