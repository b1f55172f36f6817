"""A structured fuzzer of what numlp reads: model headers, committee files, configs, sweep
files, metrics.jsonl and HTTP bodies, mutated value by value (a subtree replaced, a key
dropped or added), fed to the real commands. One invariant holds for every input: the command
exits 0, or prints one line and exits 2 (HTTP: 2xx or 4xx, never 5xx), and nothing outside
the folder it was given changes. A bounded slice runs here; benchmarks/fuzz.py runs it longer.
"""

import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numlp import Dense, Flatten, ReLU, Sequential
from numlp.cli import main
from numlp.committee import Committee
from numlp.config import TrainConfig, to_toml, toml_value
from numlp.io import save_committee, save_model

LONG_RUN = "NUMLP_FUZZ_EXAMPLES" in os.environ  # benchmarks/fuzz.py --commands N
FUZZ = settings(
    max_examples=int(os.environ.get("NUMLP_FUZZ_EXAMPLES", 40)),
    derandomize=not LONG_RUN,  # the suite's slice is the same every run; long runs explore
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Any JSON value, small: what a hand-edited or hostile file may hold where a value was.
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.sampled_from([1e308, -1e308, 0.0, -1, 1, 784, 10, 2**31])
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def paths_of(value, prefix=()):
    """Every place in a JSON value: key paths to dicts' values and lists' items."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths_of(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from paths_of(item, (*prefix, i))


def mutate_json(value, data):
    """``value`` with one place replaced by any JSON value, dropped, or given a new key."""
    value = json.loads(json.dumps(value))
    places = list(paths_of(value))
    where = data.draw(st.sampled_from(places))
    action = data.draw(st.sampled_from(["replace", "drop", "add"]))
    if not where:
        return data.draw(JSON_VALUES) if action == "replace" else value
    parent = value
    for step in where[:-1]:
        parent = parent[step]
    last = where[-1]
    if action == "replace":
        parent[last] = data.draw(JSON_VALUES)
    elif action == "drop":
        del parent[last]
    elif isinstance(parent[last], dict):
        parent[last][data.draw(st.text(max_size=8))] = data.draw(JSON_VALUES)
    else:
        parent[last] = data.draw(JSON_VALUES)
    return value


def numlp(*argv, cwd: Path) -> tuple[int, str, str]:
    """``numlp ARGV`` in this process, in ``cwd``: status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    previous = Path.cwd()
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main([str(a) for a in argv])
            except SystemExit as stop:  # argparse's own refusals
                status = stop.code
    finally:
        os.chdir(previous)
    return status, out.getvalue(), err.getvalue()


def holds(status, stdout, err) -> None:
    assert status in (0, 2), (status, err[-2000:])
    if status == 2:
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err[-2000:]


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    folder = tmp_path_factory.mktemp("valid")
    model = Sequential([Flatten(), Dense(784, 8), ReLU(), Dense(8, 3)], (28, 28), seed=0)
    facts = dict(class_names=["a", "b", "c"], preprocessing={"scale": 1 / 255}, dataset="mnist")
    save_model(folder / "model.npz", model, **facts, training={"epochs": 1, "config": {}})
    other = Sequential([Flatten(), Dense(784, 4), Dense(4, 3)], (28, 28), seed=1)
    save_committee(folder / "committee.npz", Committee([model, other]), **facts)
    np.save(folder / "x.npy", np.full((2, 28, 28), 9, np.uint8))
    return folder


def with_header(path: Path, header, out: Path) -> None:
    arrays = dict(np.load(path, allow_pickle=False))
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(out, **arrays)


def header_of(path: Path) -> dict:
    return json.loads(np.load(path, allow_pickle=False)["__header__"].tobytes())


@contextlib.contextmanager
def workspace(tmp_path):
    """A fresh folder for one example, and a check that nothing beside it changed."""
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(dir=tmp_path))
    (root / "beside.txt").write_text("untouched")
    work = root / "work"
    work.mkdir()
    try:
        yield work
        assert sorted(p.name for p in root.iterdir()) == ["beside.txt", "work"]
        assert (root / "beside.txt").read_text() == "untouched"
    finally:
        shutil.rmtree(root, ignore_errors=True)


@FUZZ
@given(kind=st.sampled_from(["model.npz", "committee.npz"]), data=st.data())
def test_mutated_model_and_committee_headers(tmp_path, valid, kind, data):
    header = mutate_json(header_of(valid / kind), data)
    with workspace(tmp_path) as work:
        with_header(valid / kind, header, work / "m.npz")
        holds(*numlp("predict", work / "m.npz", valid / "x.npy", cwd=work))


@FUZZ
@given(data=st.data())
def test_mutated_configs(tmp_path, data):
    flat = json.loads(json.dumps(TrainConfig().flat()))
    settings_ = mutate_json(flat, data)
    if not isinstance(settings_, dict):
        settings_ = {"value": settings_}
    lines = []
    for key, value in settings_.items():
        if isinstance(value, dict) or value is None:
            continue  # TOML has no null; a table is tried below as [augment]
        lines.append(f"{json.dumps(key)} = {toml_value(value)}")
    with workspace(tmp_path) as work:
        (work / "c.toml").write_text("\n".join(lines) + "\n" + to_toml(TrainConfig())[:0])
        # no data here: a config that passes its checks stops at the data lookup, in one line
        holds(*numlp("train", "--config", work / "c.toml", "--data-dir", work / "none",
                     "--no-download", "--out", work / "run", cwd=work))  # fmt: skip
        assert not (work / "run").exists()


@FUZZ
@given(data=st.data())
def test_mutated_sweep_files(tmp_path, data):
    saved = {"trials": 3, "timeout": None, "workers": 1, "storage": None, "study": "numlp",
             "pruner": "median", "threads": 1, "heartbeat": 60.0, "data_dir": None}  # fmt: skip
    with workspace(tmp_path) as work:
        sweep = work / "sweep"
        sweep.mkdir()
        (sweep / "sweep.json").write_text(json.dumps(mutate_json(saved, data)))
        # no base.toml: settings that pass their checks stop there, in one line
        holds(*numlp("sweep", "--resume", sweep, cwd=work))


@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_mutated_metrics_files(tmp_path, data):
    record = {"epoch": 1, "loss": 0.5, "accuracy": 0.9, "val_loss": 0.4, "val_accuracy": 0.91,
              "lr": 0.001, "seconds": 1.2}  # fmt: skip
    lines = [json.dumps({**record, "epoch": e}) for e in (1, 2)]
    lines[data.draw(st.integers(0, 1))] = json.dumps(mutate_json(record, data))
    with workspace(tmp_path) as work:
        (work / "run").mkdir()
        (work / "run" / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        holds(*numlp("compare", work / "run", "--out", work / "c.png", cwd=work))


@FUZZ
@given(data=st.data())
def test_mutated_http_bodies(valid, data):
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from numlp.io import load_model
    from numlp.serve import create_app

    model, header = load_model(valid / "model.npz")
    body = mutate_json({"pixels": [[0] * 27 + [200]] * 28}, data)
    kind = data.draw(st.sampled_from(["application/json", "APPLICATION/JSON", "image/png", ""]))
    with TestClient(create_app(model, header)) as client:
        answer = client.post("/predict", content=json.dumps(body), headers={"content-type": kind})
    assert answer.status_code < 500, answer.text
