"""Your own data as numlp datasets: a folder of pictures with a folder per class (as
torchvision's ``ImageFolder`` and Keras' ``image_dataset_from_directory`` read them), or a
table (CSV) of numeric columns with a named label column.

Each import writes the four IDX files every numlp command reads, split into training and test
sets (the folder's own ``train/`` and ``test/`` if it has them, else a seeded split of each
class), and returns what the dataset's manifest records about its inputs: the pictures' size
and channels (so that ``numlp predict`` prepares a picture the same way), or the table's
columns with the mean and standard deviation of each on the training part (the scaling a
model trained on it keeps in its file).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from numlp.data.convert import write_split
from numlp.data.datasets import DataError
from numlp.data.images import MAX_PIXELS, ImageError

PICTURE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}
MAX_SIDE = 512  # pictures are resized to at most this on a side: an MLP's input, not a photo
MAX_BYTES = 1 << 31  # all the pictures (or table cells) of one dataset, in memory
MAX_CLASSES = 1000
SPLIT_SEED = 0  # the split of a folder without train/ and test/ is the same every time


def import_picture_folders(
    folder, out, size=(28, 28), colour: bool = False, test_split: float = 0.2
) -> tuple[dict[str, Path], list[str], dict]:
    """Read ``folder/CLASS/*.png`` (or ``folder/train/CLASS/...`` and ``folder/test/CLASS/...``),
    each picture turned upright (EXIF), to grayscale (or RGB with ``colour``) and resized to
    ``size`` (height, width); write the IDX files into ``out``. Returns the paths by role, the
    class names (the folder names, sorted) and the manifest's ``inputs``."""
    folder, (height, width) = Path(folder), (int(size[0]), int(size[1]))
    if not (0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE):
        raise DataError(f"--size {height}x{width}: each side must be from 1 to {MAX_SIDE}")
    _check_split(test_split)
    channels = 3 if colour else 1
    splits = {"train": folder / "train", "test": folder / "test"}
    if all(p.is_dir() for p in splits.values()):
        names = _class_names(splits["train"])
        found = {s: _pictures(p, names) for s, p in splits.items()}
    else:
        names = _class_names(folder)
        found = _split(_pictures(folder, names), test_split)
    count = sum(len(v) for v in found.values())
    if count * height * width * channels > MAX_BYTES:
        raise DataError(f"{folder}: {count:,} pictures of {height}x{width} do not fit in memory")
    arrays = {}
    for split, items in found.items():
        arrays[f"x_{split}"] = np.stack([_read(p, (height, width), colour) for p, _ in items])
        arrays[f"y_{split}"] = _labels([label for _, label in items], len(names))
    paths = write_split(out, arrays["x_train"], arrays["y_train"], arrays["x_test"],
                        arrays["y_test"])  # fmt: skip
    return paths, names, {"kind": "pictures", "size": [height, width], "channels": channels}


def _class_names(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not 2 <= len(names) <= MAX_CLASSES:
        raise DataError(
            f"{folder}: found {len(names)} class folders; give a folder with one folder of "
            f"pictures per class (2 to {MAX_CLASSES:,})"
        )
    return names


def _pictures(folder: Path, names: list[str]) -> list[tuple[Path, int]]:
    items = []
    for label, name in enumerate(names):
        pictures = sorted(
            p for p in (folder / name).rglob("*")
            if p.suffix.lower() in PICTURE_SUFFIXES and p.is_file() and not p.is_symlink()
        )  # fmt: skip
        if not pictures:
            raise DataError(f"{folder / name}: no pictures (PNG, JPEG, BMP, GIF, TIFF, WebP)")
        items += [(p, label) for p in pictures]
    return items


def _split(items: list, test_split: float) -> dict[str, list]:
    """A seeded split of every class: ``test_split`` of its items go to the test set (one at
    least, and one at least stays for training)."""
    rng = np.random.default_rng(SPLIT_SEED)
    train, test = [], []
    for label in sorted({label for _, label in items}):
        own = [item for item in items if item[1] == label]
        if len(own) < 2:
            raise DataError(f"class {label} has {len(own)} example: each needs 2 at least")
        order = rng.permutation(len(own))
        n_test = min(max(1, round(len(own) * test_split)), len(own) - 1)
        test += [own[i] for i in sorted(order[:n_test])]
        train += [own[i] for i in sorted(order[n_test:])]
    return {"train": train, "test": test}


def _read(path: Path, size: tuple[int, int], colour: bool) -> np.ndarray:
    """One picture as uint8 ``(height, width)`` or ``(height, width, 3)``."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.size[0] * image.size[1] > MAX_PIXELS:
                raise DataError(f"{path}: {image.size[0]}x{image.size[1]} pixels is too large")
            image = ImageOps.exif_transpose(image).convert("RGB" if colour else "L")
            image = image.resize((size[1], size[0]), Image.Resampling.LANCZOS)
            return np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"{path}: not a picture Pillow can read ({err})") from None


def picture_input(path, inputs: dict) -> np.ndarray:
    """A picture prepared as the pictures of a dataset with these ``inputs`` were (its
    manifest's, kept in a model file): upright, grayscale or RGB, resized. ImageError when it
    cannot be read."""
    try:
        return _read(Path(path), tuple(inputs["size"]), inputs.get("channels") == 3)
    except DataError as err:
        raise ImageError(str(err)) from None


def import_table(
    path, out, label: str, test_split: float = 0.2
) -> tuple[dict[str, Path], list[str], dict]:
    """Read a CSV with a header row, numeric columns and the column ``label``; write the IDX
    files (features as float32 ``(n, columns)``) into ``out``. Returns the paths by role, the
    class names (the label column's values, sorted: numerically when they are all numbers)
    and the manifest's ``inputs``: the columns, and the mean and standard deviation of each on
    the training part, which models trained on it apply to their inputs."""
    path = Path(path)
    _check_split(test_split)
    header, rows = _read_table(path)
    if label not in header:
        raise DataError(f"{path}: no column {label!r}; its columns are {', '.join(header)}")
    at = header.index(label)
    columns = [c for i, c in enumerate(header) if i != at]
    if not columns:
        raise DataError(f"{path}: no column besides the label {label!r}")
    labels = [row[at].strip() for row in rows]
    names = _sorted_names(set(labels), path)
    index = {name: i for i, name in enumerate(names)}
    features = np.empty((len(rows), len(columns)), dtype=np.float32)
    for r, row in enumerate(rows):
        values = [v for i, v in enumerate(row) if i != at]
        try:
            features[r] = [float(v) for v in values]
        except ValueError:
            bad = next(c for c, v in zip(columns, values) if not _is_number(v))
            raise DataError(f"{path}: row {r + 2}, column {bad!r} is not a number") from None
    if not np.all(np.isfinite(features)):
        raise DataError(f"{path}: the table holds NaN or Inf")
    y = _labels([index[v] for v in labels], len(names))
    split = _split(list(zip(range(len(rows)), y.tolist())), test_split)
    train = np.array([i for i, _ in split["train"]])
    test = np.array([i for i, _ in split["test"]])
    mean = features[train].mean(axis=0, dtype=np.float64)
    std = features[train].std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0  # a constant column: centred, not divided by zero
    paths = write_split(out, features[train], y[train], features[test], y[test])
    inputs = {"kind": "table", "columns": columns, "label": label,
              "mean": mean.tolist(), "std": std.tolist()}  # fmt: skip
    return paths, names, inputs


def _read_table(path: Path) -> tuple[list[str], list[list[str]]]:
    size = path.stat().st_size
    if size > MAX_BYTES // 4:
        raise DataError(f"{path}: {size:,} bytes is more than numlp reads as a table")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            rows = [row for row in reader if row]
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; save the table as UTF-8 CSV") from None
    except csv.Error as err:
        raise DataError(f"{path}: not a CSV table ({err})") from None
    if not header or not rows:
        raise DataError(f"{path}: needs a header row and at least one row of data")
    header = [h.strip() for h in header]
    if len(set(header)) != len(header) or not all(header):
        raise DataError(f"{path}: every column needs a name of its own in the header row")
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise DataError(
                f"{path}: row {number} has {len(row)} values, the header {len(header)} columns"
            )
    return header, rows


def _sorted_names(values: set[str], path: Path) -> list[str]:
    if not 2 <= len(values) <= MAX_CLASSES:
        raise DataError(
            f"{path}: the label column has {len(values)} different values; a classifier needs "
            f"2 to {MAX_CLASSES:,}"
        )
    if "" in values:
        raise DataError(f"{path}: a row has no label")
    if all(_is_number(v) for v in values):
        return sorted(values, key=float)
    return sorted(values)


def _labels(labels: list[int], classes: int) -> np.ndarray:
    return np.asarray(labels, dtype=np.uint8 if classes <= 256 else np.int32)


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _check_split(test_split: float) -> None:
    if not 0 < test_split < 1:
        raise DataError(f"--test-split {test_split}: give a fraction between 0 and 1, e.g. 0.2")


def table_input(path, inputs: dict) -> np.ndarray:
    """The rows of a CSV as a model trained on a table with these ``inputs`` takes them:
    float32 ``(rows, columns)`` in the columns' order (found by name; the label column and
    any other are left out)."""
    path = Path(path)
    header, rows = _read_table(path)
    missing = [c for c in inputs["columns"] if c not in header]
    if missing:
        raise DataError(f"{path}: no column {missing[0]!r}, which the model takes")
    at = [header.index(c) for c in inputs["columns"]]
    values = np.empty((len(rows), len(at)), dtype=np.float32)
    for r, row in enumerate(rows):
        try:
            values[r] = [float(row[i]) for i in at]
        except ValueError:
            bad = next(inputs["columns"][k] for k, i in enumerate(at) if not _is_number(row[i]))
            raise DataError(f"{path}: row {r + 2}, column {bad!r} is not a number") from None
    return values
