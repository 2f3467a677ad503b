"""The learning rate of each epoch, and when training stops: the bookkeeping of ``MLP.fit``.

=================  ================================================================================
``lr_schedule``    learning rate of epoch ``e``
=================  ================================================================================
``"constant"``     ``η₀``
``"invscaling"``   ``η₀ / (t + 1)^p``, ``t`` the samples the model had trained on before the epoch, ``p``
                   the ``power_t`` (scikit-learn's ``invscaling``)
``"adaptive"``     ``η₀``, divided by 5 each time ``patience`` epochs pass without the monitored loss
                   improving by more than ``tol``; training stops once it would fall below 10⁻⁶
                   (scikit-learn's ``adaptive``: the course's early stopping turned into a schedule)
a callable         ``lr_schedule(epoch, history)``, ``epoch`` counted from 1 within the call
=================  ================================================================================
"""

import numbers

import numpy as np

from model import _checks

SCHEDULES = ("constant", "invscaling", "adaptive")
#: ``adaptive`` divides the rate by this when the loss stops improving ...
ADAPTIVE_FACTOR = 5.0
#: ... and stops training rather than go below this rate (scikit-learn's limits).
ADAPTIVE_MIN_LR = 1e-6


def check_schedule(lr_schedule, power_t):
    """``lr_schedule`` a known name or a callable, ``power_t`` a real number >= 0."""
    if callable(lr_schedule):
        return
    if not isinstance(lr_schedule, str):
        raise TypeError(f"lr_schedule must be one of {SCHEDULES} or a callable, got {type(lr_schedule).__name__}")
    if lr_schedule not in SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {SCHEDULES} or a callable, got {lr_schedule!r}")
    if isinstance(power_t, bool) or not isinstance(power_t, numbers.Real) or not np.isfinite(power_t) or power_t < 0:
        raise ValueError(f"power_t must be a finite number >= 0, got {power_t!r}")


class Stopping:
    """Patience and the learning rate across the epochs of one ``fit``.

    ``observe`` takes each epoch's monitored loss and says whether to stop;
    ``best`` tells whether the epoch just observed is the best so far (its
    weights are kept for early stopping).
    """

    def __init__(self, lr, lr_schedule, power_t, patience, tol):
        self.lr = lr
        self.schedule = lr_schedule
        self.power_t = power_t
        self.patience = patience
        self.tol = tol
        self.best_loss = np.inf
        self.waited = 0
        self.best = False

    def rate(self, epoch, history, samples_seen):
        """The learning rate of epoch ``epoch`` (from 1), checked when a callable gave it."""
        if self.schedule == "invscaling":
            return self.lr / (samples_seen + 1) ** self.power_t
        if callable(self.schedule):
            rate = self.schedule(epoch, history)
            try:
                return _checks.check_positive_float("the learning rate lr_schedule returned", rate)
            except (TypeError, ValueError) as error:
                raise ValueError(str(error)) from None
        return self.lr

    def observe(self, loss):
        """Record an epoch's monitored loss; True when training should stop."""
        self.best = loss < self.best_loss
        if loss > self.best_loss - self.tol:
            self.waited += 1
        else:
            self.waited = 0
        self.best_loss = min(self.best_loss, loss)
        if self.patience is None or self.waited < self.patience:
            return False
        if self.schedule == "adaptive" and self.lr / ADAPTIVE_FACTOR >= ADAPTIVE_MIN_LR:
            self.lr /= ADAPTIVE_FACTOR
            self.waited = 0
            return False
        return True
