"""The everyday path, as a new user walks it: scoring with the test files alone, a model that
remembers (as a checked hint) where its data came from, run folders taken wherever a model is,
and runs/latest naming the newest run."""

import shutil

import pytest
from conftest import finish, start


@pytest.mark.slow
def test_evaluate_needs_only_the_test_files(small_data, tmp_path):
    run = tmp_path / "run"
    status, _, err = finish(start("train", "--data-dir", small_data.parent, "--dataset", "kmnist",
                                  "--hidden", "16", "--epochs", "1", "--out", run, "--no-plots",
                                  "--no-download"))  # fmt: skip
    assert status == 0, err
    tests_only = tmp_path / "tests-only" / "kmnist"
    tests_only.mkdir(parents=True)
    for path in small_data.iterdir():
        if path.name.startswith("t10k") or path.name.startswith("numlp"):
            shutil.copy(path, tests_only / path.name)
    status, out, err = finish(start("evaluate", run, "--data-dir", tests_only.parent,
                                    "--no-download"))  # fmt: skip
    assert status == 0, err
    assert "test set: 1,000 images" in out


@pytest.mark.slow
def test_a_model_looks_again_where_its_data_were_found_and_checks_them(
    small_data, tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    data = tmp_path / "my-data"
    shutil.copytree(small_data.parent, data)
    run = tmp_path / "run"
    status, _, err = finish(start("train", "--data-dir", data, "--dataset", "kmnist", "--hidden",
                                  "16", "--epochs", "1", "--out", run, "--no-plots",
                                  "--no-download"))  # fmt: skip
    assert status == 0, err
    status, out, err = finish(start("evaluate", run, "--no-download"))  # no --data-dir
    assert status == 0 and "1,000 images" in out, err
    (data / "kmnist" / "t10k-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01\0\0\0\0")
    status, _, err = finish(start("evaluate", run, "--no-download"))  # a hint, not trusted
    assert status == 2 and "t10k-labels" in err


@pytest.mark.slow
@pytest.mark.parametrize("command", ["evaluate", "predict", "export"])
def test_runs_latest_names_the_newest_run_and_every_command_takes_it(small_data, tmp_path, command):
    argv = ["train", "--data-dir", small_data.parent, "--dataset", "kmnist", "--hidden", "16",
            "--epochs", "1", "--no-plots", "--no-download"]  # fmt: skip
    for _ in range(2):
        status, out, err = finish(start(*argv, cwd=tmp_path))
        assert status == 0, err
    runs = sorted(p for p in (tmp_path / "runs").iterdir() if p.name != "latest")
    assert len(runs) == 2 and (tmp_path / "runs" / "latest").resolve() == runs[-1].resolve()
    extra = {
        "evaluate": ["--data-dir", small_data.parent, "--no-download"],
        "predict": [small_data / "t10k-images-idx3-ubyte"],
        "export": ["--onnx", tmp_path / "m.onnx"],
    }[command]
    if command == "export":
        pytest.importorskip("onnx")
    status, out, err = finish(start(command, "runs/latest", *extra, cwd=tmp_path))
    assert status == 0, err


def small_run(small_data, out, *extra):
    argv = ["train", "--data-dir", small_data.parent, "--dataset", "kmnist", "--hidden", "16",
            "--no-plots", "--no-download", "--threads", "1", "--out", out, *extra]  # fmt: skip
    status, stdout, err = finish(start(*argv))
    assert status == 0, err
    return stdout


@pytest.mark.slow
def test_the_best_epoch_on_validation_is_kept_and_patience_stops_early(small_data, tmp_path):
    import json

    from numlp.io import load_model

    flags = ["--optimizer", "sgd", "--lr", "0.3", "--schedule", "constant"]
    out = small_run(small_data, tmp_path / "r", "--epochs", "12", *flags, "--keep-best",
                    "--patience", "2")  # fmt: skip
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").open()]
    val = [r["val_accuracy"] for r in records]
    best = val.index(max(val)) + 1
    _, header = load_model(tmp_path / "r")
    training = header["training"]
    assert training["kept_epoch"] == best and training["val_accuracy"] == max(val)
    assert len(records) == training["epochs"] and len(records) <= min(12, best + 2)
    assert not (tmp_path / "r" / "best.npz").exists()
    if best != len(records):
        assert f"(kept epoch {best}, the best on validation)" in out


@pytest.mark.slow
def test_training_longer_says_how_the_schedule_goes_on(small_data, tmp_path):
    small_run(small_data, tmp_path / "r", "--epochs", "2")
    status, out, err = finish(start("train", "--resume", tmp_path / "r", "--epochs", "4",
                                    "--data-dir", small_data.parent, "--no-download",
                                    "--no-plots"))  # fmt: skip
    assert status == 0, err
    first = out.splitlines()[0]
    assert "the cosine schedule is planned again over 4 epochs: lr 0.0005 at the next step" in first
    status, _, err = finish(start("train", "--resume", tmp_path / "nothere"))
    assert (
        status == 2 and err.strip() == f"numlp: error: --resume {tmp_path / 'nothere'}: no such run"
    )


@pytest.mark.slow
def test_the_figures_agree_between_the_command_line_and_the_report(small_data, tmp_path):
    out = small_run(small_data, tmp_path / "r", "--epochs", "1", "--label-smoothing", "0.0339577")
    last = out.strip().splitlines()[-1]
    assert len(last) < 190 + len(str(tmp_path)) - 40 and "label smoothing 0.034" in last
    status, _, err = finish(start("report", tmp_path / "r", "--data-dir", small_data.parent))
    if status != 0:
        pytest.skip(f"report needs matplotlib: {err}")
    page = (tmp_path / "r" / "report.html").read_text()
    assert "test cross-entropy (as numlp evaluate reports it)" in page
    accuracy = last.split("test accuracy ")[1].split("%")[0]
    assert f"<td>{accuracy}%</td>" in page  # percentages, as printed


def test_models_save_themselves_and_load_returns_the_model_with_its_header(tmp_path):
    import numpy as np

    import numlp

    model = numlp.Sequential([numlp.Dense(4, 3)], seed=0)
    assert model.save(tmp_path / "m.npz", class_names=["a", "b", "c"]) == tmp_path / "m.npz"
    loaded = numlp.load(tmp_path / "m.npz")
    assert loaded.header["class_names"] == ["a", "b", "c"]
    x = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))
    committee = numlp.Committee([model, numlp.Sequential([numlp.Dense(4, 3)], seed=1)])
    committee.save(tmp_path / "c.npz")
    assert len(numlp.load(tmp_path / "c.npz").members) == 2
