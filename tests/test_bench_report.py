"""``bench/report.py``: the columns a reader of the benchmark tables relies on."""

import json

import pytest

from bench import report
from tests.conftest import SIMULATOR

pytestmark = pytest.mark.skipif(SIMULATOR, reason="runs in the normal (non-simulated) process")


def entry(group, label, median, iqr=0.001, **info):
    return {"group": group, "name": label, "params": {}, "stats": {"median": median, "iqr": iqr},
            "extra_info": {"label": label, **info}}


def printed_report(benches, tmp_path, capsys):
    """What ``bench/report.py`` prints for a benchmark JSON holding ``benches``."""
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"benchmarks": benches, "machine_info": {}, "datetime": "now"}))
    assert report.main([str(path)]) == 0
    return capsys.readouterr().out


def test_ratios_name_the_fastest_peer_and_the_reference(tmp_path, capsys):
    benches = [
        entry("epoch", "cpu", 0.05, items=10_000),
        entry("epoch", "numpy", 0.10, items=10_000),
        entry("epoch", "torch", 0.08, items=10_000, peer=True),
        entry("epoch", "JAX", 0.06, items=10_000, peer=True),
        entry("wide", "cpu", 1.0, flops=150e9),
        entry("sgemm numpy", "numpy sgemm", 0.01, flops=2e9),
        entry("relu", "cpu", 1e-5, elements=131_072),
        entry("optimizer", "plain SGD", 0.05, baseline=True),
        entry("optimizer", "momentum 0.9", 0.08),
    ]
    out = printed_report(benches, tmp_path, capsys)
    assert "NumPy sgemm in this run: 200 GFLOP/s" in out
    assert "| entry | median | IQR | throughput | × reference | × JAX |" in out
    assert "| cpu | 50 ms | 1 ms | 2e+05 samples/s | 2 | 1.2 |" in out
    assert "| torch | 80 ms | 1 ms | 1.25e+05 samples/s | 1.2 | 0.75 |" in out
    assert "150 GFLOP/s (75% of sgemm)" in out
    assert "13.11 Gelem/s" in out
    assert "| momentum 0.9 | 80 ms | 1 ms |  |  | 0.62 |" in out


def test_paired_rounds_give_the_median_and_iqr_of_each_rounds_ratio(tmp_path, capsys):
    # Rounds 2 and 3 ran in a slow spell: both the entry and its paired run took 1.5x as long. The ratio of the
    # medians (0.14 / 0.06 = 2.3) moves with the spell; the rounds' own ratios (2.0, and one 2.2) do not.
    benches = [
        entry("optimizer", "plain SGD", 0.06, baseline=True),
        entry("optimizer", "momentum 0.9", 0.14, round_seconds=[0.10, 0.15, 0.15, 0.11, 0.10],
              paired_seconds=[0.05, 0.075, 0.075, 0.05, 0.05], paired_label="plain SGD", paired_flops=None),
        entry("wide", "cpu", 1.0, flops=100e9, round_seconds=[1.0, 1.0, 1.2],
              paired_seconds=[0.125, 0.1, 0.15], paired_label="numpy sgemm 2048³", paired_flops=20e9),
    ]
    out = printed_report(benches, tmp_path, capsys)
    assert "| entry | median | IQR | throughput | × reference | × plain SGD | paired rounds |" in out
    assert "| momentum 0.9 | 140 ms | 1 ms |  |  | 0.43 | 2× plain SGD's time (IQR 0) |" in out
    assert "| plain SGD | 60 ms | 1 ms |  |  | 1 |  |" in out
    # rates 100, 100, 83.3 GFLOP/s against 160, 200, 133.3: shares 62.5%, 50%, 62.5%
    assert "62% of numpy sgemm 2048³ (IQR 6.2) |" in out
    assert report.paired_ratios(benches[0]) is None


def test_a_paired_speedup_is_the_paired_runs_time_over_the_entrys(tmp_path, capsys):
    benches = [
        entry("estimator", "scikit-learn MLPClassifier", 0.13, baseline=True),
        entry("estimator", "model.sklearn.MLPClassifier (cpu)", 0.05, round_seconds=[0.05, 0.04, 0.05],
              paired_seconds=[0.15, 0.12, 0.125], paired_label="scikit-learn MLPClassifier", paired_speedup=True),
    ]
    # speed-ups 3.0, 3.0, 2.5
    assert "| 2.6 | 3× faster than scikit-learn MLPClassifier (IQR 0.25) |" in printed_report(benches, tmp_path, capsys)


def test_a_peers_rounds_are_paired_with_the_library_backend_on_its_device():
    import numpy as np

    from bench.test_training import paired_library_epoch
    from model import MLP

    net = MLP([6, 5, 3], backend="numpy", seed=0)
    X = np.random.default_rng(0).random((40, 6)).astype(np.float32)
    y, order = np.arange(40) % 3, np.arange(40, dtype=np.int64)
    assert paired_library_epoch("cpu", net.params, X, y, order, 8) is None
    assert paired_library_epoch("numpy", net.params, X, y, order, 8) is None
    for peer in ("jax-cpu", "torch-hand-cpu", "sklearn"):
        paired = paired_library_epoch(peer, net.params, X, y, order, 8)
        assert (paired.label, paired.settle, paired.flops, paired.speedup) == ("cpu", True, None, False)  # 0.3 s apart
