"""What momentum, Nesterov and weight decay cost: one epoch of 784-128-10 (float32, 10,000 MNIST samples).

Groups ``optimizer mnist batch <B>`` time the ``cpu`` backend with plain SGD
(the baseline of the group) and with each optimiser setting, from the same
initial weights and zero velocity, in the same sample order; each is first
checked against the NumPy reference with the same setting.

Per sample, momentum moves every weight on every step, where plain SGD skips
the zero inputs of MNIST (about 81% of the pixels). The shipped kernel
(:mod:`kernels.cpu.per_sample_momentum`) keeps the skip with an exact lazy
update: a row of ``W_1ᵀ`` is visited only where its input is non-zero, and
catches up there on the steps it missed in one affine map (the powers of the
zero-gradient step tabled, its own pending step's ``δ_1`` kept in a ring). The
entry "every weight every step" runs the same kernel visiting every row at every
sample, for what the laziness saves. Each setting's rounds are paired with a
plain SGD epoch timed just before each (the report's "paired rounds" column);
``python -m bench.turns --only momentum`` times the same ratio by turns outside
the suite.
"""

import numpy as np
import pytest

from bench.conftest import (
    LR,
    N_SAMPLES,
    check_against_reference,
    make_runner,
    paired_epoch,
    require_backend,
    time_entry,
)
from kernels import layout
from kernels.activations import RELU
from kernels.cpu.per_sample_momentum import sgd_epoch_momentum
from kernels.optimizer import hyper

#: Rounds per entry. The ratio of two medians taken one entry after another moved with this shared machine's slow
#: spells (2.1 and 2.4 in two suite runs where alternating turns gave 1.9), so every setting's round is also
#: paired with a plain SGD epoch timed just before it (:class:`bench.conftest.Paired`), and the report prints the
#: median of the rounds' own ratios beside the ratio of medians.
ROUNDS = 11

SETTINGS = {
    "plain SGD": hyper(LR),
    "momentum 0.9": hyper(LR, 0.9),
    "momentum 0.9, Nesterov, weight decay 1e-4": hyper(LR, 0.9, True, 1e-4),
    "momentum 0.9, every weight every step": hyper(LR, 0.9),
}


class EagerMomentumRunner:
    """The cpu per-sample momentum epoch without the lazy catch-up: every weight decays on every step."""

    def __init__(self, runner):
        self.runner = runner

    def reset(self):
        self.runner.reset()

    def epoch(self, batch_size, samples=None):
        net = self.runner.net
        order = self.runner.order if samples is None else self.runner.order[:samples]
        sgd_epoch_momentum(net._theta, net._velocity, net._sizes, RELU, self.runner.X, self.runner.y, order,
                           self.runner.optimizer, self.runner.work, self.runner.loss_sum, False)

    def params(self):
        return self.runner.params()


@pytest.mark.parametrize("batch_size", [1, 128])
@pytest.mark.parametrize("variant", list(SETTINGS))
def test_optimizer_epoch(benchmark, datasets, initial_params, order, variant, batch_size):
    if variant.endswith("every step") and batch_size != 1:
        pytest.skip("the lazy catch-up is a per-sample kernel's")
    require_backend("cpu")
    X, y = datasets["mnist"]
    optimizer = SETTINGS[variant]
    runner = make_runner("cpu", initial_params, X, y, order, optimizer)
    if variant.endswith("every step"):
        runner.work = layout.aligned_zeros(layout.workspace_size(runner.sizes, 1), np.float32)
        runner = EagerMomentumRunner(runner)
    samples = 300 if batch_size == 1 else 3 * batch_size
    check_against_reference(runner, initial_params, X, y, order, batch_size, samples, optimizer)
    benchmark.group = f"optimizer mnist batch {batch_size}"
    paired = None
    if variant != "plain SGD":
        plain = make_runner("cpu", initial_params, X, y, order, SETTINGS["plain SGD"])
        paired = paired_epoch("plain SGD", plain, batch_size)
    time_entry(benchmark, runner, "cpu", batch_size, ROUNDS, paired=paired, items=N_SAMPLES, unit="samples",
               baseline=variant == "plain SGD")
    benchmark.extra_info["label"] = variant
