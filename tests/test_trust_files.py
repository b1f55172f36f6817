"""Files that point elsewhere and disks that fill up, with real processes and folders: numlp
never writes through a link planted where it writes, and a run whose last save failed can be
finished from its checkpoint."""

import os

import pytest
from conftest import finish, start

from numlp.io import load_model


def small(small_data, *extra):
    return ["--data-dir", small_data.parent, "--no-download", "--dataset", "kmnist",
            "--hidden", "16", "--no-plots", "--threads", "1", *extra]  # fmt: skip


def refused(process) -> str:
    status, stdout, err = finish(process)
    assert status == 2, (status, stdout, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.fixture(scope="module")
def finished_run(small_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("finished") / "run"
    status, _, err = finish(start("train", *small(small_data, "--out", run, "--epochs", "1")))
    assert status == 0, err
    return run


@pytest.mark.slow
@pytest.mark.parametrize("name", [".numlp.lock", "metrics.jsonl", "config.toml", "model.npz"])
def test_a_planted_link_in_a_run_folder_is_never_written_through(
    small_data, finished_run, tmp_path, name
):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    (run / name).unlink(missing_ok=True)
    (run / name).symlink_to(victim)
    process = start("train", "--resume", run, "--epochs", "2", *small(small_data)[:3])
    if name == ".numlp.lock":  # opened in place: refused
        err = refused(process)
        assert "symbolic link" in err and name in err
    else:  # written by rename: the link itself is replaced (config.toml is read first: no TOML)
        status, _, err = finish(process)
        assert status == (2 if name == "config.toml" else 0), err
        assert status == 2 or not (run / name).is_symlink()
    assert victim.read_text() == "mine\n"


def test_a_planted_study_file_link_is_refused(tmp_path):
    from numlp.sweep.storage import StorageError, storage_url

    victim = tmp_path / "victim.db"
    victim.write_text("mine")
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "study.db").symlink_to(victim)
    with pytest.raises(StorageError, match="symbolic link"):
        storage_url(tmp_path / "sweep")


@pytest.mark.slow
def test_a_run_whose_model_file_was_lost_is_finished_from_its_checkpoint(
    small_data, finished_run, tmp_path
):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before, _ = load_model(run / "model.npz")
    (run / "model.npz").unlink()  # as a full disk at the final save leaves it
    status, stdout, err = finish(start("train", "--resume", run, *small(small_data)[:3]))
    assert status == 0, err
    assert "trained 1 epochs already: writing its model file" in stdout
    after, header = load_model(run / "model.npz")
    assert header["training"]["epochs"] == 1
    for key, value in before.state_dict().items():  # not one more step was taken
        assert (after.state_dict()[key] == value).all()
    err = refused(start("train", "--resume", run, "--epochs", "1", *small(small_data)[:3]))
    assert "already trained 1 epochs" in err


# Files over 60 kB cannot be written (the process's RLIMIT_FSIZE): the model file (16 kB)
# fits, the checkpoint (about 40 kB) too; the plots are off. A 64-wide model's checkpoint
# does not: the disk is "full" at the first checkpoint.
FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))
from numlp.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_full_disk_names_the_file_and_says_whether_the_previous_one_is_kept(small_data, tmp_path):
    import subprocess
    import sys

    def train(out, *extra):
        argv = ["train", *map(str, small(small_data, "--out", out, "--epochs", "1", *extra))]
        env = {k: v for k, v in os.environ.items() if k != "NUMLP_DATA"}
        done = subprocess.run([sys.executable, "-c", FULL_DISK, *argv], env=env,
                              capture_output=True, text=True)  # fmt: skip
        return done.returncode, done.stderr

    status, err = train(tmp_path / "wide", "--hidden", "64")
    assert status == 2 and "Traceback" not in err, err
    assert f"while writing {tmp_path / 'wide' / 'checkpoint.npz'}" in err
    assert "previous one is kept" not in err  # there was none
    assert not (tmp_path / "wide").exists()  # a failed new run leaves nothing
    assert not [p for p in tmp_path.rglob("*.tmp")]


@pytest.mark.slow
def test_a_study_name_is_a_name_not_a_path(tmp_path):
    (tmp_path / "space.toml").write_text("epochs = 1\nlr = {log = [1e-4, 1e-3]}\n")
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    for study in ("../../../x", "x/y", "..", ".hidden"):
        process = start("sweep", tmp_path / "space.toml", "--study", study, "--trials", "1",
                        cwd=work)  # fmt: skip
        assert "cannot be a folder name" in refused(process)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "space.toml"]


@pytest.mark.slow
def test_files_numlp_writes_have_the_mode_an_ordinary_write_would_give(small_data, tmp_path):
    import stat
    import subprocess
    import sys

    run = tmp_path / "run"
    argv = ["train", *map(str, small(small_data, "--out", run, "--epochs", "1"))]
    code = (
        "import os, sys; os.umask(0o002); from numlp.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMLP_DATA"}
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in run.iterdir() if p.is_file()}
    assert modes and set(modes.values()) == {0o664}, modes  # shared with the group, as asked
    from numlp.atomic import atomic_write_text

    (run / "config.toml").chmod(0o640)
    atomic_write_text(run / "config.toml", "epochs = 2\n")  # a rewrite keeps the file's own
    assert stat.S_IMODE((run / "config.toml").stat().st_mode) == 0o640
