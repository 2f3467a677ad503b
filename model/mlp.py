"""The ``MLP`` class: a thin layer that checks inputs, picks a backend and runs the training loop.

All numerics happen in the backend's ops (:mod:`kernels`); this module only
moves arrays, orders samples and keeps the bookkeeping.
"""

import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field

import numpy as np

from kernels import layout
from kernels.activations import ACTIVATIONS, LEAKY_RELU, RELU, activation_code
from model import _checks
from model.backends import get_backend, resolve_backend_name

FORMAT_VERSION = 1
#: Samples per call of the evaluation ops (bounds the scratch memory of predict/score).
EVAL_BATCH = 1024
#: Target wall time of one chunk of the per-sample epoch: the Ctrl-C and progress granularity.
CHUNK_SECONDS = 0.05


@dataclass
class History:
    """What ``fit`` measured, one entry per completed epoch."""

    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    #: Epoch (1-based) whose weights the model holds after early stopping, else None.
    best_epoch: int | None = None
    stopped_early: bool = False
    interrupted: bool = False

    def __getitem__(self, key):
        return getattr(self, key)

    def __len__(self):
        return len(self.train_loss)


class _InterruptFlag:
    """Turns the first Ctrl-C during ``fit`` into a flag checked between chunks.

    A second Ctrl-C raises ``KeyboardInterrupt`` at once, as usual. Outside the
    main thread signals cannot be caught, and nothing changes.
    """

    def __init__(self):
        self.raised = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


class _Progress:
    """One line per epoch; within long epochs, the share done, refreshed in place on a terminal
    (every half second) or as a plain line elsewhere (every ten seconds, so that logs stay readable)."""

    TERMINAL_INTERVAL = 0.5
    LOG_INTERVAL = 10.0

    def __init__(self, verbose, epochs, total):
        self.verbose = verbose
        self.epochs = epochs
        self.total = total
        self.terminal = verbose and sys.stdout.isatty()
        self.interval = self.TERMINAL_INTERVAL if self.terminal else self.LOG_INTERVAL
        self.last = time.perf_counter()

    def update(self, epoch, done):
        now = time.perf_counter()
        if self.verbose and done < self.total and now - self.last > self.interval:
            self.last = now
            text = f"epoch {epoch}/{self.epochs}  {100 * done // self.total:3d}%"
            print("\r" + text if self.terminal else text, end="" if self.terminal else "\n", flush=True)

    def epoch_end(self, epoch, history):
        if not self.verbose:
            return
        self.last = time.perf_counter()
        line = f"epoch {epoch}/{self.epochs}  train loss {history.train_loss[-1]:.4f}"
        if history.val_loss[-1] is not None:
            line += f"  val loss {history.val_loss[-1]:.4f}  val acc {history.val_accuracy[-1]:.4f}"
        print(("\r" if self.terminal else "") + line + f"  {history.seconds[-1]:.2f}s", flush=True)


class MLP:
    """A multi-layer perceptron with a softmax output, ``p(Y=c|x) = softmax(...)_c``.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[n_inputs, hidden..., n_classes]``; any number of hidden layers.
    activation : str
        Hidden activation: ``relu``, ``leaky_relu``, ``sigmoid``, ``tanh`` or ``identity``.
    backend : str
        ``numpy`` (reference), ``cpu`` (``@njit``), ``cuda`` or ``auto``.
    dtype : str or numpy dtype
        ``float32`` or ``float64``.
    seed : int or None
        Seeds the generator of the initial weights and of the shuffling. The
        weights are drawn on the host, so every backend starts from the same ones.

    Examples
    --------
    >>> net = MLP([64, 32, 10], backend="cpu", seed=0)
    >>> history = net.fit(X, y, epochs=5, lr=0.05)       # doctest: +SKIP
    >>> net.score(X_test, y_test)                        # doctest: +SKIP
    """

    def __init__(self, layer_sizes, activation="relu", backend="auto", dtype="float32", seed=None):
        self.layer_sizes = _checks.check_layer_sizes(layer_sizes)
        self._activation = activation_code(activation)
        self.activation = activation
        self.dtype = _checks.check_dtype(dtype)
        if seed is not None:
            _checks.check_int("seed", seed, 0)
        self.seed = seed
        self._backend = get_backend(backend)
        self._sizes = layout.as_sizes(self.layer_sizes)
        self._rng = np.random.default_rng(seed)
        self._theta = self._backend.to_device(self._initial_theta())
        self._chunk = 256  # samples per call of an epoch op, adapted as it runs

    # ----------------------------------------------------------------- state
    @property
    def backend(self):
        """Name of the backend that runs this model (``auto`` resolved)."""
        return self._backend.name

    @property
    def n_params(self):
        return layout.param_count(self.layer_sizes)

    def _initial_theta(self):
        """He (relu family) or Glorot (others) weights, zero biases; drawn in float64 on the host."""
        theta = np.zeros(self.n_params)
        for (W, _), n_in, n_out in zip(
            layout.param_views(theta, self.layer_sizes), self.layer_sizes[:-1], self.layer_sizes[1:]
        ):
            if self._activation in (RELU, LEAKY_RELU):
                W[...] = self._rng.standard_normal((n_out, n_in)) * np.sqrt(2.0 / n_in)
            else:
                limit = np.sqrt(6.0 / (n_in + n_out))
                W[...] = self._rng.uniform(-limit, limit, (n_out, n_in))
        return theta.astype(self.dtype)

    @property
    def params(self):
        """``[(W, b), ...]`` host copies; ``W`` has shape (n_out, n_in)."""
        return [(W.copy(), b.copy()) for W, b in layout.param_views(self._host_theta(), self.layer_sizes)]

    def _host_theta(self):
        return self._backend.to_host(self._theta)

    def set_params(self, params):
        """Replace the weights by ``[(W, b), ...]`` of the model's shapes (checked first)."""
        expected = [((n_out, n_in), (n_out,)) for n_in, n_out in zip(self.layer_sizes[:-1], self.layer_sizes[1:])]
        if not isinstance(params, (list, tuple)) or len(params) != len(expected):
            raise ValueError(f"params must be a list of {len(expected)} (W, b) pairs, got {type(params).__name__}"
                             + (f" of length {len(params)}" if hasattr(params, "__len__") else ""))
        theta = np.empty(self.n_params, dtype=self.dtype)
        for l, (pair, (w_shape, b_shape), (W_view, b_view)) in enumerate(
            zip(params, expected, layout.param_views(theta, self.layer_sizes))
        ):
            if len(pair) != 2:
                raise ValueError(f"params[{l}] must be a (W, b) pair")
            W, b = (np.asarray(a) for a in pair)
            for name, array, shape in ((f"params[{l}][0] (W)", W, w_shape), (f"params[{l}][1] (b)", b, b_shape)):
                if array.shape != shape:
                    raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
                if not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
                    raise ValueError(f"{name} must hold finite numbers")
            W_view[...] = W
            b_view[...] = b
        self._backend.assign(self._theta, self._backend.to_device(theta))

    # ------------------------------------------------------------ inference
    def _features(self, X, name="X"):
        return _checks.check_features(name, X, self.layer_sizes[0], self.dtype)

    def _labels(self, y, n, name="y"):
        return _checks.check_labels(name, y, n, self.layer_sizes[-1])

    def _eval_work(self, n):
        return self._backend.zeros(layout.workspace_size(self.layer_sizes, min(n, EVAL_BATCH)), self.dtype)

    def _evaluate(self, X_dev, y_dev, n, work):
        """(mean loss, accuracy) of device arrays, in batches; one host read at the end."""
        stats = self._backend.zeros(2, np.float64)
        for start in range(0, n, EVAL_BATCH):
            stop = min(n, start + EVAL_BATCH)
            self._backend.ops.evaluate(
                self._theta, self._sizes, self._activation, X_dev[start:stop], y_dev[start:stop], work, stats
            )
        loss_sum, correct = self._backend.to_host(stats)
        return float(loss_sum / n), float(correct / n)

    def predict_proba(self, X):
        """Class probabilities, shape (N, n_classes); each row sums to 1."""
        X = self._features(X)
        n, n_classes = X.shape[0], self.layer_sizes[-1]
        X_dev = self._backend.to_device(X)
        probs = self._backend.zeros((n, n_classes), self.dtype)
        work = self._eval_work(n)
        for start in range(0, n, EVAL_BATCH):
            stop = min(n, start + EVAL_BATCH)
            self._backend.ops.predict_proba(
                self._theta, self._sizes, self._activation, X_dev[start:stop], work, probs[start:stop]
            )
        return self._backend.to_host(probs)

    def predict(self, X):
        """Predicted labels, shape (N,), int64."""
        return self.predict_proba(X).argmax(axis=1).astype(np.int64)

    def loss(self, X, y):
        """Mean cross-entropy ``-log p(Y=y|x)`` over the data set (the course's cost)."""
        return self._loss_and_accuracy(X, y)[0]

    def score(self, X, y):
        """Accuracy: the fraction of samples whose predicted label is ``y``."""
        return self._loss_and_accuracy(X, y)[1]

    def _loss_and_accuracy(self, X, y):
        X = self._features(X)
        y = self._labels(y, X.shape[0])
        return self._evaluate(self._backend.to_device(X), self._backend.to_device(y), X.shape[0],
                              self._eval_work(X.shape[0]))

    def gradients(self, X, y):
        """Gradient of the mean loss over ``(X, y)``: ``[(dW, db), ...]`` host arrays."""
        X = self._features(X)
        y = self._labels(y, X.shape[0])
        n = X.shape[0]
        n_acts = layout.activation_count(self.layer_sizes, n)
        acts = self._backend.zeros(n_acts, self.dtype)
        deltas = self._backend.zeros(n_acts, self.dtype)
        grad = self._backend.zeros(self.n_params, self.dtype)
        X_dev, y_dev = self._backend.to_device(X), self._backend.to_device(y)
        ops = self._backend.ops
        ops.mlp_forward(self._theta, self._sizes, self._activation, X_dev, acts)
        ops.mlp_backward(self._theta, self._sizes, self._activation, X_dev, y_dev, acts, deltas, grad)
        host = self._backend.to_host(grad)
        return [(dW.copy(), db.copy()) for dW, db in layout.param_views(host, self.layer_sizes)]

    # -------------------------------------------------------------- training
    def fit(self, X, y, epochs=10, lr=0.01, batch_size=1, shuffle=True, validation_data=None,
            patience=None, verbose=False):
        """Train with SGD: per-sample (``batch_size=1``, the course's algorithm) or minibatch.

        Parameters
        ----------
        X : array_like, shape (N, n_inputs)
        y : array_like of int, shape (N,)
        epochs : int
            Passes over the data (0 is allowed and changes nothing).
        lr : float
            Learning rate η > 0.
        batch_size : int
            1 for per-sample SGD; more for minibatch SGD on each batch's mean loss
            (the last, partial batch is used).
        shuffle : bool
            Visit the samples in an order drawn from the model's seeded generator
            (the same on every backend), or in order.
        validation_data : (X_val, y_val) or None
        patience : int or None
            Stop when the validation loss has not improved for that many epochs
            and restore the best weights. Needs ``validation_data``.
        verbose : bool
            Print progress within epochs and one line per epoch.

        Returns
        -------
        History
            Per epoch: ``train_loss`` (mean loss over the epoch's samples, each
            measured before its update), ``val_loss``, ``val_accuracy``, ``seconds``.

        Raises
        ------
        FloatingPointError
            If the loss becomes NaN or infinite; the weights of the last good
            epoch are restored first.
        """
        epochs = _checks.check_int("epochs", epochs, 0)
        lr = _checks.check_positive_float("lr", lr)
        batch_size = _checks.check_int("batch_size", batch_size, 1)
        patience = _checks.check_optional_int("patience", patience, 1)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be a bool, got {type(shuffle).__name__}")
        X = self._features(X)
        y = self._labels(y, X.shape[0])
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a (X_val, y_val) pair")
            X_val = self._features(validation_data[0], "validation_data[0] (X_val)")
            y_val = self._labels(validation_data[1], X_val.shape[0], "validation_data[1] (y_val)")
        elif patience is not None:
            raise ValueError("patience needs validation_data to measure the validation loss")

        backend = self._backend
        n = X.shape[0]
        history = History()
        X_dev, y_dev = backend.to_device(X), backend.to_device(y)
        if validation_data is not None:
            X_val_dev, y_val_dev = backend.to_device(X_val), backend.to_device(y_val)
        work = backend.zeros(layout.workspace_size(self.layer_sizes, max(batch_size, min(EVAL_BATCH, n))),
                             self.dtype)
        loss_sum = backend.zeros(1, np.float64)
        last_good = backend.copy(self._theta)
        best, best_loss, waited = None, np.inf, 0
        progress = _Progress(verbose, epochs, n)

        # Divergence is detected from the loss below; the NumPy backend need not warn about it too.
        with _InterruptFlag() as interrupt, np.errstate(over="ignore", invalid="ignore"):
            for epoch in range(1, epochs + 1):
                started = time.perf_counter()
                order = self._rng.permutation(n) if shuffle else np.arange(n)
                order_dev = backend.to_device(order.astype(np.int64))
                backend.assign(loss_sum, backend.to_device(np.zeros(1)))
                self._epoch(X_dev, y_dev, order_dev, lr, batch_size, work, loss_sum, interrupt,
                            lambda done, epoch=epoch: progress.update(epoch, done))
                if interrupt.raised:
                    history.interrupted = True
                    break
                train_loss = float(backend.to_host(loss_sum)[0] / n)
                if not np.isfinite(train_loss):
                    backend.assign(self._theta, last_good)
                    raise FloatingPointError(
                        f"training diverged in epoch {epoch}: the train loss is {train_loss} "
                        f"(lr={lr} may be too large); the weights of epoch {epoch - 1} were restored"
                    )
                backend.assign(last_good, self._theta)
                val_loss = val_accuracy = None
                if validation_data is not None:
                    val_loss, val_accuracy = self._evaluate(X_val_dev, y_val_dev, X_val.shape[0], work)
                history.train_loss.append(train_loss)
                history.val_loss.append(val_loss)
                history.val_accuracy.append(val_accuracy)
                history.seconds.append(time.perf_counter() - started)
                progress.epoch_end(epoch, history)
                if patience is not None:
                    if val_loss < best_loss:
                        best_loss, waited, history.best_epoch = val_loss, 0, epoch
                        best = backend.copy(self._theta)
                    else:
                        waited += 1
                        if waited >= patience:
                            history.stopped_early = True
                            break
        if patience is not None and best is not None and history.best_epoch != len(history):
            backend.assign(self._theta, best)
        if history.interrupted and verbose:
            print(f"\ninterrupted: {len(history)} complete epochs; the model holds the weights so far",
                  flush=True)
        return history

    def _epoch(self, X_dev, y_dev, order_dev, lr, batch_size, work, loss_sum, interrupt=None, progress=None):
        """One pass over ``order_dev`` with the backend's fused epoch ops; all arrays on the backend's device.

        The op runs in chunks of whole batches sized to take about ``CHUNK_SECONDS``
        each, so that ``interrupt`` (checked between chunks) and ``progress``
        respond quickly. ``loss_sum[0]`` accumulates the per-sample losses.
        """
        ops = self._backend.ops
        n = order_dev.shape[0]
        done = 0
        while done < n and not (interrupt is not None and interrupt.raised):
            stop = min(n, done + max(self._chunk // batch_size, 1) * batch_size)
            started = time.perf_counter()
            if batch_size == 1:
                ops.sgd_epoch(self._theta, self._sizes, self._activation, X_dev, y_dev, order_dev[done:stop], lr,
                              work, loss_sum)
            else:
                ops.minibatch_epoch(self._theta, self._sizes, self._activation, X_dev, y_dev, order_dev[done:stop],
                                    batch_size, lr, work, loss_sum)
            elapsed = max(time.perf_counter() - started, 1e-6)
            self._chunk = int(min(max((stop - done) * CHUNK_SECONDS / elapsed, 16), 2 * self._chunk, 1 << 20))
            done = stop
            if progress is not None:
                progress(done)

    # ---------------------------------------------------------- persistence
    def save(self, path):
        """Write the model to an ``.npz`` (no pickle), atomically: a temporary file, then a rename."""
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        arrays = {
            "format": np.array("numba-mlp"),
            "version": np.array(FORMAT_VERSION),
            "layer_sizes": np.array(self.layer_sizes, dtype=np.int64),
            "activation": np.array(self.activation),
            "dtype": np.array(self.dtype.name),
            "theta": self._host_theta(),
        }
        descriptor, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                np.savez(handle, **arrays)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(temporary)
            raise

    @classmethod
    def load(cls, path, backend="auto"):
        """Read a model written by :meth:`save`; fails clearly on a truncated, foreign or mismatched file."""
        path = os.fspath(path)
        resolve_backend_name(backend)
        try:
            with np.load(path, allow_pickle=False) as archive:
                contents = {key: archive[key] for key in archive.files}
        except FileNotFoundError:
            raise
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
            raise ValueError(f"{path}: not a readable numba-mlp model file ({error})") from None
        required = ("format", "version", "layer_sizes", "activation", "dtype", "theta")
        missing = [key for key in required if key not in contents]
        if missing or str(contents.get("format")) != "numba-mlp":
            raise ValueError(f"{path}: not a numba-mlp model file (missing {missing or 'format marker'})")
        if int(contents["version"]) != FORMAT_VERSION:
            raise ValueError(f"{path}: format version {int(contents['version'])}, expected {FORMAT_VERSION}")
        activation = str(contents["activation"])
        if activation not in ACTIVATIONS:
            raise ValueError(f"{path}: unknown activation {activation!r}")
        try:
            sizes = _checks.check_layer_sizes(contents["layer_sizes"].tolist())
            dtype = _checks.check_dtype(str(contents["dtype"]))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from None
        theta = contents["theta"]
        if theta.ndim != 1 or theta.shape[0] != layout.param_count(sizes) or theta.dtype != dtype:
            raise ValueError(f"{path}: theta has shape {theta.shape} and dtype {theta.dtype}, expected "
                             f"({layout.param_count(sizes)},) {dtype} for layer sizes {list(sizes)}")
        if not np.isfinite(theta).all():
            raise ValueError(f"{path}: theta holds NaN or infinite values")
        model = cls(sizes, activation=activation, backend=backend, dtype=dtype)
        model._theta = model._backend.to_device(np.ascontiguousarray(theta))
        return model

    def __repr__(self):
        return (f"MLP({list(self.layer_sizes)}, activation={self.activation!r}, "
                f"backend={self.backend!r}, dtype={self.dtype.name!r}, seed={self.seed})")


