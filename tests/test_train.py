"""The fit loop: History, validation, callbacks, schedules, determinism, divergence."""

import io

import numpy as np
import pytest

from numlp import (
    SGD,
    Adam,
    Callback,
    Dense,
    Dropout,
    EarlyStopping,
    ReLU,
    Sequential,
    TrainingDiverged,
)
from numlp.schedules import make_schedule
from numlp.train import split_validation

rng = np.random.default_rng(5)


def blobs(n=300, classes=3, features=5, seed=0):
    r = np.random.default_rng(seed)
    centres = r.standard_normal((classes, features)) * 3
    y = r.integers(0, classes, n)
    return (centres[y] + r.standard_normal((n, features))).astype(np.float32), y


def small_model(seed=0, dropout=0.0):
    return Sequential([Dense(5, 16), ReLU(), Dropout(dropout), Dense(16, 3)], seed=seed)


def test_history_has_one_record_per_epoch_with_every_metric():
    x, y = blobs()
    model = small_model()
    history = model.fit(
        x,
        y,
        epochs=4,
        batch_size=16,
        validation_split=0.2,
        seed=0,
        optimizer=Adam(model.parameters(), lr=0.01),
    )
    assert len(history) == 4
    assert list(history.history) == [
        "epoch",
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "lr",
        "seconds",
        "threads",  # the BLAS threads fit chose for the run (threads="auto" by default)
    ]
    assert history["epoch"] == [1, 2, 3, 4]
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_accuracy"][-1] > 0.9


def test_validation_split_is_disjoint_and_covers_the_data():
    x = np.arange(100, dtype=np.float32)[:, None]
    y = np.arange(100)
    (xt, yt), (xv, yv) = split_validation(x, y, 0.2, np.random.default_rng(0))
    assert len(xv) == 20 and len(xt) == 80
    assert sorted(np.concatenate([yt, yv]).tolist()) == list(range(100))


def test_same_seed_gives_bit_identical_weights_and_another_seed_does_not():
    x, y = blobs()

    def trained(seed):
        model = small_model(seed=seed, dropout=0.2)
        model.fit(x, y, epochs=3, batch_size=16, seed=seed)
        return model.state_dict()

    a, b, c = trained(1), trained(1), trained(2)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["layers.0.W"], c["layers.0.W"])


def test_schedule_sets_the_learning_rate_of_every_step():
    x, y = blobs(n=64)
    model = small_model()
    seen = []

    class Spy(Callback):
        def on_train_begin(self, context):
            self.optimizer = context.optimizer

        def on_batch_end(self, step, logs):
            seen.append(self.optimizer.lr)

    schedule = make_schedule("cosine", 0.1, total_steps=8, warmup_steps=2)
    model.fit(
        x,
        y,
        epochs=2,
        batch_size=16,
        optimizer=SGD(model.parameters(), lr=0.1),
        schedule=schedule,
        callbacks=[Spy()],
        seed=0,
    )
    assert seen == pytest.approx([schedule(s) for s in range(8)])


def test_early_stopping_stops_and_restores_the_best_weights():
    x, y = blobs(n=200)
    model = small_model()
    states = []

    class Keep(Callback):
        def on_epoch_end(self, epoch, logs):
            states.append({k: v.copy() for k, v in model.state_dict().items()})

    stopper = EarlyStopping(monitor="val_loss", patience=2)
    # An enormous learning rate makes validation loss worse after the first epochs.
    history = model.fit(
        x,
        y,
        epochs=50,
        batch_size=8,
        validation_split=0.3,
        seed=0,
        optimizer=SGD(model.parameters(), lr=0.6, momentum=0.9),
        callbacks=[Keep(), stopper],
    )
    assert len(history) < 50
    best = stopper.best_epoch
    assert history["val_loss"][best - 1] == min(history["val_loss"])
    np.testing.assert_array_equal(model.state_dict()["layers.0.W"], states[best - 1]["layers.0.W"])


def test_early_stopping_without_validation_data_says_what_to_do():
    x, y = blobs(n=50)
    with pytest.raises(ValueError, match="give validation data"):
        small_model().fit(x, y, epochs=2, callbacks=[EarlyStopping()])


def test_divergence_stops_before_the_bad_step_is_applied():
    x, y = blobs(n=64)
    model = small_model()
    # The first step throws the weights to ~1e30; the next loss overflows and must stop training.
    with pytest.raises(TrainingDiverged, match="lower learning rate"):
        with np.errstate(all="ignore"):
            model.fit(x, y, epochs=3, batch_size=32, optimizer=SGD(model.parameters(), lr=1e30))
    for value in model.state_dict().values():
        assert np.all(np.isfinite(value))


def test_weight_decay_penalty_is_part_of_the_reported_loss():
    x, y = blobs(n=64)
    model = small_model()
    optimizer = SGD(model.parameters(), lr=1e-9, weight_decay=10.0)
    history = model.fit(x, y, epochs=1, batch_size=64, optimizer=optimizer, shuffle=False)
    data_loss = model.evaluate(x, y)["loss"]
    assert history["loss"][0] == pytest.approx(data_loss + optimizer.penalty(), rel=1e-4)


def test_verbose_prints_one_line_per_epoch(capsys):
    x, y = blobs(n=64)
    small_model().fit(x, y, epochs=3, verbose=True, validation_split=0.25)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("epoch 1/3") and "val_acc" in lines[0]


def test_optimizer_for_another_model_is_refused():
    x, y = blobs(n=16)
    other = small_model()
    with pytest.raises(ValueError, match="other parameters"):
        small_model().fit(x, y, optimizer=Adam(other.parameters()))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"validation_split": 1.5}, "validation_split"),
        ({"validation_split": 0.1, "validation_data": (np.zeros((2, 5)), [0, 1])}, "not both"),
    ],
)
def test_bad_fit_arguments_are_refused(kwargs, message):
    x, y = blobs(n=16)
    with pytest.raises(ValueError, match=message):
        small_model().fit(x, y, **kwargs)


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="10 samples but its labels have 9"):
        small_model().fit(np.zeros((10, 5)), np.zeros(9, dtype=int))


def test_epoch_logger_writes_to_a_given_stream():
    from numlp.train import EpochLogger

    x, y = blobs(n=32)
    stream = io.StringIO()
    small_model().fit(x, y, epochs=2, callbacks=[EpochLogger(stream)])
    assert stream.getvalue().count("\n") == 2
