"""Your own data, as a new user brings it: a folder of pictures with a folder per class, or a
CSV table with a label column. Imported, then trained, evaluated, predicted, reported and
exported like MNIST, through real `numlp` processes."""

import csv
import json

import numpy as np
import pytest
from conftest import finish, start

from numlp.io import load_model

pytest.importorskip("PIL")

NAMES = ["zero", "one", "two"]


def run(*argv, env):
    status, stdout, err = finish(start(*argv, env=env))
    return status, stdout, err


@pytest.fixture
def env(tmp_path):
    return {"XDG_CACHE_HOME": str(tmp_path / "cache"), "MPLBACKEND": "Agg"}


@pytest.fixture(scope="module")
def pictures(mnist_arrays_raw, tmp_path_factory):
    """Real digits 0, 1 and 2 as dark ink on white, 40x40 RGB PNGs (and some JPEGs of
    another size), a folder per class."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("pictures") / "digits"
    x, y = mnist_arrays_raw[0][:900], mnist_arrays_raw[1][:900]
    for i, (image, label) in enumerate(zip(x, y)):
        if label > 2:
            continue
        (folder / NAMES[label]).mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(255 - image).convert("RGB")
        if i % 5:
            picture.resize((40, 40)).save(folder / NAMES[label] / f"{i}.png")
        else:
            picture.resize((56, 48)).save(folder / NAMES[label] / f"{i}.jpg", quality=95)
    return folder


@pytest.mark.slow
def test_a_folder_of_pictures_per_class_trains_evaluates_predicts_and_reports(
    pictures, tmp_path, env
):
    status, out, err = run("data", "import", pictures, "--name", "my-digits", "--size",
                           "20x20", env=env)  # fmt: skip
    assert status == 0, err
    assert "my-digits: 3 classes of pictures" in out
    recipe = ["--hidden", "64", "--epochs", "30", "--lr", "0.003", "--threads", "1"]
    status, out, err = run("train", "--dataset", "my-digits", *recipe, "--out", tmp_path / "r",
                           env=env)  # fmt: skip
    assert status == 0, err
    model, header = load_model(tmp_path / "r")
    assert model.input_shape == (20, 20) and header["class_names"] == sorted(NAMES)
    assert header["inputs"] == {"kind": "pictures", "size": [20, 20], "channels": 1}
    assert header["training"]["test_accuracy"] > 0.8  # 3 classes of real digits
    assert (tmp_path / "r" / "mistakes.png").is_file()  # the plots of its own pictures
    status, out, err = run("evaluate", tmp_path / "r", env=env)
    assert status == 0 and "accuracy" in out, err
    one = next((pictures / "one").glob("*.png"))
    status, out, err = run("predict", tmp_path / "r", one, "--json", env=env)
    assert status == 0, err
    assert json.loads(out)[0]["top"][0]["class"] == "one"
    status, out, err = run("report", tmp_path / "r", env=env)
    assert status == 0, err
    status, _, err = run("serve", tmp_path / "r", "--port", "0", env=env)
    assert status == 2 and "draws 28x28 digits" in err  # the page stays digit-only, and says so


def test_train_and_test_folders_are_kept_and_colour_is_kept_when_asked(pictures, tmp_path, env):
    import shutil

    split = tmp_path / "split"
    for name in NAMES:
        files = sorted((pictures / name).iterdir())
        for part, chosen in (("train", files[:-5]), ("test", files[-5:])):
            (split / part / name).mkdir(parents=True)
            for f in chosen:
                shutil.copy(f, split / part / name / f.name)
    status, _, err = run("data", "import", split, "--out", tmp_path / "colour", "--colour",
                         "--size", "16x12", env=env)  # fmt: skip
    assert status == 0, err
    from numlp.data.datasets import load_dataset

    data = load_dataset("colour", data_dir=tmp_path / "colour", download=False)
    assert data.x_train.shape[1:] == (16, 12, 3) and len(data.x_test) == 15
    assert data.inputs["channels"] == 3


def write_table(path, rows, header):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """Three kinds of flower, five measurements each, the kind in a named column."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, size=(3, 5)) + [10, 200, 0.5, -3, 1000]
    rows = []
    for i in range(600):
        kind = i % 3
        values = centres[kind] + rng.normal(0, 1, size=5) * [1, 20, 0.1, 1, 50]
        rows.append([*np.round(values, 3), ["iris", "rose", "tulip"][kind]])
    path = tmp_path_factory.mktemp("table") / "flowers.csv"
    write_table(path, rows, ["petal", "stem", "width", "temp", "light", "kind"])
    return path


@pytest.mark.slow
def test_a_table_with_a_label_column_trains_and_keeps_its_scaling(table, tmp_path, env):
    status, out, err = run("data", "import", table, "--label", "kind", "--name", "flowers",
                           env=env)  # fmt: skip
    assert status == 0 and "3 classes of rows of 5 columns" in out, err
    recipe = ["--hidden", "32", "--epochs", "30", "--lr", "0.01", "--no-plots"]
    status, _, err = run("train", "--dataset", "flowers", *recipe, "--out", tmp_path / "r",
                         env=env)  # fmt: skip
    assert status == 0, err
    model, header = load_model(tmp_path / "r")
    assert model.input_shape == (5,) and header["class_names"] == ["iris", "rose", "tulip"]
    assert set(header["preprocessing"]) == {"mean", "std"}  # kept in the model file
    assert header["training"]["test_accuracy"] > 0.9
    # rows to predict: columns in another order, the label column absent
    with open(table) as f:
        rows = list(csv.DictReader(f))[:6]
    order = ["light", "temp", "width", "stem", "petal"]
    write_table(tmp_path / "new.csv", [[r[c] for c in order] for r in rows], order)
    status, out, err = run("predict", tmp_path / "r", tmp_path / "new.csv", "--json", env=env)
    assert status == 0, err
    predicted = [r["top"][0]["class"] for r in json.loads(out)]
    assert sum(p == r["kind"] for p, r in zip(predicted, rows)) >= 5
    status, out, err = run("evaluate", tmp_path / "r", env=env)
    assert status == 0 and "test set: 120 rows" in out, err


@pytest.mark.parametrize(
    "rows, header, extra, message",
    [
        ([["1", "x", "a"], ["2", "3", "b"]], ["u", "v", "kind"], [], "row 2, column 'v'"),
        ([["1", "2", "a"], ["2", "3", "b"]], ["u", "v", "kind"], ["--label", "nope"], "no column"),
        ([["1", "2", "a"], ["2", "3", "a"]], ["u", "v", "kind"], [], "2 to 1,000"),
        ([["1", "2", "a"], ["2", "b"]], ["u", "v", "kind"], [], "row 3 has 2 values"),
        ([["1", "2", "a"]], ["u", "u", "kind"], [], "a name of its own"),
    ],
)
def test_bad_tables_are_refused_in_one_line_before_a_byte_is_written(
    tmp_path, env, rows, header, extra, message
):
    write_table(tmp_path / "t.csv", rows, header)
    label = extra or ["--label", "kind"]
    status, _, err = run("data", "import", tmp_path / "t.csv", *label, "--name", "t", env=env)
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*-ubyte*"))


def test_bad_picture_folders_are_refused_in_one_line(tmp_path, env, pictures):
    lonely = tmp_path / "lonely" / "only"
    lonely.mkdir(parents=True)
    status, _, err = run("data", "import", lonely.parent, "--name", "x", env=env)
    assert status == 2 and "class folders" in err
    status, _, err = run("data", "import", pictures, "--name", "x", "--size", "0x5", env=env)
    assert status == 2 and "each side must be" in err
    status, _, err = run("data", "import", pictures, env=env)
    assert status == 2 and "--name NAME" in err
