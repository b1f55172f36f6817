"""numlp.sklearn.MLPClassifier: scikit-learn's own estimator checks, and use in its tools."""

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.datasets import load_digits  # noqa: E402  (bundled with scikit-learn, no download)
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import MinMaxScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from numlp.sklearn import MLPClassifier  # noqa: E402


@parametrize_with_checks([MLPClassifier(epochs=50, random_state=0)])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    names = np.array(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    )
    return x, names[y]  # string labels on purpose


def test_string_labels_in_a_pipeline(digits):
    x, y = digits
    x_train, x_test, y_train, y_test = train_test_split(x, y, random_state=0)
    pipe = make_pipeline(MinMaxScaler(), MLPClassifier(hidden=(64,), epochs=30, random_state=0))
    pipe.fit(x_train, y_train)
    assert set(pipe.predict(x_test)) <= set(y)
    assert pipe.score(x_test, y_test) > 0.95


def test_cross_val_score_and_grid_search(digits):
    x, y = digits
    x = x / 16
    model = MLPClassifier(hidden=(32,), lr=1e-2, epochs=20, random_state=0)
    scores = cross_val_score(model, x, y, cv=3)
    assert scores.mean() > 0.9
    grid = GridSearchCV(
        MLPClassifier(epochs=20, random_state=0),
        {"hidden": [(16,), (32,)], "lr": [3e-3, 1e-2]},
        cv=2,
    )
    grid.fit(x, y)
    assert grid.best_params_["hidden"] in [(16,), (32,)]
    assert grid.best_score_ > 0.85


def test_partial_fit_learns_epoch_by_epoch_and_refuses_unknown_labels(digits):
    x, y = digits
    x = x / 16
    model = MLPClassifier(hidden=(32,), random_state=0)
    with pytest.raises(ValueError, match="classes must be given"):
        model.partial_fit(x, y)
    model.partial_fit(x, y, classes=np.unique(y))
    first = model.score(x, y)
    for _ in range(5):
        model.partial_fit(x, y)
    assert model.score(x, y) > first
    assert len(model.history_) == 6
    with pytest.raises(ValueError, match="not in classes"):
        model.partial_fit(x[:2], np.array(["ten", "zero"]))


def test_same_random_state_same_predictions(digits):
    x, y = digits
    a = MLPClassifier(hidden=(16,), epochs=3, random_state=1).fit(x / 16, y)
    b = MLPClassifier(hidden=(16,), epochs=3, random_state=1).fit(x / 16, y)
    np.testing.assert_array_equal(a.predict_proba(x / 16), b.predict_proba(x / 16))
    assert a.get_params()["hidden"] == (16,)
    assert a.set_params(lr=0.5).lr == 0.5
