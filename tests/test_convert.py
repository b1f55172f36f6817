"""Importing Keras mnist.npz and OpenML mnist_784.csv into IDX files."""

import numpy as np
import pytest

from numlp.data.convert import content_hashes, import_keras_npz, import_openml_csv
from numlp.data.datasets import DATASETS, DataError, load_dataset


def test_keras_npz_of_the_real_data_becomes_the_official_idx_content(mnist_arrays_raw, tmp_path):
    x_train, y_train, x_test, y_test = mnist_arrays_raw
    npz = tmp_path / "mnist.npz"
    np.savez_compressed(npz, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    paths = import_keras_npz(npz, tmp_path / "out")
    official = {role: f.content_sha256 for role, f in DATASETS["mnist"].files.items()}
    assert content_hashes(paths) == official
    assert load_dataset("mnist", data_dir=tmp_path / "out", download=False).x_test.shape == (
        10000,
        28,
        28,
    )


def test_openml_csv_with_quoted_classes_is_imported(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (7, 784))
    labels = np.arange(7) % 10
    header = ",".join([f"pixel{i}" for i in range(1, 785)] + ["class"])
    rows = [",".join(map(str, p)) + f",'{c}'" for p, c in zip(pixels, labels)]
    csv = tmp_path / "mnist_784.csv"
    csv.write_text(header + "\n" + "\n".join(rows) + "\n")
    paths = import_openml_csv(csv, tmp_path / "out", train_size=5)
    from numlp.data.idx import read_idx

    np.testing.assert_array_equal(read_idx(paths["train_images"]), pixels[:5].reshape(5, 28, 28))
    np.testing.assert_array_equal(read_idx(paths["test_labels"]), labels[5:])


def test_npz_missing_arrays_is_refused(tmp_path):
    npz = tmp_path / "other.npz"
    np.savez(npz, a=np.zeros(3))
    with pytest.raises(DataError, match="missing arrays"):
        import_keras_npz(npz, tmp_path / "out")


def test_pixels_out_of_range_are_refused(tmp_path):
    npz = tmp_path / "bad.npz"
    np.savez(
        npz,
        x_train=np.full((2, 28, 28), 300),
        y_train=[0, 1],
        x_test=np.zeros((1, 28, 28)),
        y_test=[0],
    )
    with pytest.raises(DataError, match="0..255"):
        import_keras_npz(npz, tmp_path / "out")


def test_csv_with_the_wrong_columns_is_refused(tmp_path):
    csv = tmp_path / "x.csv"
    csv.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DataError, match="785 columns"):
        import_openml_csv(csv, tmp_path / "out")
