"""What each exact saving of the cpu per-sample epoch is worth, on real and dense data.

``kernels.cpu.network.sgd_epoch_variant`` runs the same updates with each saving
switched on or off; groups ``sgd_epoch savings <data>`` compare the variants.
"""

import numpy as np
import pytest

from bench.conftest import LR, N_SAMPLES, SIZES
from kernels import layout
from kernels.activations import RELU
from kernels.cpu.network import sgd_epoch_variant

VARIANTS = {
    "all savings": (True, True, True),
    "no zero-row skip": (False, True, True),
    "no zero-feature skip": (True, False, True),
    "no fused first-layer update": (True, True, False),
    "none": (False, False, False),
}


@pytest.mark.parametrize("data", ["mnist", "dense"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_sgd_epoch_variant(benchmark, datasets, initial_params, order, data, variant):
    X, y = datasets[data]
    sizes = layout.as_sizes(SIZES)
    start = np.concatenate([np.concatenate([W.ravel(), b]) for W, b in initial_params]).astype(np.float32)
    work = np.zeros(layout.workspace_size(sizes, 1), np.float32)
    flags = VARIANTS[variant]
    results = []
    for chosen in (flags, VARIANTS["all savings"]):  # the same updates either way
        theta = start.copy()
        sgd_epoch_variant(theta, sizes, RELU, X, y, order[:500], LR, work, np.zeros(1), *chosen)
        results.append(theta)
    np.testing.assert_allclose(results[0], results[1], rtol=1e-4, atol=1e-6)
    theta = start.copy()
    benchmark.group = f"sgd_epoch savings {data}"
    benchmark.extra_info.update(items=N_SAMPLES, unit="samples")
    benchmark.pedantic(
        sgd_epoch_variant, args=(theta, sizes, RELU, X, y, order, LR, work, np.zeros(1), *flags),
        setup=lambda: theta.__setitem__(slice(None), start), rounds=7, iterations=1,
    )
