"""``bench/sweeps.py``'s timing by turns and ``bench/turns.py``, which compares the cpu backend with the peers so."""

import numpy as np
import pytest

from tests.conftest import SIMULATOR

pytestmark = pytest.mark.skipif(SIMULATOR, reason="runs in the normal (non-simulated) process")


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


def test_turns_checks_and_times_each_entry_from_the_same_weights(monkeypatch, capsys):
    from bench import peers, turns
    from model import load_digits

    X, y = load_digits("float32")
    X = np.ascontiguousarray(np.tile(X, (1, 13))[:, :784])  # 784 inputs, as the workloads' nets take
    monkeypatch.setattr(turns, "N_SAMPLES", 600)
    monkeypatch.setattr(peers, "peer_names", lambda: [])  # the cpu backend alone: peers are optional extras
    turns.compare("batch-128", 2, (X[:600], y[:600]))
    out = capsys.readouterr().out
    assert "batch-128: 784-128-10, batch 128, 600 samples, 2 rounds" in out
    assert "cpu" in out and "time ÷ cpu 1 (IQR 0)" in out
