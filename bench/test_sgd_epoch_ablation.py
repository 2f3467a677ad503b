"""What each exact saving of the cpu per-sample epoch is worth, on real and dense data.

``kernels.cpu.per_sample.sgd_epoch_variant`` runs the same updates with each saving
switched on or off; groups ``sgd_epoch savings <data>`` compare the variants with the shipped
``sgd_epoch``, which chooses whether to skip zero features from the data.
"""

import numpy as np
import pytest

import kernels.numpy as reference
from bench.conftest import LR, N_SAMPLES, SIZES, flat_theta
from kernels import layout
from kernels.activations import RELU
from kernels.cpu.per_sample import sgd_epoch, sgd_epoch_variant
from kernels.optimizer import hyper
from model import MLP

VARIANTS = {
    "shipped (sgd_epoch)": None,  # all savings, the zero-feature skip only on inputs at most 75% non-zero
    "all savings": (True, True, True),
    "no zero-row skip": (False, True, True),
    "no zero-feature skip": (True, False, True),
    "no fused first-layer update": (True, True, False),
    "none": (False, False, False),
}


#: A second hidden layer: the only place where the zero-row skip can act (in 784-128-10 the one layer it
#: applies to is the output layer, whose deltas are never exactly zero).
DEEP_SIZES = [SIZES[0], 256, *SIZES[1:]]
CASES = {"mnist": ("mnist", SIZES), "dense": ("dense", SIZES), "mnist, 784-256-128-10": ("mnist", DEEP_SIZES)}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_sgd_epoch_variant(benchmark, datasets, initial_params, order, case, variant):
    data, layer_sizes = CASES[case]
    X, y = datasets[data]
    sizes = layout.as_sizes(layer_sizes)
    params = initial_params if layer_sizes == SIZES else MLP(layer_sizes, backend="numpy", seed=0).params
    start = flat_theta(params)
    work = layout.aligned_zeros(layout.workspace_size(sizes, 1), np.float32)
    flags = VARIANTS[variant]

    def epoch(theta, samples, data=X, work=work):
        if flags is None:
            sgd_epoch(theta, theta[:1], sizes, RELU, data, y, samples, hyper(LR), work, np.zeros(1))
        else:
            sgd_epoch_variant(theta, sizes, RELU, data, y, samples, LR, work, np.zeros(1), *flags)

    # The same updates either way: checked in float64 against the NumPy reference, where they agree to rounding
    # (in float32 a ReLU unit at its kink flips one way or the other, and deeper nets drift apart by percents).
    theta, expected = start.astype(np.float64), start.astype(np.float64)
    epoch(theta, order[:200], X.astype(np.float64), work.astype(np.float64))
    reference.sgd_epoch(expected, expected[:1], sizes, RELU, X.astype(np.float64), y, order[:200], hyper(LR),
                        np.zeros(layout.workspace_size(sizes, 1)), np.zeros(1))
    np.testing.assert_allclose(theta, expected, rtol=1e-9, atol=1e-12)
    theta = layout.aligned_copy(start)
    benchmark.group = f"sgd_epoch savings {case}"
    benchmark.extra_info.update(items=N_SAMPLES, unit="samples")
    benchmark.pedantic(epoch, args=(theta, order), setup=lambda: theta.__setitem__(slice(None), start), rounds=7,
                       iterations=1)
