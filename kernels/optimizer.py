"""The SGD update rule shared by every backend: plain, momentum, Nesterov, weight decay.

With PyTorch's ``torch.optim.SGD`` semantics (dampening 0), for a parameter
``w`` with gradient ``g`` and velocity ``v`` (zero before the first step)::

    g ← g + λ w            (weight decay: on weight matrices only, never on biases)
    v ← μ v + g            (momentum μ)
    w ← w − η (g + μ v)    (Nesterov)   or   w ← w − η v   (classical momentum)

With ``μ = 0`` this is plain SGD, ``w ← w − η g``, and the velocity is not used.

The hyper-parameters travel together as one tuple, :func:`hyper`, so kernels
take one argument for all of them. :func:`sgd_step` is the scalar formula,
written once in plain Python and compiled for each target (``kernels.cpu`` with
``numba.njit``, ``kernels.cuda`` as a device function); the NumPy reference in
:mod:`kernels.numpy.sgd` is an independent vectorised version.
"""

#: Positions in the :func:`hyper` tuple.
LR, MOMENTUM, NESTEROV, WEIGHT_DECAY = range(4)


def hyper(lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """The optimizer's hyper-parameters as the ``(lr, momentum, nesterov, weight_decay)`` tuple of floats
    every kernel takes (``nesterov`` as 0.0 or 1.0)."""
    return (float(lr), float(momentum), 1.0 if nesterov else 0.0, float(weight_decay))


def is_plain(hyper_parameters):
    """True for plain SGD (no momentum, no weight decay): the update needs no velocity."""
    return hyper_parameters[MOMENTUM] == 0.0 and hyper_parameters[WEIGHT_DECAY] == 0.0


def sgd_step(w, v, g, lr, momentum, nesterov, decay):
    """One parameter's update; returns ``(w, v)`` after it. ``decay`` is λ for a weight, 0 for a bias."""
    g = g + decay * w
    if momentum == 0.0:
        return w - lr * g, v
    v = momentum * v + g
    if nesterov != 0.0:
        return w - lr * (g + momentum * v), v
    return w - lr * v, v
