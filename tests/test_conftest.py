"""Without the MNIST files, the tests that need them fail and say how to fix it, unless the
user asked to skip them: a silently skipped core test would pass a broken build."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def run_pytest_without_mnist(tmp_path, **env):
    tests = tmp_path / "project" / "tests"  # no ../shared beside this project
    tests.mkdir(parents=True)
    shutil.copy(HERE / "conftest.py", tests / "conftest.py")
    (tests / "test_needs_mnist.py").write_text(
        "def test_it(mnist_path):\n    assert mnist_path.is_dir()\n"
    )
    environment = {k: v for k, v in os.environ.items() if k not in ("NUMLP_DATA",)}
    environment.update(XDG_CACHE_HOME=str(tmp_path / "empty-cache"), **env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
    )


@pytest.mark.slow
def test_missing_mnist_fails_and_says_how_to_point_the_tests_at_it(tmp_path):
    done = run_pytest_without_mnist(tmp_path)
    assert done.returncode == 1, done.stdout
    assert "the MNIST files were not found: set NUMLP_DATA" in done.stdout
    assert "NUMLP_SKIP_MNIST=1" in done.stdout and "1 error" in done.stdout


@pytest.mark.slow
def test_skipping_them_is_a_choice_the_user_makes(tmp_path):
    done = run_pytest_without_mnist(tmp_path, NUMLP_SKIP_MNIST="1")
    assert done.returncode == 0 and "1 skipped" in done.stdout, done.stdout
