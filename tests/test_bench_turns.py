"""``bench/sweeps.py``'s timing by turns and ``bench/turns.py``, which compares the cpu backend with the peers so."""

import numpy as np
import pytest

from tests.conftest import SIMULATOR

pytestmark = pytest.mark.skipif(SIMULATOR, reason="runs in the normal (non-simulated) process")


def digits_with_784_inputs(scale=1.0):
    """The bundled digits, their 64 pixels repeated to 784 inputs as the workloads' nets take, times ``scale``."""
    from model import load_digits

    X, y = load_digits("float32")
    return np.ascontiguousarray(np.tile(X, (1, 13))[:, :784]) * np.float32(scale), y


def test_alternate_rotates_the_order_and_sets_up_each_call_untimed(monkeypatch):
    from bench import sweeps

    calls = []
    clock = [0.0]
    monkeypatch.setattr(sweeps.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(sweeps.time, "sleep", lambda seconds: None)

    def variant(name, seconds):
        def run():
            calls.append(name)
            clock[0] += seconds
        return run

    def setup(name):
        def run():
            calls.append(f"reset {name}")
            clock[0] += 100.0  # a setup is never part of the time
        return run

    result = sweeps.alternate({"a": variant("a", 2.0), "b": variant("b", 3.0)}, rounds=3,
                              setups={"a": setup("a"), "b": setup("b")})
    assert calls[:2] == ["a", "b"]  # the warm-up calls, without setup
    timed = calls[2:]
    assert timed == ["reset a", "a", "reset b", "b", "reset b", "b", "reset a", "a", "reset a", "a", "reset b", "b"]
    assert result["a"] == (2.0, 1.0, 0.0)
    assert result["b"] == (3.0, 1.5, 0.0)


def test_settings_in_processes_are_compared_round_by_round(capsys):
    """``bench/sweeps.py``'s experiments that compile the kernels with two settings (one process each) report each
    setting's time against the first's as the median of the within-round ratios."""
    from bench import sweeps

    sweeps.print_settings("two settings", {"register": {"batch-128": [1.0, 2.0, 4.0]},
                                           "scalar": {"batch-128": [3.0, 2.0, 8.0]}})
    out = capsys.readouterr().out
    assert "two settings" in out
    assert "register  2000.0 ms" in out and "scalar  3000.0 ms, ÷ register 2 (IQR 1)" in out
    assert sweeps.SETTING_SCRIPT.format(setup="pass").count("workloads()") == 1


def test_turns_checks_and_times_each_entry_from_the_same_weights(monkeypatch, capsys):
    from bench import peers, turns
    X, y = digits_with_784_inputs()
    monkeypatch.setattr(turns, "N_SAMPLES", 600)
    monkeypatch.setattr(peers, "peer_names", lambda: [])  # the cpu backend alone: peers are optional extras
    turns.compare("batch-128", 2, (X[:600], y[:600]))
    out = capsys.readouterr().out
    assert "batch-128: 784-128-10, batch 128, 600 samples, 2 rounds" in out
    assert "cpu" in out and "time ÷ cpu 1 (IQR 0)" in out


def test_turns_times_the_optimiser_settings_against_plain_sgd(monkeypatch, capsys):
    from bench import turns
    # Scaled down: 784 inputs half of them lit drive momentum 0.9 at this rate into a divergence where two correct
    # float32 runs part after ~250 samples (MNIST's inputs are 19% lit).
    X, y = digits_with_784_inputs(scale=0.25)
    monkeypatch.setattr(turns, "N_SAMPLES", 400)
    turns.compare("momentum", 2, (X[:400], y[:400]))
    out = capsys.readouterr().out
    assert "momentum: 784-128-10, batch 1, 400 samples, 2 rounds" in out
    assert "cpu, plain SGD" in out and "time ÷ cpu, plain SGD 1 (IQR 0)" in out
    assert "cpu, momentum 0.9 " in out and "cpu, momentum 0.9, Nesterov, weight decay 1e-4" in out


def test_turns_times_the_project_estimator_against_scikit_learn(monkeypatch, capsys):
    pytest.importorskip("sklearn")
    from bench import turns
    X, y = digits_with_784_inputs()
    monkeypatch.setattr(turns, "N_SAMPLES", 512)
    turns.compare("estimator-128", 2, (X[:512], y[:512]))
    out = capsys.readouterr().out
    assert "estimator-128: 784-128-10, batch 128, 512 samples, 2 rounds" in out
    assert "time ÷ model.sklearn.MLPClassifier (cpu) 1 (IQR 0)" in out
    assert "scikit-learn MLPClassifier" in out


def test_the_blas_shapes_experiment_times_the_products_of_a_blas_step():
    """``--only blas-shapes`` times one call of each product a step of the BLAS path makes: their operations add up
    to the step's as the wide-net benchmarks count them, and each runs."""
    from bench import sweeps
    from kernels.cpu.minibatch_blas import step_multiply_adds

    sizes, batch_size = [12, 9, 7, 3], 5
    products = sweeps.step_products(sizes, batch_size)
    assert len(products) == 3 * (len(sizes) - 1) - 1  # no input gradient below the first layer
    assert sum(flops for _, flops in products.values()) == 2 * step_multiply_adds(sizes, batch_size)
    for run, _ in products.values():
        run()
