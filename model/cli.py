"""Command line: ``python -m model train|evaluate|predict [options]``.

* ``train``: train an MLP on the bundled digits or MNIST, report its test accuracy, optionally save it
  and plot its learning curves;
* ``evaluate m.npz``: the loss, accuracy and confusion matrix of a saved model on a data set;
* ``predict m.npz FILE``: the predicted labels of the samples in an ``.npy`` or IDX image file.
"""

import argparse
import contextlib
import gc
import os
import sys
import tempfile
import time

import numpy as np

from kernels.activations import ACTIVATIONS
from model.backends import BACKENDS
from model.data import load_digits, load_features, load_mnist, train_validation_split
from model.schedule import SCHEDULES


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def _non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def _positive_float(text):
    value = float(text)
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _fraction(text):
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text}")
    return value


def _non_negative_float(text):
    value = float(text)
    if not np.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _add_data_options(command, split_help):
    command.add_argument("--dataset", choices=("digits", "mnist"), default="digits",
                         help="digits: the bundled 8x8 digits (default); mnist: IDX files in --data-dir")
    command.add_argument("--data-dir", help="directory of the four MNIST IDX files (raw or .gz)")
    command.add_argument("--seed", type=_non_negative_int, default=0, help=split_help)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m model", description="Train a multi-layer perceptron.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train an MLP and report its test accuracy")
    _add_data_options(train, "seed of the weights, the sample order and the data split (default 0)")
    train.add_argument("--backend", choices=BACKENDS, default="auto")
    train.add_argument("--hidden", type=_positive_int, nargs="*", default=[128],
                       help="hidden layer sizes, e.g. --hidden 128 64 (default: 128)")
    train.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu")
    train.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    train.add_argument("--epochs", type=_non_negative_int, default=50)
    train.add_argument("--lr", type=_positive_float, default=0.05)
    train.add_argument("--batch-size", type=_positive_int, default=1, help="1: per-sample SGD (default)")
    train.add_argument("--momentum", type=_fraction, default=0.0, help="momentum in [0, 1) (default 0)")
    train.add_argument("--nesterov", action="store_true", help="Nesterov momentum (needs --momentum > 0)")
    train.add_argument("--weight-decay", type=_non_negative_float, default=0.0,
                       help="L2 weight decay on the weight matrices, not the biases (default 0)")
    train.add_argument("--lr-schedule", choices=SCHEDULES, default="constant",
                       help="constant (default); invscaling: lr / t^power_t; adaptive: lr / 5 after "
                            "--patience epochs without a better validation loss")
    train.add_argument("--power-t", type=_non_negative_float, default=0.5, help="exponent of invscaling")
    train.add_argument("--patience", type=_positive_int, default=5,
                       help="stop (or, with --lr-schedule adaptive, divide the rate by 5) after this many "
                            "epochs without a better validation loss")
    train.add_argument("--save", metavar="PATH", help="write the trained model to this .npz file")
    train.add_argument("--plot", metavar="PATH", help="draw the learning curves into this image (.png, .pdf, ...)")

    evaluate = commands.add_parser("evaluate", help="loss, accuracy and confusion matrix of a saved model")
    evaluate.add_argument("model", help="a model saved by train --save or MLP.save")
    _add_data_options(evaluate, "digits: the seed of train's split, whose test part is evaluated (default 0)")
    evaluate.add_argument("--split", choices=("train", "test"), default="test",
                          help="which part of the data set (default test)")
    evaluate.add_argument("--backend", choices=BACKENDS, default="auto")

    predict = commands.add_parser("predict", help="predicted labels of the samples in an .npy or IDX file")
    predict.add_argument("model", help="a model saved by train --save or MLP.save")
    predict.add_argument("samples", metavar="FILE",
                         help=".npy array or IDX image file (raw or .gz), a sample per row or image; uint8 "
                              "pixels are scaled to [0, 1] as in training")
    predict.add_argument("--output", metavar="PATH",
                         help="write the labels here (.npy: an int64 array; otherwise text, one per line) "
                              "instead of to standard output")
    predict.add_argument("--backend", choices=BACKENDS, default="auto")
    return parser


def _load_split(args, parser, dtype):
    """The data set's (train, test) pairs: the digits split 75/25 with ``--seed``, or MNIST's own two."""
    if args.dataset == "digits":
        X, y = load_digits(dtype)
        X_rest, y_rest, X_test, y_test = train_validation_split(X, y, 0.25, seed=args.seed)
        return (X_rest, y_rest), (X_test, y_test)
    if not args.data_dir:
        parser.error("--dataset mnist needs --data-dir DIR (the four IDX files, raw or .gz)")
    try:
        return tuple(load_mnist(args.data_dir, split, dtype) for split in ("train", "test"))
    except (OSError, ValueError) as error:
        parser.error(f"cannot read MNIST from {args.data_dir!r}: {error}")


def _load(args, parser):
    (X_rest, y_rest), (X_test, y_test) = _load_split(args, parser, args.dtype)
    try:
        X_train, y_train, X_val, y_val = train_validation_split(X_rest, y_rest, 0.1, seed=args.seed)
    except ValueError as error:
        parser.error(f"the {args.dataset} training set cannot give a validation set: {error}")
    return X_train, y_train, X_val, y_val, X_test, y_test


def _check_destination(path):
    """Why the model could not be written to ``path`` (None when it can): checked before training."""
    directory = os.path.dirname(os.path.realpath(path))
    if os.path.isdir(path):
        return f"{path} is a directory"
    try:
        descriptor, probe = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    except OSError as error:
        return f"cannot write in {directory}: {error.strerror or error}"
    os.close(descriptor)
    os.remove(probe)
    return None


def _save(net, path):
    """Save to ``path``; if that fails after all (the disk filled up, say), save beside the temporary files
    instead and say so in one line. Returns the exit status."""
    try:
        net.save(path)
    except OSError as error:
        descriptor, fallback = tempfile.mkstemp(prefix="numba-mlp-", suffix=".npz")
        os.close(descriptor)
        try:
            net.save(fallback)
        except OSError:
            with contextlib.suppress(OSError):
                os.remove(fallback)
            print(f"error: could not save the model to {path} ({error.strerror or error}); it is lost",
                  file=sys.stderr)
            return 1
        print(f"error: could not save the model to {path} ({error.strerror or error}); saved to {fallback} "
              f"instead", file=sys.stderr)
        return 1
    print(f"saved to {path}")
    return 0


def _train(args, parser):
    if args.save and (problem := _check_destination(args.save)):
        parser.error(f"--save {args.save}: {problem}")
    if args.plot:
        if problem := _check_destination(args.plot):
            parser.error(f"--plot {args.plot}: {problem}")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib, the 'plot' extra: pip install 'numba-mlp[plot]'")
    from model.mlp import MLP

    X_train, y_train, X_val, y_val, X_test, y_test = _load(args, parser)
    sizes = [X_train.shape[1], *args.hidden, int(max(y_train.max(), y_test.max())) + 1]
    try:
        net = MLP(sizes, activation=args.activation, backend=args.backend, dtype=args.dtype, seed=args.seed)
    except RuntimeError as error:
        parser.error(str(error))
    print(f"{args.dataset}: {len(X_train)} train, {len(X_val)} validation, {len(X_test)} test samples; "
          f"{net!r}", flush=True)
    started = time.perf_counter()
    try:
        history = net.fit(X_train, y_train, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                          validation_data=(X_val, y_val), patience=args.patience, verbose=True,
                          momentum=args.momentum, nesterov=args.nesterov, weight_decay=args.weight_decay,
                          lr_schedule=args.lr_schedule, power_t=args.power_t)
    except ValueError as error:
        parser.error(str(error))
    except FloatingPointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - started
    if history.stopped_early:
        print(f"early stop: best validation loss at epoch {history.best_epoch}, weights restored")
    print(f"test accuracy {net.score(X_test, y_test):.4f}  ({len(history)} epochs, {seconds:.2f}s)")
    status = 0
    if args.plot and len(history):
        try:
            history.plot(args.plot)
            print(f"learning curves drawn to {args.plot}")
        except (OSError, ValueError) as error:
            print(f"error: could not draw the learning curves to {args.plot} ({error})", file=sys.stderr)
            status = 1
    if args.save:
        status = _save(net, args.save) or status
    return status


def _load_model(args, parser):
    from model.mlp import MLP

    try:
        return MLP.load(args.model, backend=args.backend)
    except (OSError, ValueError, RuntimeError) as error:
        parser.error(f"cannot load the model {args.model!r}: {getattr(error, 'strerror', None) or error}")


def confusion_matrix(y_true, y_pred, n_classes):
    """Counts of (true label, predicted label) pairs: an int64 array of shape (n_classes, n_classes)."""
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _evaluate(args, parser):
    net = _load_model(args, parser)
    train, test = _load_split(args, parser, net.dtype)
    X, y = test if args.split == "test" else train
    n_classes = net.layer_sizes[-1]
    if X.shape[1] != net.layer_sizes[0] or y.max() >= n_classes:
        parser.error(f"the model {args.model} takes {net.layer_sizes[0]} inputs and {n_classes} classes; "
                     f"the {args.dataset} {args.split} set has {X.shape[1]} inputs and labels up to {y.max()}")
    predicted = net.predict(X)
    matrix = confusion_matrix(y, predicted, n_classes)
    print(f"{args.model} on {args.dataset} {args.split} ({len(y)} samples): loss {net.loss(X, y):.4f}  "
          f"accuracy {np.mean(predicted == y):.4f}")
    print("confusion matrix (rows: true label, columns: predicted label)")
    width = max(len(str(matrix.max())), len(str(n_classes - 1))) + 1
    print(" " * 6 + "".join(f"{label:>{width}}" for label in range(n_classes)))
    for label, row in enumerate(matrix):
        print(f"{label:>5} " + "".join(f"{count:>{width}}" for count in row))
    return 0


def _predict(args, parser):
    if args.output and (problem := _check_destination(args.output)):
        parser.error(f"--output {args.output}: {problem}")
    net = _load_model(args, parser)
    try:
        X = load_features(args.samples, net.dtype)
    except (OSError, ValueError) as error:
        parser.error(f"cannot read samples from {args.samples!r}: {getattr(error, 'strerror', None) or error}")
    if X.shape[1] != net.layer_sizes[0]:
        parser.error(f"{args.samples}: samples of {X.shape[1]} values, the model takes {net.layer_sizes[0]}")
    labels = net.predict(X)
    if not args.output:
        print("\n".join(map(str, labels)))
    elif args.output.endswith(".npy"):
        np.save(args.output, labels)
    else:
        np.savetxt(args.output, labels, fmt="%d")
    if args.output:
        print(f"{len(labels)} labels written to {args.output}")
    return 0


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    command = {"train": _train, "evaluate": _evaluate, "predict": _predict}[args.command]
    return command(args, parser)


def run():
    """The program (``python -m model``, ``numba-mlp``): :func:`main`, then a quick exit.

    By the end of a run numba holds some 10⁵ long-lived objects (its typing and
    lowering registries), and the interpreter's final garbage collections would
    walk them all again on the way out: 0.2-0.3 s on a 2-core machine, about a
    third of a short run. ``gc.freeze()`` moves them out of the collector's
    reach first. That is a process-wide setting, so only the program makes it:
    :func:`main` called from Python leaves the collector alone.
    """
    try:
        status = main()
    except BrokenPipeError:  # the reader went away (``... | head``): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    gc.freeze()
    return status


if __name__ == "__main__":
    sys.exit(run())
