"""Run folders belong to one run: real `numlp train` processes racing for one folder, an
--overwrite that fails, a start that fails, bad labels found before training."""

import json
import os

import numpy as np
import pytest
from conftest import finish, start, train_argv

from numlp.cli import main
from numlp.config import load_config
from numlp.data.idx import read_idx, write_idx
from numlp.rundir import claim_run_dir


def hidden_of(run):
    config = {"hidden": list(load_config(run / "config.toml").hidden)}
    header = json.loads(np.load(run / "model.npz")["__header__"].tobytes())
    dense = [layer for layer in header["model"]["layers"] if layer["type"] == "Dense"]
    return config["hidden"], [layer["out_features"] for layer in dense[:-1]]


@pytest.mark.slow
def test_two_runs_started_together_never_share_a_folder(mnist_path, tmp_path):
    out = tmp_path / "run"
    first = start(*train_argv(mnist_path, out, 32, 2, "--no-plots"))
    second = start(*train_argv(mnist_path, out, 64, 2, "--no-plots"))
    results = [finish(first), finish(second)]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, _, err in results if code == 2).strip()
    assert loser.count("\n") == 0 and loser.startswith("numlp: error: ")
    assert "in use by another numlp run" in loser or "already holds a run" in loser
    config_hidden, model_hidden = hidden_of(out)
    assert config_hidden == model_hidden
    epochs = [
        json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()
    ]
    assert epochs == [1, 2]
    assert not (out / ".numlp.lock").exists()


@pytest.mark.slow
def test_a_folder_in_use_is_refused_even_with_overwrite(mnist_path, tmp_path):
    out = tmp_path / "run"
    with claim_run_dir(out):
        code, _, err = finish(start(*train_argv(mnist_path, out, 16, 1, "--overwrite")))
        assert code == 2
        assert err.strip() == (
            f"numlp: error: {out} is in use by another numlp run (process {os.getpid()}); "
            "wait for it to finish or choose another --out"
        )
        assert sorted(p.name for p in out.iterdir()) == [".numlp.lock"]
    code, _, err = finish(start(*train_argv(mnist_path, out, 16, 1, "--no-plots")))
    assert code == 0, err


@pytest.mark.slow
def test_an_overwrite_that_fails_on_data_leaves_the_old_run_whole(mnist_path, tmp_path):
    out = tmp_path / "run"
    assert finish(start(*train_argv(mnist_path, out, 16, 1, "--no-plots")))[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["train", "--data-dir", empty, "--hidden", 32, "--out", out, "--overwrite"]
    nowhere = {"XDG_CACHE_HOME": str(tmp_path / "empty-cache")}  # not the user's MNIST either
    code, _, err = finish(start(*argv, "--no-download", env=nowhere))
    assert code == 2 and "were not found" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # ...and the old run can still be continued
    code, _, err = finish(start("train", "--resume", out, "--epochs", 2, "--data-dir", mnist_path))
    assert code == 0, err


@pytest.mark.slow
def test_overwrite_replaces_the_whole_old_run(mnist_path, tmp_path):
    out = tmp_path / "run"
    assert finish(start(*train_argv(mnist_path, out, 16, 2)))[0] == 0
    assert (out / "curves.png").exists()
    code, _, err = finish(start(*train_argv(mnist_path, out, 24, 1, "--overwrite", "--no-plots")))
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.npz",
        "config.toml",
        "metrics.jsonl",
        "model.npz",
    ]
    assert hidden_of(out) == ([24], [24])
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


@pytest.mark.slow
def test_a_failed_start_leaves_no_run_folder_and_no_empty_cache(tmp_path):
    env = {
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "NUMLP_MIRRORS": "http://127.0.0.1:9/",  # nothing listens: every download fails
    }
    process = start("train", "--epochs", 1, cwd=tmp_path, env=env)
    code, _, err = finish(process)
    assert code == 2 and err.startswith("numlp: error: ") and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_an_out_that_names_a_file_is_refused_as_such(tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    assert main(["train", "--out", str(blocker), "--no-download"]) == 2
    line = capsys.readouterr().err.strip()
    assert line == f"numlp: error: {blocker} is a file, not a folder; give --out a folder name"
    assert blocker.read_text() == "mine"


def fake_kmnist(folder, test_label=3):
    """A small KMNIST-named data set whose content hashes numlp recorded (as after a download)."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (200, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 200).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (50, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.full(50, test_label, dtype=np.uint8),
    }
    folder.mkdir()
    hashes = {}
    for name, array in arrays.items():
        write_idx(folder / name, array)
        hashes[name] = read_idx(folder / name, with_sha256=True)[1]
    (folder / "numlp-sha256.json").write_text(json.dumps(hashes))
    return folder


def test_bad_test_labels_are_refused_before_the_first_step(tmp_path):
    data = fake_kmnist(tmp_path / "kmnist", test_label=12)
    out = tmp_path / "run"
    argv = ["train", "--dataset", "kmnist", "--data-dir", data, "--out", out, "--no-download"]
    code, stdout, err = finish(start(*argv, "--epochs", 50, "--hidden", 8))
    assert code == 2 and "epoch" not in stdout
    assert "kmnist test labels" in err and "class id 12 is outside [0, 10)" in err
    assert not out.exists()
    fake_kmnist(tmp_path / "good")
    code, _, err = finish(
        start(*argv[:4], tmp_path / "good", *argv[5:], "--epochs", 1, "--no-plots")
    )
    assert code == 0, err


@pytest.mark.slow
def test_resume_of_a_folder_in_use_is_refused(mnist_path, tmp_path):
    out = tmp_path / "run"
    assert finish(start(*train_argv(mnist_path, out, 16, 1, "--no-plots")))[0] == 0
    with claim_run_dir(out, resume=True):
        code, _, err = finish(start("train", "--resume", out, "--epochs", 2))
    assert code == 2 and "in use by another numlp run" in err
