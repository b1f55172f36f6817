"""A loss, an optimizer and a schedule written outside numlp, registered, then used with no
edit to numlp: from Python, from a config file, and in a saved model that `numlp evaluate`
scores with the registered loss. The loss passes a finite-difference gradient check."""

import io
import math

import numpy as np
import pytest

from numlp.config import TrainConfig, load_config
from numlp.data.datasets import DataSource
from numlp.gradcheck import check_loss
from numlp.io import load_model
from numlp.losses import LOSSES, Loss
from numlp.optim import OPTIMIZERS, Optimizer
from numlp.parts import build_loss, build_optimizer, loss_words, reported_loss
from numlp.run import Console, run_training
from numlp.schedules import SCHEDULES, Schedule


class SquaredHinge(Loss):
    """Multi-class squared hinge on logits ``(batch, classes)`` and class ids:
    ``mean over the batch of sum_j max(0, margin + z_j - z_y)**2`` over the wrong classes."""

    def __init__(self, margin: float = 1.0):
        self.margin = margin

    def forward(self, outputs, targets):
        rows = np.arange(len(outputs))
        gaps = np.maximum(0, self.margin + outputs - outputs[rows, targets][:, None])
        gaps[rows, targets] = 0
        self._cache = (gaps, rows, targets, outputs.dtype)
        return float(np.mean(np.sum(gaps**2, axis=1)))

    def backward(self):
        gaps, rows, targets, dtype = self._cache
        grad = 2 * gaps / len(gaps)
        grad[rows, targets] = -grad.sum(axis=1)
        return grad.astype(dtype)


class SignSGD(Optimizer):
    """Steps by the sign of the gradient: ``W -= lr * sign(g)``."""

    def _update(self, p, grad, state, scratch):
        np.sign(grad, out=scratch)
        scratch *= self.lr
        p.value -= scratch


class Halving(Schedule):
    """The rate halves after each half of the run."""

    def __init__(self, lr, total_steps):
        self.lr, self.total_steps = lr, total_steps

    def __call__(self, step):
        return self.lr * 0.5 ** (2 * step // self.total_steps)


@pytest.fixture(scope="module", autouse=True)
def registered():
    LOSSES.register("squared_hinge", SquaredHinge, words="squared hinge", outputs=("logits",))
    OPTIMIZERS.register("sign_sgd", SignSGD, settings=("lr", "weight_decay"))
    SCHEDULES.register("halving", Halving)
    yield
    for registry, name in ((LOSSES, "squared_hinge"), (OPTIMIZERS, "sign_sgd"),
                           (SCHEDULES, "halving")):  # fmt: skip
        registry._entries.pop(name)


def test_the_registered_loss_passes_the_gradient_check():
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(6, 4)), rng.integers(0, 4, size=6)
    result = check_loss(SquaredHinge(), logits, labels)
    assert result.ok, result.errors


def test_registered_parts_are_built_from_a_config_as_numlp_builds_its_own():
    config = TrainConfig(loss="squared_hinge", optimizer="sign_sgd", schedule="halving",
                         label_smoothing=0.0, lr=0.01).validate()  # fmt: skip
    assert isinstance(build_loss(config), SquaredHinge)
    from numlp import Dense, Sequential

    model = Sequential([Dense(3, 2)])
    optimizer = build_optimizer(config, model)
    assert isinstance(optimizer, SignSGD) and optimizer.lr == 0.01
    optimizer.plan_schedule(epochs=2, steps_per_epoch=5)  # the rate is given once, in lr
    rates = []
    for _ in range(10):
        for p in model.parameters():
            p.grad[...] = 1
        optimizer.step()
        rates.append(optimizer.lr)
    assert rates == [0.01] * 5 + [0.005] * 5


def test_settings_a_registered_part_does_not_take_are_refused_by_the_config():
    with pytest.raises(ValueError, match="label_smoothing does not apply to squared_hinge"):
        TrainConfig(loss="squared_hinge", label_smoothing=0.1).validate()
    with pytest.raises(ValueError, match="squared_hinge takes logits"):
        TrainConfig(loss="squared_hinge", output="softmax", label_smoothing=0.0).validate()
    with pytest.raises(ValueError, match="choose one of .*halving"):
        TrainConfig(schedule="no-such").validate()


def test_a_config_file_naming_registered_parts_trains_saves_and_reloads(small_data, tmp_path):
    path = tmp_path / "custom.toml"
    path.write_text(
        'dataset = "kmnist"\nhidden = [32]\nepochs = 2\nloss = "squared_hinge"\n'
        'optimizer = "sign_sgd"\nschedule = "halving"\nlr = 0.0005\nlabel_smoothing = 0.0\n'
    )
    config = load_config(path)
    shown = io.StringIO()
    summary = run_training(config, tmp_path / "run", source=DataSource(small_data.parent),
                           console=Console(shown), threads=1)  # fmt: skip
    assert summary["test_accuracy"] > 0.6  # 6,000 real digits, two epochs (chance: 0.1)
    assert "squared hinge" in shown.getvalue()
    history = summary["history"]
    assert math.isclose(history[-1]["lr"], 0.00025)  # the halving schedule's second half
    model, header = load_model(tmp_path / "run" / "model.npz")
    settings = header["training"]["config"]
    assert (settings["loss"], settings["optimizer"], settings["schedule"]) == (
        "squared_hinge", "sign_sgd", "halving")  # fmt: skip
    assert isinstance(reported_loss(settings), SquaredHinge)
    assert loss_words(settings["loss"]) == "squared hinge"
    # resuming builds the registered optimizer again and goes on from its checkpoint
    more = run_training(
        config.updated(epochs=3),
        tmp_path / "run",
        resume=True,
        threads=1,
        source=DataSource(small_data.parent),
        console=Console(io.StringIO()),
    )
    assert more["epochs"] == 3
