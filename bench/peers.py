"""The peers numba-mlp is measured against, each written as an expert in it would write it.

Every peer trains the same network (ReLU hidden layers, softmax output, mean
cross-entropy of each batch, plain SGD) from the same initial weights, over the
same sample order, at the same learning rate, and is checked against the NumPy
reference before it is timed. Each is optional: a peer whose package is absent
is skipped.

=====================  ===========================================================
name                   what it is
=====================  ===========================================================
``torch-eager``        torch as most users write it: ``nn.Sequential``, autograd,
                       ``nn.CrossEntropyLoss``, ``optim.SGD``
``torch-hand``         torch by hand: no autograd, the forward, backward and update
                       written with ``addmm``/``addmv``/``addr_``/``add_`` into
                       preallocated tensors, the order kept on the host
``jax``                JAX: the whole epoch one ``jax.jit`` program (``lax.scan``
                       over the batches, ``jax.grad`` of the loss), compiled
                       before timing (the compile time is reported)
``sklearn``            ``sklearn.neural_network.MLPClassifier(solver="sgd",
                       momentum=0, alpha=0)``, one ``partial_fit`` epoch
=====================  ===========================================================

Threads: :func:`set_threads` gives each peer the thread count of the numba-mlp
kernel it is compared with (one for the per-sample epoch, numba's count for the
parallel minibatch epoch); JAX's XLA keeps its own pool, sized at import (see
:data:`JAX_THREADS`).
"""

import os
import time

import numpy as np

try:
    import torch
except ImportError:
    torch = None

#: XLA's CPU client sizes its thread pool once, when JAX starts: all the machine's cores.
JAX_THREADS = os.cpu_count()

LABELS = {
    "torch-eager": "torch eager nn+autograd+optim",
    "torch-hand": "torch hand-written (no autograd)",
    "jax": "JAX jit+scan, whole epoch",
    "sklearn": "scikit-learn MLPClassifier",
}


def torch_devices():
    """Devices torch can run on here: 'cpu', and 'cuda' when torch sees a GPU."""
    if torch is None:
        return []
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def kind_and_device(peer):
    """``("torch-hand", "cuda")`` of ``torch-hand-cuda``: what a peer is and where it runs (scikit-learn: the CPU)."""
    if peer == "sklearn":
        return "sklearn", "cpu"
    kind, _, device = peer.rpartition("-")
    return kind, device


def available(peer):
    """Whether ``peer`` (``torch-eager-cpu``, ``jax-cpu``, ``sklearn``, ...) can run here."""
    kind, device = kind_and_device(peer)
    if kind.startswith("torch"):
        return device in torch_devices()
    if kind == "jax":
        try:
            import jax  # noqa: F401
        except ImportError:
            return False
        return device == "cpu"
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return False
    return True


def peer_names(devices=("cpu",), kinds=("torch-eager", "torch-hand", "jax", "sklearn")):
    """The peers to list in a benchmark group: ``<kind>-<device>`` for torch and JAX, ``sklearn`` alone."""
    return [kind if kind == "sklearn" else f"{kind}-{device}" for kind in kinds
            for device in (("cpu",) if kind == "sklearn" else devices)]


def label(peer):
    """A peer's name as the reports print it: what it is, and where it runs (not said for scikit-learn)."""
    kind, device = kind_and_device(peer)
    return LABELS[kind] + (f" ({device})" if kind != "sklearn" else "")


def set_threads(peer, threads):
    """Give ``peer`` ``threads`` threads where it can be told; returns what it runs with, as text."""
    if peer.startswith("torch"):
        torch.set_num_threads(threads)
        return f"torch {torch.get_num_threads()}"
    if peer.startswith("jax"):
        return f"XLA pool of {JAX_THREADS}"
    return f"BLAS {threads}"


def host_params(params):
    """``[(W, b), ...]`` as float32 host arrays."""
    return [(np.array(W, np.float32), np.array(b, np.float32)) for W, b in params]


class TorchEager:
    """``nn.Sequential`` of ``nn.Linear`` + ReLU, trained with ``optim.SGD`` on ``nn.CrossEntropyLoss``."""

    def __init__(self, params, X, y, order, device):
        self.device = device
        self.params0 = host_params(params)
        self.X, self.y = (torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in (X, y))
        self.order_host = [int(i) for i in order]  # per-sample indices: read on the host, no device sync
        self.order = torch.from_numpy(np.ascontiguousarray(order)).to(device)
        self.loss = torch.nn.CrossEntropyLoss()
        self.reset()

    def reset(self):
        layers = []
        for index, (W, b) in enumerate(self.params0):
            linear = torch.nn.Linear(W.shape[1], W.shape[0])
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(W))
                linear.bias.copy_(torch.from_numpy(b))
            layers.append(linear)
            if index < len(self.params0) - 1:
                layers.append(torch.nn.ReLU())
        self.model = torch.nn.Sequential(*layers).to(self.device)
        synchronize(self.device)

    def prepare(self, lr, batch_size, samples=None):
        return 0.0

    def epoch(self, lr, batch_size, samples=None):
        optimizer = torch.optim.SGD(self.model.parameters(), lr=lr)
        n = len(self.order_host) if samples is None else samples
        for start in range(0, n, batch_size):
            if batch_size == 1:
                i = self.order_host[start]
                inputs, labels = self.X[i:i + 1], self.y[i:i + 1]
            else:
                index = self.order[start:min(start + batch_size, n)]
                inputs, labels = self.X[index], self.y[index]
            optimizer.zero_grad()
            self.loss(self.model(inputs), labels).backward()
            optimizer.step()
        synchronize(self.device)

    def params(self):
        linears = [m for m in self.model if isinstance(m, torch.nn.Linear)]
        return [(m.weight.detach().cpu().numpy().copy(), m.bias.detach().cpu().numpy().copy()) for m in linears]


class TorchHandWritten:
    """The forward, backward and update of each step written by hand on preallocated tensors, no autograd.

    Per sample: ``z = addmv(b, W, x)``, ``W.addr_(δ, a, alpha=-η)`` (the
    rank-one update in place), ``b.add_(δ, alpha=-η)``; per batch the same with
    ``addmm``. The order stays on the host; a batch's rows are gathered with
    ``index_select`` into a preallocated tensor.
    """

    def __init__(self, params, X, y, order, device):
        self.device = device
        self.params0 = host_params(params)
        self.X, self.y = (torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in (X, y))
        self.order_host = [int(i) for i in order]
        self.labels_host = [int(label) for label in y]
        self.order = torch.from_numpy(np.ascontiguousarray(order)).to(device)
        self.weights = [(torch.from_numpy(W.copy()).to(device), torch.from_numpy(b.copy()).to(device))
                        for W, b in self.params0]
        self.buffers = {}

    def reset(self):
        with torch.no_grad():
            for (W, b), (W0, b0) in zip(self.weights, self.params0):
                W.copy_(torch.from_numpy(W0))
                b.copy_(torch.from_numpy(b0))
        synchronize(self.device)

    def _buffers(self, rows):
        """Activations and deltas for ``rows`` samples (B, n) each, allocated once per batch size."""
        if rows not in self.buffers:
            widths = [W.shape[0] for W, _ in self.weights]
            self.buffers[rows] = ([torch.empty((rows, n), device=self.device) for n in widths],
                                  [torch.empty((rows, n), device=self.device) for n in widths],
                                  torch.empty((rows, self.X.shape[1]), device=self.device))
        return self.buffers[rows]

    def prepare(self, lr, batch_size, samples=None):
        return 0.0

    @torch.no_grad()
    def epoch(self, lr, batch_size, samples=None):
        n = len(self.order_host) if samples is None else samples
        for start in range(0, n, batch_size):
            if batch_size == 1:
                self._sample_step(self.order_host[start], lr)
            else:
                self._batch_step(self.order[start:min(start + batch_size, n)], lr)
        synchronize(self.device)

    def _sample_step(self, i, lr):
        acts, deltas, _ = self._buffers(1)
        x = self.X[i]
        inputs = [x] + [a[0] for a in acts[:-1]]
        for (W, b), a, a_in in zip(self.weights, acts, inputs):
            torch.addmv(b, W, a_in, out=a[0])
            if a is not acts[-1]:
                a[0].clamp_(min=0)
        out = acts[-1][0]
        delta = deltas[-1][0]
        delta.copy_(torch.softmax(out, 0))
        delta[self.labels_host[i]] -= 1  # ∂l/∂z = softmax(z) - onehot(y)
        for layer in range(len(self.weights) - 1, -1, -1):
            W, b = self.weights[layer]
            d = deltas[layer][0]
            if layer > 0:  # δ_{l-1} = (Wᵀ δ_l) ⊙ [a_{l-1} > 0], with W before its update
                d_prev = deltas[layer - 1][0]
                torch.mv(W.t(), d, out=d_prev)
                d_prev.mul_(inputs[layer] > 0)
            W.addr_(d, inputs[layer], alpha=-lr)
            b.add_(d, alpha=-lr)

    def _batch_step(self, index, lr):
        rows = index.shape[0]
        acts, deltas, gathered = self._buffers(rows)
        torch.index_select(self.X, 0, index, out=gathered)
        inputs = [gathered, *acts[:-1]]
        for (W, b), a, a_in in zip(self.weights, acts, inputs):
            torch.addmm(b, a_in, W.t(), out=a)
            if a is not acts[-1]:
                a.clamp_(min=0)
        delta = deltas[-1]
        delta.copy_(torch.softmax(acts[-1], 1))
        delta[self._arange(rows), self.y[index]] -= 1
        delta.div_(rows)  # the gradient of the batch's mean loss
        for layer in range(len(self.weights) - 1, -1, -1):
            W, b = self.weights[layer]
            d = deltas[layer]
            if layer > 0:
                d_prev = deltas[layer - 1]
                torch.mm(d, W, out=d_prev)
                d_prev.mul_(inputs[layer] > 0)
            W.addmm_(d.t(), inputs[layer], alpha=-lr)
            b.add_(d.sum(0), alpha=-lr)

    def _arange(self, rows):
        if ("arange", rows) not in self.buffers:
            self.buffers["arange", rows] = torch.arange(rows, device=self.device)
        return self.buffers["arange", rows]

    def params(self):
        return [(W.cpu().numpy().copy(), b.cpu().numpy().copy()) for W, b in self.weights]


class JaxScan:
    """The whole epoch as one XLA program: ``lax.scan`` over the full batches, then the partial last batch.

    ``compile_seconds`` is the time of the first call for a batch size (tracing
    and compilation), excluded from the timings and reported beside them.
    """

    def __init__(self, params, X, y, order, device="cpu"):
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        self.params0 = host_params(params)
        self.X, self.y, self.order = jnp.asarray(X), jnp.asarray(y), np.asarray(order)
        self.compiled = {}
        self.reset()

    def reset(self):
        self.weights = [(self.jnp.asarray(W), self.jnp.asarray(b)) for W, b in self.params0]

    def _program(self, lr, batch_size):
        """The epoch as a function of ``(weights, X, y, batches, tail)``, to be jitted."""
        jax, jnp = self.jax, self.jnp

        def loss(weights, inputs, labels):
            a = inputs
            for W, b in weights[:-1]:
                a = jax.nn.relu(a @ W.T + b)
            W, b = weights[-1]
            logits = a @ W.T + b
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))

        def run(weights, X, y, batches, tail):
            def step(weights, index):
                gradient = jax.grad(loss)(weights, X[index], y[index])
                return jax.tree_util.tree_map(lambda w, g: w - lr * g, weights, gradient), None

            weights, _ = jax.lax.scan(step, weights, batches)
            if tail.shape[0]:
                weights, _ = step(weights, tail)
            return weights

        return run

    def _split(self, batch_size, samples):
        order = self.order if samples is None else self.order[:samples]
        full = order.shape[0] // batch_size * batch_size
        return (self.jnp.asarray(order[:full].reshape(-1, batch_size)), self.jnp.asarray(order[full:]))

    def prepare(self, lr, batch_size, samples=None):
        """Trace and compile the epoch for these settings (before timing); returns the seconds it took."""
        key = (lr, batch_size, samples)
        started = time.perf_counter()
        if key not in self.compiled:
            batches, tail = self._split(batch_size, samples)
            program = self.jax.jit(self._program(lr, batch_size))
            self.compiled[key] = (program.lower(self.weights, self.X, self.y, batches, tail).compile(), batches, tail)
        return time.perf_counter() - started

    def epoch(self, lr, batch_size, samples=None):
        self.prepare(lr, batch_size, samples)
        compiled, batches, tail = self.compiled[lr, batch_size, samples]
        self.weights = self.jax.block_until_ready(compiled(self.weights, self.X, self.y, batches, tail))

    def params(self):
        return [(np.asarray(W), np.asarray(b)) for W, b in self.weights]


class ScikitLearnSGD:
    """``MLPClassifier(solver="sgd", momentum=0, alpha=0, shuffle=False)``: one ``partial_fit`` over the samples
    in the run's order, weights reset to the shared ones before each epoch."""

    def __init__(self, params, X, y, order, device="cpu"):
        self.params0 = host_params(params)
        self.X, self.y, self.order = X, y, order
        self.estimator = None
        self.settings = None

    def make_estimator(self, **settings):
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier(**settings)

    def _estimator(self, lr, batch_size):
        if self.settings != (lr, batch_size):
            self.settings = (lr, batch_size)
            self.estimator = self.make_estimator(
                hidden_layer_sizes=[W.shape[0] for W, _ in self.params0[:-1]], solver="sgd", momentum=0.0,
                alpha=0.0, learning_rate_init=lr, batch_size=batch_size, shuffle=False)
            self.estimator.partial_fit(self.X[:batch_size], self.y[:batch_size],
                                       classes=np.arange(self.params0[-1][0].shape[0]))
            self.reset()
        return self.estimator

    def reset(self):
        if self.estimator is not None:
            for (W, b), coef, intercept in zip(self.params0, self.estimator.coefs_, self.estimator.intercepts_):
                coef[...] = W.T
                intercept[...] = b

    def prepare(self, lr, batch_size, samples=None):
        """Build the estimator and take the samples in order (before timing)."""
        self._estimator(lr, batch_size)
        if getattr(self, "samples", -1) != samples:
            order = self.order if samples is None else self.order[:samples]
            self.inputs, self.labels, self.samples = np.ascontiguousarray(self.X[order]), self.y[order], samples
        return 0.0

    def epoch(self, lr, batch_size, samples=None):
        self.prepare(lr, batch_size, samples)
        self.estimator.partial_fit(self.inputs, self.labels)

    def params(self):
        return [(W.T.copy(), b.copy()) for W, b in zip(self.estimator.coefs_, self.estimator.intercepts_)]


class ProjectEstimator(ScikitLearnSGD):
    """The same epoch through this project's ``model.sklearn.MLPClassifier`` on the cpu backend: not a peer, the
    entry the scikit-learn peer is timed against in the estimator comparisons."""

    def make_estimator(self, **settings):
        from model.sklearn import MLPClassifier

        return MLPClassifier(backend="cpu", dtype="float32", **settings)

    def reset(self):
        if self.estimator is not None:
            self.estimator.model_.set_params(self.params0)


def make_peer(peer, params, X, y, order):
    """The runner of ``peer`` (a name of :func:`peer_names`)."""
    kind, device = kind_and_device(peer)
    runner = {"torch-eager": TorchEager, "torch-hand": TorchHandWritten, "jax": JaxScan,
              "sklearn": ScikitLearnSGD}[kind]
    return runner(params, X, y, order, device)


def synchronize(device):
    if device == "cuda":
        torch.cuda.synchronize()
