"""Hostile files: random and mutated bytes into every loader (bounded hypothesis runs).

Whatever the bytes, a loader either returns valid data or raises its own clear error
(IDXError, ModelFileError); never another exception, never a huge allocation, never code run.
A longer run of the same properties: benchmarks/fuzz.py.
"""

import gzip
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numlp import Dense, Dropout, ReLU, Sequential
from numlp.checkpoint import load_checkpoint, save_checkpoint
from numlp.data.idx import IDXError, idx_bytes, read_idx
from numlp.io import ModelFileError, load_model, save_model
from numlp.optim import Adam

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def valid_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("valid")
    model = Sequential([Dense(4, 3), ReLU(), Dropout(0.1), Dense(3, 2)], seed=0)
    save_model(folder / "model.npz", model, class_names=["a", "b"])
    state = {"epoch": 1, "batch": 0, "history": []}
    save_checkpoint(folder / "checkpoint.npz", model, Adam(model.parameters()), state)
    labels = np.arange(50, dtype=np.uint8) % 10
    (folder / "labels.idx").write_bytes(idx_bytes(labels))
    (folder / "labels.idx.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    return valid_files(tmp_path_factory)


LOADERS = {
    "model.npz": (load_model, ModelFileError),
    "checkpoint.npz": (load_checkpoint, ModelFileError),
    "labels.idx": (read_idx, IDXError),
    "labels.idx.gz": (read_idx, IDXError),
}


def load_or_refuse(name, payload, tmp_path) -> str:
    """Load ``payload`` as file ``name``: "refused" with the loader's own error, or "loaded" with a
    valid result. Any other exception propagates and fails the property."""
    path = tmp_path / name
    path.write_bytes(payload)
    loader, error = LOADERS[name]
    try:
        result = loader(path)
    except error as err:
        assert str(err), "a refusal must say why"
        return "refused"
    if isinstance(result, np.ndarray):
        assert result.nbytes <= len(payload) * 1100  # never more than the bytes could hold
    else:
        model = result[0]
        assert all(np.all(np.isfinite(v)) for v in model.state_dict().values())
    return "loaded"


@FUZZ
@given(name=st.sampled_from(sorted(LOADERS)), payload=st.binary(max_size=2048))
def test_random_bytes_are_refused_cleanly(tmp_path, name, payload):
    assert load_or_refuse(name, payload, tmp_path) in ("loaded", "refused")


def mutate(original: bytes, data) -> bytes:
    """Truncate, flip a byte or insert bytes somewhere, as hypothesis draws."""
    payload = bytearray(original)
    action = data.draw(st.sampled_from(["truncate", "flip", "insert"]))
    at = data.draw(st.integers(0, len(payload) - 1))
    if action == "truncate":
        payload = payload[:at]
    elif action == "flip":
        payload[at] ^= data.draw(st.integers(1, 255))
    else:
        payload[at:at] = data.draw(st.binary(min_size=1, max_size=16))
    return bytes(payload)


@FUZZ
@given(name=st.sampled_from(sorted(LOADERS)), data=st.data())
def test_mutated_valid_files_are_loaded_or_refused_cleanly(tmp_path, originals, name, data):
    assert load_or_refuse(name, mutate(originals[name], data), tmp_path) in ("loaded", "refused")


@FUZZ
@given(
    dims=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=4),
    code=st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E]),
    body=st.binary(max_size=256),
)
def test_idx_headers_claiming_any_size_never_allocate_it(tmp_path, dims, code, body):
    payload = struct.pack(f">BBBB{len(dims)}I", 0, 0, code, len(dims), *dims) + body
    path = tmp_path / "claim.idx"
    path.write_bytes(payload)
    try:
        array = read_idx(path)
    except IDXError:
        return
    assert array.nbytes == len(body)  # only a header that matches the file's size is read
