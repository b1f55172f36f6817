"""``MLPClassifier``: numlp as a scikit-learn estimator (Pipeline, cross_val_score, grid search).

Any labels work (strings too): they are mapped to ``classes_`` and back. Needs the optional
``scikit-learn`` package (``pip install numlp[sklearn]``); the core never imports this module.
"""

from __future__ import annotations

import copy

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from numlp.config import TrainConfig
from numlp.parts import build_loss, build_model, build_optimizer


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """A multilayer perceptron classifier trained by numlp.

    Parameters
    ----------
    hidden : tuple of int
        Widths of the hidden layers.
    activation : {"relu", "leaky_relu", "tanh", "sigmoid", "gelu"}
    dropout : float
        Dropout after each hidden activation.
    optimizer : {"adam", "adamw", "sgd"}
    lr : float
    batch_size : int
    epochs : int
        Passes over the data in ``fit`` (``partial_fit`` makes one pass per call).
    weight_decay, label_smoothing : float
    random_state : int or None
        Seeds the weights, the shuffling and dropout: the same value gives the same model.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    model_ : numlp.Sequential
        The trained float32 network.
    predictor_ : numlp.Sequential
        Its float64 copy, used for predictions (so they do not depend on the batch).
    history_ : list of dict, one per epoch trained
    """

    def __init__(
        self,
        hidden=(100,),
        activation="relu",
        dropout=0.0,
        optimizer="adam",
        lr=1e-3,
        batch_size=128,
        epochs=200,
        weight_decay=0.0,
        label_smoothing=0.0,
        random_state=None,
    ):
        self.hidden = hidden
        self.activation = activation
        self.dropout = dropout
        self.optimizer = optimizer
        self.lr = lr
        self.batch_size = batch_size
        self.epochs = epochs
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.random_state = random_state

    def fit(self, X, y):
        """Train a fresh network on ``X: (n_samples, n_features)`` and labels ``y``."""
        X, y = self._validate(X, y, reset=True)
        self.classes_ = unique_labels(y)
        self._build(X.shape[1])
        return self._train(X, y, self.epochs)

    def partial_fit(self, X, y, classes=None):
        """One pass over ``(X, y)``; the first call needs ``classes`` (all labels there will be)."""
        first = not hasattr(self, "model_")
        X, y = self._validate(X, y, reset=first)
        if first:
            if classes is None:
                raise ValueError("classes must be given on the first call to partial_fit")
            self.classes_ = unique_labels(classes)
            self._build(X.shape[1])
        elif classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
            raise ValueError(f"classes {classes} differ from the first call's {self.classes_}")
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(
                f"labels {unknown.tolist()} are not in classes {self.classes_.tolist()}"
            )
        return self._train(X, y, 1)

    def predict_proba(self, X):
        """Class probabilities ``(n_samples, n_classes)``, columns in the order of ``classes_``."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        if len(self.classes_) == 1:
            return np.ones((len(X), 1))
        return self.predictor_.predict_proba(X)

    def predict(self, X):
        """The most probable class of each sample, as a label from ``classes_``."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    # -- internals ---------------------------------------------------------------------------

    def _validate(self, X, y, reset):
        X, y = validate_data(self, X, y, reset=reset, dtype=np.float32)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        return X, y

    def _build(self, n_features: int) -> None:
        seed = self.random_state if isinstance(self.random_state, int) else None
        self._rng = np.random.default_rng(seed)
        # The run settings, checked once as a config file's are; the parts are built as
        # `numlp train` builds them (registered activations and optimizers included).
        self.config_ = TrainConfig(
            hidden=tuple(self.hidden),
            activation=self.activation,
            dropout=self.dropout,
            optimizer=self.optimizer,
            lr=self.lr,
            weight_decay=self.weight_decay,
            label_smoothing=self.label_smoothing,
            schedule="constant",
            val_split=0.0,
            seed=int(self._rng.integers(2**31)),
        ).validate()
        self.model_ = build_model(self.config_, (n_features,), max(len(self.classes_), 2))
        self.optimizer_ = build_optimizer(self.config_, self.model_)
        self.history_ = []
        self.predictor_ = copy.deepcopy(self.model_).astype(np.float64)

    def _train(self, X, y, epochs: int):
        if len(self.classes_) == 1:  # nothing to learn: every prediction is the one class
            return self
        labels = np.searchsorted(self.classes_, y)
        history = self.model_.fit(
            X,
            labels,
            epochs=epochs,
            batch_size=min(self.batch_size, len(X)),
            optimizer=self.optimizer_,
            loss=build_loss(self.config_),
            seed=int(self._rng.integers(2**31)),
        )
        self.history_.extend(history.records)
        # Training runs in float32; predictions use a float64 copy so that a sample's
        # probabilities do not depend on which other samples share its batch.
        self.predictor_ = copy.deepcopy(self.model_).astype(np.float64)
        return self
