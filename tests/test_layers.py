"""Layers: gradient checks in float64 for every element, shapes, and the seed regressions."""

import numpy as np
import pytest

from numlp import init
from numlp.gradcheck import check_layer
from numlp.layers import (
    GELU,
    BatchNorm,
    Dense,
    Dropout,
    Flatten,
    LeakyReLU,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
    sigmoid,
    softmax,
)

rng = np.random.default_rng(42)


def batch(*shape):
    return rng.standard_normal(shape)


@pytest.mark.parametrize(
    "layer",
    [
        Dense(5, 4, rng=np.random.default_rng(0)),
        ReLU(),
        LeakyReLU(0.1),
        Sigmoid(),
        Tanh(),
        GELU(),
        Softmax(),
        Flatten(),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_every_layer_gradient_matches_finite_differences(layer):
    x = batch(6, 5)
    if isinstance(layer, Flatten):
        x = batch(3, 2, 5)
    result = check_layer(layer, x)
    assert result.ok, str(result)


def test_dense_bias_gradient_is_checked_with_a_nonzero_bias():
    layer = Dense(3, 2, rng=np.random.default_rng(1))
    layer.b.value[...] = [0.5, -1.0]
    assert check_layer(layer, batch(4, 3)).ok


def test_dropout_gradient_with_a_fixed_mask():
    def same_mask(layer):
        layer.rng = np.random.default_rng(7)

    result = check_layer(Dropout(0.4), batch(8, 6), before_forward=same_mask)
    assert result.ok, str(result)


def test_batchnorm_gradient_in_training_mode():
    layer = BatchNorm(4)
    layer.gamma.value[...] = [1.5, 0.5, -1.0, 2.0]
    layer.beta.value[...] = [0.1, 0.2, 0.3, 0.4]
    result = check_layer(layer, batch(7, 4) * 3 + 1, training=True)
    assert result.ok, str(result)


def test_batchnorm_gradient_in_inference_mode():
    layer = BatchNorm(4)
    layer.running_mean[...] = [0.5, -0.5, 1, 0]
    layer.running_var[...] = [2, 0.5, 1, 3]
    assert check_layer(layer, batch(5, 4), training=False).ok


def test_batchnorm_training_output_is_normalised_and_running_stats_move():
    layer = BatchNorm(3, momentum=0.5)
    x = (batch(1000, 3) * [1, 5, 10] + [3, -2, 0]).astype(np.float32)
    out = layer.forward(x, training=True)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=0), 1, atol=1e-3)
    np.testing.assert_allclose(layer.running_mean, 0.5 * x.mean(axis=0), rtol=1e-5)
    expected_var = 0.5 * 1 + 0.5 * x.var(axis=0, ddof=1)
    np.testing.assert_allclose(layer.running_var, expected_var, rtol=1e-4)


def test_batchnorm_inference_uses_running_statistics_not_the_batch():
    layer = BatchNorm(2)
    x = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    np.testing.assert_allclose(layer.forward(x, training=False), x / np.sqrt(1 + 1e-5), rtol=1e-6)


def test_relu_backward_does_not_change_the_array_given_to_forward():
    # Seed regressions: an in-place ReLU corrupted the pre-activations kept for backward.
    x = np.array([[-1.0, 2.0, -3.0, 4.0]], dtype=np.float32)
    kept = x.copy()
    layer = ReLU()
    out = layer.forward(x, training=True)
    layer.backward(np.ones_like(out))
    np.testing.assert_array_equal(x, kept)


def test_dropout_is_identity_at_inference_and_keeps_the_mean_in_training():
    layer = Dropout(0.3, rng=np.random.default_rng(0))
    x = np.ones((200, 500), dtype=np.float32)
    assert layer.forward(x, training=False) is x
    out = layer.forward(x, training=True)
    assert abs(out.mean() - 1) < 0.01
    assert abs((out == 0).mean() - 0.3) < 0.01
    assert out.dtype == np.float32


DRAWS = [[(256, 1024)] * 3, [(3, 7), (256, 1024), (4, 8)], [(1, 1), (5, 3), (2, 2)],
         [(5, 3), (5, 3), (8, 8)]]  # fmt: skip


@pytest.mark.parametrize("shapes", DRAWS)
def test_dropout_masks_are_drawn_from_the_very_bits_earlier_versions_used(shapes):
    """Masks were once cut from rng.bytes: the same seed must drop the same units (seeded runs
    and resumed checkpoints stay bit-identical), and leave the generator in the same state,
    draw after draw (odd counts leave half a draw kept for the next)."""
    p = 0.3
    layer = Dropout(p, rng=np.random.default_rng(7))
    old = np.random.default_rng(7)
    for shape in shapes:
        out = layer.forward(np.ones(shape, dtype=np.float32), training=True)
        bits = np.frombuffer(old.bytes(2 * out.size), dtype="<u2").reshape(shape)
        np.testing.assert_array_equal(out == 0, bits < round(p * 65536))
        assert layer.rng.bit_generator.state == old.bit_generator.state


def test_sigmoid_is_finite_and_exact_at_extreme_inputs():
    x = np.array([-1e4, -50, 0, 50, 1e4])
    with np.errstate(over="raise"):
        s = sigmoid(x)
    assert np.all(np.isfinite(s))
    np.testing.assert_allclose(s, [0, 1.9287e-22, 0.5, 1, 1], rtol=1e-4)


def test_softmax_of_huge_logits_is_finite_and_sums_to_one():
    p = softmax(np.array([[1e4, 0.0, -1e4], [1e4, 1e4, 1e4]], dtype=np.float32))
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(p[1], 1 / 3, rtol=1e-6)


def test_gelu_matches_the_exact_definition_closely():
    from math import erf, sqrt

    x = np.linspace(-6, 6, 101)
    exact = np.array([v * 0.5 * (1 + erf(v / sqrt(2))) for v in x])
    np.testing.assert_allclose(GELU().forward(x), exact, atol=1e-3)


def test_flatten_turns_28x28_images_into_784_features_and_back():
    layer = Flatten()
    x = batch(5, 28, 28)
    out = layer.forward(x)
    assert out.shape == (5, 784)
    assert layer.backward(out).shape == (5, 28, 28)
    assert layer.output_shape((28, 28)) == (784,)


def test_dense_rejects_input_of_the_wrong_width_with_a_clear_message():
    layer = Dense(784, 10, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"expects input of shape \(batch, 784\).*Flatten"):
        layer.forward(np.zeros((2, 28, 28), dtype=np.float32))


@pytest.mark.parametrize("name", init.INITIALIZERS)
def test_initialisers_have_the_variance_they_promise(name):
    w = init.initialize(name, 400, 300, np.random.default_rng(0), np.float64)
    assert w.shape == (400, 300)
    np.testing.assert_allclose(w.var(), init.variance(name, 400, 300), rtol=0.03)
    assert abs(w.mean()) < 0.01


def test_he_variance_is_two_over_fan_in_and_xavier_two_over_the_sum():
    assert init.variance("he_normal", 100, 50) == pytest.approx(0.02)
    assert init.variance("xavier_uniform", 100, 50) == pytest.approx(2 / 150)
    assert init.variance("lecun_normal", 100, 50) == pytest.approx(0.01)


def test_unknown_initialiser_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="he_normal"):
        Dense(3, 2, init="glorot")


@pytest.mark.parametrize("bad", [0, -3, 2.5, "8"])
def test_dense_sizes_must_be_positive_integers(bad):
    with pytest.raises(ValueError, match="positive integer"):
        Dense(bad, 4)


def test_dropout_probability_out_of_range_is_refused():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        Dropout(1.0)
