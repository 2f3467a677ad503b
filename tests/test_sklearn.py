"""``model.sklearn.MLPClassifier``: scikit-learn's estimator checks, pipelines, search, labels, partial_fit."""

import pickle
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import SIMULATOR

pytestmark = pytest.mark.skipif(SIMULATOR, reason="model tests run in the normal (non-simulated) process")
sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from model import load_digits  # noqa: E402
from model.sklearn import EXPECTED_FAILED_CHECKS, MLPClassifier  # noqa: E402


@parametrize_with_checks([MLPClassifier(backend="cpu")], expected_failed_checks=lambda _: EXPECTED_FAILED_CHECKS)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits("float64")
    return X, y


def test_grid_search_in_a_pipeline_on_the_digits(digits):
    X, y = digits
    pipeline = make_pipeline(StandardScaler(), MLPClassifier(solver="sgd", learning_rate_init=0.05, max_iter=30,
                                                             batch_size=32, random_state=0, backend="cpu"))
    search = GridSearchCV(pipeline, {"mlpclassifier__hidden_layer_sizes": [(16,), (32,)],
                                     "mlpclassifier__alpha": [1e-4, 1e-2]}, cv=3)
    search.fit(X[:900], y[:900])
    assert set(search.best_params_) == {"mlpclassifier__hidden_layer_sizes", "mlpclassifier__alpha"}
    assert search.best_score_ > 0.9
    assert search.score(X[900:], y[900:]) > 0.9


def test_labels_of_any_type_through_classes(digits):
    X, y = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    for labels in (names[y], y * 10 + 3):
        clf = MLPClassifier((32,), learning_rate_init=0.05, max_iter=40, random_state=0, backend="cpu")
        clf.fit(X[:600], labels[:600])
        assert list(clf.classes_) == sorted(set(labels))
        predicted = clf.predict(X[600:800])
        assert set(predicted) <= set(labels) and np.mean(predicted == labels[600:800]) > 0.8
        assert clf.predict_proba(X[:5]).shape == (5, 10)


def test_integer_labels_of_any_width_and_continuous_targets(digits):
    X, y = digits
    for labels in (y.astype(np.int8), y.astype(np.uint16), y.astype(np.float64)):
        clf = MLPClassifier((16,), max_iter=3, random_state=0, backend="cpu").fit(X[:300], labels[:300])
        assert list(clf.classes_) == list(range(10)) and clf.predict(X[:5]).dtype == labels.dtype
    with pytest.raises(ValueError, match="Unknown label type"):
        MLPClassifier((16,), max_iter=1, backend="cpu").fit(X[:300], y[:300] + 0.5)


def test_pandas_dataframes_in(digits):
    pd = pytest.importorskip("pandas")
    X, y = digits
    frame = pd.DataFrame(X[:500], columns=[f"pixel{i}" for i in range(64)]).sample(frac=1, random_state=0)
    labels = pd.Series(y[:500], index=range(500)).loc[frame.index]
    clf = MLPClassifier((16,), learning_rate_init=0.05, max_iter=30, random_state=0, backend="cpu")
    clf.fit(frame, labels)
    assert list(clf.feature_names_in_) == list(frame.columns)
    assert clf.score(frame, labels) > 0.8


def test_fit_is_reproducible_and_clone_and_pickle_keep_it(digits):
    X, y = digits
    clf = MLPClassifier((16,), max_iter=3, random_state=3, backend="cpu").fit(X[:300], y[:300])
    again = clone(clf).fit(X[:300], y[:300])
    np.testing.assert_array_equal(again.predict_proba(X[300:400]), clf.predict_proba(X[300:400]))
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X[300:400]), clf.predict_proba(X[300:400]))
    assert [W.shape for W in clf.coefs_] == [(64, 16), (16, 10)]
    assert [b.shape for b in clf.intercepts_] == [(16,), (10,)]
    assert clf.n_layers_ == 3 and clf.n_outputs_ == 10 and clf.n_iter_ == 3 and len(clf.loss_curve_) == 3
    assert clf.t_ == 900


def test_cross_val_score(digits):
    X, y = digits
    from sklearn.neural_network import MLPClassifier as ScikitLearnMLP

    settings = dict(hidden_layer_sizes=(32,), learning_rate_init=0.05, max_iter=20, random_state=0)
    scores = cross_val_score(MLPClassifier(backend="cpu", **settings), X[:900], y[:900], cv=3)
    theirs = cross_val_score(ScikitLearnMLP(solver="sgd", **settings), X[:900], y[:900], cv=3)
    assert scores.shape == (3,) and scores.min() > 0.8
    assert abs(scores.mean() - theirs.mean()) < 0.03, (scores, theirs)


def test_partial_fit(digits):
    X, y = digits
    clf = MLPClassifier((16,), learning_rate_init=0.05, random_state=0, backend="cpu")
    with pytest.raises(ValueError, match="classes must be passed on the first call to partial_fit"):
        clf.partial_fit(X[:100], y[:100])
    assert not hasattr(clf, "model_")
    for start in list(range(0, 1000, 100)) * 3:
        clf.partial_fit(X[start:start + 100], y[start:start + 100], classes=np.arange(10))
    assert clf.n_iter_ == 30 and clf.t_ == 3000 and clf.score(X[1000:], y[1000:]) > 0.8
    before = clf.coefs_[0]
    with pytest.raises(ValueError, match=r"labels not in classes_"):
        clf.partial_fit(X[:10], np.full(10, 11))
    np.testing.assert_array_equal(clf.coefs_[0], before)
    with pytest.raises(ValueError, match=r"labels not in classes_ \[\]: \[0, 1, 2\]"):
        MLPClassifier((16,), backend="cpu").partial_fit(X[:10], y[:10] % 3, classes=[])


def test_early_stopping_and_adaptive_rate(digits):
    X, y = digits
    clf = MLPClassifier((16,), learning_rate="adaptive", learning_rate_init=0.1, early_stopping=True,
                        n_iter_no_change=2, max_iter=500, random_state=0, backend="cpu").fit(X, y)
    assert clf.n_iter_ < 500 and len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)


def test_warm_start_continues_from_the_previous_weights(digits):
    X, y = digits
    clf = MLPClassifier((16,), max_iter=2, warm_start=True, random_state=0, backend="cpu").fit(X, y)
    model = clf.model_
    clf.fit(X, y)
    assert clf.model_ is model and clf.n_iter_ == 4


@pytest.mark.parametrize("params, pattern", [
    ({"momentum": -0.1}, "momentum out of range"),
    ({"momentum": 1.0}, "momentum out of range"),
    ({"learning_rate": "cosine"}, "learning_rate must be one of"),
    ({"solver": "adam"}, "solver must be 'sgd'"),
    ({"activation": "swish"}, "activation must be one of"),
    ({"alpha": -1.0}, "alpha out of range"),
    ({"hidden_layer_sizes": (10, 0)}, "hidden_layer_sizes must be ints >= 1"),
    ({"batch_size": 0}, "batch_size must be 'auto' or an int >= 1"),
])
def test_bad_parameters_fail_before_any_training(digits, params, pattern):
    X, y = digits
    clf = MLPClassifier(backend="cpu", **params)
    with pytest.raises(ValueError, match=pattern):
        clf.fit(X[:50], y[:50])
    assert not hasattr(clf, "model_")


def test_importing_the_model_does_not_import_scikit_learn():
    result = subprocess.run([sys.executable, "-c", "import model, sys; print('sklearn' in sys.modules)"],
                            capture_output=True, text=True, check=True, timeout=300)
    assert result.stdout.strip() == "False"
