"""One way down: single runs, committees, distillation and `numlp ensemble` share one run
layer, with its claim on the run folder, its checks before anything is written, and one check
of every model reference. Each hostile case is a real process on a real folder."""

import ast
import inspect
import time
from pathlib import Path

import pytest
from conftest import finish, start

from numlp.committee import Committee
from numlp.config import TrainConfig
from numlp.model import Sequential
from numlp.run import default_run_dir

SOURCE = Path(__file__).resolve().parents[1] / "src" / "numlp"


def small(small_data, *extra):
    return ["--data-dir", small_data.parent, "--no-download", "--dataset", "kmnist",
            "--hidden", "16", "--no-plots", "--threads", "1", *extra]  # fmt: skip


def train(small_data, out, *extra):
    status, stdout, err = finish(start("train", *small(small_data, "--out", out, *extra)))
    assert status == 0, err
    return stdout


@pytest.fixture(scope="module")
def two_runs(small_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    for seed in (0, 1):
        train(small_data, folder / f"r{seed}", "--epochs", "1", "--seed", seed)
    return folder / "r0", folder / "r1"


def refused(process) -> str:
    status, stdout, err = finish(process)
    assert status == 2, (status, stdout, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.slow
def test_ensemble_into_a_live_run_is_refused_while_it_trains(small_data, two_runs, tmp_path):
    live = tmp_path / "live"
    # long enough to outlive both refusals; stopped by the test
    trainer = start("train", *small(small_data, "--out", live, "--epochs", "5000"))
    deadline = time.monotonic() + 60
    while not (live / "metrics.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the run has begun: its folder is claimed
    for extra in ((), ("--overwrite",)):
        err = refused(start("ensemble", *two_runs, "--out", live, *small(small_data)[:3],
                            *extra))  # fmt: skip
        assert "in use by another numlp run" in err
    trainer.terminate()
    finish(trainer)
    assert not (live / "model.npz").exists()  # the committee never landed in the live run


@pytest.mark.slow
def test_ensemble_over_a_finished_run_replaces_all_of_it_or_nothing(small_data, two_runs, tmp_path):
    single = tmp_path / "single"
    train(small_data, single, "--epochs", "1")
    before = {p.name: p.read_bytes() for p in single.iterdir() if p.is_file()}
    err = refused(start("ensemble", *two_runs, "--out", single, *small(small_data)[:3]))
    assert "already holds a run" in err
    err = refused(start("ensemble", *two_runs, "--out", single / "model.npz",
                        *small(small_data)[:3]))  # fmt: skip
    assert "is a run folder" in err
    assert {p.name: p.read_bytes() for p in single.iterdir() if p.is_file()} == before
    status, _, err = finish(start("ensemble", *two_runs, "--out", single, "--overwrite",
                                  *small(small_data)[:3]))  # fmt: skip
    assert status == 0, err
    assert sorted(p.name for p in single.iterdir()) == ["model.npz"]  # no single run's files
    err = refused(start("train", "--resume", single, "--epochs", "2", *small(small_data)[:3]))
    assert "config.toml" in err and (single / "model.npz").exists()


def test_a_teacher_trained_on_other_data_is_refused(small_data, two_runs, tmp_path):
    from numlp.io import load_model, save_model

    model, header = load_model(two_runs[0] / "model.npz")
    facts = {k: header[k] for k in ("class_names", "preprocessing")}
    save_model(tmp_path / "fashion.npz", model, dataset="fashion-mnist", **facts)
    err = refused(start("train", *small(small_data, "--out", tmp_path / "s", "--teacher",
                                        tmp_path / "fashion.npz")))  # fmt: skip
    assert "dataset 'fashion-mnist' differs from this run's 'kmnist'" in err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "extra, config, message",
    [
        (["--threads", "1e20"], "", "positive integer or 'auto'"),
        (["--threads", "100000000000000000000"], "", "positive integer or 'auto'"),
        (["--threads", "4096"], "", "at most the"),
        ([], "val_split = 0.9999999\n", "leaves an empty part"),
        (["--teacher", "nowhere.npz"], "", "no such model file"),
    ],
)
@pytest.mark.slow
def test_a_failed_start_leaves_nothing_behind(small_data, tmp_path, extra, config, message):
    args = small(small_data, "--out", tmp_path / "new", "--epochs", "1", *extra)
    if config:
        (tmp_path / "c.toml").write_text(config)
        args += ["--config", tmp_path / "c.toml"]
    assert message in refused(start("train", *args))
    assert sorted(p.name for p in tmp_path.iterdir()) == (["c.toml"] if config else [])


def test_a_failed_overwrite_keeps_the_run_it_would_have_replaced(small_data, tmp_path):
    run = tmp_path / "run"
    train(small_data, run, "--epochs", "1")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    (tmp_path / "c.toml").write_text("val_split = 0.9999999\n")
    refused(start("train", *small(small_data, "--out", run, "--overwrite", "--config",
                                  tmp_path / "c.toml")))  # fmt: skip
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_threads_from_the_environment_and_a_sweep_are_checked_the_same_way(small_data, tmp_path):
    args = [a for a in small(small_data, "--out", tmp_path / "r") if a not in ("--threads", "1")]
    process = start("train", *args, env={"NUMLP_THREADS": "1e20"})
    assert "positive integer or 'auto'" in refused(process)
    from numlp.sweep.driver import SweepSettings

    with pytest.raises(ValueError, match="positive integer or 'auto'"):
        SweepSettings(trials=1, threads=10**20).check()


def test_a_committee_is_trained_through_the_run_layer_and_named_like_a_run(small_data, tmp_path):
    out = tmp_path / "c"
    stdout = train(small_data, out, "--members", "2", "--epochs", "1")
    assert "committee of 2" in stdout
    assert sorted(p.name for p in (out / "members").iterdir()) == ["00-seed0", "01-seed1"]
    assert "members = 2" in (out / "config.toml").read_text()
    config = TrainConfig(members=3)
    first = default_run_dir(config)
    assert first.name.startswith("mnist-committee-")


def test_every_model_kind_has_one_protocol():
    assert inspect.signature(Committee.evaluate) == inspect.signature(Sequential.evaluate)
    from numlp import Dense

    single = Sequential([Dense(3, 2)], seed=0)
    committee = Committee([single, Sequential([Dense(3, 2)], seed=1)])
    for name in ("predict_proba", "predict", "evaluate", "describe", "summary", "members"):
        assert hasattr(committee, name) and hasattr(single, name), name
    assert single.members == (single,) and len(committee.members) == 2
    above_model = ("run", "ensemble", "report", "export", "serve", "sklearn", "cli", "sweep")
    checks = []
    for path in SOURCE.rglob("*.py"):
        if path.relative_to(SOURCE).parts[0].removesuffix(".py") not in above_model:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "isinstance":
                kinds = ast.unparse(node.args[1])
                if "Committee" in kinds or "Sequential" in kinds:
                    checks.append(f"{path.name}:{node.lineno} isinstance(..., {kinds})")
    assert not checks, checks


def test_loss_optimizer_and_schedule_names_are_spelled_in_their_registries_only():
    spelled = []
    for path in SOURCE.rglob("*.py"):
        if path.name in ("losses.py", "optim.py", "schedules.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in (
                "cross_entropy", "mse", "bce", "sgd", "adam", "adamw", "onecycle", "cosine"
            ):  # fmt: skip
                spelled.append(f"{path.relative_to(SOURCE)}:{node.lineno} {node.value!r}")
    # the defaults of a TrainConfig (the `fast` recipe) and of the scikit-learn estimator name
    # parts: that is where those names enter
    assert all(entry.startswith(("config.py", "sklearn.py")) for entry in spelled), spelled
