"""The numlp command: a real (small) training run, evaluate, predict, data, and its errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import train_argv

from numlp.cli import main
from numlp.config import load_config
from numlp.data.idx import write_idx


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, mnist_path):
    out = tmp_path_factory.mktemp("runs") / "small"
    code = main(train_argv(mnist_path, out, 64, 2, "--val-split", "0.1", "--no-plots"))
    assert code == 0
    return out


@pytest.mark.slow
def test_train_writes_model_metrics_and_a_config_that_reruns(run_dir):
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "checkpoint.npz",
        "config.toml",
        "metrics.jsonl",
        "model.npz",
    ]
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"} <= set(
        json.loads(lines[0])
    )
    config = load_config(run_dir / "config.toml")
    assert config.hidden == (64,) and config.epochs == 2


def test_train_prints_one_line_per_epoch_and_the_test_accuracy(mnist_path, tmp_path, capsys):
    code = main(train_argv(mnist_path, tmp_path / "r", 32, 1, "--no-plots"))
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert [line for line in out if line.startswith("epoch ")] == [out[1]]
    assert "val_acc" in out[1] and out[-1].startswith("test accuracy ")
    accuracy = float(out[-1].split()[2].rstrip("%"))
    assert accuracy > 90


def test_flags_override_the_config_file(mnist_path, tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text("hidden = [16]\nepochs = 5\nval_split = 0.0\n")
    main(
        [
            "train",
            "--config",
            str(config),
            "--epochs",
            "1",
            "--data-dir",
            str(mnist_path),
            "--out",
            str(tmp_path / "r"),
            "--no-download",
            "--no-plots",
        ]
    )
    out = capsys.readouterr().out
    assert out.count("epoch 1/1") == 1 and "val_acc" not in out
    assert load_config(tmp_path / "r" / "config.toml").hidden == (16,)


def test_evaluate_prints_accuracy_per_class_scores_and_confusion(run_dir, mnist_path, capsys):
    assert main(["evaluate", str(run_dir / "model.npz"), "--data-dir", str(mnist_path)]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "precision" in out and "confusion matrix" in out
    assert (
        main(["evaluate", str(run_dir / "model.npz"), "--data-dir", str(mnist_path), "--json"]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert np.array(report["confusion_matrix"]).sum() == 10000
    assert report["accuracy"] > 0.9


def test_predict_reads_npy_and_idx_files(run_dir, mnist_arrays_raw, tmp_path, capsys):
    x_test, y_test = mnist_arrays_raw[2], mnist_arrays_raw[3]
    np.save(tmp_path / "one.npy", x_test[0])
    write_idx(tmp_path / "some.idx", x_test[:20])
    model = str(run_dir / "model.npz")
    assert main(["predict", model, str(tmp_path / "one.npy"), "--top", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{tmp_path / 'one.npy'}: 7 (")  # one image: no [0] (issue 34)
    assert main(["predict", model, str(tmp_path / "some.idx"), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 20 and len(results[0]["top"]) == 3
    predicted = np.array([r["top"][0]["id"] for r in results])
    assert np.mean(predicted == y_test[:20]) >= 0.8
    assert all(sum(t["probability"] for t in r["top"]) <= 1 + 1e-6 for r in results)


def error_line(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["evaluate", "missing.npz"], "no such model file"),
        (["train", "--epochs", "0", "--no-download"], "epochs = 0 is invalid"),
        (["train", "--config", "nowhere.toml"], "cannot read config"),
        (
            ["train", "--data-dir", "/nonexistent", "--no-download", "--dataset", "kmnist"],
            "--data-dir /nonexistent does not exist",
        ),
        (
            ["train", "--data-dir", ".", "--no-download", "--dataset", "kmnist"],
            "were not found",
        ),
    ],
)
def test_user_errors_print_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("NUMLP_DATA", raising=False)
    assert main(argv) == 2
    line = error_line(capsys)
    assert line.startswith("numlp: error: ") and message in line


def test_predict_with_an_array_of_the_wrong_shape(run_dir, tmp_path, capsys):
    np.save(tmp_path / "bad.npy", np.zeros((3, 10, 10), dtype=np.uint8))
    assert main(["predict", str(run_dir / "model.npz"), str(tmp_path / "bad.npy")]) == 2
    assert "does not hold 28x28 images" in error_line(capsys)


def test_an_existing_run_is_not_overwritten_without_asking(run_dir, mnist_path, capsys):
    before = (run_dir / "model.npz").read_bytes()
    assert main(["train", "--out", str(run_dir), "--data-dir", str(mnist_path)]) == 2
    assert "--overwrite" in error_line(capsys)
    assert (run_dir / "model.npz").read_bytes() == before


def test_debug_shows_the_traceback():
    with pytest.raises(ValueError):
        main(["--debug", "train", "--epochs", "0"])


@pytest.mark.slow
def test_data_list_verify_and_import(mnist_path, mnist_arrays_raw, tmp_path, capsys):
    assert main(["data", "list", "--data-dir", str(mnist_path)]) == 0
    assert f"found in {mnist_path}" in capsys.readouterr().out
    assert main(["data", "verify", "mnist", "--data-dir", str(mnist_path)]) == 0
    assert "all four files verified" in capsys.readouterr().out
    npz = tmp_path / "mnist.npz"
    x_train, y_train, x_test, y_test = mnist_arrays_raw
    np.savez(npz, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    assert main(["data", "import", str(npz), "--out", str(tmp_path / "imported")]) == 0
    assert "identical to the official MNIST" in capsys.readouterr().out


def test_the_installed_command_runs_and_fails_cleanly(tmp_path):
    version = subprocess.run(
        [sys.executable, "-m", "numlp.cli", "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("numlp ")
    failed = subprocess.run(
        [sys.executable, "-m", "numlp.cli", "evaluate", str(tmp_path / "x.npz")],
        capture_output=True,
        text=True,
    )
    assert failed.returncode == 2
    assert failed.stderr.count("\n") == 1 and "Traceback" not in failed.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "numlp.cli", "train", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--hidden" in helped.stdout and "--val-split" in helped.stdout


def test_an_output_folder_that_cannot_be_written_is_refused_before_training(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["train", "--out", str(blocker / "run"), "--no-download"]) == 2
    line = error_line(capsys)
    assert "cannot create the run folder" in line and "a-file" in line
