"""Exact resume after real kills of a real `numlp train` process.

A run killed with SIGKILL (between checkpoints, or in the middle of writing one) or stopped
with SIGINT, then continued with `numlp train --resume`, must end with weights bit-identical to
the same run never interrupted.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import train_argv

pytestmark = pytest.mark.slow  # servers, Chromium, PostgreSQL, benchmarks or long training

TRAIN = ["--hidden", "48", "--epochs", "3", "--dropout", "0.2", "--seed", "5", "--no-download"]

# Runs numlp's CLI, but stalls os.replace of checkpoint.npz after epoch 2 so that the test can
# kill the process in the middle of writing a checkpoint (temp file written, not yet renamed).
STALLING_DRIVER = """
import os, sys, time
real_replace = os.replace
count = 0
def stalled_replace(src, dst, *args, **kwargs):
    global count
    if str(dst).endswith("checkpoint.npz"):
        count += 1
        if count == 2:
            print("WRITING-CHECKPOINT", flush=True)
            time.sleep(60)
    return real_replace(src, dst, *args, **kwargs)
os.replace = stalled_replace
from numlp.cli import main
sys.exit(main(sys.argv[1:]))
"""


def numlp(*args, driver=None):
    """`numlp ARGS` in a process of its own, on one BLAS thread: runs are bit-identical for
    the same seed and thread count, and the automatic count follows the machine's load."""
    code = driver or "import sys; from numlp.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NUMLP_THREADS": "1"},
    )


def weights(run):
    with np.load(run / "model.npz", allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files if k != "__header__"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, mnist_path):
    run = tmp_path_factory.mktemp("ref") / "run"
    process = numlp("train", "--data-dir", mnist_path, "--out", run, *TRAIN)
    assert process.wait(timeout=300) == 0, process.stderr.read()
    return weights(run)


def wait_for_epochs(run, epochs, process, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = run / "metrics.jsonl"
        if path.exists() and path.read_text().count("\n") >= epochs:
            return
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.01)
    raise TimeoutError(f"no epoch {epochs} within {timeout}s")


def resume_and_compare(run, mnist_path, reference):
    process = numlp("train", "--resume", run, "--data-dir", mnist_path, "--no-download")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "resuming at epoch" in out
    result = weights(run)
    assert result.keys() == reference.keys()
    for key in reference:
        np.testing.assert_array_equal(result[key], reference[key], err_msg=key)
    assert (run / "metrics.jsonl").read_text().count("\n") == 3


@pytest.mark.parametrize("epochs_done, delay", [(1, 0.0), (1, 0.25), (2, 0.1)])
def test_sigkill_between_checkpoints_then_resume_is_bit_identical(
    tmp_path, mnist_path, reference, epochs_done, delay
):
    run = tmp_path / "run"
    process = numlp("train", "--data-dir", mnist_path, "--out", run, *TRAIN)
    wait_for_epochs(run, epochs_done, process)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (run / "model.npz").exists()
    resume_and_compare(run, mnist_path, reference)


def test_sigkill_while_writing_a_checkpoint_then_resume_is_bit_identical(
    tmp_path, mnist_path, reference
):
    run = tmp_path / "run"
    process = numlp("train", "--data-dir", mnist_path, "--out", run, *TRAIN, driver=STALLING_DRIVER)
    line = ""
    while "WRITING-CHECKPOINT" not in line:
        line = process.stdout.readline()
        assert line or process.poll() is None, process.stderr.read()
    temp_files = [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    assert temp_files, "the checkpoint should be half written (temp file, no rename yet)"
    process.send_signal(signal.SIGKILL)
    process.wait()
    resume_and_compare(run, mnist_path, reference)
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_sigint_saves_says_how_to_resume_exits_130_and_resumes_exactly(
    tmp_path, mnist_path, reference
):
    run = tmp_path / "run"
    process = numlp("train", "--data-dir", mnist_path, "--out", run, *TRAIN)
    wait_for_epochs(run, 1, process)
    time.sleep(0.15)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert f"numlp train --resume {run}" in err and "Traceback" not in err
    resume_and_compare(run, mnist_path, reference)


def test_resume_refuses_changed_settings(tmp_path, mnist_path):
    run = tmp_path / "run"
    first = numlp(*train_argv(mnist_path, run, 8, 1))
    assert first.wait(timeout=120) == 0
    changed = numlp("train", "--resume", run, "--lr", "0.5")
    _, err = changed.communicate(timeout=60)
    assert changed.returncode == 2 and "only --epochs" in err
    done = numlp("train", "--resume", run, "--data-dir", mnist_path, "--no-download")
    _, err = done.communicate(timeout=60)
    assert done.returncode == 2 and "pass --epochs N" in err
