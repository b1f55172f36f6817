"""The five seed notebooks as numlp configs (``examples/seeds/``): each trains for one epoch on a
slice of MNIST through ``numlp train``'s own path, and what each seed needed works: a Softmax
head, sigmoid outputs with BCE or MSE, no hidden layer, fixed-scale initialisers, no
shuffling, the test set watched per epoch, evaluate/predict on the saved model."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from numlp.cli import main
from numlp.config import load_config
from numlp.data.datasets import DataSource
from numlp.io import load_model
from numlp.run import Console, run_training

SEEDS = sorted((Path(__file__).resolve().parents[1] / "examples" / "seeds").glob("*.toml"))


def test_there_is_one_config_per_seed():
    assert [p.name[:3] for p in SEEDS] == ["000", "001", "002", "003", "004"]


@pytest.mark.slow
@pytest.mark.parametrize("path", SEEDS, ids=lambda p: p.name[:3])
def test_each_seed_config_trains_one_epoch(path, small_data, tmp_path, capsys):
    config = load_config(path).updated(dataset="kmnist", epochs=1)
    out = tmp_path / "run"
    stream = io.StringIO()
    summary = run_training(config, out, source=DataSource(small_data.parent),
                           console=Console(stream), threads=1)  # fmt: skip
    # every loss reports accuracy; seed 003's sigmoids start slowly (chance for ~2 full epochs)
    floor = 0.0 if config.loss == "mse" else 0.2
    assert summary["train_accuracy"] >= floor and summary["test_accuracy"] >= floor, summary
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert ("watched_test_accuracy" in record) == config.watch_test
    if config.watch_test:
        assert "test acc (watched)" in stream.getvalue()
    model, header = load_model(out / "model.npz")
    assert [layer["type"] for layer in header["model"]["layers"]][-1] == {
        "logits": "Dense",
        "softmax": "Softmax",
        "sigmoid": "Sigmoid",
    }[config.output]
    assert len(model.parameters()) == 2 * (len(config.hidden) + 1)
    assert header["preprocessing"]["scale"] == config.input_scale
    assert header["preprocessing"].get("shift", 0.0) == config.input_shift
    # evaluate and predict take the model as saved: its own inputs, loss and probabilities
    assert main(["evaluate", str(out / "model.npz"), "--data-dir", str(small_data.parent)]) == 0
    words = {"cross_entropy": "cross-entropy", "mse": "MSE", "bce": "binary cross-entropy"}
    shown = capsys.readouterr().out
    assert f"  {words[config.loss]} " in shown
    assert f"accuracy {summary['test_accuracy']:.2%}" in shown


def test_a_sigmoid_head_predicts_each_class_own_probability(small_data, tmp_path, capsys):
    config = load_config(SEEDS[2]).updated(dataset="kmnist", epochs=1)
    run_training(config, tmp_path / "run", source=DataSource(small_data.parent),
                 console=Console(io.StringIO()))  # fmt: skip
    model, _ = load_model(tmp_path / "run" / "model.npz")
    x = np.random.default_rng(0).random((5, 28, 28)).astype(np.float32)
    proba = model.predict_proba(x)
    np.testing.assert_allclose(proba, model.forward(x))  # the sigmoids as they are
    assert not np.allclose(proba.sum(axis=1), 1)
    np.save(tmp_path / "x.npy", (x * 255).astype(np.uint8))
    assert main(["predict", str(tmp_path / "run" / "model.npz"), str(tmp_path / "x.npy")]) == 0


def test_flattened_input_models_evaluate_and_predict_on_28x28_images(small_data, tmp_path, capsys):
    from numlp import Dense, ReLU, Sequential
    from numlp.io import save_model

    model = Sequential([Dense(784, 16), ReLU(), Dense(16, 10)], input_shape=(784,), seed=0)
    path = save_model(tmp_path / "flat.npz", model, class_names=list("0123456789"),
                      preprocessing={"scale": 1 / 255}, dataset="kmnist")  # fmt: skip
    assert main(["evaluate", str(path), "--data-dir", str(small_data.parent)]) == 0
    assert "accuracy" in capsys.readouterr().out
    np.save(tmp_path / "digit.npy", np.zeros((28, 28), dtype=np.uint8))
    assert main(["predict", str(path), str(tmp_path / "digit.npy")]) == 0


def test_no_shuffle_trains_in_file_order(small_data, tmp_path):
    from numlp import preprocess
    from numlp.data.datasets import load_dataset
    from numlp.parts import build_loss, build_model
    from numlp.train import Callback

    class Losses(Callback):
        def __init__(self):
            self.losses = []

        def on_batch_end(self, step, logs):
            self.losses.append(logs["loss"])

    config = load_config(SEEDS[4]).updated(dataset="kmnist", epochs=1, watch_test=False)
    data = load_dataset("kmnist", data_dir=small_data.parent)
    x = preprocess.apply(data.x_train[:64], preprocess.IMAGE_SCALING)
    model = build_model(config, x.shape[1:], 10)  # the same seeded start as the run's
    first = build_loss(config).forward(model.forward(x, head=False), data.y_train[:64])
    for shuffle in (False, True):
        seen = Losses()
        run = tmp_path / str(shuffle)
        run_training(config.updated(shuffle=shuffle), run, source=DataSource(small_data.parent),
                     console=Console(io.StringIO()), callbacks=[seen], threads=1)  # fmt: skip
        # the first step sees the first 64 images of the file only when not shuffled
        assert (seen.losses[0] == pytest.approx(first, rel=1e-5)) == (not shuffle)


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"loss": "mse"}, "label_smoothing does not apply to mse"),
        ({"loss": "bce", "output": "softmax", "label_smoothing": 0.0}, "does not go with"),
        ({"init": "normal:-1"}, "init = 'normal:-1' is invalid"),
        ({"bias_init": "gaussian"}, "bias_init = 'gaussian' is invalid"),
    ],
)
def test_settings_that_do_not_go_together_are_refused(settings, words):
    from numlp.config import TrainConfig

    with pytest.raises(ValueError, match=words):
        TrainConfig().updated(**settings)


def test_no_hidden_layer_from_the_command_line(small_data, tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--dataset", "kmnist", "--data-dir", str(small_data.parent), "--hidden", ""]
    argv += ["--epochs", "1", "--out", str(out), "--no-plots", "--quiet"]
    assert main(argv) == 0
    model, _ = load_model(out / "model.npz")
    assert [type(layer).__name__ for layer in model.layers] == ["Flatten", "Dense"]
