"""What each exact saving of the cpu per-sample epoch is worth, on real and dense data.

``kernels.cpu.per_sample.sgd_epoch_variant`` runs the same updates with each saving
switched on or off; groups ``sgd_epoch savings <data>`` compare the variants with the shipped
``sgd_epoch``, which chooses whether to skip zero features from the data.
"""

import numpy as np
import pytest

from bench.conftest import LR, N_SAMPLES, SIZES, flat_theta
from kernels import layout
from kernels.activations import RELU
from kernels.cpu.per_sample import sgd_epoch, sgd_epoch_variant
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
    work = np.zeros(layout.workspace_size(sizes, 1), np.float32)
    flags = VARIANTS[variant]

    def epoch(theta, samples):
        if flags is None:
            sgd_epoch(theta, sizes, RELU, X, y, samples, LR, work, np.zeros(1))
        else:
            sgd_epoch_variant(theta, sizes, RELU, X, y, samples, LR, work, np.zeros(1), *flags)

    theta, expected = start.copy(), start.copy()
    epoch(theta, order[:500])
    sgd_epoch_variant(expected, sizes, RELU, X, y, order[:500], LR, work, np.zeros(1), *VARIANTS["all savings"])
    np.testing.assert_allclose(theta, expected, rtol=1e-4, atol=1e-6)  # the same updates either way
    theta = start.copy()
    benchmark.group = f"sgd_epoch savings {case}"
    benchmark.extra_info.update(items=N_SAMPLES, unit="samples")
    benchmark.pedantic(epoch, args=(theta, order), setup=lambda: theta.__setitem__(slice(None), start), rounds=7,
                       iterations=1)
