"""A photo of a digit -> MNIST's 28x28: real test digits turned into photos are read as well
as the originals."""

import numpy as np
import pytest

PIL = pytest.importorskip("PIL")

from PIL import Image  # noqa: E402

from numlp import Adam, Dense, Flatten, ReLU, Sequential  # noqa: E402
from numlp.data.images import ImageError, to_mnist  # noqa: E402


@pytest.fixture(scope="module")
def model(mnist_arrays):
    x_train, y_train, _, _ = mnist_arrays
    m = Sequential([Flatten(), Dense(784, 256), ReLU(), Dense(256, 10)], seed=0)
    m.fit(
        x_train, y_train, epochs=3, batch_size=128, seed=0, optimizer=Adam(m.parameters(), lr=2e-3)
    )
    return m


def photo_of(digit: np.ndarray, rng) -> Image.Image:
    """Dark ink on light paper, scaled up 8-12x, off centre in a larger page with a margin."""
    scale = int(rng.integers(8, 13))
    ink = Image.fromarray(255 - digit).resize((28 * scale, 28 * scale), Image.Resampling.BILINEAR)
    page = Image.new(
        "L", (28 * scale + int(rng.integers(60, 200)), 28 * scale + int(rng.integers(60, 200))), 255
    )
    page.paste(ink, (int(rng.integers(10, 50)), int(rng.integers(10, 50))))
    return page.convert("RGB")


@pytest.mark.slow
def test_photos_of_1000_test_digits_are_predicted_as_well_as_the_originals(
    model, mnist_arrays, tmp_path
):
    _, _, x_test, y_test = mnist_arrays
    rng = np.random.default_rng(0)
    pick = rng.choice(len(x_test), 1000, replace=False)
    originals = (x_test[pick] * 255).round().astype(np.uint8)
    converted = []
    for i, digit in enumerate(originals):
        path = tmp_path / f"d{i}.png"
        photo_of(digit, rng).save(path)
        converted.append(to_mnist(path))
    converted = np.stack(converted).astype(np.float32) / 255
    before = model.predict(x_test[pick])
    after = model.predict(converted)
    accuracy_before = np.mean(before == y_test[pick])
    accuracy_after = np.mean(after == y_test[pick])
    agreement = np.mean(before == after)
    print(f"originals {accuracy_before:.1%}, photos {accuracy_after:.1%}, agree {agreement:.1%}")
    assert accuracy_after >= accuracy_before - 0.015
    assert agreement >= 0.97


def test_output_is_light_ink_in_a_20x20_box_centred_by_mass():
    page = np.full((300, 200), 250.0)
    page[40:200, 60:90] = 10.0  # a dark vertical stroke, off centre
    digit = to_mnist(page)
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    rows = np.flatnonzero(digit.max(axis=1) > 0)
    assert len(rows) == 20  # the longer side fills the 20-pixel box
    ys, xs = np.indices(digit.shape)
    mass = digit.astype(float)
    assert abs((ys * mass).sum() / mass.sum() - 14) <= 0.6
    assert abs((xs * mass).sum() / mass.sum() - 14) <= 0.6


def test_transparent_drawings_and_arrays_in_0_1_work():
    rgba = np.zeros((50, 50, 4), dtype=np.uint8)
    rgba[10:40, 20:25] = [0, 0, 0, 255]  # black stroke on a transparent canvas
    assert to_mnist(Image.fromarray(rgba, "RGBA")).max() == 255
    assert to_mnist(rgba[..., 3] / 255.0).max() == 255  # light ink on black, as floats


@pytest.mark.parametrize(
    "picture, message",
    [(np.full((40, 40), 255.0), "no ink"), (np.zeros(5), "2-D"), (np.full((4, 4), np.nan), "NaN")],
)
def test_pictures_that_hold_no_digit_are_refused(picture, message):
    with pytest.raises(ImageError, match=message):
        to_mnist(picture)


def test_a_file_that_is_not_an_image_is_refused(tmp_path):
    path = tmp_path / "x.png"
    path.write_text("not a png")
    with pytest.raises(ImageError, match="not an image"):
        to_mnist(path)


def test_numlp_predict_reads_a_photo_and_prints_the_top_3(model, mnist_arrays, tmp_path, capsys):
    import json

    from numlp.cli import main
    from numlp.io import save_model

    _, _, x_test, y_test = mnist_arrays
    save_model(
        tmp_path / "m.npz",
        model,
        preprocessing={"scale": 1 / 255},
        class_names=[str(i) for i in range(10)],
    )
    rng = np.random.default_rng(1)
    photo_of((x_test[0] * 255).round().astype(np.uint8), rng).save(tmp_path / "seven.jpg")
    assert main(["predict", str(tmp_path / "m.npz"), str(tmp_path / "seven.jpg"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)[0]
    assert result["top"][0]["class"] == str(y_test[0]) and len(result["top"]) == 3
