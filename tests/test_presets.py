"""Presets: each one loads, builds and trains a few steps; the CLI finds, shows and runs them."""

import math

import numpy as np
import pytest
from conftest import train_argv

from numlp.cli import main
from numlp.config import load_config, preset_names, preset_path
from numlp.losses import SoftmaxCrossEntropy
from numlp.parts import build_model, build_optimizer
from numlp.schedules import make_schedule


@pytest.mark.slow
@pytest.mark.parametrize("name", preset_names())
def test_each_preset_trains_a_few_steps_on_real_images(name, mnist_arrays):
    # Every preset's dataset has 28x28 images and 10 classes, so MNIST stands in for all.
    x_train, y_train = mnist_arrays[0][:1536], mnist_arrays[1][:1536]
    config = load_config(preset_path(name))
    model = build_model(config, (28, 28), 10)
    optimizer = build_optimizer(config, model)
    steps = 2 * math.ceil(1536 / config.batch_size)
    history = model.fit(
        x_train,
        y_train,
        epochs=2,
        batch_size=config.batch_size,
        optimizer=optimizer,
        loss=SoftmaxCrossEntropy(config.label_smoothing),
        schedule=make_schedule(config.schedule, config.lr, steps, min(steps // 4, 10)),
        seed=0,
        augment=config.augment if config.augment.active else None,
    )
    losses = history["loss"]
    assert all(np.isfinite(losses)) and losses[1] < losses[0]
    assert history["accuracy"][-1] > 0.3  # well above chance (0.1) after 24 small steps


def test_presets_lists_every_preset_with_its_purpose(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in preset_names():
        assert f"\n{name} " in "\n" + out
    assert "99" in out  # the best preset says what it reaches


def test_a_shown_preset_is_a_config_file_that_loads_back(capsys, tmp_path):
    assert main(["presets", "--show", "best"]) == 0
    path = tmp_path / "best.toml"
    path.write_text(capsys.readouterr().out)
    assert load_config(path) == load_config(preset_path("best"))


@pytest.mark.slow
def test_train_with_a_preset_and_overrides_records_both(mnist_path, tmp_path, capsys):
    out = tmp_path / "r"
    argv = train_argv(mnist_path, out, 32, 1, "--no-plots", "--val-split", "0.5")
    code = main([*argv, "--preset", "best"])
    text = capsys.readouterr().out
    assert code == 0
    assert "augmented (" in text.splitlines()[0]
    config = load_config(out / "config.toml")
    best = load_config(preset_path("best"))
    assert config.hidden == (32,) and config.epochs == 1 and config.val_split == 0.5
    assert config.augment == best.augment
    assert config.dropout == best.dropout and config.lr == best.lr


@pytest.mark.slow
def test_augmentation_flags_go_into_the_run_config(mnist_path, tmp_path, capsys):
    out = tmp_path / "r"
    argv = train_argv(mnist_path, out, 16, 1, "--no-plots", "--shift", "2", "--elastic-alpha", "8")
    assert main(argv) == 0
    config = load_config(out / "config.toml")
    augment = config.augment
    assert (augment.shift, augment.elastic_alpha, augment.rotation) == (2.0, 8.0, 0.0)
    assert "augmented (shift 2, elastic_alpha 8, elastic_sigma 4)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--preset", "huge"], "unknown preset 'huge'"),
        (["--preset", "best", "--config", "x.toml"], "give --preset or --config, not both"),
        (["--shift", "-1"], "shift must be a number >= 0"),
    ],
)
def test_bad_preset_use_is_one_line_and_exit_2(mnist_path, tmp_path, capsys, extra, message):
    code = main([*train_argv(mnist_path, tmp_path / "r", 16, 1, "--no-plots"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
