"""Model files: round trip, atomic saves, and files that must be refused."""

import json
import os

import numpy as np
import pytest

from numlp import BatchNorm, Dense, Dropout, Flatten, ReLU, Sequential
from numlp.io import HEADER_KEY, ModelFileError, load_model, read_header, save_model


def model():
    return Sequential(
        [Flatten(), Dense(12, 8), BatchNorm(8), ReLU(), Dropout(0.2), Dense(8, 3)],
        input_shape=(3, 4),
        seed=0,
    )


def test_round_trip_gives_the_same_predictions_and_header(tmp_path):
    m = model()
    m.layers[2].running_mean[...] = 0.5
    path = save_model(
        tmp_path / "m.npz",
        m,
        class_names=["a", "b", "c"],
        preprocessing={"scale": 1 / 255},
        dataset="toy",
    )
    loaded, header = load_model(path)
    x = np.random.default_rng(0).standard_normal((5, 3, 4))
    np.testing.assert_array_equal(m.predict_proba(x), loaded.predict_proba(x))
    assert header["class_names"] == ["a", "b", "c"]
    assert header["format_version"] == 1 and header["numlp_version"]
    assert loaded.input_shape == (3, 4)
    assert read_header(path)["dataset"] == "toy"


def test_model_files_hold_only_plain_arrays_with_dotted_keys(tmp_path):
    path = save_model(tmp_path / "m.npz", model())
    with np.load(path, allow_pickle=False) as npz:
        keys = set(npz.files)
        assert all(npz[k].dtype != object for k in keys)
    assert "layers.1.W" in keys and "layers.2.running_var" in keys and HEADER_KEY in keys


def test_a_failed_save_leaves_the_previous_file_untouched(tmp_path, monkeypatch):
    path = save_model(tmp_path / "m.npz", model())
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        save_model(path, Sequential([Dense(2, 2)], seed=1))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def rewrite(path, arrays=None, header=None):
    with np.load(path, allow_pickle=False) as npz:
        data = {k: npz[k] for k in npz.files}
    if header is not None:
        data[HEADER_KEY] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    data.update(arrays or {})
    np.savez(path, **data)


def test_a_pickled_object_inside_is_refused(tmp_path):
    path = save_model(tmp_path / "m.npz", model())
    rewrite(path, {"evil": np.array([{"x": 1}], dtype=object)})
    with pytest.raises(ModelFileError, match="pickled"):
        load_model(path)


def test_an_unknown_format_version_is_refused(tmp_path):
    path = save_model(tmp_path / "m.npz", model())
    header = read_header(path)
    header["format_version"] = 99
    rewrite(path, header=header)
    with pytest.raises(ModelFileError, match="version 99 is not supported"):
        load_model(path)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"layers.1.W": np.zeros((12, 9), np.float32)}, r"shape \(12, 9\)"),
        ({"layers.1.W": np.zeros((12, 8), np.int32)}, "dtype int32"),
        ({"layers.5.b": np.full(3, np.nan, np.float32)}, "NaN or Inf"),
        ({"layers.9.W": np.zeros(3, np.float32)}, "unexpected"),
    ],
)
def test_arrays_that_do_not_fit_the_architecture_are_refused(tmp_path, arrays, message):
    path = save_model(tmp_path / "m.npz", model())
    rewrite(path, arrays)
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


def test_truncated_and_foreign_files_are_refused(tmp_path):
    path = save_model(tmp_path / "m.npz", model())
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ModelFileError, match="not a readable"):
        load_model(path)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(ModelFileError, match="no numlp header"):
        load_model(other)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(ModelFileError):
        load_model(text)
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model(tmp_path / "missing.npz")


def test_an_unknown_layer_type_is_refused(tmp_path):
    path = save_model(tmp_path / "m.npz", model())
    header = read_header(path)
    header["model"]["layers"][1]["type"] = "Evil"
    rewrite(path, header=header)
    with pytest.raises(ModelFileError, match="unknown layer type 'Evil'"):
        load_model(path)


def lie_about(path, change):
    """Rewrite the header of the model file ``path`` through ``change(header)``."""
    header = read_header(path)
    change(header)
    rewrite(path, header=header)
    return path


def widen_first_dense(width):
    def change(header):
        header["model"]["layers"][1]["out_features"] = width

    return change


@pytest.mark.parametrize("width", [300_000, 1e9, 10**12, True])
def test_a_header_declaring_a_huge_layer_is_refused_before_allocating_it(tmp_path, width):
    import tracemalloc

    path = lie_about(save_model(tmp_path / "m.npz", model()), widen_first_dense(width))
    tracemalloc.start()
    with pytest.raises(ModelFileError) as err:
        load_model(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "architecture in its header is invalid" in str(err.value)
    assert peak < 5_000_000  # the file's own arrays are a few kB; 784x300000 would be 940 MB


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda h: h.update(dtype="object"), "dtype 'object' in its header is not one of"),
        (lambda h: h.update(dtype="int8"), "dtype 'int8'"),
        (lambda h: h.update(class_names=["a"] * 7), "names 7 classes but the model has 3"),
        (lambda h: h.update(class_names=["a"]), "names 1 classes but the model has 3"),
        (lambda h: h.update(class_names=[1, 2, 3]), "class_names must be a list of strings"),
        (lambda h: h.update(class_names="abc"), "class_names must be a list of strings"),
        (lambda h: h.update(class_names=["a", "b", "c" * 500]), "longer than 200"),
        (lambda h: h.update(preprocessing={"scale": "abc"}), "scale must be a positive number"),
        (lambda h: h.update(preprocessing={"scale": -1}), "scale must be a positive number"),
        (lambda h: h.update(preprocessing={"invert": 1}), "unknown preprocessing steps"),
        (lambda h: h.update(preprocessing={"shift": float("inf")}), "shift must be a finite"),
        (lambda h: h.update(preprocessing={"shift": True}), "shift must be a finite"),
        (lambda h: h.update(preprocessing=[1]), "preprocessing must be a table"),
        (lambda h: h.update(training=[1]), "training summary in its header is not a table"),
    ],
)
def test_lying_headers_are_refused_naming_the_file(tmp_path, change, message):
    path = lie_about(save_model(tmp_path / "m.npz", model(), class_names=list("abc")), change)
    with pytest.raises(ModelFileError) as err:
        load_model(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


def test_a_run_folder_stands_for_the_model_file_inside(tmp_path):
    with pytest.raises(ModelFileError) as err:
        load_model(tmp_path)
    assert str(err.value) == f"{tmp_path} is a folder without a model.npz: is it a finished run?"
    save_model(tmp_path / "model.npz", model())
    loaded, header = load_model(tmp_path)  # issue 34: it used to say "did you mean ...?"
    assert header["format"] and loaded.count_parameters() == model().count_parameters()
