"""Import the formats the seed notebooks used (Keras ``mnist.npz``, OpenML ``mnist_784.csv``)
into the four standard IDX files, so that every other numlp command can read them."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from numlp.data.datasets import FILE_NAMES, DataError
from numlp.data.idx import read_idx, write_idx


def write_split(folder, x_train, y_train, x_test, y_test) -> dict[str, Path]:
    """Write four ``.gz`` IDX files into ``folder``; returns role -> path."""
    folder = Path(folder)
    arrays = {
        "train_images": x_train,
        "train_labels": y_train,
        "test_images": x_test,
        "test_labels": y_test,
    }
    paths = {}
    for role, array in arrays.items():
        paths[role] = folder / f"{FILE_NAMES[role]}.gz"
        write_idx(paths[role], array)
    return paths


def _as_images(array: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 2 and array.shape[1] == 784:
        array = array.reshape(-1, 28, 28)
    if array.ndim != 3:
        raise DataError(
            f"{what}: expected images of shape (n, 28, 28) or (n, 784), got {array.shape}"
        )
    return _as_uint8(array, what)


def _as_uint8(array: np.ndarray, what: str) -> np.ndarray:
    if array.dtype.kind not in "iuf":
        raise DataError(f"{what}: expected numbers, got dtype {array.dtype}")
    if array.size and (array.min() < 0 or array.max() > 255 or np.any(array % 1 != 0)):
        raise DataError(f"{what}: values must be whole numbers in 0..255")
    return array.astype(np.uint8)


CLASSES = 10  # MNIST's digits (and every IDX dataset numlp knows)


def _as_labels(array: np.ndarray, n: int, what: str) -> np.ndarray:
    labels = _as_uint8(np.asarray(array).reshape(-1), what)
    if len(labels) != n:
        raise DataError(f"{what}: {len(labels)} labels for {n} images")
    if labels.size and labels.max() >= CLASSES:
        row = int(np.argmax(labels >= CLASSES))
        raise DataError(
            f"{what}: label {labels[row]} (row {row + 1}) is not a class id 0..{CLASSES - 1}"
        )
    return labels


def import_keras_npz(path, folder) -> dict[str, Path]:
    """Convert Keras' ``mnist.npz`` (``x_train``, ``y_train``, ``x_test``, ``y_test``) to IDX."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(npz.files)
            if missing:
                raise DataError(
                    f"{path}: not a Keras mnist.npz: missing arrays {sorted(missing)} "
                    f"(it has {npz.files})"
                )
            arrays = {key: npz[key] for key in ("x_train", "y_train", "x_test", "y_test")}
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: cannot read as .npz ({err})") from None
    x_train = _as_images(arrays["x_train"], f"{path} x_train")
    x_test = _as_images(arrays["x_test"], f"{path} x_test")
    return write_split(
        folder,
        x_train,
        _as_labels(arrays["y_train"], len(x_train), f"{path} y_train"),
        x_test,
        _as_labels(arrays["y_test"], len(x_test), f"{path} y_test"),
    )


def import_openml_csv(path, folder, train_size: int = 60000) -> dict[str, Path]:
    """Convert OpenML's ``mnist_784.csv`` (784 pixel columns and a ``class`` column, the 60,000
    training images first) to IDX. ``train_size`` rows go to the training split."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read as a text CSV ({err})") from None
    header, _, body = text.partition("\n")
    names = [name.strip().strip("'\"").lower() for name in header.split(",")]
    if len(names) != 785:
        raise DataError(f"{path}: expected 785 columns (784 pixels and a label), got {len(names)}")
    label_column = next((i for i, n in enumerate(names) if n in ("class", "label", "target")), 784)
    try:
        table = np.loadtxt(
            io.StringIO(body.replace("'", "").replace('"', "")),
            delimiter=",",
            dtype=np.float64,
            ndmin=2,
        )
    except ValueError as err:
        raise DataError(f"{path}: not a table of numbers ({err})") from None
    if table.shape[1] != 785:
        raise DataError(f"{path}: rows have {table.shape[1]} values, expected 785")
    if not 0 < train_size < len(table):
        raise DataError(f"{path}: train_size {train_size} does not split {len(table)} rows")
    labels = _as_labels(table[:, label_column], len(table), f"{path} labels")
    pixels = _as_images(np.delete(table, label_column, axis=1), f"{path} pixels")
    return write_split(
        folder, pixels[:train_size], labels[:train_size], pixels[train_size:], labels[train_size:]
    )


def content_hashes(paths: dict[str, Path]) -> dict[str, str]:
    """SHA-256 of each written file's decompressed IDX content (to compare with the registry)."""
    return {role: read_idx(path, with_sha256=True)[1] for role, path in paths.items()}
