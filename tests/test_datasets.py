"""Dataset lookup order, content verification, and the offline message."""

import dataclasses
import shutil

import pytest

from numlp.data.datasets import (
    DATASETS,
    DataError,
    load_dataset,
    locate,
    not_found_message,
    search_dirs,
)
from numlp.data.idx import read_idx, write_idx


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No NUMLP_DATA, an empty user cache, and no mirrors that answer."""
    monkeypatch.delenv("NUMLP_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("NUMLP_MIRRORS", "http://127.0.0.1:9/")
    return tmp_path


def copy_mnist(src, dst):
    dst.mkdir(parents=True, exist_ok=True)
    for path in src.glob("*.gz"):
        shutil.copy(path, dst / path.name)
    return dst


def test_lookup_order_is_data_dir_env_cache_then_system(isolated, monkeypatch):
    (isolated / "env").mkdir()
    (isolated / "explicit").mkdir()
    monkeypatch.setenv("NUMLP_DATA", str(isolated / "env"))
    origins = [origin for origin, _ in search_dirs("fashion-mnist", isolated / "explicit")]
    assert origins[:2] == ["`data_dir`", "`data_dir`"]
    assert (
        origins.index("$NUMLP_DATA") < origins.index("user cache") < origins.index("system folder")
    )
    folders = [str(folder) for _, folder in search_dirs("fashion-mnist", isolated / "explicit")]
    assert "/usr/share/datasets/fashion-mnist" in folders


def test_data_dir_wins_over_the_environment(isolated, mnist_path, monkeypatch):
    mine = copy_mnist(mnist_path, isolated / "mine")
    monkeypatch.setenv("NUMLP_DATA", str(mnist_path))
    assert locate("mnist", mine) == ("`data_dir`", mine)
    assert locate("mnist") == ("$NUMLP_DATA", mnist_path)


def test_a_dataset_subfolder_is_found(isolated, mnist_path):
    copy_mnist(mnist_path, isolated / "all" / "mnist")
    assert locate("mnist", isolated / "all")[1] == isolated / "all" / "mnist"


def test_a_recompressed_copy_is_accepted_by_its_content(isolated, mnist_path):
    folder = copy_mnist(mnist_path, isolated / "re")
    labels = read_idx(folder / "t10k-labels-idx1-ubyte.gz")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    write_idx(folder / "t10k-labels-idx1-ubyte", labels)  # uncompressed this time
    data = load_dataset("mnist", data_dir=folder, download=False)
    assert data.y_test[:3].tolist() == [7, 2, 1]


def test_a_wrong_file_is_refused_with_its_name_and_the_expected_hash(isolated, mnist_path):
    folder = copy_mnist(mnist_path, isolated / "bad")
    labels = read_idx(folder / "t10k-labels-idx1-ubyte.gz")
    labels[0] = 3
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels)
    with pytest.raises(
        DataError, match=r"t10k-labels-idx1-ubyte.gz: wrong content.*expected ff7bcfd4"
    ):
        load_dataset("mnist", data_dir=folder, download=False)


def test_mnist_files_asked_for_as_fashion_are_named_for_what_they_are(isolated, mnist_path):
    with pytest.raises(DataError, match="its content is mnist train-images-idx3-ubyte"):
        load_dataset("fashion-mnist", data_dir=mnist_path, download=False)


def test_offline_with_no_files_says_where_it_looked_and_what_to_do(isolated):
    (isolated / "empty").mkdir()
    with pytest.raises(DataError) as err:
        load_dataset("mnist", data_dir=isolated / "empty", download=False)
    message = str(err.value)
    assert str(isolated / "empty") in message and "NUMLP_DATA" in message
    assert "numlp data fetch mnist" in message and "\n" not in message
    assert message == not_found_message("mnist", isolated / "empty")


@pytest.mark.parametrize("given_as", ["`data_dir`", "NUMLP_DATA"])
def test_a_data_folder_that_does_not_exist_is_named_not_passed_over(
    isolated, monkeypatch, given_as
):
    missing = isolated / "no-such-folder"
    if given_as == "NUMLP_DATA":
        monkeypatch.setenv("NUMLP_DATA", str(missing))
    with pytest.raises(DataError) as err:
        load_dataset("mnist", data_dir=missing if given_as == "`data_dir`" else None)
    assert str(err.value) == (
        f"{given_as} {missing} does not exist; point it at the folder holding the dataset's "
        "IDX files"
    )


@pytest.mark.slow
def test_offline_download_failure_leaves_the_cache_clean(isolated):
    with pytest.raises(DataError, match="Nothing was saved"):
        load_dataset("mnist")
    cache = isolated / "cache" / "numlp" / "mnist"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_unknown_dataset_lists_the_known_ones(isolated):
    with pytest.raises(DataError, match="mnist, fashion-mnist, kmnist"):
        load_dataset("cifar10")


def test_mnist_files_asked_for_as_kmnist_are_named_for_what_they_are(isolated, mnist_path):
    with pytest.raises(DataError, match="its content is mnist"):
        load_dataset("kmnist", data_dir=mnist_path, download=False)


def test_a_searched_folder_of_another_dataset_is_passed_over(isolated, mnist_path, monkeypatch):
    # NUMLP_DATA set for MNIST (as the README suggests) must not hide Fashion-MNIST elsewhere.
    monkeypatch.setenv("NUMLP_DATA", str(mnist_path))
    system = isolated / "system" / "fashion-mnist"
    info = dataclasses.replace(DATASETS["fashion-mnist"], system_dirs=(str(system),))
    monkeypatch.setitem(DATASETS, "fashion-mnist", info)
    assert locate("mnist") == ("$NUMLP_DATA", mnist_path)
    assert locate("fashion-mnist") is None
    assert locate("kmnist") is None
    with pytest.raises(DataError, match="were not found"):
        load_dataset("fashion-mnist", download=False)
