"""A scikit-learn estimator: ``MLPClassifier``, a drop-in for ``sklearn.neural_network.MLPClassifier``.

    from model.sklearn import MLPClassifier

It takes scikit-learn's parameter names wherever the meaning is the same, and
trains with this package's kernels (``backend``: numpy, cpu, cuda or auto). It
is the only module of the package that imports scikit-learn (``pip install
'numba-mlp[sklearn]'``). Differences from scikit-learn's, by design:

* the solver is SGD (``solver="sgd"``, the only value accepted); momentum has
  PyTorch's form, ``v ← μ v + g``, ``θ ← θ − η v``, which is scikit-learn's as
  long as the learning rate is constant;
* ``alpha``, scikit-learn's L2 penalty ``α/2 ‖W‖²`` divided by the batch size,
  is a weight decay of ``α / batch_size`` on the weight matrices (the last,
  partial batch of an epoch included);
* the output is a softmax over all classes, also with two classes (the same
  model as scikit-learn's single logistic unit, parametrised differently);
* ``loss_curve_`` holds the mean cross-entropy of each epoch plus the L2 term,
  each sample's loss measured before its update;
* ``dtype`` (default: the input's, float32 or float64) and ``backend`` are added.
"""

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from model import MLP
from model.schedule import ADAPTIVE_FACTOR, ADAPTIVE_MIN_LR

#: scikit-learn's activation names, and this package's for them.
ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu",
               "leaky_relu": "leaky_relu"}
LEARNING_RATES = ("constant", "invscaling", "adaptive")

#: Checks of ``sklearn.utils.estimator_checks`` this estimator does not meet, with the reason; pass it to
#: ``check_estimator(..., expected_failed_checks=EXPECTED_FAILED_CHECKS)``.
EXPECTED_FAILED_CHECKS = {}


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """Multi-layer perceptron classifier trained with SGD by numba-mlp's kernels.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
    activation : {"identity", "logistic", "tanh", "relu", "leaky_relu"}, default="relu"
    solver : {"sgd"}, default="sgd"
    alpha : float, default=1e-4
        L2 penalty: a weight decay of ``alpha / batch_size`` on the weights.
    batch_size : int or "auto", default="auto"
        ``min(200, n_samples)`` for "auto"; 1 is the per-sample SGD of the course.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
    learning_rate_init : float, default=1e-3
    power_t : float, default=0.5
    max_iter : int, default=200
        Epochs.
    shuffle : bool, default=True
    random_state : int, RandomState instance or None, default=None
    tol : float, default=1e-4
    verbose : bool, default=False
    warm_start : bool, default=False
    momentum : float, default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
    backend : {"auto", "numpy", "cpu", "cuda"}, default="auto"
    dtype : {None, "float32", "float64"}, default=None
        None: float32 for float32 input, float64 otherwise (as scikit-learn).

    Attributes
    ----------
    classes_, loss_, loss_curve_, best_loss_, validation_scores_, best_validation_score_, t_,
    coefs_, intercepts_, n_features_in_, feature_names_in_, n_iter_, n_layers_, n_outputs_, out_activation_,
    model_ : model.MLP
        The trained network.
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="sgd", alpha=1e-4,
                 batch_size="auto", learning_rate="constant", learning_rate_init=1e-3, power_t=0.5, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, n_iter_no_change=10,
                 backend="auto", dtype=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.backend = backend
        self.dtype = dtype

    # ---------------------------------------------------------------- sklearn
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        tags.classifier_tags.multi_label = False
        return tags

    # ------------------------------------------------------------------ fit
    def fit(self, X, y):
        """Train from scratch (or, with ``warm_start``, from the weights of the previous fit) for up to
        ``max_iter`` epochs."""
        return self._fit(X, y, incremental=False, classes=None)

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``(X, y)``, from the current weights; the first call needs ``classes``, every label
        of later calls must be among them."""
        return self._fit(X, y, incremental=True, classes=classes)

    def _check_parameters(self):
        if self.solver != "sgd":
            raise ValueError(f"solver must be 'sgd' (numba-mlp trains with SGD), got {self.solver!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if self.learning_rate not in LEARNING_RATES:
            raise ValueError(f"learning_rate must be one of {LEARNING_RATES}, got {self.learning_rate!r}")
        checks = {"learning_rate_init": self.learning_rate_init > 0, "alpha": self.alpha >= 0,
                  "max_iter": self.max_iter >= 1, "n_iter_no_change": self.n_iter_no_change >= 1,
                  "validation_fraction": 0 < self.validation_fraction < 1, "tol": self.tol >= 0,
                  "power_t": self.power_t >= 0, "momentum": 0 <= self.momentum < 1}
        for name, fine in checks.items():
            if not fine:
                raise ValueError(f"{name} out of range: {getattr(self, name)!r}")
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if np.isscalar(sizes) else list(sizes)
        if any(not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1 for n in sizes):
            raise ValueError(f"hidden_layer_sizes must be ints >= 1, got {self.hidden_layer_sizes!r}")
        if self.batch_size != "auto" and not (isinstance(self.batch_size, (int, np.integer))
                                              and self.batch_size >= 1):
            raise ValueError(f"batch_size must be 'auto' or an int >= 1, got {self.batch_size!r}")
        return [int(n) for n in sizes]

    def _fit(self, X, y, incremental, classes):
        hidden = self._check_parameters()
        first_call = not hasattr(self, "classes_")
        reset = not incremental or first_call
        # The model checks that every value is finite (naming NaN and infinite values), once.
        X, y = validate_data(self, X, y, reset=reset, dtype=[np.float64, np.float32], ensure_all_finite=False)
        if not np.issubdtype(y.dtype, np.integer):  # a vector of integers is a classification target as it is
            check_classification_targets(y)  # (scikit-learn's check sorts it twice: 1.7 ms for 10k labels)
        if incremental and first_call and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        if reset:
            self.classes_ = np.unique(classes if incremental else y)
        elif incremental and classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"classes={list(classes)} differ from the first call's {list(self.classes_)}")
        # Each label's index among the sorted classes_, and a check that it is that class (no second sort of y).
        labels = np.searchsorted(self.classes_, y)
        n_classes = self.classes_.shape[0]
        known = self.classes_[np.minimum(labels, n_classes - 1)] == y if n_classes else np.zeros(y.shape, bool)
        if not np.all(known):
            raise ValueError(f"y holds labels not in classes_ {self.classes_.tolist()}: "
                             f"{np.unique(y[~known]).tolist()}")
        if self.classes_.shape[0] < 2:
            raise ValueError(f"MLPClassifier needs at least 2 classes, got 1 class: {self.classes_[0]!r}")
        fresh = reset and not (self.warm_start and not incremental and hasattr(self, "model_")
                               and self.model_.layer_sizes == (X.shape[1], *hidden, self.classes_.shape[0]))
        if fresh:
            dtype = self.dtype or (X.dtype if X.dtype == np.float32 else np.float64)
            seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
            self.model_ = MLP([X.shape[1], *hidden, self.classes_.shape[0]], activation=ACTIVATIONS[self.activation],
                              backend=self.backend, dtype=dtype, seed=seed)
            self.n_iter_ = 0
            self.t_ = 0
            self.loss_curve_ = []
            self.best_loss_ = np.inf
            self.validation_scores_ = [] if self.early_stopping else None
            self.best_validation_score_ = -np.inf if self.early_stopping else None
            self._no_improvement_count = 0
            self._learning_rate = self.learning_rate_init
        validation_data = None
        if self.early_stopping and not incremental:
            X, X_val, labels, y_val = train_test_split(X, labels, test_size=self.validation_fraction,
                                                       random_state=self.random_state, stratify=labels)
            validation_data = (X_val, y_val)
        batch_size = min(200, X.shape[0]) if self.batch_size == "auto" else min(self.batch_size, X.shape[0])
        best_params = [None]

        def learning_rate(epoch, history):
            return self._learning_rate

        def after_epoch(history):
            return self._after_epoch(history, X.shape[0], batch_size, best_params)

        epochs = 1 if incremental else self.max_iter
        with np.errstate(over="ignore"):
            history = self.model_.fit(X, labels, epochs=epochs, lr=self.learning_rate_init, batch_size=batch_size,
                            shuffle=self.shuffle, validation_data=validation_data, verbose=self.verbose,
                            momentum=self.momentum, nesterov=bool(self.nesterovs_momentum and self.momentum > 0),
                            weight_decay=self.alpha / batch_size,
                            lr_schedule="invscaling" if self.learning_rate == "invscaling" else learning_rate,
                            power_t=self.power_t, callback=None if incremental else after_epoch)
        if incremental:
            self._record_epoch(history, X.shape[0], batch_size)
        elif best_params[0] is not None:
            self.model_.set_params(best_params[0])
        if not incremental and self.n_iter_ == self.max_iter and self._no_improvement_count <= self.n_iter_no_change:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the optimization "
                          f"hasn't converged yet.", ConvergenceWarning, stacklevel=3)
        return self

    def _record_epoch(self, history, n_samples, batch_size):
        """The bookkeeping of one epoch: scikit-learn's loss (with the L2 term), iteration and sample counts."""
        penalty = (0.5 * self.alpha * sum(float(np.sum(W * W)) for W, _ in self.model_.params) / batch_size
                   if self.alpha else 0.0)
        self.loss_ = history.train_loss[-1] + penalty
        self.loss_curve_.append(self.loss_)
        self.n_iter_ += 1
        self.t_ += n_samples
        return self.loss_

    def _after_epoch(self, history, n_samples, batch_size, best_params):
        """scikit-learn's stopping rule after each epoch of ``fit``: no improvement by more than ``tol`` for more
        than ``n_iter_no_change`` epochs (of the validation accuracy with ``early_stopping``, else of the
        training loss) stops training, or, with ``learning_rate="adaptive"``, divides the rate by 5 until it
        falls below 1e-6."""
        loss = self._record_epoch(history, n_samples, batch_size)
        if self.early_stopping:
            score = history.val_accuracy[-1]
            self.validation_scores_.append(score)
            improved = score >= self.best_validation_score_ + self.tol
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                best_params[0] = self.model_.params
        else:
            improved = loss <= self.best_loss_ - self.tol
            self.best_loss_ = min(self.best_loss_, loss)
        self._no_improvement_count = 0 if improved else self._no_improvement_count + 1
        if self._no_improvement_count <= self.n_iter_no_change:
            return False
        if self.learning_rate == "adaptive" and self._learning_rate > ADAPTIVE_MIN_LR:
            self._learning_rate /= ADAPTIVE_FACTOR
            self._no_improvement_count = 0
            if self.verbose:
                print(f"Setting learning rate to {self._learning_rate:f}")
            return False
        if self.verbose:
            print(f"Training loss or validation score did not improve more than tol={self.tol} for "
                  f"{self.n_iter_no_change} consecutive epochs. Stopping.")
        return True

    # -------------------------------------------------------------- predict
    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), columns in the order of ``classes_``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32], ensure_all_finite=False)
        return self.model_.predict_proba(X)

    def predict(self, X):
        """The most probable class of each sample, among ``classes_``."""
        probabilities = self.predict_proba(X)
        return self.classes_[np.argmax(probabilities, axis=1)]

    # ------------------------------------------------------- sklearn layout
    @property
    def coefs_(self):
        """Weight matrices in scikit-learn's layout, (n_in, n_out) per layer."""
        check_is_fitted(self)
        return [W.T.copy() for W, _ in self.model_.params]

    @property
    def intercepts_(self):
        check_is_fitted(self)
        return [b for _, b in self.model_.params]

    @property
    def n_layers_(self):
        check_is_fitted(self)
        return len(self.model_.layer_sizes)

    @property
    def n_outputs_(self):
        check_is_fitted(self)
        return self.model_.layer_sizes[-1]

    @property
    def out_activation_(self):
        return "softmax"
