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
    if array.dtype == np.uint8:  # in range by its type: no copy, no check
        return array
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


CSV_BLOCK = 8 << 20  # bytes read at a time: memory stays flat whatever the file's size
MAX_CSV_LINE = 1 << 20  # 785 numbers take under 4 kB


def import_openml_csv(path, folder, train_size: int = 60000) -> dict[str, Path]:
    """Convert OpenML's ``mnist_784.csv`` (784 pixel columns and a ``class`` column, the 60,000
    training images first) to IDX. ``train_size`` rows go to the training split.

    The file is read in blocks of ``CSV_BLOCK`` bytes and each block parsed at once (whole
    numbers straight from the bytes, other numbers with NumPy's reader), keeping only uint8
    pixels: the 128 MB file needs about 60 MB beside its own pixels, not a table of floats."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            names = _csv_header(f.readline(), path)
            label_column = next(
                (i for i, n in enumerate(names) if n in ("class", "label", "target")), 784
            )
            rows = list(_csv_blocks(f, path, first_row=2))
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    table = np.concatenate(rows) if rows else np.zeros((0, 785), dtype=np.uint8)
    del rows
    if not 0 < train_size < len(table):
        raise DataError(f"{path}: train_size {train_size} does not split {len(table)} rows")
    labels = _as_labels(table[:, label_column], len(table), f"{path} labels")
    pixels = _as_images(np.delete(table, label_column, axis=1), f"{path} pixels")
    return write_split(
        folder, pixels[:train_size], labels[:train_size], pixels[train_size:], labels[train_size:]
    )


def _csv_header(line: bytes, path: Path) -> list[str]:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: cannot read as a text CSV (not UTF-8)") from None
    names = [name.strip().strip("'\"").lower() for name in text.split(",")]
    if len(names) != 785:
        raise DataError(f"{path}: expected 785 columns (784 pixels and a label), got {len(names)}")
    return names


def _csv_blocks(f, path: Path, first_row: int):
    """Blocks of rows ``(n, 785)`` of uint8, each cut at a line end."""
    rest, row = b"", first_row
    while True:
        block = f.read(CSV_BLOCK)
        data = rest + block
        cut = data.rfind(b"\n") + 1 if block else len(data)  # the last block: all of it
        rest, data = data[cut:], data[:cut]
        if len(rest) > MAX_CSV_LINE:
            raise DataError(f"{path}: row {row} runs past {MAX_CSV_LINE:,} bytes; not a CSV")
        if data.strip():
            table = _parse_block(data, path, row)
            row += len(table)
            yield table
        if not block:
            return


# What each byte is to the fast reader: 0 a digit, 1 a comma, 2 a line end, 3 dropped (quotes,
# spaces, carriage returns), 4 anything else (a sign, a point: the general reader takes over).
_BYTE_KIND = np.full(256, 4, dtype=np.uint8)
_BYTE_KIND[np.frombuffer(b"0123456789", dtype=np.uint8)] = 0
_BYTE_KIND[ord(",")], _BYTE_KIND[ord("\n")] = 1, 2
_BYTE_KIND[np.frombuffer(b"'\" \r\t", dtype=np.uint8)] = 3


def _parse_block(data: bytes, path: Path, first_row: int) -> tuple[np.ndarray, np.ndarray]:
    """The block's rows as uint8 ``(n, 785)``: whole numbers straight from the bytes (digits
    times powers of ten), or, for any other number format, NumPy's text reader."""
    raw = np.frombuffer(data if data.endswith(b"\n") else data + b"\n", dtype=np.uint8)
    kind = _BYTE_KIND[raw]
    if (kind == 4).any():
        return _parse_general(data, path)
    if (kind == 3).any():
        raw, kind = raw[kind != 3], kind[kind != 3]
    ends = np.flatnonzero(kind != 0)
    blank = np.flatnonzero((kind[ends] == 2) & (np.diff(np.r_[-1, ends]) == 1))
    if len(blank):  # empty lines (a trailing one, say) carry no row
        keep = np.ones(len(raw), dtype=bool)
        keep[ends[blank]] = False
        raw, kind = raw[keep], kind[keep]
        ends = np.flatnonzero(kind != 0)
    widths = np.diff(np.r_[-1, ends]) - 1
    if not len(ends):
        return np.zeros((0, 785), dtype=np.uint8)
    if widths.min() < 1 or widths.max() > 3:
        raise DataError(
            f"{path}: near row {first_row}: every value must be a whole number in 0..255"
        )
    digit = raw.astype(np.uint16) - 48
    values = digit[ends - 1]
    values += np.where(widths >= 2, digit[ends - 2] * 10, 0).astype(np.uint16)
    values += np.where(widths >= 3, digit[ends - 3] * 100, 0).astype(np.uint16)
    line_ends = np.flatnonzero(kind[ends] == 2)
    fields = np.diff(np.r_[-1, line_ends])
    if (fields != 785).any():
        bad = int(np.argmax(fields != 785))
        raise DataError(f"{path}: row {first_row + bad} has {fields[bad]} values, expected 785")
    if values.max() > 255:
        raise DataError(f"{path}: near row {first_row}: values must be whole numbers in 0..255")
    return values.astype(np.uint8).reshape(-1, 785)


def _parse_general(data: bytes, path: Path) -> np.ndarray:
    text = data.decode("utf-8", errors="replace").replace("'", "").replace('"', "")
    try:
        table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as err:
        raise DataError(f"{path}: not a table of numbers ({err})") from None
    if table.shape[1] != 785:
        raise DataError(f"{path}: rows have {table.shape[1]} values, expected 785")
    if table.size and (table.min() < 0 or table.max() > 255 or np.any(table % 1 != 0)):
        raise DataError(f"{path}: values must be whole numbers in 0..255")
    return table.astype(np.uint8)


def content_hashes(paths: dict[str, Path]) -> dict[str, str]:
    """SHA-256 of each written file's decompressed IDX content (to compare with the registry)."""
    return {role: read_idx(path, with_sha256=True)[1] for role, path in paths.items()}
