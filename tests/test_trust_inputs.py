"""What comes from files and reaches a terminal or memory, tried as an attacker would, through
real `numlp` processes: names that speak to the terminal, headers rewritten by hand, arrays
outside the pixel range, pictures by their bytes, sizes checked before allocating."""

import json

import numpy as np
import pytest
from conftest import finish, start

from numlp import Dense, Flatten, ReLU, Sequential
from numlp.io import ModelFileError, load_model, save_model

pytest.importorskip("PIL")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    model = Sequential([Flatten(), Dense(784, 16), ReLU(), Dense(16, 3)], (28, 28), seed=0)
    path = tmp_path_factory.mktemp("model") / "model.npz"
    names = ["zero", "one\x1b]0;owned\x07\x1b[31m", "two\nthree.png[0]: 3 (100.0%)"]
    save_model(path, model, class_names=names, preprocessing={"scale": 1 / 255}, dataset="d")
    return path


def run(*args):
    status, stdout, err = finish(start(*args))
    return status, stdout, err


def test_class_names_from_a_file_are_escaped_wherever_they_are_printed(model_path, tmp_path):
    np.save(tmp_path / "x.npy", np.full((2, 28, 28), 7, np.uint8))
    status, stdout, err = run("predict", model_path, tmp_path / "x.npy", "--top", "3")
    assert status == 0, err
    assert "\x1b" not in stdout and "\x07" not in stdout
    assert len(stdout.splitlines()) == 2  # one line per image: no faked line
    assert "\\x1b]0;owned\\x07" in stdout and "two\\nthree" in stdout


@pytest.mark.parametrize(
    "names, message",
    [(["a", "a", "b"], "same name"), (["a", "", "b"], "empty"), (["a", "  ", "b"], "empty")],
)
def test_duplicate_or_empty_class_names_are_refused_on_load(tmp_path, names, message):
    model = Sequential([Dense(4, 3)], seed=0)
    save_model(tmp_path / "m.npz", model, class_names=names)
    with pytest.raises(ModelFileError, match=message):
        load_model(tmp_path / "m.npz")


def rewrite_header(path, out, **changes):
    arrays = dict(np.load(path, allow_pickle=False))
    header = json.loads(arrays.pop("__header__").tobytes())
    for key, value in changes.items():
        if key == "training_config":
            header.setdefault("training", {})["config"] = value
        else:
            header[key] = value
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(out, **arrays)


@pytest.mark.parametrize(
    "changes",
    [{"dataset": 12}, {"dataset": ["mnist"]}, {"training_config": 5}, {"training": [1]}],
)
@pytest.mark.slow
def test_headers_rewritten_by_hand_give_one_line(model_path, tmp_path, changes):
    rewrite_header(model_path, tmp_path / "bad.npz", **changes)
    status, _, err = run("evaluate", tmp_path / "bad.npz", "--no-download")
    assert status == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "header" in err


@pytest.mark.parametrize(
    "array, message",
    [
        (np.full((1, 28, 28), -5, np.int16), "integer pixels must be in 0..255"),
        (np.full((1, 28, 28), 10**15, np.int64), "integer pixels must be in 0..255"),
        (np.full((1, 28, 28), 200.0, np.float32), "outside the 0..1"),
        (np.zeros((0, 28, 28), np.uint8), "holds no images"),
        (np.array(["a", "b"]), "not pixel numbers"),
        (np.zeros(3, dtype=[("a", "i4")]), "not pixel numbers"),
    ],
)
@pytest.mark.slow
def test_arrays_outside_the_pixel_range_are_refused_naming_the_file(
    model_path, tmp_path, array, message
):
    np.save(tmp_path / "x.npy", array)
    status, stdout, err = run("predict", model_path, tmp_path / "x.npy")
    assert status == 2 and message in err and str(tmp_path / "x.npy") in err, (stdout, err)


def test_pictures_are_told_by_their_bytes_not_their_names(model_path, tmp_path):
    from PIL import Image

    digit = np.zeros((60, 40), np.uint8)
    digit[10:50, 18:22] = 255
    for suffix in ("ppm", "tga", "ico", "bmp"):
        Image.fromarray(digit).save(tmp_path / f"one.{suffix}")
    Image.fromarray(digit).save(tmp_path / "renamed.idx", format="PNG")
    files = sorted(tmp_path.iterdir())
    status, stdout, err = run("predict", model_path, *files)
    assert status == 0, err
    assert len(stdout.splitlines()) == len(files)
    (tmp_path / "x.pdf").write_bytes(b"%PDF-1.4\n")
    status, _, err = run("predict", model_path, tmp_path / "x.pdf")
    assert status == 2 and "not an image Pillow can read" in err


def test_a_photo_taken_sideways_is_stood_up_by_its_exif_orientation(tmp_path):
    from PIL import Image

    from numlp.data.images import load_image

    upright = np.full((80, 40), 255, np.uint8)
    upright[10:30, 15:25] = 0  # ink near the top
    lying = Image.fromarray(np.rot90(upright))  # as the camera stored it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    lying.save(tmp_path / "photo.jpg", exif=exif, quality=95)
    seen = load_image(tmp_path / "photo.jpg")
    assert seen.shape == (80, 40)
    assert seen[:40].mean() < seen[40:].mean()  # the ink is at the top again


@pytest.mark.parametrize(
    "args, message",
    [
        (["--hidden", "65536,65536"], "over numlp's limit"),
        (["--hidden", "65536,6000"], "over numlp's limit"),
    ],
)
def test_sizes_are_bounded_before_anything_is_allocated(small_data, tmp_path, args, message):
    status, _, err = run("train", "--data-dir", small_data.parent, "--dataset", "kmnist",
                         "--no-download", "--out", tmp_path / "r", *args)  # fmt: skip
    assert status == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "r").exists()


def test_a_width_of_true_is_not_a_width(tmp_path):
    (tmp_path / "c.toml").write_text("hidden = [true]\n")
    status, _, err = run("train", "--config", tmp_path / "c.toml", "--out", tmp_path / "r")
    assert status == 2 and "hidden = (True,) is invalid" in err


def test_a_sweep_file_or_metrics_file_rewritten_by_hand_gives_one_line(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "sweep.json").write_text("[1, 2]")
    status, _, err = run("sweep", "--resume", sweep)
    assert status == 2 and "not a sweep's settings" in err and "Traceback" not in err
    run_folder = tmp_path / "run"
    run_folder.mkdir()
    (run_folder / "metrics.jsonl").write_text('{"epoch": 1e308, "loss": 1}\n')
    status, _, err = run("compare", run_folder, "--out", tmp_path / "c.png")
    assert status == 2 and "one epoch's numbers" in err and "Traceback" not in err, err
