"""Shared fixtures: where the real MNIST files are (``$NUMLP_DATA`` or ``../shared/data/mnist``)."""

import contextlib
import gzip
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

from numlp.train import Callback

ROOT = Path(__file__).resolve().parents[1]


def mnist_dir() -> Path | None:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "numlp" / "mnist"
    places = (os.environ.get("NUMLP_DATA"), ROOT.parent / "shared" / "data" / "mnist", cache)
    for candidate in places:
        if candidate and (Path(candidate) / "t10k-labels-idx1-ubyte.gz").exists():
            return Path(candidate)
    return None


MISSING_MNIST = (
    "the MNIST files were not found: set NUMLP_DATA to a folder holding the four IDX files "
    "(`numlp data fetch mnist` downloads them into ~/.cache/numlp/mnist; `numlp data import "
    "mnist.npz` takes Keras' copy), or set NUMLP_SKIP_MNIST=1 to skip the tests that need them"
)


@pytest.fixture(scope="session")
def mnist_path() -> Path:
    """The folder of the real MNIST files. Missing files fail the tests that need them, unless
    skipping was asked for: a silently skipped core test would pass a broken build."""
    path = mnist_dir()
    if path is None:
        if os.environ.get("NUMLP_SKIP_MNIST") == "1":
            pytest.skip("NUMLP_SKIP_MNIST=1: tests on the real MNIST files skipped as asked")
        pytest.fail(MISSING_MNIST, pytrace=False)
    return path


def read_idx_gz(path: Path) -> np.ndarray:
    """A few lines of IDX reading for tests that must not depend on numlp.data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


@pytest.fixture(scope="session")
def mnist_arrays(mnist_path):
    """(x_train, y_train, x_test, y_test): float32 images in [0, 1] of shape (n, 28, 28)."""

    def load(prefix):
        x = read_idx_gz(mnist_path / f"{prefix}-images-idx3-ubyte.gz").astype(np.float32) / 255
        y = read_idx_gz(mnist_path / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
        return x, y

    return (*load("train"), *load("t10k"))


@pytest.fixture(scope="session")
def mnist_arrays_raw(mnist_path):
    """(x_train, y_train, x_test, y_test) exactly as stored: uint8."""
    return tuple(
        read_idx_gz(mnist_path / f"{prefix}-{kind}-idx{n}-ubyte.gz")
        for prefix in ("train", "t10k")
        for kind, n in (("images", 3), ("labels", 1))
    )


@pytest.fixture(scope="session")
def small_data(mnist_path, tmp_path_factory) -> Path:
    """6,000 training and 1,000 test images of the real MNIST, as a "kmnist" folder whose
    content hashes are recorded (as numlp records them after a download): real digits, small
    enough that a run of several epochs takes a second. Pass its parent as ``data_dir``."""
    import json

    from numlp.data.idx import read_idx, write_idx

    folder = tmp_path_factory.mktemp("data") / "kmnist"
    folder.mkdir()
    hashes = {}
    for prefix, count in (("train", 6000), ("t10k", 1000)):
        for kind, n in (("images", 3), ("labels", 1)):
            name = f"{prefix}-{kind}-idx{n}-ubyte"
            write_idx(folder / name, read_idx_gz(mnist_path / f"{name}.gz")[:count])
            hashes[name] = read_idx(folder / name, with_sha256=True)[1]
    (folder / "numlp-sha256.json").write_text(json.dumps(hashes))
    return folder


def start(*args, cwd=None, env=None):
    """`python -m numlp ARGS` in a process of its own; data only from where ARGS point."""
    import subprocess
    import sys

    env = {k: v for k, v in {**os.environ, **(env or {})}.items() if k != "NUMLP_DATA"}
    return subprocess.Popen(
        [sys.executable, "-m", "numlp", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env,
    )


def finish(process, timeout=240):
    """Wait for a process from :func:`start`: its exit status, stdout and stderr."""
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def train_argv(mnist_path, out, hidden=16, epochs=1, *extra) -> list[str]:
    """`numlp train` arguments for a small offline run on the real MNIST files."""
    return [
        "train",
        "--data-dir",
        str(mnist_path),
        "--hidden",
        str(hidden),
        "--epochs",
        str(epochs),
        "--out",
        str(out),
        "--no-download",
        *map(str, extra),
    ]


class InterruptAt(Callback):
    """Sends this process a real SIGINT (Ctrl-C) after ``step`` optimizer steps."""

    def __init__(self, step):
        self.step = step

    def on_batch_end(self, step, logs):
        if step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


@contextlib.contextmanager
def chromium():
    """Debian's headless Chromium driven by Playwright (the test is skipped, saying why,
    without them)."""
    playwright = pytest.importorskip("playwright.sync_api")
    browser_path = shutil.which("chromium")
    if browser_path is None:
        pytest.skip("Chromium is not installed (Debian package chromium; .ci/run installs it)")
    flags = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking"]
    flags += ["--disable-component-update", "--disable-sync"]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, headless=True, args=flags)
        try:
            yield browser
        finally:
            browser.close()
