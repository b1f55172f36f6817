"""The command line against hostile or careless input: every case is one line on stderr and
exit status 2 (or, for a closed pipe, a quiet exit), never a traceback, a hang or a huge
allocation."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import train_argv

from numlp import Dense, Flatten, ReLU, Sequential
from numlp.cli import main
from numlp.io import HEADER_KEY, save_model

pytest.importorskip("PIL")
from PIL import Image  # noqa: E402


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "model.npz"
    model = Sequential([Flatten(), Dense(784, 8), ReLU(), Dense(8, 10)], (28, 28), seed=0)
    return save_model(path, model, class_names=list("0123456789"), preprocessing={"scale": 1 / 255})


def numlp(*argv, timeout=60):
    done = subprocess.run(
        [sys.executable, "-m", "numlp", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done.returncode, done.stdout, done.stderr


def one_line_error(code, stderr) -> str:
    assert code == 2, stderr
    assert stderr.count("\n") == 1 and stderr.startswith("numlp: error: "), stderr
    return stderr.strip()


def with_header(path, out, **changes):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = {**json.loads(arrays[HEADER_KEY].tobytes()), **changes}
    arrays[HEADER_KEY] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(out, **arrays)
    return out


@pytest.mark.parametrize("command", ["predict", "evaluate", "export"])
def test_an_object_dtype_in_the_header_is_refused_by_every_command(model_file, tmp_path, command):
    bad = with_header(model_file, tmp_path / "bad.npz", dtype="object")
    extra = {"predict": [bad], "evaluate": ["--no-download"], "export": ["--onnx", "o.onnx"]}
    code, _, err = numlp(command, bad, *extra[command])
    assert "dtype 'object' in its header" in one_line_error(code, err)
    assert not (tmp_path / "o.onnx").exists()


def test_wrong_class_names_are_refused_before_predicting(model_file, tmp_path):
    bad = with_header(model_file, tmp_path / "bad.npz", class_names=list("abcdefg"))
    np.save(tmp_path / "x.npy", np.zeros((2, 28, 28), np.uint8))
    code, _, err = numlp("predict", bad, tmp_path / "x.npy")
    assert "names 7 classes but the model has 10" in one_line_error(code, err)


def test_a_npy_header_claiming_a_billion_images_is_refused_without_allocating(model_file, tmp_path):
    path = tmp_path / "liar.npy"
    np.save(path, np.zeros((2, 28, 28), np.uint8))
    raw = path.read_bytes().replace(b"(2, 28, 28)", b"(1000000000, 28, 28)", 1)
    path.write_bytes(raw)
    code, _, err = numlp("predict", model_file, path)
    assert "header claims shape (1000000000, 28, 28)" in one_line_error(code, err)


@pytest.mark.parametrize(
    "size, message",
    [((20000, 20000), "over the limit of 16.8 megapixels"), ((1, 1), "only 1x1 pixels")],
)
@pytest.mark.slow
def test_pictures_too_large_or_too_small_are_refused(model_file, tmp_path, size, message):
    path = tmp_path / "picture.png"
    Image.new("1", size, 1).save(path, optimize=True)  # a 20000x20000 bilevel PNG is ~50 kB
    code, _, err = numlp("predict", model_file, path)
    line = one_line_error(code, err)
    assert line.startswith(f"numlp: error: {path}: ") and message in line


def test_a_run_folder_stands_for_the_model_inside(model_file, tmp_path):
    # (issue 34: a run folder is taken everywhere a model is; it used to be refused)
    code, out, err = numlp("predict", model_file.parent, model_file, "--json")
    assert code == 2 and "Traceback" not in err  # the model file is no picture: one line
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = numlp("evaluate", empty, "--no-download")
    assert one_line_error(code, err) == (
        f"numlp: error: {empty} is a folder without a model.npz: is it a finished run?"
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--epochs", "1000000000000"], "epochs = 1000000000000 is invalid"),
        (["train", "--hidden", "1000000000"], "hidden = (1000000000,) is invalid"),
        (["data", "show", "mnist", "--count", "20000"], "--count must be from 1 to 400"),
        (["serve", "m.npz", "--port", "-1"], "no such model file"),
    ],
)
def test_values_out_of_any_sensible_range_are_refused(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_a_config_that_is_not_utf8_is_named(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_bytes("hidden = [16]\n# caf\u00e9\n".encode("latin-1"))
    assert main(["train", "--config", str(config)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"numlp: error: config {config} is not UTF-8 text; save it as UTF-8 TOML"
    )


@pytest.mark.slow
def test_a_truncated_checkpoint_on_resume_says_what_to_do(mnist_path, tmp_path):
    out = tmp_path / "run"
    assert main(train_argv(mnist_path, out, 8, 1, "--no-plots")) == 0
    checkpoint = out / "checkpoint.npz"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    code, _, err = numlp("train", "--resume", out, "--epochs", 2, "--data-dir", mnist_path)
    line = one_line_error(code, err)
    assert f"{checkpoint}: not a readable .npz checkpoint file, damaged or truncated" in line
    assert "the run cannot continue from it" in line and "--overwrite" in line


def test_a_reader_that_closes_the_pipe_early_is_not_an_error(model_file, tmp_path):
    np.save(tmp_path / "many.npy", np.zeros((20000, 28, 28), np.uint8))
    process = subprocess.Popen(
        [sys.executable, "-m", "numlp", "predict", str(model_file), str(tmp_path / "many.npy")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    first = process.stdout.readline()  # `| head -1`
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) == 0 and first.startswith(str(tmp_path).encode())
    assert err == ""


def test_train_and_evaluate_name_their_losses_so_the_figures_agree(mnist_path, tmp_path, capsys):
    assert main(train_argv(mnist_path, tmp_path / "run", 16, 1, "--no-plots")) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert "training loss with label smoothing 0.1" in last
    cross_entropy = last.split("cross-entropy ")[1].split(",")[0]
    evaluate = ["evaluate", str(tmp_path / "run" / "model.npz"), "--data-dir", str(mnist_path)]
    assert main(evaluate) == 0
    assert f"cross-entropy {cross_entropy}" in capsys.readouterr().out


@pytest.mark.slow
def test_a_metrics_file_with_a_line_that_is_not_a_record_is_named(mnist_path, tmp_path):
    out = tmp_path / "run"
    assert main(train_argv(mnist_path, out, 8, 1, "--no-plots")) == 0
    with open(out / "metrics.jsonl", "a") as f:
        f.write("5\n")
    code, _, err = numlp("report", out, "--data-dir", mnist_path)
    assert "line 2 is not a JSON object of metrics" in one_line_error(code, err)
