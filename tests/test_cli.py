"""The command line: ``python -m model train``."""

import os
import subprocess
import sys

import numpy as np
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


def test_optimiser_flags_train_as_the_api_does(tmp_path, capsys):
    """--momentum, --nesterov, --weight-decay and --lr-schedule reach ``fit``: the CLI's model equals the API's."""
    from model import MLP, load_digits, train_validation_split

    path = tmp_path / "m.npz"
    assert main(["train", "--backend", "cpu", "--dtype", "float64", "--epochs", "3", "--lr", "0.01",
                 "--batch-size", "16", "--momentum", "0.9", "--nesterov", "--weight-decay", "0.001",
                 "--lr-schedule", "invscaling", "--power-t", "0.25", "--save", str(path)]) == 0
    X, y = load_digits("float64")
    X_rest, y_rest, _, _ = train_validation_split(X, y, 0.25, seed=0)
    X_train, y_train, X_val, y_val = train_validation_split(X_rest, y_rest, 0.1, seed=0)
    net = MLP([64, 128, 10], backend="cpu", dtype="float64", seed=0)
    net.fit(X_train, y_train, epochs=3, lr=0.01, batch_size=16, validation_data=(X_val, y_val), patience=5,
            momentum=0.9, nesterov=True, weight_decay=0.001, lr_schedule="invscaling", power_t=0.25)
    saved = MLP.load(path, backend="cpu")
    for (W, b), (W_api, b_api) in zip(saved.params, net.params):
        np.testing.assert_array_equal(W, W_api)
        np.testing.assert_array_equal(b, b_api)


@pytest.mark.parametrize("argv, message", [
    (["train", "--momentum", "1"], "--momentum: must be a number in [0, 1)"),
    (["train", "--weight-decay", "-1"], "--weight-decay: must be a finite number >= 0"),
    (["train", "--lr-schedule", "cosine"], "--lr-schedule: invalid choice: 'cosine'"),
    (["train", "--nesterov", "--epochs", "1"], "nesterov=True needs momentum > 0"),
    (["train", "--plot", "/nonexistent-dir/c.png"], "--plot /nonexistent-dir/c.png: cannot write in"),
    (["evaluate", "/nonexistent.npz"], "cannot load the model '/nonexistent.npz'"),
    (["predict", "/nonexistent.npz", "x.npy"], "cannot load the model '/nonexistent.npz'"),
    (["predict"], "the following arguments are required: model, FILE"),
])
def test_more_bad_options_fail_clearly(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.fixture(scope="module")
def saved_digits_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.npz"
    assert main(["train", "--backend", "cpu", "--epochs", "5", "--save", str(path)]) == 0
    return path


def test_evaluate_prints_loss_accuracy_and_confusion_matrix(saved_digits_model, capsys):
    from model import MLP, load_digits, train_validation_split

    capsys.readouterr()
    assert main(["evaluate", str(saved_digits_model), "--backend", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    X, y = load_digits()
    _, _, X_test, y_test = train_validation_split(X, y, 0.25, seed=0)
    net = MLP.load(saved_digits_model, backend="cpu")
    assert out[0] == (f"{saved_digits_model} on digits test (449 samples): loss {net.loss(X_test, y_test):.4f}  "
                      f"accuracy {net.score(X_test, y_test):.4f}")
    assert out[1].startswith("confusion matrix") and out[2].split() == [str(c) for c in range(10)]
    matrix = np.array([[int(count) for count in line.split()[1:]] for line in out[3:13]])
    predicted = net.predict(X_test)
    expected = np.array([[np.sum((y_test == t) & (predicted == p)) for p in range(10)] for t in range(10)])
    np.testing.assert_array_equal(matrix, expected)
    assert matrix.sum() == 449 and np.trace(matrix) / 449 == pytest.approx(net.score(X_test, y_test))


def test_evaluate_a_model_of_other_data_fails_clearly(saved_digits_model, capsys, tmp_path):
    from tests.test_data import write_mnist_files

    write_mnist_files(tmp_path)
    with pytest.raises(SystemExit):
        main(["evaluate", str(saved_digits_model), "--dataset", "mnist", "--data-dir", str(tmp_path)])
    assert "takes 64 inputs and 10 classes; the mnist test set has 784 inputs" in capsys.readouterr().err


@pytest.mark.parametrize("output", [None, "labels.txt", "labels.npy"])
def test_predict_writes_the_labels_of_an_npy_file(saved_digits_model, tmp_path, capsys, output):
    from model import MLP, load_digits

    X, _ = load_digits()
    samples = tmp_path / "x.npy"
    np.save(samples, X[:20].reshape(20, 8, 8))  # images: each is flattened to a row
    expected = MLP.load(saved_digits_model, backend="cpu").predict(X[:20])
    capsys.readouterr()
    argv = ["predict", str(saved_digits_model), str(samples), "--backend", "cpu"]
    assert main(argv + (["--output", str(tmp_path / output)] if output else [])) == 0
    out = capsys.readouterr().out
    if output is None:
        labels = np.array([int(line) for line in out.split()])
    elif output.endswith(".npy"):
        labels = np.load(tmp_path / output)
    else:
        labels = np.loadtxt(tmp_path / output, dtype=np.int64)
    np.testing.assert_array_equal(labels, expected)


def test_predict_reads_idx_images(tmp_path, capsys):
    """An IDX image file (here a small synthetic MNIST) is read and scaled as in training."""
    from model import MLP, load_mnist
    from tests.test_data import write_mnist_files

    write_mnist_files(tmp_path)
    X, y = load_mnist(tmp_path, "test")
    net = MLP([784, 16, 10], backend="cpu", seed=1)
    net.fit(X, y, epochs=1, lr=0.1)
    net.save(tmp_path / "m.npz")
    assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "t10k-images-idx3-ubyte.gz"),
                 "--backend", "cpu", "--output", str(tmp_path / "labels.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), net.predict(X))


@pytest.mark.parametrize("content, message", [
    (np.array(["a", "b"]), "expected a numeric array of samples"),
    (np.zeros((3, 5)), "samples of 5 values, the model takes 64"),
])
def test_predict_on_bad_samples_fails_clearly(saved_digits_model, tmp_path, capsys, content, message):
    np.save(tmp_path / "x.npy", content)
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(saved_digits_model), str(tmp_path / "x.npy"), "--backend", "cpu"])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_plot_draws_the_learning_curves(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves.png"
    assert main(["train", "--backend", "cpu", "--epochs", "2", "--plot", str(path)]) == 0
    assert f"learning curves drawn to {path}" in capsys.readouterr().out
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_fails_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an absent package looks like to import
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--backend", "cpu", "--plot", str(tmp_path / "c.png")])
    captured = capsys.readouterr()
    assert exit_info.value.code == 2 and "pip install 'numba-mlp[plot]'" in captured.err
    assert "epoch" not in captured.out


def test_a_closed_pipe_ends_quietly():
    """``python -m model evaluate ... | head -1``: no BrokenPipeError traceback."""
    script = ("import subprocess, sys; p = subprocess.Popen([sys.executable, '-m', 'model', 'train', '--epochs', "
              "'1', '--backend', 'cpu'], stdout=subprocess.PIPE, stderr=subprocess.PIPE); p.stdout.readline(); "
              "p.stdout.close(); print(p.wait()); sys.stderr.write(p.stderr.read().decode())")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr
