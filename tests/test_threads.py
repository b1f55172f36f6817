"""BLAS threads while training: a fixed count is applied and the original restored however
training ends; the automatic count follows the cores other processes leave free."""

import contextlib
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from numlp import SGD, Callback, Dense, Flatten, Layer, ReLU, Sequential, TrainingDiverged
from numlp.threads import (
    SMALL_BATCH_ROWS,
    ThreadGovernor,
    cpu_count,
    forget_measurements,
    parse_threads,
    small_batch_threads,
)

threadpoolctl = pytest.importorskip("threadpoolctl")
threadpool_limits = threadpoolctl.threadpool_limits


def blas_threads() -> int:
    """The most threads any loaded BLAS may use (OpenMP runtimes, which scikit-learn or torch
    may load, are not BLAS and not limited)."""
    pools = [pool for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]
    return max(pool["num_threads"] for pool in pools)


def blobs(n=400):
    r = np.random.default_rng(0)
    y = r.integers(0, 3, n)
    return (r.standard_normal((n, 5)) + y[:, None]).astype(np.float32), y


def test_thread_settings_are_parsed_strictly():
    assert parse_threads(None) == parse_threads("auto") == "auto"
    assert parse_threads("2") == parse_threads(2) == 2
    for bad in ("0", "-1", "two", "1.5", 0):
        with pytest.raises(ValueError, match="positive integer or 'auto'"):
            parse_threads(bad)


def test_a_fixed_count_is_applied_and_the_original_restored():
    original = blas_threads()
    with ThreadGovernor(1) as governor:
        assert blas_threads() == 1 and governor.history == [1]
    assert blas_threads() == original


def test_fit_records_the_count_per_epoch_and_restores_it_even_when_training_fails():
    original = blas_threads()
    x, y = blobs()
    model = Sequential([Dense(5, 16), ReLU(), Dense(16, 3)], seed=0)
    history = model.fit(x, y, epochs=2, batch_size=32, seed=0, threads=1)
    assert history["threads"] == [1, 1] and blas_threads() == original
    exploding = SGD(model.parameters(), lr=1e9)
    with pytest.raises(TrainingDiverged):
        model.fit(x * 1e6, y, epochs=1, optimizer=exploding, threads=1)
    assert blas_threads() == original


def test_the_same_seed_and_thread_count_give_the_same_weights():
    x, y = blobs()
    runs = []
    for _ in range(2):
        model = Sequential([Dense(5, 16), ReLU(), Dense(16, 3)], seed=0)
        model.fit(x, y, epochs=2, batch_size=32, seed=0, threads=1)
        runs.append(model.state_dict())
    for key in runs[0]:
        np.testing.assert_array_equal(runs[0][key], runs[1][key])


class StubMeter:
    def __init__(self, readings):
        self.readings = list(readings)

    def read(self):
        return self.readings.pop(0)


def test_automatic_counts_take_the_cores_others_leave_free():
    governor = ThreadGovernor("auto", cores=4)
    governor._meter = StubMeter([0.1, 0.6, 0.7, 1.4, 2.6, 3.9, 7.0])
    assert [governor._choose() for _ in range(7)] == [4, 4, 3, 3, 2, 1, 1]


def test_with_every_core_busy_elsewhere_the_automatic_count_is_one():
    cores = cpu_count()
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        time.sleep(0.3)  # the loops are running before the machine is watched
        forget_measurements()
        with ThreadGovernor("auto") as governor:
            chosen = governor.history[0]
            during = blas_threads()
    finally:
        for process in busy:
            process.kill()
            process.wait()
        forget_measurements()
    assert chosen == 1 and during == 1


class _Neighbours(Callback):
    """Starts busy loops on every core after the first epoch, and ends them with training."""

    def __init__(self):
        self.processes = []

    def on_epoch_end(self, epoch, logs):
        if epoch == 1:
            code = "while True: pass"
            self.processes = [subprocess.Popen([sys.executable, "-c", code])
                              for _ in range(cpu_count())]  # fmt: skip
            time.sleep(0.3)

    def stop(self):
        for process in self.processes:
            process.kill()
            process.wait()


def test_the_automatic_count_is_chosen_once_and_a_seed_gives_one_model():
    """Measured while the run sets up and kept, though the machine gets busy mid-run: the
    count decides OpenBLAS's bits, and a count changing between epochs gave one seed three
    models."""
    x, y = blobs(2000)
    models = []
    for neighbours in (_Neighbours(), None):
        forget_measurements()
        model = Sequential([Dense(5, 64), ReLU(), Dense(64, 3)], seed=0)
        try:
            history = model.fit(x, y, epochs=3, batch_size=32, seed=0,
                                callbacks=[neighbours] if neighbours else [])  # fmt: skip
        finally:
            if neighbours:
                neighbours.stop()
        assert len(set(history["threads"])) == 1
        models.append(model.state_dict())
    forget_measurements()
    if models and history["threads"][0] == cpu_count():  # both started on a quiet machine
        for key in models[0]:
            np.testing.assert_array_equal(models[0][key], models[1][key])


def test_a_resumed_run_keeps_the_count_its_start_chose():
    x, y = blobs()
    saved = {}

    class Stop(Callback):
        def on_train_begin(self, context):
            self.context = context

        def on_epoch_end(self, epoch, logs):
            saved.update(self.context.snapshot())
            self.context.model.stop_training = True

    model = Sequential([Dense(5, 16), ReLU(), Dense(16, 3)], seed=0)
    optimizer = SGD(model.parameters(), lr=0.05)
    model.fit(x, y, epochs=2, batch_size=32, seed=0, optimizer=optimizer, threads=1,
              callbacks=[Stop()])  # fmt: skip
    assert saved["threads"] == 1
    history = model.fit(x, y, epochs=2, batch_size=32, seed=0, optimizer=optimizer,
                        resume=json.loads(json.dumps(saved)))  # fmt: skip
    assert history["threads"] == [1, 1]  # auto, yet the count of the run's start


@pytest.mark.slow
def test_the_command_line_takes_threads_from_the_flag_or_the_environment(mnist_path, tmp_path):
    from conftest import train_argv

    base = [sys.executable, "-m", "numlp", *train_argv(mnist_path, tmp_path / "a", 8, 1)]
    done = subprocess.run([*base, "--threads", "1", "--no-plots"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert '"threads": 1' in (tmp_path / "a" / "metrics.jsonl").read_text()
    environment = {**os.environ, "NUMLP_THREADS": "zero"}
    other = [sys.executable, "-m", "numlp", *train_argv(mnist_path, tmp_path / "b", 8, 1)]
    done = subprocess.run(other, capture_output=True, text=True, env=environment)
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == "numlp: error: threads must be a positive integer or 'auto', got 'zero'"
    )


def test_the_server_answers_on_one_blas_thread():
    code = (
        "import json, numpy, threadpoolctl\n"
        "from numlp.serve import _one_blas_thread\n"
        "_one_blas_thread()\n"
        "print(json.dumps(threadpoolctl.threadpool_info()))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    pools = [p for p in json.loads(done.stdout) if p["user_api"] == "blas"]
    assert pools and all(pool["num_threads"] == 1 for pool in pools)


class _Recorder(Layer):
    """Passes its input on and records how many BLAS threads there were when it ran."""

    def __init__(self):
        self.seen: list[int] = []

    def forward(self, x, training=False):
        self.seen.append(blas_threads())
        return x

    def backward(self, grad_out):
        return grad_out


def _recording_model():
    recorder = _Recorder()
    model = Sequential([Flatten(), Dense(4, 8), recorder, ReLU(), Dense(8, 3)], (4,), seed=0)
    return model, recorder


def test_a_small_batch_is_predicted_on_one_blas_thread_and_the_count_is_put_back():
    model, recorder = _recording_model()
    rng = np.random.default_rng(0)
    with threadpool_limits(2, user_api="blas"):
        few = model.predict_proba(rng.random((SMALL_BATCH_ROWS, 4)))
        assert recorder.seen == [1] and blas_threads() == 2
        many = model.predict_proba(rng.random((SMALL_BATCH_ROWS + 1, 4)))
        assert recorder.seen == [1, 2] and blas_threads() == 2
        model.predict(rng.random((3, 4)))  # predict goes through predict_proba
        assert recorder.seen == [1, 2, 1] and blas_threads() == 2
    assert few.shape == (SMALL_BATCH_ROWS, 3) and many.shape == (SMALL_BATCH_ROWS + 1, 3)


def test_the_small_batch_limit_nests_survives_errors_and_leaves_other_threads_alone():
    with threadpool_limits(2, user_api="blas"):
        with small_batch_threads(1):
            with small_batch_threads(5):
                assert blas_threads() == 1
            assert blas_threads() == 1  # the inner block does not restore early
        assert blas_threads() == 2
        with pytest.raises(ZeroDivisionError):
            with small_batch_threads(1):
                raise ZeroDivisionError
        assert blas_threads() == 2
        with small_batch_threads(SMALL_BATCH_ROWS + 1):
            assert blas_threads() == 2
        seen = []
        worker = threading.Thread(target=lambda: seen.append(small_batch_threads(1)))
        worker.start()
        worker.join()
        assert seen and isinstance(seen[0], contextlib.nullcontext)  # set there, it is ignored
