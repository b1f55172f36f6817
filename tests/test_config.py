"""Training configuration: defaults, TOML round trip, validation."""

import pytest

from numlp.config import TrainConfig, load_config, to_toml


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
