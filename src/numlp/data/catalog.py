"""The datasets numlp knows (MNIST, Fashion-MNIST, KMNIST): their files, where to look for them,
how to check them. Loading (and downloading) builds on this: :mod:`numlp.data.datasets`.

Lookup order for a dataset's four IDX files: an explicit ``data_dir``, then ``$NUMLP_DATA``,
then the user cache (``~/.cache/numlp/<name>``), then system folders where a package manager
puts them (``/usr/share/datasets/<name>``), and finally a download from the dataset's public
mirrors into the cache. In each folder both ``folder/<file>`` and ``folder/<name>/<file>`` are
tried, with and without ``.gz``.

Every file is verified by the SHA-256 of its *decompressed* content, so a recompressed copy
(Debian's, say) is accepted and a wrong or damaged file is refused with its name and the
expected hash, before any of it is used.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from numlp.atomic import atomic_write_bytes
from numlp.data.idx import IDXError, read_idx

ROLES = ("train_images", "train_labels", "test_images", "test_labels")
FILE_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
RECORDED_HASHES = "numlp-sha256.json"  # content hashes numlp recorded after a verified download


class DataError(Exception):
    """Data could not be found, fetched or verified; the message says what to do."""


@dataclass(frozen=True)
class FileInfo:
    name: str  # without .gz
    content_sha256: str | None  # of the decompressed bytes; None where not published
    gz_sha256: str  # of the official .gz
    gz_bytes: int


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    class_names: tuple[str, ...]
    mirrors: tuple[str, ...]
    files: dict[str, FileInfo] = field(hash=False)
    system_dirs: tuple[str, ...] = ()
    # what an imported dataset's inputs are (pictures of a size, or a table's columns and
    # their scaling: numlp.data.own); None for the IDX datasets of 28x28 pictures
    inputs: dict | None = field(default=None, hash=False, compare=False)


def _files(hashes: dict[str, tuple[str | None, str, int]]) -> dict[str, FileInfo]:
    return {role: FileInfo(FILE_NAMES[role], *hashes[role]) for role in ROLES}


# Checksums from ../shared/data/DATASETS.md (gathered from torchvision, TFDS, Keras, Debian).
DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            "mnist",
            "MNIST handwritten digits (LeCun, Cortes, Burges)",
            tuple(str(d) for d in range(10)),
            (
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
                "http://yann.lecun.com/exdb/mnist/",
            ),
            _files(
                {
                    "train_images": (
                        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                        9912422,
                    ),
                    "train_labels": (
                        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                        28881,
                    ),
                    "test_images": (
                        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                        1648877,
                    ),
                    "test_labels": (
                        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                        4542,
                    ),
                }
            ),
            ("/usr/share/datasets/mnist",),
        ),
        DatasetInfo(
            "fashion-mnist",
            "Fashion-MNIST clothing images (Zalando Research)",
            (
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ),
            (
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
            ),
            _files(
                {
                    "train_images": (
                        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                        26421880,
                    ),
                    "train_labels": (
                        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                        29515,
                    ),
                    "test_images": (
                        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                        4422102,
                    ),
                    "test_labels": (
                        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                        5148,
                    ),
                }
            ),
            ("/usr/share/datasets/fashion-mnist",),
        ),
        DatasetInfo(
            "kmnist",
            "Kuzushiji-MNIST cursive Japanese characters (CODH)",
            ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
            ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
            _files(
                {  # content hashes unpublished: recorded after the first verified download
                    "train_images": (
                        None,
                        "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
                        18165135,
                    ),
                    "train_labels": (
                        None,
                        "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
                        29497,
                    ),
                    "test_images": (
                        None,
                        "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
                        3041136,
                    ),
                    "test_labels": (
                        None,
                        "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c",
                        5120,
                    ),
                }
            ),
            ("/usr/share/datasets/kmnist",),
        ),
    )
}


MANIFEST = "numlp-dataset.json"  # a folder's own dataset (an import that is not MNIST itself)
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def dataset_info(name: str, data_dir=None) -> DatasetInfo:
    """What numlp knows of dataset ``name``: one of :data:`DATASETS`, or a dataset imported
    under that name (``numlp data import ... --name NAME``), found by its ``numlp-dataset.json``
    where the data are looked for (``data_dir``, ``$NUMLP_DATA``, the user cache). ``name`` may
    also be the path of such a folder."""
    if name in DATASETS:
        return DATASETS[name]
    found = find_imported(name, data_dir)
    if found is None:
        raise DataError(
            f"unknown dataset {name!r}; numlp knows {', '.join(DATASETS)}, and sets imported "
            "with `numlp data import FILE --name NAME` (none by that name was found)"
        )
    return found[0]


def find_imported(name: str, data_dir=None) -> tuple[DatasetInfo, Path] | None:
    """An imported dataset: its description and folder, or None."""
    candidates = []
    if os.sep in name or name.startswith("."):
        candidates.append(Path(name))
    elif NAME_PATTERN.match(name):
        bases = [data_dir, os.environ.get("NUMLP_DATA"), user_cache_dir()]
        for base in (Path(b) for b in bases if b):
            candidates += [base / name, base]
    for folder in candidates:
        info = read_manifest(folder)
        if info is not None and (info.name == name or folder == Path(name)):
            return info, folder
    return None


def read_manifest(folder: Path) -> DatasetInfo | None:
    """The dataset a folder's ``numlp-dataset.json`` describes; None if it has none. A manifest
    that cannot be used is an error, not a dataset passed over."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        name, hashes = data["name"], data["content_sha256"]
        classes = tuple(str(c) for c in data["class_names"])
        ok = NAME_PATTERN.match(name) and name not in DATASETS and 2 <= len(classes) <= 1000
        ok = ok and set(hashes) == set(FILE_NAMES.values())
        ok = ok and all(isinstance(h, str) and len(h) == 64 for h in hashes.values())
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise DataError(f"{path} is damaged; import the data again (numlp data import)")
    inputs = data.get("inputs")
    if inputs is not None and not good_inputs(inputs):
        raise DataError(f"{path} is damaged (its inputs); import the data again")
    files = {role: FileInfo(FILE_NAMES[role], hashes[FILE_NAMES[role]], "", 0) for role in ROLES}
    title = str(data.get("title") or f"{name} (imported)")
    return DatasetInfo(name, title, classes, (), files, inputs=inputs)


def good_inputs(inputs) -> bool:
    """A manifest's inputs: pictures of a size and channels, or a table's columns with a
    finite mean and a positive standard deviation each."""
    if not isinstance(inputs, dict):
        return False
    if inputs.get("kind") == "pictures":
        size = inputs.get("size")
        return (
            isinstance(size, list)
            and len(size) == 2
            and all(type(s) is int and 0 < s <= 4096 for s in size)
            and inputs.get("channels") in (1, 3)
        )
    if inputs.get("kind") == "table":
        columns, mean, std = inputs.get("columns"), inputs.get("mean"), inputs.get("std")
        lists = all(isinstance(v, list) for v in (columns, mean, std))
        return (
            lists
            and 0 < len(columns) == len(mean) == len(std) <= 1 << 20
            and all(isinstance(c, str) for c in columns)
            and all(type(v) in (int, float) and math.isfinite(v) for v in mean)
            and all(type(v) in (int, float) and math.isfinite(v) and v > 0 for v in std)
        )
    return False


def write_manifest(
    folder: Path, name: str, class_names, hashes: dict[str, str], title: str, inputs=None
):
    """Describe the dataset in ``folder`` (files by content hash) so it loads by name."""
    if not NAME_PATTERN.match(name) or name in DATASETS:
        raise DataError(
            f"dataset name {name!r} is not allowed: use lower-case letters, digits, '.', '_' "
            f"and '-', and not one of {', '.join(DATASETS)}"
        )
    manifest = {
        "name": name,
        "title": title,
        "class_names": list(class_names),
        "content_sha256": hashes,
        **({"inputs": inputs} if inputs is not None else {}),
    }
    atomic_write_bytes(Path(folder) / MANIFEST, json.dumps(manifest, indent=1).encode())


def _known_content() -> dict[str, str]:
    """content SHA-256 -> "dataset file", to say what a wrong file actually is."""
    return {
        f.content_sha256: f"{info.name} {f.name}"
        for info in DATASETS.values()
        for f in info.files.values()
        if f.content_sha256
    }


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/numlp`` or ``~/.cache/numlp``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "numlp"


def search_dirs(name: str, data_dir=None) -> list[tuple[str, Path]]:
    """Folders to look in, in order, each with where it came from (for messages)."""
    info = dataset_info(name, data_dir)
    if name not in DATASETS:  # an imported set is where its manifest is
        return [("imported", find_imported(name, data_dir)[1])]
    places: list[tuple[str, Path]] = []
    if data_dir:
        places.append(("`data_dir`", _existing_folder(data_dir, "`data_dir`")))
    if os.environ.get("NUMLP_DATA"):
        places.append(("$NUMLP_DATA", _existing_folder(os.environ["NUMLP_DATA"], "NUMLP_DATA")))
    places.append(("user cache", user_cache_dir()))
    places.extend(("system folder", Path(d)) for d in info.system_dirs)
    out = []
    for origin, folder in places:
        if origin == "system folder":  # already the dataset's own folder
            out.append((origin, folder))
        else:
            out.extend([(origin, folder / name), (origin, folder)])
    return out


def _existing_folder(path, given_as: str) -> Path:
    """A folder the user named: one that is not there is an error, never silently passed over."""
    path = Path(path)
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "does not exist"
        raise DataError(
            f"{given_as} {path} {what}; point it at the folder holding the dataset's IDX files"
        )
    return path


def find_file(folder: Path, file: FileInfo) -> Path | None:
    for candidate in (folder / f"{file.name}.gz", folder / file.name):
        if candidate.is_file():
            return candidate
    return None


def locate(name: str, data_dir=None, roles=None) -> tuple[str, Path] | None:
    """The first searched folder that holds all four files (or those of ``roles``, such as
    ``("test_images", "test_labels")``), with its origin; None if none does.

    A folder found by searching (not one given as ``data_dir``) whose files belong to another
    known dataset is passed over: ``NUMLP_DATA`` pointing at MNIST must not hide the
    Fashion-MNIST that a package manager installed.
    """
    info = dataset_info(name, data_dir)
    wanted = [f for role, f in info.files.items() if roles is None or role in roles]
    for origin, folder in search_dirs(name, data_dir):
        if all(find_file(folder, f) for f in wanted):
            searched = origin not in ("`data_dir`", "imported")
            if searched and _owner(folder) not in (None, name):
                continue
            return origin, folder
    return None


def _owner(folder: Path) -> str | None:
    """The known dataset whose labels ``folder`` holds (training labels, 60 kB, or else the
    test labels), or None."""
    for role in ("train_labels", "test_labels"):  # every dataset uses the same file names
        path = find_file(folder, DATASETS["mnist"].files[role])
        if path is not None:
            break
    else:
        return None
    try:
        _, sha = read_idx(path, with_sha256=True)
    except (IDXError, OSError):
        return None  # damaged: let loading report it
    for info in DATASETS.values():
        file = info.files[role]
        if sha == expected_content_hash(file, folder) or _gz_matches(path, file):
            return info.name
    return None


def _recorded_hashes(folder: Path) -> dict[str, str]:
    try:
        return json.loads((folder / RECORDED_HASHES).read_text())
    except (OSError, ValueError):
        return {}


def record_hash(folder: Path, file_name: str, sha256: str) -> None:
    """Remember the content hash of a verified download (for datasets that publish none)."""
    hashes = _recorded_hashes(folder)
    hashes[file_name] = sha256
    atomic_write_bytes(folder / RECORDED_HASHES, json.dumps(hashes, indent=1).encode())


def expected_content_hash(file: FileInfo, folder: Path) -> str | None:
    return file.content_sha256 or _recorded_hashes(folder).get(file.name)


def read_verified(path: Path, file: FileInfo, folder: Path | None = None) -> np.ndarray:
    """Read IDX ``path`` and check its content hash; raise DataError naming the file otherwise."""
    try:
        array, sha = read_idx(path, with_sha256=True)
    except IDXError as err:
        raise DataError(f"{err}. Delete it and run `numlp data fetch`, or replace it.") from None
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from None
    expected = expected_content_hash(file, folder or path.parent)
    actual = _known_content().get(sha)
    if expected is None:
        if _gz_matches(path, file):
            return array
        if actual:
            raise DataError(
                f"{path}: wrong content (its content is {actual}), not {file.name} of this "
                "dataset. Point `data_dir` or NUMLP_DATA at the right folder."
            )
        raise DataError(
            f"{path}: cannot be verified: no content checksum is published for {file.name} and "
            f"the file is not the official .gz. Fetch it with `numlp data fetch`."
        )
    if sha != expected:
        what = f" (its content is {actual})" if actual else ""
        raise DataError(
            f"{path}: wrong content{what}: SHA-256 of the decompressed bytes is {sha}, "
            f"expected {expected}. Replace the file or delete it and run `numlp data fetch`."
        )
    return array


def _gz_matches(path: Path, file: FileInfo) -> bool:
    import hashlib

    if path.suffix != ".gz" or path.stat().st_size != file.gz_bytes:
        return False
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest() == file.gz_sha256


def not_found_message(name: str, data_dir=None) -> str:
    """One line: where numlp looked and how to point it at the files."""
    looked = "; ".join(f"{folder} ({origin})" for origin, folder in search_dirs(name, data_dir))
    return (
        f"the {name} files (train-images-idx3-ubyte.gz and three more) were not found; numlp "
        f"looked in: {looked}. Point `data_dir` or NUMLP_DATA at a folder holding them, or run "
        f"`numlp data fetch {name}` where the internet is reachable."
    )
