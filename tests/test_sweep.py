"""``numlp sweep``: search spaces, trials that are run folders, the study shared by local
workers (SQLite) and by separate processes through a real PostgreSQL server, workers killed
with SIGKILL, Ctrl-C and --resume, ``sweep show``, and bad input.

The trials train on a slice of the real MNIST files (``small_data``, see conftest) for a few
epochs, so each takes a second or two.
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import optuna  # the dev extra brings it: without it this module fails to collect, as it should
import pytest
from conftest import finish, start
from postgres_server import postgres_bin, postgres_server

from numlp.cli import main
from numlp.config import load_config, preset_path
from numlp.sweep import (
    SpaceError,
    load_space,
    open_sweep,
    parse_space,
    run_sweep,
    show,
)

pytestmark = pytest.mark.slow  # servers, Chromium, PostgreSQL, benchmarks or long training

SPACE = """
dataset = "kmnist"
hidden = [48]
epochs = 2
lr = {log = [3e-4, 3e-3]}
dropout = [0.0, 0.2]
batch_size = {choice = [64, 128]}
"""


# Trials long enough (about a second) that a worker started a moment later still gets some, and
# that a worker killed "mid-trial" is killed in training.
LONGER = SPACE.replace("epochs = 2", "epochs = 10")


def space_file(tmp_path, text=SPACE) -> Path:
    path = tmp_path / "space.toml"
    path.write_text(text)
    return path


def trials_of(study):
    return study.get_trials(deepcopy=False)


def counted(study):
    """Trials that count toward the budget: all but the lost (worker gone) and the surplus."""
    return [t for t in trials_of(study) if t.user_attrs.get("outcome")]


def running_trial(study_source, pid: int | None = None, timeout=120) -> tuple[int, int]:
    """Wait until a trial of the study runs (in process ``pid``, if given): its number and
    its worker's process id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            study = study_source()
        except (KeyError, ValueError):  # not created yet
            study = None
        for t in trials_of(study) if study else []:
            worker = int(t.user_attrs.get("worker", ":0").rsplit(":", 1)[1])
            if t.state.name == "RUNNING" and worker and pid in (None, worker):
                return t.number, worker
        time.sleep(0.05)
    raise AssertionError(f"no trial ran in {timeout} s")


# --- the search space -----------------------------------------------------------------------


def test_space_fixes_plain_values_and_searches_ranges_choices_and_logs():
    text = SPACE.replace("hidden = [48]\n", "").replace("epochs = 2\n", "")
    text += 'hidden = {choice = ["64,32", [128]]}\noptimizer = ["adamw", "sgd"]\n'
    text += "epochs = {range = [2, 6], step = 2}\n[augment]\nshift = [0, 2]\n"
    space = parse_space(text)
    assert space.fixed == {"dataset": "kmnist"}
    kinds = {name: (p.kind, p.log) for name, p in space.params.items()}
    assert kinds == {
        "lr": ("float", True),
        "dropout": ("float", False),
        "batch_size": ("choice", False),
        "hidden": ("choice", False),
        "optimizer": ("choice", False),
        "epochs": ("int", False),
        "shift": ("float", False),
    }
    assert space.params["hidden"].choices == ("64,32", "128")
    trial = optuna.trial.FixedTrial(
        {
            "lr": 1e-3,
            "dropout": 0.1,
            "batch_size": 64,
            "hidden": "64,32",
            "optimizer": "sgd",
            "epochs": 4,
            "shift": 1.5,
        }
    )
    config = space.config(space.suggest(trial))
    assert config.hidden == (64, 32) and config.optimizer == "sgd" and config.epochs == 4
    assert config.augment.shift == 1.5 and config.dataset == "kmnist" and config.lr == 1e-3


def test_space_starts_from_the_base_configuration():
    best = load_config(preset_path("best"))
    space = parse_space("lr = {log = [1e-4, 1e-2]}", base=best)
    config = space.config({"lr": 2e-3})
    assert config.lr == 2e-3 and config.hidden == best.hidden and config.augment == best.augment


@pytest.mark.parametrize(
    "text, words",
    [
        ("lrr = [0.1, 0.2]", "unknown settings ['lrr']"),
        ("[augment]\nshiift = [0, 1]", "augment.shiift"),
        ("lr = [0.1, 0.1]", "empty range"),
        ("lr = {log = [0.0, 0.1]}", "log range needs bounds above 0"),
        ("lr = {log = [-1e-3, 0.1]}", "log range needs bounds above 0"),
        ("dropout = [0.0, 1.5]", "dropout = 1.5 is invalid"),
        ("batch_size = [16.5, 64]", "whole numbers"),
        ("batchnorm = [0, 1]", "search it with choice"),
        ("lr = {choice = []}", "non-empty list"),
        ("lr = {log = [1e-4, 1e-2], choice = [1e-3]}", "exactly one of"),
        ("epochs = 3", "searches nothing"),
        ("val_split = 0.0\nlr = [1e-4, 1e-3]", "val_split must be above 0"),
        ("lr = [1e-4", "not valid TOML"),
        ('optimizer = ["adamw", "nadam"]', "optimizer = 'nadam' is invalid"),
    ],
)
def test_bad_spaces_are_refused_with_the_key_and_the_fix(text, words):
    with pytest.raises(SpaceError) as caught:
        parse_space(text, where="space.toml")
    message = str(caught.value)
    assert words in message and message.startswith("space.toml") and "\n" not in message


@pytest.mark.parametrize(
    "text, extra, words",
    [
        ("lrr = [0.1, 0.2]", [], "unknown settings"),
        ("lr = [0.1, 0.1]", [], "empty range"),
        ("lr = {log = [0, 1e-3]}", [], "log range needs bounds above 0"),
        (
            SPACE,
            ["--storage", "postgresql://numlp:secret@127.0.0.1:9/none", "--study", "s"],
            "cannot open the study storage postgresql://numlp:***@127.0.0.1:9/none",
        ),
        (
            SPACE,
            ["--storage", "mysql://numlp:secret@127.0.0.1:9/none", "--study", "s"],
            "no database driver for 'mysql' URLs is installed; numlp's sweeps run on PostgreSQL",
        ),
        (SPACE, ["--workers", "0"], "--workers must be from 1"),
        (SPACE, ["--storage", "postgresql://127.0.0.1:9/none"], "needs --study NAME"),
    ],
)
def test_bad_sweeps_say_one_line_exit_2_and_write_nothing(
    tmp_path, capsys, small_data, text, extra, words
):
    out = tmp_path / "sweep"
    argv = ["sweep", space_file(tmp_path, text), "--trials", 2, "--out", out]
    code = main([*map(str, argv), "--data-dir", str(small_data.parent), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("numlp: error: ") and "\n" not in err, err
    assert words in err and "secret" not in err
    assert not out.exists()


def test_show_refuses_what_is_no_sweep(tmp_path, capsys):
    assert main(["sweep", "show", str(tmp_path)]) == 2
    assert "holds no sweep" in capsys.readouterr().err
    url = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["sweep", "show", "--storage", url, "--study", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no study 'nope'" in err and "\n" not in err


# --- trials and the embedded study ----------------------------------------------------------


def test_python_api_runs_trials_as_run_folders_that_never_score_test(tmp_path, small_data):
    space = load_space(space_file(tmp_path))
    out = tmp_path / "sweep"
    study = run_sweep(space, trials=3, out=out, data_dir=small_data.parent, stream=io.StringIO())
    assert [t.state.name for t in trials_of(study)] == ["COMPLETE"] * 3
    for trial in trials_of(study):
        run = Path(trial.user_attrs["run"])
        assert run == out / "trials" / f"{trial.number:05d}"
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert trial.value == records[-1]["val_accuracy"]
        assert trial.intermediate_values == {r["epoch"]: r["val_accuracy"] for r in records}
        header = json.loads(np.load(run / "model.npz")["__header__"].tobytes())
        assert "test_accuracy" not in header["training"]  # the test set is never scored
        assert load_config(run / "config.toml").lr == trial.params["lr"]
    assert sorted(p.name for p in out.iterdir()) == [
        "base.toml",
        "space.toml",
        "study.db",
        "sweep.json",
        "trials",
    ]


def test_two_local_workers_share_the_budget_exactly(tmp_path, small_data):
    out = tmp_path / "sweep"
    argv = ["sweep", space_file(tmp_path, LONGER), "--trials", 5, "--workers", 2, "--out", out]
    code, stdout, err = finish(start(*argv, "--data-dir", small_data.parent, "--heartbeat", 1))
    assert code == 0, err
    study = open_sweep(out)
    numbers = [t.number for t in trials_of(study)]
    assert len(counted(study)) == 5 and len(set(numbers)) == len(numbers)
    assert len({t.user_attrs["worker"] for t in counted(study)}) == 2  # both contributed
    assert stdout.count("\ntrial ") == 5 and "sweep done" in stdout


def test_a_local_worker_killed_mid_trial_is_failed_and_replaced(tmp_path, small_data):
    out = tmp_path / "sweep"
    argv = ["sweep", space_file(tmp_path, LONGER), "--trials", 5, "--workers", 2, "--out", out]
    sweep = start(*argv, "--data-dir", small_data.parent, "--heartbeat", 1, "--pruner", "none")
    number, victim = running_trial(lambda: open_sweep(out))
    assert victim != sweep.pid  # a worker process, not the sweep's own
    os.kill(victim, signal.SIGKILL)
    code, stdout, err = finish(sweep)
    assert code == 0, err
    study = open_sweep(out)
    lost = study.trials[number]
    assert lost.state.name == "FAIL" and "outcome" not in lost.user_attrs
    assert len(counted(study)) == 5 and all(t.state.name == "COMPLETE" for t in counted(study))
    assert f"trial {number:>3}  lost" in stdout
    assert f"{victim} (killed by signal 9)" in err


def test_ctrl_c_keeps_finished_trials_and_resume_goes_on(tmp_path, small_data):
    out = tmp_path / "sweep"
    text = SPACE.replace("epochs = 2", "epochs = 3")
    argv = ["sweep", space_file(tmp_path, text), "--trials", 4, "--out", out, "--pruner", "none"]
    sweep = start(*argv, "--data-dir", small_data.parent)
    running_trial(lambda: open_sweep(out), sweep.pid)
    while not (out / "trials" / "00001").exists():  # one trial finished, the next one runs
        time.sleep(0.05)
    time.sleep(0.3)
    sweep.send_signal(signal.SIGINT)
    code, _, err = finish(sweep)
    assert code == 130 and f"numlp sweep --resume {out}" in err, err
    before = {t.number: t.value for t in counted(open_sweep(out))}
    assert before and all(v is not None for v in before.values())
    code, stdout, err = finish(start("sweep", "--resume", out, "--data-dir", small_data.parent))
    assert code == 0, err
    study = open_sweep(out)
    assert len(counted(study)) == 4
    assert {t.number: t.value for t in counted(study) if t.number in before} == before
    assert not [t for t in trials_of(study) if t.state.name == "RUNNING"]
    code, _, err = finish(start("sweep", "--resume", out, "--trials", 5))
    assert code == 0 and len(counted(open_sweep(out))) == 5, err


def test_a_folder_holding_a_sweep_is_not_reused(tmp_path, small_data, capsys):
    out = tmp_path / "sweep"
    run_sweep(
        load_space(space_file(tmp_path)),
        trials=1,
        out=out,
        data_dir=small_data.parent,
        stream=io.StringIO(),
    )
    argv = ["sweep", str(space_file(tmp_path)), "--trials", "1", "--out", str(out)]
    assert main([*argv, "--data-dir", str(small_data.parent)]) == 2
    assert f"--resume {out}" in capsys.readouterr().err


# --- show -----------------------------------------------------------------------------------


def test_show_prints_the_top_trials_and_writes_the_winner_plots_and_a_page(
    tmp_path, small_data, capsys
):
    out = tmp_path / "sweep"
    study = run_sweep(
        load_space(space_file(tmp_path)),
        trials=4,
        out=out,
        data_dir=small_data.parent,
        stream=io.StringIO(),
    )
    assert main(["sweep", "show", str(out)]) == 0
    stdout = capsys.readouterr().out
    best = study.best_trial
    assert f"{best.value:.2%}" in stdout.splitlines()[2]  # the best trial heads the table
    config = load_config(out / "best.toml")
    assert config.lr == best.params["lr"] and config.batch_size == best.params["batch_size"]
    assert config.val_split == 0.0 and config.hidden == (48,) and config.dataset == "kmnist"
    for name in ("history", "importances", "parallel"):
        assert (out / f"sweep-{name}.png").read_bytes()[:4] == b"\x89PNG"
    page = (out / "sweep.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "Winner" in page


def test_the_page_escapes_what_came_from_the_study(tmp_path, small_data):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    name = "<script>alert(1)</script>"
    run_sweep(
        load_space(space_file(tmp_path)),
        trials=1,
        storage=url,
        study=name,
        out=tmp_path / "sweep",
        data_dir=small_data.parent,
        stream=io.StringIO(),
    )
    show(open_sweep(storage=url, study=name), tmp_path / "shown", plots=False)
    page = (tmp_path / "shown" / "sweep.html").read_text()
    assert name not in page and "&lt;script&gt;" in page


# --- many machines: a real PostgreSQL server ------------------------------------------------


@pytest.fixture(scope="module")
def postgres_url():
    if postgres_bin() is None:
        if os.environ.get("NUMLP_SKIP_POSTGRES") == "1":
            pytest.skip("NUMLP_SKIP_POSTGRES=1: PostgreSQL tests skipped as asked")
        pytest.fail("PostgreSQL is not installed: apt-get install postgresql", pytrace=False)
    with postgres_server() as url:
        yield url


def machine(space, url, study, out, data, *extra):
    """A worker as another machine would start it: its own process and folder, the shared
    study."""
    argv = ["sweep", space, "--trials", 6, "--storage", url, "--study", study, "--out", out]
    return start(*argv, "--data-dir", data, "--heartbeat", 1, *extra)


def postgres_study(url, name):
    from numlp.sweep.storage import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(url, 1))


def test_two_machines_share_one_postgresql_study(postgres_url, tmp_path, small_data):
    space = space_file(tmp_path, LONGER)
    first = machine(space, postgres_url, "shared", tmp_path / "a", small_data.parent)
    second = machine(space, postgres_url, "shared", tmp_path / "b", small_data.parent)
    results = [finish(first), finish(second)]
    assert [code for code, _, _ in results] == [0, 0], results
    study = postgres_study(postgres_url, "shared")
    numbers = [t.number for t in trials_of(study)]
    assert len(counted(study)) == 6 and len(set(numbers)) == len(numbers)
    workers = {t.user_attrs["worker"].split(":")[1] for t in counted(study)}
    assert workers == {str(first.pid), str(second.pid)}
    folders = {p.name for side in "ab" for p in (tmp_path / side / "trials").iterdir()}
    assert folders == {f"{t.number:05d}" for t in counted(study)}


def test_a_machine_killed_mid_trial_leaves_the_study_going(postgres_url, tmp_path, small_data):
    space = space_file(tmp_path, LONGER)
    args = (postgres_url, "killed", tmp_path, small_data.parent)
    survivor = machine(space, *args[:2], args[2] / "a", args[3], "--pruner", "none")
    victim = machine(space, *args[:2], args[2] / "b", args[3], "--pruner", "none")
    number, _ = running_trial(lambda: postgres_study(postgres_url, "killed"), victim.pid)
    victim.kill()
    victim.communicate()
    code, stdout, err = finish(survivor)
    assert code == 0, err
    study = postgres_study(postgres_url, "killed")
    assert study.trials[number].state.name == "FAIL"
    assert len(counted(study)) == 6 and all(t.state.name == "COMPLETE" for t in counted(study))
    assert f"trial {number:>3}  lost" in stdout


def test_a_machine_with_another_space_cannot_join(postgres_url, tmp_path, small_data, capsys):
    space = load_space(space_file(tmp_path))
    run_sweep(
        space,
        trials=1,
        storage=postgres_url,
        study="one",
        out=tmp_path / "a",
        data_dir=small_data.parent,
        stream=io.StringIO(),
    )
    other = space_file(tmp_path, SPACE.replace("[3e-4, 3e-3]", "[1e-4, 1e-3]"))
    argv = ["sweep", other, "--trials", 2, "--storage", postgres_url, "--study", "one"]
    code = main(
        [*map(str, argv), "--out", str(tmp_path / "b"), "--data-dir", str(small_data.parent)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "another search space" in err and not (tmp_path / "b").exists()
    assert main(["sweep", "show", "--storage", postgres_url, "--study", "two"]) == 2
    assert "no study 'two'" in capsys.readouterr().err


def test_help_lists_sweep_and_not_the_inner_name_of_sweep_show(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = capsys.readouterr().out
    assert "sweep " in shown and "sweep-show" not in shown and "SUPPRESS" not in shown
    with pytest.raises(SystemExit):
        main(["sweep", "show", "--help"])
    assert capsys.readouterr().out.startswith("usage: numlp sweep show")
