"""Loading a dataset: find its verified files (or download them), read them into memory.

What numlp knows of each dataset, where it looks and how it verifies lives in
:mod:`numlp.data.catalog` (re-exported here); downloads in :mod:`numlp.data.download`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from numlp import preprocess
from numlp.data.catalog import (  # noqa: F401  (re-exported: the names users import from here)
    DATASETS,
    FILE_NAMES,
    RECORDED_HASHES,
    ROLES,
    DataError,
    DatasetInfo,
    FileInfo,
    dataset_info,
    expected_content_hash,
    find_file,
    locate,
    not_found_message,
    read_verified,
    record_hash,
    search_dirs,
    user_cache_dir,
)
from numlp.data.download import fetch


@dataclass
class Dataset:
    """A dataset in memory: inputs (uint8 images ``(n, 28, 28)`` for the IDX datasets; an
    imported one's pictures of its own size, or a table's float32 ``(n, columns)``) and int64
    labels ``(n,)``; ``inputs`` says what an imported dataset's inputs are (its manifest's)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: Path
    inputs: dict | None = None


@dataclass(frozen=True)
class DataSource:
    """Where a run's datasets come from: ``data_dir`` looked in first, whether a download
    from the mirrors is allowed, and ``progress(file_name, done_bytes, total_bytes)`` for it.
    Built once where the settings enter (the command line, a sweep), handed down as one."""

    data_dir: Path | None = None
    download: bool = True
    progress: object = None

    def load(self, name: str) -> Dataset:
        """The dataset ``name`` (see :func:`load_dataset`)."""
        return load_dataset(name, self.data_dir, self.download, self.progress)

    def test_split(self, facts: dict, dataset: str | None = None):
        """``(data, x, y)``: the test images of the dataset a model was trained on
        (``facts``: a model header, or a run's metadata; ``dataset`` overrides its name),
        preprocessed as the model expects, and their labels. Only the two test files are
        needed; where nothing else finds them, the folder the model's header says its data
        came from is looked in (before any download)."""
        name = dataset or facts.get("dataset") or "mnist"
        data_dir = self.data_dir
        hint = facts.get("data_source")  # where they were found for training: only a hint
        if data_dir is None and isinstance(hint, str) and Path(hint).is_dir():
            if locate(name, None, TEST_ONLY) is None:
                data_dir = Path(hint)  # verified by content like any folder
        data = load_dataset(name, data_dir, self.download, self.progress, TEST_ONLY)
        x = preprocess.apply(data.x_test, facts.get("preprocessing"))
        return data, x, np.asarray(data.y_test)


TEST_ONLY = ("test_images", "test_labels")


def load_dataset(
    name: str = "mnist", data_dir=None, download: bool = True, progress=None, roles=None
) -> Dataset:
    """Find (or download) and verify a dataset, then load it.

    Parameters
    ----------
    name : "mnist", "fashion-mnist", "kmnist", or a dataset imported under a name of its own
        (``numlp data import FILE --name NAME``), or the folder of one
    data_dir : folder to look in first
    download : fetch from the mirrors into the user cache when no folder has the files
    progress : optional callable ``progress(file_name, done_bytes, total_bytes)`` for downloads
    roles : the files to load, e.g. :data:`TEST_ONLY` (scoring needs no training files: a
        folder with the two ``t10k`` files will do); the others are None in the Dataset
    """
    info = dataset_info(name, data_dir)
    found = locate(name, data_dir, roles)
    if found is None:
        if not download:
            raise DataError(not_found_message(name, data_dir))
        folder = fetch(name, user_cache_dir() / name, progress=progress)
    else:
        folder = found[1]
    arrays = dict.fromkeys(info.files)
    for role, file in info.files.items():
        if roles is None or role in roles:
            arrays[role] = read_verified(find_file(folder, file), file, folder)
    _check_consistent(name, arrays)
    labels = {
        k: v.astype(np.int64) for k, v in arrays.items() if k.endswith("labels") and v is not None
    }
    return Dataset(
        info.name,
        arrays["train_images"],
        labels.get("train_labels"),
        arrays["test_images"],
        labels.get("test_labels"),
        info.class_names,
        folder,
        info.inputs,
    )


def _check_consistent(name: str, arrays: dict[str, np.ndarray]) -> None:
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images is None:
            continue
        if images.ndim < 2 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                f"{name}: {split} images {images.shape} and labels {labels.shape} do not match"
            )
