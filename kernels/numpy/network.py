"""Whole-network ops, composed from the unfused reference ops.

These are the references of the fused kernels of ``kernels.cpu`` and
``kernels.cuda``: ``sgd_epoch`` is literally the course's per-sample SGD loop,
one ``minibatch_step`` of one sample at a time, and ``minibatch_epoch`` one
``minibatch_step`` per batch.

Shared arguments
----------------
theta : ndarray, shape (P,)
    All parameters, laid out as in :mod:`kernels.layout`.
velocity : ndarray, shape (P,)
    The momentum buffer, laid out like ``theta`` (zero before the first step);
    read and written only when the momentum is not 0 (any array will do then).
hyper : tuple
    ``(lr, momentum, nesterov, weight_decay)``, :func:`kernels.optimizer.hyper`.
sizes : ndarray of int64, shape (L + 1,)
    Layer sizes ``[n_0, ..., n_L]``; ``n_L`` is the number of classes.
activation : int
    Hidden-layer activation code; the output layer is the identity (logits)
    followed by softmax.
work : ndarray, shape (>= layout.workspace_size(sizes, B),)
    Scratch ``[acts | deltas | grad | inputs]``.
"""

import numpy as np

from kernels import layout
from kernels.activations import IDENTITY
from kernels.numpy.activations import activation_backward, activation_forward
from kernels.numpy.linear import linear_backward, linear_forward
from kernels.numpy.sgd import optimizer_update, sgd_update
from kernels.numpy.softmax import cross_entropy, softmax, softmax_cross_entropy_backward
from kernels.optimizer import LR, is_plain


def mlp_forward(theta, sizes, activation, X, acts):
    """Forward pass of a batch: ``A_l = g(A_{l-1} W_lᵀ + b_l)``, identity on the last layer.

    Parameters
    ----------
    X : ndarray, shape (B, n_0)
    acts : ndarray, shape (>= layout.activation_count(sizes, B),)
        Receives ``A_1 .. A_L``; ``A_L`` are the logits ``(B, n_L)``.
    """
    batch = X.shape[0]
    params = layout.param_views(theta, sizes)
    outputs = layout.activation_views(acts, sizes, batch)
    last = len(params) - 1
    inputs = X
    for l, ((W, b), A) in enumerate(zip(params, outputs)):
        linear_forward(inputs, W, b, A)
        activation_forward(A, IDENTITY if l == last else activation, A)
        inputs = A


def mlp_backward(theta, sizes, activation, X, y, acts, deltas, grad):
    """Backpropagation of the mean cross-entropy of a batch, after :func:`mlp_forward`.

    Parameters
    ----------
    X : ndarray, shape (B, n_0)
    y : ndarray of int64, shape (B,)
    acts : ndarray
        As filled by :func:`mlp_forward`.
    deltas : ndarray, shape like ``acts``
        Scratch for ``∂l/∂Z_l``.
    grad : ndarray, shape (P,)
        Receives the gradient, laid out like ``theta``; written in full.
    """
    batch = X.shape[0]
    params = layout.param_views(theta, sizes)
    grads = layout.param_views(grad, sizes)
    outputs = layout.activation_views(acts, sizes, batch)
    dZs = layout.activation_views(deltas, sizes, batch)
    last = len(params) - 1
    softmax_cross_entropy_backward(outputs[last], y, dZs[last])
    for l in range(last, -1, -1):
        W, _ = params[l]
        dW, db = grads[l]
        inputs = X if l == 0 else outputs[l - 1]
        dX = None if l == 0 else dZs[l - 1]
        linear_backward(dZs[l], inputs, W, dW, db, dX)
        if l > 0:
            activation_backward(outputs[l - 1], dX, activation, dX)


def minibatch_step(theta, velocity, sizes, activation, X, y, batch, hyper, work, loss_sum):
    """One SGD step on the mean loss of the samples ``batch``.

    Parameters
    ----------
    X : ndarray, shape (N, n_0)
    y : ndarray of int64, shape (N,)
    batch : ndarray of int64, shape (B,)
        Indices of the samples of this step.
    loss_sum : ndarray, shape (1,)
        ``loss_sum[0] += Σ`` per-sample losses of the batch, measured before the update.
    """
    Xb = X[batch]
    yb = y[batch]
    n = batch.shape[0]
    acts, deltas, grad, _ = layout.workspace_views(work, sizes, n)
    mlp_forward(theta, sizes, activation, Xb, acts)
    logits = layout.activation_views(acts, sizes, n)[-1]
    losses = np.empty(n, dtype=theta.dtype)
    cross_entropy(logits, yb, losses)
    loss_sum[0] += losses.sum()
    mlp_backward(theta, sizes, activation, Xb, yb, acts, deltas, grad)
    if is_plain(hyper):
        sgd_update(theta, grad, hyper[LR])
    else:
        optimizer_update(theta, velocity, grad, sizes, hyper)


def minibatch_epoch(theta, velocity, sizes, activation, X, y, order, batch_size, hyper, work, loss_sum):
    """Minibatch SGD: one :func:`minibatch_step` per ``batch_size`` consecutive samples of ``order``.

    Parameters
    ----------
    order : ndarray of int64, shape (n,)
        The samples to visit, in that order; the last batch may be short.
    batch_size : int, >= 1
    work : ndarray, shape (>= layout.workspace_size(sizes, batch_size),)
    loss_sum : ndarray, shape (1,)
        ``loss_sum[0] +=`` each sample's loss, measured before the update of its step.
    """
    for start in layout.batch_starts(order.shape[0], batch_size):
        minibatch_step(theta, velocity, sizes, activation, X, y, order[start:start + batch_size], hyper, work,
                       loss_sum)


def sgd_epoch(theta, velocity, sizes, activation, X, y, order, hyper, work, loss_sum):
    """Per-sample SGD, the course's algorithm: for each ``i`` in ``order`` predict, backpropagate, update.

    Parameters
    ----------
    order : ndarray of int64, shape (n,)
        The samples to visit, in that order; one update per sample.
    loss_sum : ndarray, shape (1,)
        ``loss_sum[0] +=`` the sum of each sample's loss, measured before its update.
    """
    for s in range(order.shape[0]):
        minibatch_step(theta, velocity, sizes, activation, X, y, order[s:s + 1], hyper, work, loss_sum)


def evaluate(theta, sizes, activation, X, y, work, stats):
    """Loss and accuracy counts of a batch.

    Parameters
    ----------
    X : ndarray, shape (B, n_0)
    y : ndarray of int64, shape (B,)
    stats : ndarray, shape (2,)
        ``stats[0] +=`` the summed cross-entropy, ``stats[1] +=`` the number of
        samples whose arg-max logit equals the label.
    """
    n = X.shape[0]
    acts = layout.workspace_views(work, sizes, n)[0]
    mlp_forward(theta, sizes, activation, X, acts)
    logits = layout.activation_views(acts, sizes, n)[-1]
    losses = np.empty(n, dtype=theta.dtype)
    cross_entropy(logits, y, losses)
    stats[0] += losses.sum()
    stats[1] += np.count_nonzero(logits.argmax(axis=1) == y)


def predict_proba(theta, sizes, activation, X, work, probs):
    """Class probabilities ``softmax(logits)`` of a batch.

    Parameters
    ----------
    X : ndarray, shape (B, n_0)
    probs : ndarray, shape (B, n_L)
        Written in full; rows sum to 1.
    """
    n = X.shape[0]
    acts = layout.workspace_views(work, sizes, n)[0]
    mlp_forward(theta, sizes, activation, X, acts)
    softmax(layout.activation_views(acts, sizes, n)[-1], probs)
