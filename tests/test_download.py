"""Downloads end to end against a real HTTP server on 127.0.0.1 serving the MNIST files,
with faults: truncated bodies, wrong bytes, dropped connections, missing files."""

import pytest
from mirror_server import MirrorServer

from numlp.data.datasets import DataError, load_dataset
from numlp.data.download import fetch

FILES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]


@pytest.fixture
def mirror(mnist_path):
    with MirrorServer(mnist_path) as server:
        yield server


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_fetch_downloads_and_verifies_all_four_files(mirror, tmp_path):
    seen = []
    folder = fetch(
        "mnist",
        tmp_path / "mnist",
        mirrors=[mirror.url],
        progress=lambda name, done, total: seen.append((name, done, total)),
    )
    assert leftovers(folder) == sorted(FILES)
    assert {name for name, _, _ in seen} == set(FILES)
    assert all(done <= total for _, done, total in seen)
    data = load_dataset("mnist", data_dir=folder, download=False)
    assert data.x_train.shape == (60000, 28, 28) and data.y_test.shape == (10000,)


def test_fetch_skips_files_that_are_already_verified(mirror, tmp_path):
    fetch("mnist", tmp_path, mirrors=[mirror.url])
    mirror.requests.clear()
    fetch("mnist", tmp_path, mirrors=[mirror.url])
    assert mirror.requests == []


def test_a_dropped_connection_resumes_with_a_range_request(mirror, tmp_path):
    mirror.faults["t10k-images-idx3-ubyte.gz"] = ("drop_once", 500_000)
    fetch("mnist", tmp_path, mirrors=[mirror.url])
    requests = [r for r in mirror.requests if r[0] == "t10k-images-idx3-ubyte.gz"]
    assert requests == [
        ("t10k-images-idx3-ubyte.gz", None),
        ("t10k-images-idx3-ubyte.gz", "bytes=500000-"),
    ]
    assert leftovers(tmp_path) == sorted(FILES)


@pytest.mark.slow
def test_a_body_that_is_always_truncated_fails_cleanly(mirror, tmp_path):
    mirror.faults["t10k-labels-idx1-ubyte.gz"] = ("truncate", 1000)
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz from any mirror.*after 3"):
        fetch("mnist", tmp_path, mirrors=[mirror.url], retries=3)
    assert "t10k-labels-idx1-ubyte.gz" not in leftovers(tmp_path)
    assert not [name for name in leftovers(tmp_path) if name.endswith(".part")]


def test_wrong_bytes_are_refused_and_nothing_bad_is_kept(mirror, tmp_path):
    mirror.faults["train-labels-idx1-ubyte.gz"] = ("corrupt", 20_000)
    with pytest.raises(DataError, match="wrong bytes"):
        fetch("mnist", tmp_path, mirrors=[mirror.url])
    assert "train-labels-idx1-ubyte.gz" not in leftovers(tmp_path)
    assert not [name for name in leftovers(tmp_path) if name.startswith(".")]


def test_the_next_mirror_is_tried_when_one_fails(mirror, mnist_path, tmp_path):
    with MirrorServer(mnist_path) as broken:
        for name in FILES:
            broken.faults[name] = ("status", 404)
        fetch("mnist", tmp_path, mirrors=[broken.url, mirror.url])
        assert len(broken.requests) == 4  # a 404 is not retried
    assert leftovers(tmp_path) == sorted(FILES)


def test_an_unreachable_mirror_gives_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"127\.0\.0\.1:9/.*Nothing was saved"):
        fetch("mnist", tmp_path, mirrors=["http://127.0.0.1:9/"], retries=1)
    assert leftovers(tmp_path) == []


def test_load_dataset_downloads_into_the_user_cache(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("NUMLP_MIRRORS", mirror.url)
    monkeypatch.delenv("NUMLP_DATA", raising=False)
    data = load_dataset("mnist")
    assert data.source == tmp_path / "cache" / "numlp" / "mnist"
    assert leftovers(data.source) == sorted(FILES)
