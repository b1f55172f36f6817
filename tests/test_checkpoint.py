"""Checkpoints and exact resume: in-process, with a real SIGINT, and divergence."""

import os
import signal

import numpy as np
import pytest
from conftest import InterruptAt

from numlp import SGD, Callback, Dense, Dropout, ReLU, Sequential, TrainingDiverged
from numlp.checkpoint import Checkpoint, load_checkpoint
from numlp.schedules import Schedule, make_schedule


def blobs(n=600, seed=0):
    r = np.random.default_rng(seed)
    centres = r.standard_normal((4, 6)) * 2
    y = r.integers(0, 4, n)
    return (centres[y] + r.standard_normal((n, 6))).astype(np.float32), y


def setup(seed=3):
    model = Sequential([Dense(6, 32), ReLU(), Dropout(0.3), Dense(32, 4)], seed=seed)
    optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    return model, optimizer


FIT = dict(epochs=4, batch_size=32, validation_split=0.2, seed=7)


def schedule():
    return make_schedule("cosine", 0.05, total_steps=4 * 15, warmup_steps=5)


def reference_weights():
    x, y = blobs()
    model, optimizer = setup()
    history = model.fit(x, y, optimizer=optimizer, schedule=schedule(), **FIT)
    return model.state_dict(), history


def resume_from(path):
    x, y = blobs()
    model, arrays, header = load_checkpoint(path)
    optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    optimizer.load_state_dict(arrays)
    history = model.fit(
        x, y, optimizer=optimizer, schedule=schedule(), resume=header["state"], **FIT
    )
    return model.state_dict(), history


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


class StopAfter(Callback):
    def __init__(self, epochs):
        self.epochs = epochs

    def on_train_begin(self, context):
        self.model = context.model

    def on_epoch_end(self, epoch, logs):
        if epoch == self.epochs:
            self.model.stop_training = True


def test_resume_at_an_epoch_boundary_is_bit_identical(tmp_path):
    expected, full = reference_weights()
    x, y = blobs()
    model, optimizer = setup()
    path = tmp_path / "checkpoint.npz"
    model.fit(
        x,
        y,
        optimizer=optimizer,
        schedule=schedule(),
        callbacks=[Checkpoint(path), StopAfter(2)],
        **FIT,
    )
    weights, history = resume_from(path)
    assert_same_weights(weights, expected)
    assert history["epoch"] == [1, 2, 3, 4]
    assert history["val_loss"] == full["val_loss"]


@pytest.mark.parametrize("step", [1, 22, 30, 59])
def test_ctrl_c_mid_epoch_saves_and_resumes_bit_identically(tmp_path, step):
    expected, _ = reference_weights()
    x, y = blobs()
    model, optimizer = setup()
    path = tmp_path / "checkpoint.npz"
    with pytest.raises(KeyboardInterrupt):
        model.fit(
            x,
            y,
            optimizer=optimizer,
            schedule=schedule(),
            callbacks=[Checkpoint(path), InterruptAt(step)],
            **FIT,
        )
    state = load_checkpoint(path)[2]["state"]
    assert state["optimizer_steps"] == step
    # 15 batches per epoch; the epoch's end (validation, history) follows its last batch
    completed = (step - 1) // 15
    assert (state["epoch"], state["batch"]) == (completed, step - 15 * completed)
    weights, _ = resume_from(path)
    assert_same_weights(weights, expected)


def test_the_signal_handler_is_restored_after_fit():
    before = signal.getsignal(signal.SIGINT)
    x, y = blobs(n=64)
    setup()[0].fit(x, y, epochs=1)
    assert signal.getsignal(signal.SIGINT) is before


class Explode(Schedule):
    """A learning rate that turns absurd after ``after`` steps."""

    def __init__(self, after):
        self.after = after

    def __call__(self, step):
        return 0.05 if step < self.after else 1e32


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    x, y = blobs()
    model, optimizer = setup()
    path = tmp_path / "checkpoint.npz"
    with pytest.raises(TrainingDiverged, match="lower learning rate|NaN or Inf"):
        with np.errstate(all="ignore"):
            model.fit(
                x,
                y,
                optimizer=optimizer,
                schedule=Explode(after=20),
                callbacks=[Checkpoint(path)],
                **FIT,
            )
    good, _, header = load_checkpoint(path)  # loading refuses NaN weights, so these are finite
    assert header["state"]["epoch"] == 1
    for value in good.state_dict().values():
        assert np.all(np.isfinite(value))


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    x, y = blobs()
    model, optimizer = setup()
    path = tmp_path / "checkpoint.npz"
    model.fit(x, y, optimizer=optimizer, callbacks=[Checkpoint(path), StopAfter(1)], **FIT)
    before = path.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        model.fit(x, y, optimizer=optimizer, callbacks=[Checkpoint(path)], **FIT)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]


def test_an_exploding_gradient_stops_before_the_step_with_advice():
    x, y = blobs(n=64)
    x[:8] *= 1e9  # a few absurd inputs: a gradient far beyond any healthy one
    model, optimizer = setup()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    with pytest.raises(TrainingDiverged, match="gradient norm exploded.*lower learning rate"):
        model.fit(x, y, optimizer=optimizer, epochs=1, batch_size=64, shuffle=False)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
