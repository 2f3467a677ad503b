"""The command line: ``python -m model train``."""

import os
import subprocess
import sys

import pytest

from model.cli import main
from tests.conftest import MNIST_DIR, SIMULATOR

pytestmark = pytest.mark.skipif(SIMULATOR, reason="model tests run in the normal (non-simulated) process")


def test_default_run_trains_on_the_bundled_digits(capsys):
    assert main(["train", "--backend", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "digits: 1213 train, 135 validation, 449 test samples" in out
    assert "epoch 1/50" in out and "train loss" in out and "val acc" in out
    accuracy = float(out.split("test accuracy ")[1].split()[0])
    assert accuracy >= 0.96


def test_options_and_save(tmp_path, capsys):
    path = tmp_path / "m.npz"
    assert main(["train", "--backend", "numpy", "--hidden", "16", "8", "--activation", "tanh", "--epochs", "2",
                 "--batch-size", "32", "--lr", "0.1", "--seed", "4", "--save", str(path)]) == 0
    out = capsys.readouterr().out
    assert "MLP([64, 16, 8, 10], activation='tanh', backend='numpy'" in out
    assert "epoch 2/2" in out and path.exists()


@pytest.mark.parametrize("argv, message", [
    (["train", "--lr", "-1"], "--lr: must be a finite number > 0"),
    (["train", "--epochs", "x"], "--epochs: invalid"),
    (["train", "--batch-size", "0"], "--batch-size: must be an integer >= 1"),
    (["train", "--backend", "tpu"], "--backend: invalid choice: 'tpu'"),
    (["train", "--activation", "swish"], "--activation: invalid choice"),
    (["train", "--dataset", "mnist"], "--dataset mnist needs --data-dir"),
    (["train", "--dataset", "mnist", "--data-dir", "/nonexistent"], "cannot read MNIST"),
    ([], "the following arguments are required: command"),
    (["train", "--lr", "1e300"], "lr must fit the model's float32"),
    (["train", "--save", "/nonexistent-dir/m.npz"], "--save /nonexistent-dir/m.npz: cannot write in /nonexistent-dir"),
])
def test_bad_options_fail_clearly(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "model", "train", "--epochs", "1", "--backend", "cpu"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout


@pytest.mark.skipif(not MNIST_DIR.exists(), reason="../shared/data/mnist is absent")
def test_mnist_from_the_command_line(capsys):
    assert main(["train", "--dataset", "mnist", "--data-dir", str(MNIST_DIR), "--epochs", "1",
                 "--backend", "cpu"]) == 0
    assert "mnist: 54000 train, 6000 validation, 10000 test samples" in capsys.readouterr().out


def test_an_unwritable_destination_fails_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--backend", "cpu", "--save", str(tmp_path)])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert "is a directory" in captured.err and "epoch" not in captured.out


def test_a_failed_save_after_training_keeps_the_model(tmp_path, capsys, monkeypatch):
    """The disk fills up during the final save: one line says where the model went instead."""
    from model.mlp import MLP

    path = tmp_path / "m.npz"
    save = MLP.save

    def full_disk_once(self, destination):
        if str(destination) == str(path):
            raise OSError(28, "No space left on device")
        save(self, destination)

    monkeypatch.setattr(MLP, "save", full_disk_once)
    assert main(["train", "--backend", "cpu", "--epochs", "1", "--save", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: could not save the model to {path} (No space left on device); saved to ")
    assert "\n" not in err and "Traceback" not in err
    fallback = err.rsplit("saved to ", 1)[1].removesuffix(" instead")
    try:
        assert MLP.load(fallback).layer_sizes == (64, 128, 10)
    finally:
        os.remove(fallback)


def test_divergence_is_one_line_not_a_traceback(capsys):
    assert main(["train", "--backend", "cpu", "--dtype", "float64", "--lr", "1e300", "--epochs", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: training diverged in epoch 1") and "\n" not in err


def test_a_truncated_mnist_file_is_one_line(tmp_path, capsys):
    from tests.test_data import write_mnist_files

    write_mnist_files(tmp_path, truncate="train-images-idx3-ubyte.gz")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "train-images-idx3-ubyte.gz: damaged gzip file" in capsys.readouterr().err
