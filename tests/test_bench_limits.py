"""``bench/limits.py``: the BLAS path's epoch with parts skipped or timed call by call, and the cold start against an
earlier revision."""

import pathlib

import numpy as np
import pytest

from tests.conftest import SIMULATOR

pytestmark = pytest.mark.skipif(SIMULATOR, reason="runs in the normal (non-simulated) process")


def small_blas_epoch():
    """A BLAS-path epoch of 64-32-16-10 on 100 random samples in batches of 32 (the last of 4), and its sizes."""
    from kernels import layout
    from kernels.activations import RELU
    from kernels.cpu.minibatch_blas import minibatch_epoch_blas
    from kernels.optimizer import hyper
    from model import MLP

    sizes = layout.as_sizes([64, 32, 16, 10])
    rng = np.random.default_rng(0)
    X = layout.aligned(rng.random((100, 64)).astype(np.float32))
    y = rng.integers(0, 10, 100)
    theta = layout.aligned_copy(MLP(list(sizes), backend="cpu", seed=0)._theta)
    work = layout.aligned_zeros(layout.workspace_size(sizes, 32), np.float32)

    def epoch():
        minibatch_epoch_blas(theta, theta[:1], sizes, RELU, X, y, np.arange(100), 32, hyper(0.01), work, np.zeros(1))
        return theta.copy()

    return epoch, sizes


def test_skipped_parts_do_nothing_inside_the_block_and_are_restored_after_it():
    from bench.limits import BLAS_CALLS, NUMBA_KERNELS, skipped
    from kernels.cpu import minibatch_blas

    epoch, _ = small_blas_epoch()
    before = epoch()
    originals = {name: getattr(minibatch_blas, name) for name in BLAS_CALLS + NUMBA_KERNELS}
    with pytest.raises(RuntimeError), skipped(BLAS_CALLS + NUMBA_KERNELS):
        assert np.array_equal(epoch(), before)  # nothing left that writes the weights
        raise RuntimeError
    assert {name: getattr(minibatch_blas, name) for name in originals} == originals
    assert not np.array_equal(epoch(), before)  # trains again


def test_timed_products_count_the_flops_of_every_step_and_leave_the_results_alone():
    from bench.limits import timed_products
    from kernels.cpu import minibatch_blas
    from kernels.cpu.minibatch_blas import step_multiply_adds

    epoch, sizes = small_blas_epoch()
    untimed_epoch, _ = small_blas_epoch()
    gemm = minibatch_blas.gemm
    seconds, flops = {}, {}
    with timed_products(seconds, flops):
        timed = epoch()
    assert minibatch_blas.gemm is gemm
    np.testing.assert_array_equal(timed, untimed_epoch())
    assert sum(flops.values()) == 2 * sum(step_multiply_adds(sizes, n) for n in (32, 32, 32, 4))
    assert set(seconds) == set(flops) and all(value > 0 for value in seconds.values())
    assert ("NT", 32, 10, 16) in flops and ("TN", 10, 16, 32) in flops and ("NN", 4, 16, 10) in flops


def test_cold_start_times_both_revisions_and_the_floor_by_turns_and_removes_its_worktree(monkeypatch, capsys):
    from bench import limits, sweeps

    git_calls = []
    runs = []
    clock = [0.0]
    monkeypatch.setattr(sweeps.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(sweeps.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(limits.subprocess, "run", lambda command, check: git_calls.append(command))

    def timed_run(python, arguments, path, cache_dir):
        runs.append((arguments, pathlib.Path(path), cache_dir))
        clock[0] += {limits.ROOT: 1.5}.get(pathlib.Path(path), 1.2)
        return 0.0

    monkeypatch.setattr(limits, "timed_run", timed_run)
    limits.cold_start(3, against="abc1234", python="python-under-test")
    added, removed = git_calls
    assert added[-2:] == [removed[-1], "abc1234"] and "add" in added and "remove" in removed
    assert {path for _, path, _ in runs} == {limits.ROOT, pathlib.Path(removed[-1]), pathlib.Path(
        removed[-1]).parent / "floor"}
    assert len({cache for _, _, cache in runs}) == 3  # a numba cache of its own for each command
    assert len(runs) == 3 * (2 + 3)  # each filled, warmed, then timed once a round
    out = capsys.readouterr().out
    assert "command line at abc1234           1.20 s   ÷ this checkout 0.80" in out
    assert "numba alone + gc.freeze()         1.20 s" in out


def test_numba_products_are_checked_against_openblas_before_they_are_timed(capsys):
    pytest.importorskip("threadpoolctl")
    from bench.limits import numba_products

    numba_products(1)  # asserts that each numba product gives OpenBLAS's result before timing it
    lines = [line for line in capsys.readouterr().out.splitlines() if "of OpenBLAS's rate" in line]
    assert len(lines) == 5  # two forward products, one input gradient, two weight steps
    assert all("OpenBLAS" in line and "GFLOP/s" in line for line in lines)


def test_sgemm_pause_times_each_way_of_timing_the_product_by_turns(monkeypatch, capsys):
    from bench import conftest, limits

    monkeypatch.setattr(conftest, "BLAS_SETTLE_SECONDS", 0.0)
    limits.sgemm_pause(2, size=64)
    out = capsys.readouterr().out
    assert "NumPy's 64³ sgemm" in out
    assert "one product right after an untimed one" in out and "÷ warm 1.00 (IQR 0)" in out
    assert out.count("GFLOP/s") == 3


def test_feature_major_checks_each_product_against_the_shipped_layout_and_times_both(capsys):
    from bench.limits import feature_major

    feature_major(1, batch_sizes=(8,))  # asserts that each feature-major product gives the shipped one's result
    out = capsys.readouterr().out
    assert "784-1024-1024-10, batch 8: a step's five large products" in out
    assert "batch-major (shipped)" in out and "feature-major" in out and out.count("ms a step") == 2


def test_first_layer_columns_checks_the_non_zero_columns_against_the_dense_step_and_times_both(capsys):
    from bench.limits import first_layer_columns

    first_layer_columns(1, batch_sizes=(2_500,))  # asserts the forward product and the weight step agree first
    out = capsys.readouterr().out
    assert "MNIST batches of 2500" in out and "non-zero columns: median" in out
    assert "dense (shipped)" in out and "non-zero columns, W_1ᵀ given" in out and out.count("÷ shipped") == 2


def test_main_runs_the_chosen_experiment_or_all_of_them_in_order(monkeypatch):
    from bench import limits

    ran = []
    for name in limits.EXPERIMENTS:
        monkeypatch.setitem(limits.EXPERIMENTS, name, lambda *args, name=name: ran.append((name, args)))
    limits.main(["--only", "cold-start", "--rounds", "3", "--against", "abc1234", "--python", "py"])
    assert ran == [("cold-start", (3, "abc1234", "py"))]
    ran.clear()
    limits.main(["--rounds", "2"])
    assert [name for name, _ in ran] == list(limits.EXPERIMENTS)
    assert all(args == (2,) for name, args in ran if name != "cold-start")
