"""``bench/report.py``: the columns a reader of the benchmark tables relies on."""

import json

import pytest

from bench import report
from tests.conftest import SIMULATOR

pytestmark = pytest.mark.skipif(SIMULATOR, reason="runs in the normal (non-simulated) process")


def entry(group, label, median, iqr=0.001, **info):
    return {"group": group, "name": label, "params": {}, "stats": {"median": median, "iqr": iqr},
            "extra_info": {"label": label, **info}}


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
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"benchmarks": benches, "machine_info": {}, "datetime": "now"}))
    assert report.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "NumPy sgemm in this run: 200 GFLOP/s" in out
    assert "| entry | median | IQR | throughput | × reference | × JAX |" in out
    assert "| cpu | 50 ms | 1 ms | 2e+05 samples/s | 2 | 1.2 |" in out
    assert "| torch | 80 ms | 1 ms | 1.25e+05 samples/s | 1.2 | 0.75 |" in out
    assert "150 GFLOP/s (75% of sgemm)" in out
    assert "13.11 Gelem/s" in out
    assert "| momentum 0.9 | 80 ms | 1 ms |  |  | 0.62 |" in out
