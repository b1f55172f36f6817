"""Importing Keras mnist.npz and OpenML mnist_784.csv into IDX files."""

import numpy as np
import pytest

from numlp.data.convert import content_hashes, import_keras_npz, import_openml_csv
from numlp.data.datasets import DATASETS, DataError, load_dataset


@pytest.mark.slow
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


def small_keras_npz(path, offset=0):
    rng = np.random.default_rng(offset)
    np.savez(
        path,
        x_train=rng.integers(0, 256, (20, 28, 28)),
        y_train=np.arange(20) % 10,
        x_test=rng.integers(0, 256, (5, 28, 28)),
        y_test=np.arange(5),
    )
    return path


def cli(*argv):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "numlp", *map(str, argv)], capture_output=True, text=True
    )
    return done.returncode, done.stdout, done.stderr.strip()


@pytest.fixture
def cache(tmp_path, monkeypatch, mnist_path):
    """A user cache that holds the verified MNIST (seen by child processes too)."""
    import shutil

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("NUMLP_DATA", raising=False)
    folder = tmp_path / "cache" / "numlp" / "mnist"
    folder.mkdir(parents=True)
    for path in mnist_path.glob("*-ubyte.gz"):
        shutil.copy(path, folder / path.name)
    return folder


def snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.parent.rglob("*") if p.is_file()}


def test_importing_other_content_never_replaces_the_verified_mnist_in_the_cache(cache, tmp_path):
    before = snapshot(cache)
    code, _, err = cli("data", "import", small_keras_npz(tmp_path / "mine.npz"))
    assert code == 2 and "is not the official MNIST content" in err and "--name NAME" in err
    assert snapshot(cache) == before  # nothing replaced, no staging folder left
    code, out, _ = cli("data", "import", tmp_path / "mine.npz", "--out", tmp_path / "mine")
    assert code == 0 and "differs from the official MNIST" in out
    assert load_dataset("mnist", download=False).x_train.shape == (60000, 28, 28)


@pytest.mark.slow
def test_importing_the_official_content_again_changes_nothing(cache, tmp_path, mnist_arrays_raw):
    x_train, y_train, x_test, y_test = mnist_arrays_raw
    npz = tmp_path / "mnist.npz"
    np.savez(npz, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    before = snapshot(cache)
    code, out, _ = cli("data", "import", npz)
    assert code == 0 and "already holds the verified MNIST files" in out
    assert snapshot(cache) == before


@pytest.mark.slow
def test_an_out_folder_with_idx_files_needs_force(tmp_path):
    out = tmp_path / "out"
    assert cli("data", "import", small_keras_npz(tmp_path / "a.npz", 1), "--out", out)[0] == 0
    first = snapshot(out / "x")
    code, _, err = cli("data", "import", small_keras_npz(tmp_path / "b.npz", 2), "--out", out)
    assert code == 2 and "already holds IDX files" in err and "--force" in err
    assert snapshot(out / "x") == first
    code, _, _ = cli("data", "import", tmp_path / "b.npz", "--out", out, "--force")
    assert code == 0 and snapshot(out / "x") != first
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_csv_labels_that_are_not_digits_are_refused(tmp_path):
    header = ",".join([f"pixel{i}" for i in range(1, 785)] + ["class"])
    rows = [",".join(["0"] * 784) + f",{label}" for label in (3, 200, 4)]
    csv = tmp_path / "mnist_784.csv"
    csv.write_text(header + "\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"label 200 \(row 2\) is not a class id 0..9"):
        import_openml_csv(csv, tmp_path / "out", train_size=2)


def _csv(path, rows, header=True, end="\n"):
    names = ",".join([f"pixel{i}" for i in range(1, 785)] + ["class"])
    lines = ([names] if header else []) + rows
    path.write_bytes((end.join(lines) + end).encode())
    return path


@pytest.mark.parametrize("end", ["\n", "\r\n"])
def test_csv_is_read_in_blocks_with_the_same_result_as_one_read(tmp_path, monkeypatch, end):
    import numlp.data.convert as convert
    from numlp.data.idx import read_idx

    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (40, 784))
    labels = rng.integers(0, 10, 40)
    rows = [",".join(map(str, p)) + f",'{c}'" for p, c in zip(pixels, labels)]
    rows.insert(7, "")  # a blank line carries no row
    csv = _csv(tmp_path / "m.csv", rows, end=end)
    monkeypatch.setattr(convert, "CSV_BLOCK", 5000)  # rows cut across many blocks
    paths = import_openml_csv(csv, tmp_path / "out", train_size=30)
    np.testing.assert_array_equal(read_idx(paths["train_images"]), pixels[:30].reshape(-1, 28, 28))
    np.testing.assert_array_equal(read_idx(paths["test_labels"]), labels[30:])


def test_csv_of_decimal_numbers_takes_the_general_reader(tmp_path):
    from numlp.data.idx import read_idx

    rows = [",".join(["0.0"] * 783 + ["255.0"]) + f",{c}.0" for c in (1, 2, 3)]
    paths = import_openml_csv(_csv(tmp_path / "m.csv", rows), tmp_path / "out", train_size=2)
    assert read_idx(paths["train_images"])[1, 27, 27] == 255
    np.testing.assert_array_equal(read_idx(paths["test_labels"]), [3])


@pytest.mark.parametrize(
    "row, words",
    [
        (",".join(["0"] * 783 + ["256"]) + ",1", "0..255"),
        (",".join(["0"] * 783 + ["1000"]) + ",1", "0..255"),
        (",".join(["0"] * 783 + ["-1"]) + ",1", "0..255"),
        (",".join(["0"] * 783) + ",1", "row 3 has 784 values, expected 785"),
        (",".join(["0"] * 783 + [""]) + ",1", "whole number"),
    ],
)
def test_bad_csv_rows_are_refused_with_the_row(tmp_path, row, words):
    good = ",".join(["0"] * 784) + ",1"
    with pytest.raises(DataError, match=words):
        import_openml_csv(_csv(tmp_path / "m.csv", [good, row, good]), tmp_path / "out", 2)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@pytest.mark.slow
def test_an_import_of_other_content_trains_by_its_name_or_its_folder(cache, tmp_path):
    # Seed 002 read a CSV: a subset of it is a dataset of its own, not "mnist".
    from numlp.data.datasets import load_dataset

    npz = small_keras_npz(tmp_path / "mine.npz")
    code, out, err = cli("data", "import", npz, "--name", "my-digits")
    assert code == 0, err
    assert "numlp train --dataset my-digits" in out
    folder = cache.parent / "my-digits"
    data = load_dataset("my-digits", download=False)
    assert data.source == folder and data.class_names == tuple("0123456789")
    run = tmp_path / "run"
    code, _, err = cli("train", "--dataset", "my-digits", "--hidden", 8, "--epochs", 1,
                       "--val-split", 0.2, "--out", run, "--no-plots", "--quiet")  # fmt: skip
    assert code == 0, err
    assert load_dataset(str(folder)).name == "my-digits"  # by folder too
    # a changed file is found out, as for any dataset
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"")
    code, _, err = cli("evaluate", run / "model.npz")
    assert code == 2 and "t10k-labels" in err
    code, _, err = cli("data", "import", npz, "--name", "my-digits")
    assert code == 2 and "--force" in err
    code, _, err = cli("data", "import", npz, "--name", "mnist")
    assert code == 2 and "--name 'mnist'" in err


@pytest.mark.slow
def test_every_argument_is_checked_before_a_byte_is_written(cache, tmp_path):
    npz = small_keras_npz(tmp_path / "mine.npz")
    for out in ("My Data", "mnist"):  # named after its folder: not a dataset's name
        code, _, err = cli("data", "import", npz, "--out", tmp_path / out)
        assert code == 2 and "--out" in err and "--name NAME" in err, err
        assert not (tmp_path / out).exists()
    code, out, err = cli("data", "import", npz, "--out", tmp_path / "My Data", "--name", "mine")
    assert code == 0, err
    assert load_dataset("mine", data_dir=tmp_path / "My Data").name == "mine"
    assert not [p for p in tmp_path.rglob(".numlp-import-*")]


@pytest.mark.slow
def test_a_killed_import_leaves_nothing_the_next_one_does_not_clear(cache, tmp_path):
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    stale = cache.parent / f".numlp-import-{gone}-abc"
    stale.mkdir()
    (stale / "train-images-idx3-ubyte.gz").write_bytes(b"half")
    code, _, err = cli("data", "import", small_keras_npz(tmp_path / "m.npz"), "--name", "m")
    assert code == 0, err
    assert not stale.exists()


@pytest.mark.slow
def test_official_content_under_a_name_of_its_own_trains_by_that_name(
    cache, tmp_path, mnist_arrays_raw
):
    x_train, y_train, x_test, y_test = mnist_arrays_raw
    npz = tmp_path / "mnist.npz"
    np.savez(npz, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    before = {p.name: p.read_bytes() for p in cache.iterdir()}
    code, out, err = cli("data", "import", npz, "--name", "full1")
    assert code == 0 and "numlp train --dataset full1" in out, err
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == before  # mnist untouched
    assert load_dataset("full1", download=False).x_train.shape == (60000, 28, 28)
