"""Augmentation: each transform does what it claims, and training on it stays correct."""

import numpy as np
import pytest
from conftest import InterruptAt

from numlp import SGD, Dense, Dropout, Flatten, ReLU, Sequential
from numlp.checkpoint import Checkpoint, load_checkpoint
from numlp.data.augment import (
    ERASE_AREA,
    ERASE_RATIO,
    Augment,
    affine_coordinates,
    elastic_displacements,
    from_config,
    gaussian_blur_matrix,
    random_affine,
    sample_bilinear,
)
from numlp.train import BatchStream


def centre_of_mass(images):
    """``(batch, 2)`` ink centroid (row, col) of ``(batch, height, width)`` images."""
    rows = np.arange(images.shape[1])[None, :, None]
    cols = np.arange(images.shape[2])[None, None, :]
    mass = images.sum(axis=(1, 2))
    return np.stack(
        [(images * rows).sum(axis=(1, 2)) / mass, (images * cols).sum(axis=(1, 2)) / mass], 1
    )


def warp(images, matrix=None, shift=None):
    """Apply one fixed affine map (and shift) to every image."""
    n = len(images)
    matrices = None if matrix is None else np.repeat(np.asarray(matrix)[None], n, 0)
    shifts = None if shift is None else np.repeat(np.asarray(shift, float)[None], n, 0)
    rows, cols = affine_coordinates(matrices, shifts, images.shape[1:], n)
    return sample_bilinear(images, rows, cols)


@pytest.fixture(scope="module")
def digits(mnist_arrays):
    """200 MNIST test digits whose ink is at least 4 pixels from every edge, so that shifts of
    up to 3 pixels lose none of it."""
    images = mnist_arrays[2]
    inner = np.zeros((28, 28), bool)
    inner[4:-4, 4:-4] = True
    clear = ~(images[:, ~inner] > 0).any(axis=1)
    return images[clear][:200]


def test_settings_that_change_nothing_give_back_the_images_exactly(digits):
    augment = Augment()
    assert not augment.active and augment.describe() == "none"
    assert Augment(shift=2, elastic_sigma=3).describe() == "shift 2"
    np.testing.assert_array_equal(augment(digits, np.random.default_rng(0)), digits)
    assert from_config({"shift": 0}) is None
    np.testing.assert_array_equal(warp(digits, shift=(0, 0)), digits)
    np.testing.assert_array_equal(warp(digits, matrix=np.eye(2)), digits)


@pytest.mark.parametrize("shift", [(2, 3), (-3, 1), (1.25, -2.5), (0.4, 0.7)])
def test_a_shift_moves_the_centre_of_mass_by_the_shift(digits, shift):
    moved = warp(digits, shift=shift)
    np.testing.assert_allclose(
        centre_of_mass(moved) - centre_of_mass(digits), np.tile(shift, (len(digits), 1)), atol=1e-4
    )
    np.testing.assert_allclose(moved.sum(axis=(1, 2)), digits.sum(axis=(1, 2)), rtol=1e-5)


def test_an_integer_shift_moves_every_pixel(digits):
    moved = warp(digits, shift=(2, -3))
    np.testing.assert_array_equal(moved[:, 2:, :-3], digits[:, :-2, 3:])
    assert not moved[:, :2].any() and not moved[:, :, -3:].any()  # zeros came in


def test_a_quarter_turn_is_numpys_counter_clockwise_rot90(digits):
    quarter = np.array([[0.0, -1.0], [1.0, 0.0]])
    np.testing.assert_allclose(
        random_affine(1, FixedAngle(90), rotation=90)[0], quarter, atol=1e-12
    )
    turned = warp(digits, matrix=quarter)
    np.testing.assert_allclose(turned, np.rot90(digits, 1, axes=(1, 2)), atol=1e-5)


class FixedAngle:
    """Stands in for a Generator whose uniform draw is always ``value``."""

    def __init__(self, value):
        self.value = value

    def uniform(self, low, high, size=None):
        return np.full(size, float(self.value))


def test_zooming_scales_the_spread_of_the_ink_about_the_centre():
    # A Gaussian blob of std 2 at the centre, zoomed by 1.5, has std 3, plus what bilinear
    # interpolation adds: its triangle kernel has variance 1/6 source pixel^2, 1.5^2 / 6 here.
    grid = np.arange(28) - 13.5
    blob = np.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / (2 * 2.0**2))[None]
    zoomed = warp(blob.astype(np.float32), matrix=1.5 * np.eye(2))[0]
    spread = np.sqrt((zoomed * grid[:, None] ** 2).sum() / zoomed.sum())
    assert spread == pytest.approx(np.sqrt(3.0**2 + 1.5**2 / 6), abs=0.005)
    np.testing.assert_allclose(centre_of_mass(zoomed[None])[0], [13.5, 13.5], atol=1e-4)


def test_a_shear_slants_a_vertical_bar_by_its_tangent():
    image = np.zeros((1, 28, 28), np.float32)
    image[0, 4:24, 13:15] = 1  # a vertical bar, centred at column 13.5
    slant = np.tan(np.radians(20))
    sheared = warp(image, matrix=[[1.0, 0.0], [slant, 1.0]])[0]
    rows = np.arange(6, 22)  # away from the bar's ends
    centres = (sheared[rows] * np.arange(28)).sum(1) / sheared[rows].sum(1)
    np.testing.assert_allclose(centres, 13.5 + slant * (rows - 13.5), atol=0.02)


def test_flip_mirrors_left_and_right_and_composes_with_a_shift(digits):
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(Augment(flip=1.0)(digits, rng), digits[:, :, ::-1])
    half = Augment(flip=0.5)(digits, rng)
    mirrored = np.all(half == digits[:, :, ::-1], axis=(1, 2))
    assert 0.3 < mirrored.mean() < 0.7
    assert np.all(mirrored | np.all(half == digits, axis=(1, 2)))
    both = Augment(flip=1.0, shift=2)(digits, np.random.default_rng(1))
    np.testing.assert_allclose(both.sum(axis=(1, 2)), digits.sum(axis=(1, 2)), rtol=1e-5)


def test_random_distortions_stay_in_range_and_follow_the_generator(digits):
    augment = Augment(shift=2, rotation=15, scale=0.15, shear=10, elastic_alpha=20, chunk=64)
    out = augment(digits, np.random.default_rng(1))
    assert out.shape == digits.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    assert not np.array_equal(out, digits)
    np.testing.assert_array_equal(out, augment(digits, np.random.default_rng(1)))
    assert not np.array_equal(out, augment(digits, np.random.default_rng(2)))
    copy = digits.copy()
    augment(copy, np.random.default_rng(1), out=copy)  # in place, as the training loop does
    np.testing.assert_array_equal(copy, out)


def test_random_shifts_are_spread_over_the_allowed_range(digits):
    moved = Augment(shift=2)(digits, np.random.default_rng(0))
    offsets = centre_of_mass(moved) - centre_of_mass(digits)
    assert np.abs(offsets).max() <= 2 + 1e-4
    assert offsets.min() < -1.5 and offsets.max() > 1.5
    assert abs(offsets.mean()) < 0.2


@pytest.mark.slow
def test_sampling_a_batch_too_large_for_float32_indices_is_still_exact():
    # 2 ** 24 pixels is where float32 stops counting exactly; one call over more than that
    # must agree with calls over slices that stay below it.
    rng = np.random.default_rng(0)
    images = rng.random((19000, 28, 28), dtype=np.float32)
    rows, cols = affine_coordinates(None, np.full((19000, 2), 0.5), (28, 28), 19000)
    whole = sample_bilinear(images, rows, cols)
    parts = [
        sample_bilinear(images[i : i + 1000], rows[i : i + 1000], cols[i : i + 1000])
        for i in range(0, 19000, 1000)
    ]
    np.testing.assert_array_equal(whole, np.concatenate(parts))


def test_the_blur_matrix_is_scipys_gaussian_filter():
    ndimage = pytest.importorskip("scipy.ndimage")
    v = np.random.default_rng(0).random((5, 28))
    for sigma in (1.0, 4.0, 8.0):
        expected = ndimage.gaussian_filter1d(v, sigma, axis=1, mode="reflect")
        np.testing.assert_allclose(v @ gaussian_blur_matrix(28, sigma).T, expected, atol=1e-12)


def test_elastic_fields_have_the_statistics_of_smoothed_uniform_noise():
    rng = np.random.default_rng(0)
    alpha, sigma, n = 8.0, 4.0, 20000
    d_rows, d_cols = elastic_displacements(n, (28, 28), rng, alpha, sigma)
    # Simard's recipe literally: uniform noise in [-1, 1], blurred along both axes, times alpha.
    blur = gaussian_blur_matrix(28, sigma)
    direct = alpha * blur @ rng.uniform(-1, 1, (n, 28, 28)) @ blur.T
    for field in (d_rows, d_cols):
        np.testing.assert_allclose(field.std(axis=0), direct.std(axis=0), rtol=0.05)
        np.testing.assert_allclose(field.mean(axis=0), 0, atol=0.05)

    # Smooth: neighbouring displacements are strongly correlated, as in the direct recipe.
    def neighbour_correlation(f):
        return np.corrcoef(f[:, 14, 14], f[:, 14, 15])[0, 1]

    assert neighbour_correlation(d_rows) == pytest.approx(neighbour_correlation(direct), abs=0.02)
    assert neighbour_correlation(d_rows) > 0.95


def test_elastic_distortion_moves_ink_no_farther_than_its_displacement_field(digits):
    alpha = 10.0
    out = Augment(elastic_alpha=alpha)(digits, np.random.default_rng(0))
    d_rows, d_cols = elastic_displacements(
        len(digits), (28, 28), np.random.default_rng(0), alpha, 4
    )
    reach = int(np.ceil(max(np.abs(d_rows).max(), np.abs(d_cols).max()))) + 1
    assert 1 < reach < 8
    # Ink in the output only where the original has ink within `reach` pixels.
    ink = digits > 0
    near_ink = np.zeros_like(ink)
    for dr in range(-reach, reach + 1):
        for dc in range(-reach, reach + 1):
            near_ink |= np.roll(ink, (dr, dc), axis=(1, 2))
    assert not (out > 0)[~near_ink].any()
    assert np.abs(out - digits).mean() > 0.02  # and it did distort
    np.testing.assert_allclose(centre_of_mass(out), centre_of_mass(digits), atol=1.5)


def test_erasing_blanks_one_rectangle_of_the_allowed_size_in_each_chosen_image():
    images = np.ones((2000, 28, 28), np.float32)
    out = Augment(erase=1.0)(images, np.random.default_rng(0))
    assert np.array_equal(images, np.ones_like(images))  # the input is left alone
    for image in out[:200]:
        rows, cols = np.nonzero(image == 0)
        tall, wide = np.ptp(rows) + 1, np.ptp(cols) + 1
        assert len(rows) == tall * wide  # one filled rectangle, nothing else changed
        assert np.all(image[image != 0] == 1)
    fractions = (out == 0).mean(axis=(1, 2))
    low, high = ERASE_AREA
    # Rounded sides and clipping move the area a little off its draw, never far.
    assert fractions.min() > 0 and fractions.max() <= 1
    assert low * 0.5 < np.median(fractions) < high
    assert abs(fractions.mean() - (low + high) / 2) < 0.03
    ratios = []
    for image in out[:500]:
        rows, cols = np.nonzero(image == 0)
        ratios.append((np.ptp(rows) + 1) / (np.ptp(cols) + 1))
    assert min(ratios) >= ERASE_RATIO[0] / 2 and max(ratios) <= ERASE_RATIO[1] * 2
    assert 0.7 < np.median(ratios) < 1.4  # drawn on a log scale: as tall as wide in the middle


def test_erasing_follows_its_probability_and_leaves_other_recipes_draws_alone(digits):
    rng = np.random.default_rng(1)
    half = Augment(erase=0.5)(np.ones((4000, 28, 28), np.float32), rng)
    assert abs((half == 0).any(axis=(1, 2)).mean() - 0.5) < 0.03
    # Off, it draws nothing: a recipe without erasing gives what it gave before erasing existed.
    a = Augment(shift=2, rotation=5)(digits, np.random.default_rng(3))
    b = Augment(shift=2, rotation=5, erase=0.0)(digits, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    # On, it comes after the resampling and changes only the rectangles.
    c = Augment(shift=2, rotation=5, erase=1.0)(digits, np.random.default_rng(3))
    changed = c != a
    assert changed.any() and np.all(c[changed] == 0)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"shift": -1}, "shift must be a number >= 0"),
        ({"rotation": float("nan")}, "rotation"),
        ({"scale": 1.0}, "scale must be below 1"),
        ({"shear": 95}, "shear < 90"),
        ({"elastic_alpha": 5, "elastic_sigma": 0}, "elastic_sigma must be > 0"),
        ({"flip": 1.5}, "flip is a probability"),
        ({"erase": 2}, "erase is a probability"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(settings, message):
    with pytest.raises(ValueError, match=message):
        Augment(**settings)


def test_flat_inputs_are_refused_with_how_to_reshape():
    with pytest.raises(ValueError, match="reshape flat inputs"):
        Augment(shift=1)(np.zeros((4, 784), np.float32), np.random.default_rng(0))


# -- in the training loop --------------------------------------------------------------------


def labelled_squares(n=1000, seed=0):
    """8x8 squares of side 4 whose brightness encodes the label: mass = 16 * (label + 1) / 4,
    which any shift of at most 2 pixels keeps (the square stays inside the 16x16 image)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = np.zeros((n, 16, 16), np.float32)
    x[:, 6:10, 6:10] = ((y + 1) / 4)[:, None, None]
    return x, y


def test_every_augmented_batch_keeps_its_own_labels():
    x, y = labelled_squares()
    stream = BatchStream(
        x, y, np.arange(len(x)), 32, np.random.default_rng(0), augment=Augment(shift=2)
    )
    stream.block = 96  # several blocks, so the two buffers take turns
    stream.x_buffers = [np.empty((96, 16, 16), np.float32) for _ in range(2)]
    stream.y_buffers = [np.empty(96, y.dtype) for _ in range(2)]
    for epoch in (1, 2):
        seen, moved = 0, 0
        for xb, yb in stream.epoch(epoch=epoch):
            np.testing.assert_allclose(xb.sum(axis=(1, 2)), 4 * (yb + 1), rtol=1e-5)
            moved += np.count_nonzero(xb[:, 6:10, 6:10].sum(axis=(1, 2)) < 4 * (yb + 1) - 1e-3)
            seen += len(xb)
        assert seen == len(x)
        assert moved > len(x) // 2  # the images really were shifted


def test_the_background_thread_gives_the_same_batches_as_augmenting_inline():
    x, y = labelled_squares(300)

    def batches(background):
        stream = BatchStream(
            x,
            y,
            np.arange(len(x)),
            32,
            np.random.default_rng(0),
            augment=Augment(shift=2, rotation=20, elastic_alpha=8),
            augment_key=11,
            background=background,
        )
        stream.block = 64  # five blocks
        stream.x_buffers = [np.empty((64, 16, 16), np.float32) for _ in range(2)]
        stream.y_buffers = [np.empty(64, y.dtype) for _ in range(2)]
        return [(xb.copy(), yb.copy()) for xb, yb in stream.epoch(epoch=3)]

    threaded, inline = batches(True), batches(False)
    assert len(threaded) == len(inline) == 10
    for (xa, ya), (xb, yb) in zip(threaded, inline):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def image_model(seed=3):
    model = Sequential(
        [Flatten(), Dense(256, 32), ReLU(), Dropout(0.2), Dense(32, 4)],
        input_shape=(16, 16),
        seed=seed,
    )
    return model, SGD(model.parameters(), lr=0.05, momentum=0.9)


FIT = dict(
    epochs=6, batch_size=64, validation_split=0.2, seed=5, augment=Augment(shift=2, rotation=10)
)


def test_training_on_distorted_images_learns_and_never_distorts_validation():
    x, y = labelled_squares()
    model, optimizer = image_model()
    history = model.fit(x, y, optimizer=optimizer, **FIT)
    assert history["val_accuracy"][-1] > 0.95
    # The validation score is the model's score on the untouched held-out images.
    model2, optimizer2 = image_model()
    history2 = model2.fit(x, y, optimizer=optimizer2, **FIT)
    assert history2["val_loss"] == history["val_loss"]  # seeded: the same distortions


def test_an_augmented_run_resumed_mid_epoch_is_bit_identical(tmp_path):
    x, y = labelled_squares()
    model, optimizer = image_model()
    model.fit(x, y, optimizer=optimizer, **FIT)
    expected = model.state_dict()

    model, optimizer = image_model()
    path = tmp_path / "checkpoint.npz"
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, optimizer=optimizer, callbacks=[Checkpoint(path), InterruptAt(17)], **FIT)
    resumed, arrays, header = load_checkpoint(path)
    assert header["state"]["batch"] == 4  # 13 batches per epoch: stopped inside epoch 2
    optimizer = SGD(resumed.parameters(), lr=0.05, momentum=0.9)
    optimizer.load_state_dict(arrays)
    resumed.fit(x, y, optimizer=optimizer, resume=header["state"], **FIT)
    for key, value in resumed.state_dict().items():
        np.testing.assert_array_equal(value, expected[key], err_msg=key)


def test_augmenting_flat_inputs_is_refused_before_training():
    model, optimizer = image_model()
    flat = np.zeros((10, 256), np.float32)
    model2 = Sequential([Dense(256, 4)], seed=0)
    with pytest.raises(ValueError, match="augmentation works on images"):
        model2.fit(flat, np.zeros(10, int), augment=Augment(shift=1), epochs=1)


@pytest.mark.slow
def test_training_with_shifts_makes_the_model_robust_to_shifted_digits(mnist_arrays):
    x_train, y_train, x_test, y_test = mnist_arrays
    x_train, y_train = x_train[:12000], y_train[:12000]
    shifted = warp(x_test[:2000], shift=(2, -2))  # every test digit moved 2 px down and left

    def accuracy_on_shifted(augment):
        model = Sequential(
            [Flatten(), Dense(784, 256), ReLU(), Dense(256, 10)], input_shape=(28, 28), seed=0
        )
        model.fit(x_train, y_train, epochs=3, batch_size=128, seed=0, augment=augment)
        return model.evaluate(shifted, y_test[:2000])["accuracy"]

    plain = accuracy_on_shifted(None)
    augmented = accuracy_on_shifted(Augment(shift=3))
    assert augmented > 0.8 and augmented > plain + 0.3, (plain, augmented)  # 84 % vs 36 %
