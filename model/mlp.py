"""The ``MLP`` class: a thin layer that checks inputs, picks a backend and runs the training loop.

All numerics happen in the backend's ops (:mod:`kernels`); this module only
moves arrays, orders samples and keeps the bookkeeping.
"""

import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
import time
import zipfile

import numpy as np

from kernels import layout, optimizer
from kernels.activations import ACTIVATIONS, LEAKY_RELU, RELU, activation_code
from model import _checks, schedule
from model.backends import get_backend, resolve_backend_name
from model.history import History

FORMAT_VERSION = 1
#: Samples per call of the evaluation ops (bounds the scratch memory of predict/score).
EVAL_BATCH = 1024


class _InterruptFlag:
    """Turns the first Ctrl-C during ``fit`` into a flag checked between chunks.

    A second Ctrl-C raises ``KeyboardInterrupt`` at once, as usual. Only Python's
    default handler is replaced: a program that ignores SIGINT (a background job, a
    worker process) or handles it itself keeps its handler, and ``fit`` runs to
    its end. Outside the main thread signals cannot be caught, and nothing changes.
    """

    def __init__(self):
        self.raised = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True

    def __enter__(self):
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
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

    The architecture (``layer_sizes``, ``activation``, ``dtype``, ``seed``) is
    read-only once the model exists: the kernels were chosen for it.

    Examples
    --------
    >>> net = MLP([64, 32, 10], backend="cpu", seed=0)
    >>> history = net.fit(X, y, epochs=5, lr=0.05)       # doctest: +SKIP
    >>> net.score(X_test, y_test)                        # doctest: +SKIP
    """

    def __init__(self, layer_sizes, activation="relu", backend="auto", dtype="float32", seed=None):
        self._layer_sizes = _checks.check_layer_sizes(layer_sizes)
        self._activation = activation_code(activation)
        self._activation_name = activation
        self._dtype = _checks.check_dtype(dtype)
        if seed is not None:
            _checks.check_int("seed", seed, 0)
        self._seed = seed
        self._backend_request = backend
        self._backend = get_backend(backend)
        self._sizes = layout.as_sizes(self._layer_sizes)
        self._rng = np.random.default_rng(seed)
        self._theta = self._backend.to_device(self._initial_theta())
        #: The optimizer's momentum buffer, laid out like theta: allocated by the first fit with momentum.
        self._velocity = None
        #: Samples trained on so far, over every fit (the time of the ``invscaling`` schedule).
        self._samples_seen = 0

    # ----------------------------------------------------------------- state
    @property
    def layer_sizes(self):
        """``(n_inputs, hidden..., n_classes)``."""
        return self._layer_sizes

    @property
    def activation(self):
        """Name of the hidden activation."""
        return self._activation_name

    @property
    def dtype(self):
        """``numpy.dtype('float32')`` or ``numpy.dtype('float64')``."""
        return self._dtype

    @property
    def seed(self):
        return self._seed

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
        """Replace the weights by ``[(W, b), ...]`` of the model's shapes (all checked first).

        Raises
        ------
        ValueError
            Naming the parameter, for a wrong shape, a value that is not a finite
            number, or one too large for the model's dtype.
        """
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
            for name, array, shape, view in ((f"params[{l}][0] (W)", pair[0], w_shape, W_view),
                                             (f"params[{l}][1] (b)", pair[1], b_shape, b_view)):
                array = np.asarray(array)
                if array.shape != shape:
                    raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
                if not (np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.bool_)) \
                        or np.issubdtype(array.dtype, np.complexfloating):
                    raise ValueError(f"{name} must hold finite real numbers, got dtype {array.dtype}")
                view[...] = _checks.check_fits_dtype(name, array, self.dtype)
        self._backend.assign(self._theta, self._backend.to_device(theta))
        self._velocity = None  # the momentum of other weights means nothing for these

    def __getstate__(self):
        """Pickling and ``copy.deepcopy``: host weights and velocity, the training state, the backend by the
        name it was asked for."""
        return {"layer_sizes": self._layer_sizes, "activation": self._activation_name, "dtype": self._dtype.name,
                "seed": self._seed, "backend": self._backend_request, "theta": self._host_theta(),
                "velocity": None if self._velocity is None else self._backend.to_host(self._velocity),
                "samples_seen": self._samples_seen, "rng": self._rng.bit_generator.state}

    def __setstate__(self, state):
        self.__init__(state["layer_sizes"], activation=state["activation"], backend=state["backend"],
                      dtype=state["dtype"], seed=state["seed"])
        self._restore_training_state(state["theta"], state["velocity"], state["samples_seen"], state["rng"])

    def _restore_training_state(self, theta, velocity, samples_seen, rng_state):
        """Weights, velocity (None: none yet), samples seen and the shuffling generator's state, as saved."""
        self._theta = self._backend.to_device(np.ascontiguousarray(theta, dtype=self._dtype))
        self._velocity = None if velocity is None else self._backend.to_device(
            np.ascontiguousarray(velocity, dtype=self._dtype))
        self._samples_seen = int(samples_seen)
        self._rng.bit_generator.state = rng_state

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
        X_dev = self._backend.data_to_device(X)
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
        return self._evaluate(self._backend.data_to_device(X), self._backend.to_device(y), X.shape[0],
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
        X_dev, y_dev = self._backend.data_to_device(X), self._backend.to_device(y)
        ops = self._backend.ops
        ops.mlp_forward(self._theta, self._sizes, self._activation, X_dev, acts)
        ops.mlp_backward(self._theta, self._sizes, self._activation, X_dev, y_dev, acts, deltas, grad)
        host = self._backend.to_host(grad)
        return [(dW.copy(), db.copy()) for dW, db in layout.param_views(host, self.layer_sizes)]

    # -------------------------------------------------------------- training
    def fit(self, X, y, epochs=10, lr=0.01, batch_size=1, shuffle=True, validation_data=None,
            patience=None, verbose=False, *, momentum=0.0, nesterov=False, weight_decay=0.0,
            lr_schedule="constant", power_t=0.5, tol=0.0, callback=None):
        """Train with SGD: per-sample (``batch_size=1``, the course's algorithm) or minibatch.

        Parameters
        ----------
        X : array_like, shape (N, n_inputs)
        y : array_like of int, shape (N,)
        epochs : int
            Passes over the data (0 is allowed and changes nothing).
        lr : float
            Learning rate η > 0 (the initial one, under a schedule).
        batch_size : int
            1 for per-sample SGD; more for minibatch SGD on each batch's mean loss
            (the last, partial batch is used; a batch larger than the data is the
            whole data).
        shuffle : bool
            Visit the samples in an order drawn from the model's seeded generator
            (the same on every backend), or in order.
        validation_data : (X_val, y_val) or None
        patience : int or None
            Stop when the validation loss has not improved (by more than ``tol``)
            for that many epochs, and restore the best weights. Needs
            ``validation_data``, except with ``lr_schedule="adaptive"``, for which
            it is the epochs without improvement before the rate is divided by 5
            (watching the train loss when there is no validation data).
        verbose : bool
            Print progress within epochs and one line per epoch.
        momentum : float in [0, 1)
            Momentum μ, with PyTorch's ``torch.optim.SGD`` semantics: ``v ← μ v + g``,
            ``θ ← θ − η v``. The velocity lives with the weights: it carries over
            from one ``fit`` to the next, and ``save`` keeps it.
        nesterov : bool
            Nesterov momentum, ``θ ← θ − η (g + μ v)`` (needs ``momentum > 0``).
        weight_decay : float >= 0
            λ: ``λ W`` is added to the gradient of every weight matrix, never to
            the biases.
        lr_schedule : {"constant", "invscaling", "adaptive"} or callable
            See :mod:`model.schedule`; a callable ``lr_schedule(epoch, history)``
            returns the rate of each epoch (from 1).
        power_t : float >= 0
            The exponent of ``invscaling``.
        tol : float >= 0
            The improvement of the monitored loss that counts for ``patience``.
        callback : callable or None
            ``callback(history)`` after each epoch; a true result stops training.

        Returns
        -------
        History
            Per epoch: ``train_loss`` (mean loss over the epoch's samples, each
            measured before its update), ``val_loss``, ``val_accuracy``, ``seconds``,
            ``lr``.

        Raises
        ------
        TypeError, ValueError
            For a bad argument, before any weight changes.
        FloatingPointError
            If the loss or a weight becomes NaN or infinite; the weights of the
            last good epoch are restored first, and the history so far is the
            exception's ``history`` attribute.

        Notes
        -----
        The result depends on the data and the arguments only: the same model,
        data and arguments give the same weights bit for bit, run after run, in
        one process or many, however loaded the machine is.
        """
        epochs = _checks.check_int("epochs", epochs, 0)
        lr = _checks.check_positive_float("lr", lr)
        if lr > float(np.finfo(self.dtype).max):
            raise ValueError(f"lr must fit the model's {self.dtype.name} (at most "
                             f"{float(np.finfo(self.dtype).max):.6g}), got {lr}")
        batch_size = _checks.check_int("batch_size", batch_size, 1)
        patience = _checks.check_optional_int("patience", patience, 1)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be a bool, got {type(shuffle).__name__}")
        momentum = _checks.check_fraction("momentum", momentum)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be a bool, got {type(nesterov).__name__}")
        if nesterov and momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        weight_decay = _checks.check_non_negative_float("weight_decay", weight_decay)
        tol = _checks.check_non_negative_float("tol", tol)
        schedule.check_schedule(lr_schedule, power_t)
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        if lr_schedule == "adaptive" and patience is None:
            raise ValueError("lr_schedule='adaptive' needs patience: the epochs without improvement before the "
                             "learning rate is divided by 5")
        X = self._features(X)
        y = self._labels(y, X.shape[0])
        n = X.shape[0]
        n_val = 0
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a (X_val, y_val) pair")
            X_val = self._features(validation_data[0], "validation_data[0] (X_val)")
            y_val = self._labels(validation_data[1], X_val.shape[0], "validation_data[1] (y_val)")
            n_val = X_val.shape[0]
        elif patience is not None and lr_schedule != "adaptive":
            raise ValueError("patience needs validation_data to measure the validation loss")
        batch_size = min(batch_size, n)  # a batch larger than the data is the whole data

        backend = self._backend
        history = History()
        X_dev, y_dev = backend.data_to_device(X), backend.to_device(y)
        if validation_data is not None:
            X_val_dev, y_val_dev = backend.data_to_device(X_val), backend.to_device(y_val)
        # One work buffer serves the training steps and the validation batches.
        work = backend.zeros(layout.workspace_size(self.layer_sizes, max(batch_size, min(EVAL_BATCH, n_val))),
                             self.dtype)
        loss_sum = backend.zeros(1, np.float64)
        nonfinite = backend.zeros(1, np.int64)
        last_good = backend.copy(self._theta)
        best = None
        stopping = schedule.Stopping(lr, lr_schedule, power_t, patience, tol)
        progress = _Progress(verbose, epochs, n)
        fused_ops = ("sgd_epoch" if batch_size == 1 else "minibatch_epoch",
                     *(("evaluate",) if validation_data is not None else ()))
        if verbose and epochs and backend.ops.needs_compiling(self.dtype, fused_ops):
            print(f"compiling {backend.name} kernels for {self.dtype.name}, first run only (some 15-30 s; "
                  f"cached for later runs)", flush=True)

        # Divergence is detected from the loss below; the NumPy backend need not warn about it too.
        with _InterruptFlag() as interrupt, np.errstate(over="ignore", invalid="ignore"):
            for epoch in range(1, epochs + 1):
                started = time.perf_counter()
                epoch_lr = stopping.rate(epoch, history, self._samples_seen)
                hyper = optimizer.hyper(epoch_lr, momentum, nesterov, weight_decay)
                order = self._rng.permutation(n) if shuffle else np.arange(n)
                order_dev = backend.to_device(order.astype(np.int64))
                backend.assign(loss_sum, backend.to_device(np.zeros(1)))
                self._epoch(X_dev, y_dev, order_dev, hyper, batch_size, work, loss_sum, interrupt,
                            lambda done, epoch=epoch: progress.update(epoch, done))
                if interrupt.raised:
                    history.interrupted = True
                    break
                train_loss = float(backend.to_host(loss_sum)[0] / n)
                # The loss of the epoch's last update shows only in the weights it left.
                backend.assign(nonfinite, backend.to_device(np.zeros(1, np.int64)))
                backend.ops.count_nonfinite(self._theta, nonfinite)
                bad_weights = int(backend.to_host(nonfinite)[0])
                if not np.isfinite(train_loss) or bad_weights:
                    backend.assign(self._theta, last_good)
                    what = (f"the train loss is {train_loss}" if not np.isfinite(train_loss)
                            else f"{bad_weights} weights became NaN or infinite")
                    error = FloatingPointError(
                        f"training diverged in epoch {epoch}: {what} (lr={epoch_lr} may be too large); "
                        f"the weights of epoch {epoch - 1} were restored"
                    )
                    error.history = history
                    raise error
                backend.assign(last_good, self._theta)
                self._samples_seen += n
                val_loss = val_accuracy = None
                if validation_data is not None:
                    val_loss, val_accuracy = self._evaluate(X_val_dev, y_val_dev, n_val, work)
                history.train_loss.append(train_loss)
                history.val_loss.append(val_loss)
                history.val_accuracy.append(val_accuracy)
                history.seconds.append(time.perf_counter() - started)
                history.lr.append(epoch_lr)
                progress.epoch_end(epoch, history)
                if patience is not None:
                    stop = stopping.observe(train_loss if val_loss is None else val_loss)
                    if stopping.best:
                        history.best_epoch = epoch
                        if validation_data is not None:
                            best = backend.copy(self._theta)
                    if stop:
                        history.stopped_early = True
                        break
                if callback is not None and callback(history):
                    history.stopped_early = True
                    break
        if best is not None and history.best_epoch != len(history):
            backend.assign(self._theta, best)
        if history.interrupted and verbose:
            print(f"\ninterrupted: {len(history)} complete epochs; the model holds the weights so far",
                  flush=True)
        return history

    def _chunk_samples(self, batch_size):
        """Samples per call of an epoch op: whole batches worth about the backend's ``chunk_work``
        multiply-adds (some 50 ms on the host backends), at least one batch.

        A function of the layer sizes, the batch size and the backend only, never of
        time: chunk boundaries are where a fused epoch kernel hands its state back
        (the CPU's deferred first-layer update, say), so they must fall on the same
        samples in every run for the results to be the same bit for bit.
        """
        multiply_adds = 3 * self.n_params * batch_size  # forward, backward and update of one batch
        return max(1, self._backend.chunk_work // multiply_adds) * batch_size

    def _velocity_for(self, hyper):
        """The momentum buffer the epoch ops take: the model's (zero until its first step with momentum or
        weight decay), or, for plain SGD, a placeholder the ops never read."""
        if optimizer.is_plain(hyper):
            return self._velocity if self._velocity is not None else self._backend.zeros(1, self.dtype)
        if self._velocity is None:
            self._velocity = self._backend.zeros(self.n_params, self.dtype)
        return self._velocity

    def _epoch(self, X_dev, y_dev, order_dev, hyper, batch_size, work, loss_sum, interrupt=None, progress=None):
        """One pass over ``order_dev`` with the backend's fused epoch ops; all arrays on the backend's device.

        The op runs in chunks of :meth:`_chunk_samples` samples, so that
        ``interrupt`` (checked between chunks) and ``progress`` respond quickly.
        ``loss_sum[0]`` accumulates the per-sample losses.
        """
        ops = self._backend.ops
        n = order_dev.shape[0]
        chunk = self._chunk_samples(batch_size)
        velocity = self._velocity_for(hyper)
        for done in range(0, n, chunk):
            if interrupt is not None and interrupt.raised:
                break
            stop = min(n, done + chunk)
            if batch_size == 1:
                ops.sgd_epoch(self._theta, velocity, self._sizes, self._activation, X_dev, y_dev,
                              order_dev[done:stop], hyper, work, loss_sum)
            else:
                ops.minibatch_epoch(self._theta, velocity, self._sizes, self._activation, X_dev, y_dev,
                                    order_dev[done:stop], batch_size, hyper, work, loss_sum)
            if progress is not None:
                progress(stop)

    # ---------------------------------------------------------- persistence
    def save(self, path):
        """Write the model to an ``.npz`` (no pickle), atomically: a temporary file, then a rename.

        A new file gets the usual mode (``0o666`` less the umask), a replaced one
        keeps its mode; a symbolic link is written through, to the file it names.
        """
        path = os.path.realpath(os.fspath(path))
        directory = os.path.dirname(path)
        arrays = {
            "format": np.array("numba-mlp"),
            "version": np.array(FORMAT_VERSION),
            "layer_sizes": np.array(self.layer_sizes, dtype=np.int64),
            "activation": np.array(self.activation),
            "dtype": np.array(self.dtype.name),
            "theta": self._host_theta(),
            # The training state, so that a loaded model trains on exactly as this one would.
            "samples_seen": np.array(self._samples_seen, dtype=np.int64),
            "rng_state": np.array(json.dumps(self._rng.bit_generator.state)),
        }
        if self._velocity is not None:
            arrays["velocity"] = self._backend.to_host(self._velocity)
        try:
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        descriptor, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                np.savez(handle, **arrays)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, mode)
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
            loaded = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
            raise ValueError(f"{path}: not a readable numba-mlp model file ({error})") from None
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # an .npy holds one bare array
            raise ValueError(f"{path}: not a numba-mlp model file (a single {type(loaded).__name__}, not an .npz)")
        try:
            with loaded as archive:
                contents = {key: archive[key] for key in archive.files}
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
        velocity = contents.get("velocity")
        if velocity is not None and (velocity.shape != theta.shape or velocity.dtype != dtype
                                     or not np.isfinite(velocity).all()):
            raise ValueError(f"{path}: velocity must be finite, of theta's shape {theta.shape} and dtype {dtype}")
        model = cls(sizes, activation=activation, backend=backend, dtype=dtype)
        try:
            rng_state = model._rng.bit_generator.state
            if "rng_state" in contents:
                rng_state = json.loads(str(contents["rng_state"]))
            model._restore_training_state(theta, velocity, int(contents.get("samples_seen", 0)), rng_state)
        except (ValueError, TypeError, KeyError) as error:
            raise ValueError(f"{path}: unreadable training state ({error})") from None
        return model

    def __repr__(self):
        return (f"MLP({list(self.layer_sizes)}, activation={self.activation!r}, "
                f"backend={self.backend!r}, dtype={self.dtype.name!r}, seed={self.seed})")




def _umask():
    """The process's umask (read by setting it, then setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
