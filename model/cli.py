"""Command line: ``python -m model train [options]``."""

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
from model.data import load_digits, load_mnist, train_validation_split


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


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m model", description="Train a multi-layer perceptron.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train an MLP and report its test accuracy")
    train.add_argument("--dataset", choices=("digits", "mnist"), default="digits",
                       help="digits: the bundled 8x8 digits (default); mnist: IDX files in --data-dir")
    train.add_argument("--data-dir", help="directory of the four MNIST IDX files (raw or .gz)")
    train.add_argument("--backend", choices=BACKENDS, default="auto")
    train.add_argument("--hidden", type=_positive_int, nargs="*", default=[128],
                       help="hidden layer sizes, e.g. --hidden 128 64 (default: 128)")
    train.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu")
    train.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    train.add_argument("--epochs", type=_non_negative_int, default=50)
    train.add_argument("--lr", type=_positive_float, default=0.05)
    train.add_argument("--batch-size", type=_positive_int, default=1, help="1: per-sample SGD (default)")
    train.add_argument("--seed", type=_non_negative_int, default=0)
    train.add_argument("--patience", type=_positive_int, default=5,
                       help="stop after this many epochs without a better validation loss")
    train.add_argument("--save", metavar="PATH", help="write the trained model to this .npz file")
    return parser


def _load(args, parser):
    if args.dataset == "digits":
        X, y = load_digits(args.dtype)
        X_rest, y_rest, X_test, y_test = train_validation_split(X, y, 0.25, seed=args.seed)
    else:
        if not args.data_dir:
            parser.error("--dataset mnist needs --data-dir DIR (the four IDX files, raw or .gz)")
        try:
            X_rest, y_rest = load_mnist(args.data_dir, "train", args.dtype)
            X_test, y_test = load_mnist(args.data_dir, "test", args.dtype)
        except (OSError, ValueError) as error:
            parser.error(f"cannot read MNIST from {args.data_dir!r}: {error}")
    X_train, y_train, X_val, y_val = train_validation_split(X_rest, y_rest, 0.1, seed=args.seed)
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


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.save and (problem := _check_destination(args.save)):
        parser.error(f"--save {args.save}: {problem}")
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
                          validation_data=(X_val, y_val), patience=args.patience, verbose=True)
    except ValueError as error:
        parser.error(str(error))
    except FloatingPointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - started
    if history.stopped_early:
        print(f"early stop: best validation loss at epoch {history.best_epoch}, weights restored")
    print(f"test accuracy {net.score(X_test, y_test):.4f}  ({len(history)} epochs, {seconds:.2f}s)")
    return _save(net, args.save) if args.save else 0


def run():
    """The program (``python -m model``, ``numba-mlp``): :func:`main`, then a quick exit.

    By the end of a run numba holds some 10⁵ long-lived objects (its typing and
    lowering registries), and the interpreter's final garbage collections would
    walk them all again on the way out: 0.2-0.3 s on a 2-core machine, about a
    third of a short run. ``gc.freeze()`` moves them out of the collector's
    reach first. That is a process-wide setting, so only the program makes it:
    :func:`main` called from Python leaves the collector alone.
    """
    status = main()
    gc.freeze()
    return status


if __name__ == "__main__":
    sys.exit(run())
