"""Training configuration: defaults, TOML round trip, validation."""

import pytest

from numlp.config import (
    TrainConfig,
    load_config,
    preset_description,
    preset_names,
    preset_path,
    to_toml,
)


def test_written_config_reads_back_identically(tmp_path):
    config = TrainConfig(hidden=(64, 32), dropout=0.3, batchnorm=True, optimizer="sgd", lr=0.05)
    path = tmp_path / "c.toml"
    path.write_text(to_toml(config))
    assert load_config(path) == config


def test_a_train_table_and_integer_floats_are_accepted(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nlr = 1\nhidden = [100]\n")
    config = load_config(path)
    assert config.lr == 1.0 and config.hidden == (100,)


@pytest.mark.parametrize(
    "text, message",
    [
        ("epoch = 3", "unknown keys \\['epoch'\\]"),
        ("epochs = 'ten'", "epochs must be a int"),
        ("hidden = 512", "must be a list"),
        ("lr = -1.0", "lr = -1.0 is invalid"),
        ("optimizer = 'rmsprop'", "choose one of sgd, adam, adamw"),
        ("epochs = [", "not valid TOML"),
        ("shift = -2.0", "shift must be a number >= 0"),
        ("scale = 1.5", "scale must be below 1"),
        ("elastic_alpha = 8.0\nelastic_sigma = 0.0", "elastic_sigma must be > 0"),
    ],
)
def test_bad_configs_name_the_key_and_the_problem(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_config(path)


def test_updated_ignores_none_and_validates():
    config = TrainConfig().updated(epochs=None, lr=0.5)
    assert config.epochs == TrainConfig().epochs and config.lr == 0.5
    with pytest.raises(ValueError, match="dropout"):
        TrainConfig().updated(dropout=1.5)


def test_the_fast_preset_is_the_default():
    assert load_config(preset_path("fast")) == TrainConfig()


def test_every_preset_loads_and_says_what_it_is_for():
    names = preset_names()
    assert {"fast", "quick99", "best", "frontier", "fashion", "kmnist"} <= set(names)
    for name in names:
        config = load_config(preset_path(name))
        assert config.validate() is config
        assert preset_description(name).startswith(name + ":")


def test_the_best_and_dataset_presets_augment_and_name_their_dataset():
    best = load_config(preset_path("best"))
    assert best.dataset == "mnist" and best.augment.active
    assert load_config(preset_path("fashion")).dataset == "fashion-mnist"
    assert load_config(preset_path("kmnist")).dataset == "kmnist"


def test_frontier_is_best_trained_twice_as_long_as_it_was_measured():
    # its figures come from `numlp train --preset best --epochs 60` runs
    best = load_config(preset_path("best"))
    assert load_config(preset_path("frontier")) == best.updated(epochs=60)


def test_an_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown preset 'huge'; choose one of .*best.*fast"):
        preset_path("huge")


def test_distortions_live_in_an_augment_table_and_older_flat_files_still_load(tmp_path):
    config = TrainConfig().updated(shift=2.0, elastic_alpha=8.0)
    text = to_toml(config)
    assert "\n[augment]" in text and "\nshift = 2.0" in text.split("[augment]")[1]
    path = tmp_path / "c.toml"
    path.write_text(text)
    assert load_config(path) == config
    # distortions at the top, as files written before the [augment] table have them
    path.write_text("epochs = 3\nshift = 2.0\nelastic_alpha = 8.0\n")
    assert load_config(path) == config.updated(epochs=3)
    path.write_text("[augment]\nshfit = 1.0\n")
    with pytest.raises(ValueError, match=r"unknown keys \['augment.shfit'\]"):
        load_config(path)


def test_every_setting_has_a_flag_with_its_default_in_the_help():
    from numlp.cli import build_parser
    from numlp.config import SETTINGS

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    flags = {a.dest: a for a in train._actions if a.option_strings}
    assert set(SETTINGS) <= set(flags)
    assert flags["lr"].option_strings == ["--lr"] and "(0.001)" in flags["lr"].help
    assert flags["hidden"].type("64, 32") == (64, 32) and "(512,256)" in flags["hidden"].help
    assert flags["elastic_alpha"].option_strings == ["--elastic-alpha"]
    assert "--no-batchnorm" in flags["batchnorm"].option_strings
    assert tuple(flags["optimizer"].choices) == ("sgd", "adam", "adamw")  # its registry
