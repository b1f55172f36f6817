"""Losses: gradient checks, stability at extreme logits, label checks."""

import numpy as np
import pytest

from numlp.gradcheck import check_loss
from numlp.losses import MSE, BCEWithLogits, SoftmaxCrossEntropy

rng = np.random.default_rng(3)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_gradient_matches_finite_differences(smoothing):
    logits = rng.standard_normal((6, 5))
    labels = rng.integers(0, 5, size=6)
    result = check_loss(SoftmaxCrossEntropy(label_smoothing=smoothing), logits, labels)
    assert result.ok, str(result)


def test_mse_gradient_matches_finite_differences():
    assert check_loss(MSE(), rng.standard_normal((4, 3)), rng.standard_normal((4, 3))).ok


def test_bce_gradient_matches_finite_differences():
    assert check_loss(BCEWithLogits(), rng.standard_normal((5, 2)), rng.random((5, 2))).ok


def test_cross_entropy_equals_the_textbook_formula():
    logits = rng.standard_normal((4, 3))
    labels = np.array([0, 2, 1, 1])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = -np.mean(np.log(p[np.arange(4), labels]))
    assert SoftmaxCrossEntropy().forward(logits, labels) == pytest.approx(expected)


def test_label_smoothing_equals_cross_entropy_against_the_smoothed_target():
    logits = rng.standard_normal((4, 5))
    labels = np.array([0, 4, 2, 2])
    target = np.full((4, 5), 0.1 / 5)
    target[np.arange(4), labels] += 0.9
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -np.mean(np.sum(target * logp, axis=1))
    assert SoftmaxCrossEntropy(0.1).forward(logits, labels) == pytest.approx(expected)


def test_cross_entropy_of_logits_near_1e4_stays_finite():
    # Seed 001 computed softmax without subtracting the max: exp(1e4) overflowed to inf.
    logits = np.array([[1e4, 0, -1e4], [-1e4, 1e4, 9990]], dtype=np.float32)
    loss = SoftmaxCrossEntropy()
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow is fine
        value = loss.forward(logits, np.array([0, 2]))
        grad = loss.backward()
    assert value == pytest.approx(10 / 2, rel=1e-4)  # second sample is 10 nats off
    assert np.all(np.isfinite(grad))


def test_cross_entropy_gradient_is_softmax_minus_onehot_over_batch():
    logits = rng.standard_normal((3, 4))
    labels = np.array([1, 0, 3])
    loss = SoftmaxCrossEntropy()
    loss.forward(logits, labels)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    p[np.arange(3), labels] -= 1
    np.testing.assert_allclose(loss.backward(), p / 3, rtol=1e-12)


def test_bce_is_stable_for_logits_in_the_thousands():
    # Seed 002: sigmoid + BCE with the wrong sign silently trained to NaN.
    z = np.array([[-5000.0], [5000.0], [3000.0], [-3000.0]])
    y = np.array([[0.0], [1.0], [0.0], [1.0]])
    loss = BCEWithLogits()
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow is fine
        value = loss.forward(z, y)
        grad = loss.backward()
    assert value == pytest.approx((3000 + 3000) / 4)
    np.testing.assert_allclose(grad.ravel(), [0, 0, 0.25, -0.25])


def test_bce_accepts_a_vector_of_targets_for_a_single_logit():
    assert BCEWithLogits().forward(np.zeros((3, 1)), np.array([0, 1, 1])) == pytest.approx(
        np.log(2)
    )


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.array([0, 1, 5]), r"class id 5 is outside \[0, 5\)"),
        (np.array([0, -1, 2]), "class id -1"),
        (np.array([0, 1]), r"expected shape \(3,\)"),
        (np.array([0.5, 1, 2]), "integer class ids"),
        (np.array(["a", "b", "c"]), "integer class ids"),
    ],
)
def test_bad_labels_are_refused_with_a_clear_message(labels, message):
    with pytest.raises(ValueError, match=message):
        SoftmaxCrossEntropy().forward(np.zeros((3, 5)), labels)


@pytest.mark.parametrize("loss", [MSE(), BCEWithLogits()])
def test_mse_and_bce_take_class_ids_as_one_hot_rows_with_their_gradient(loss):
    # Seeds 002 and 003 train 10 sigmoid outputs against one-hot digits.
    outputs = np.random.default_rng(0).standard_normal((4, 10))
    ids = np.array([1, 2, 3, 9])
    one_hot = np.eye(10)[ids]
    assert loss.forward(outputs, ids) == loss.forward(outputs, one_hot)
    assert check_loss(loss, outputs, ids).ok
    with pytest.raises(ValueError, match="class id 10 is outside"):
        loss.forward(outputs, np.array([1, 2, 3, 10]))


def test_mse_refuses_mismatched_shapes_and_points_to_cross_entropy():
    with pytest.raises(ValueError, match="SoftmaxCrossEntropy"):
        MSE().forward(np.zeros((3, 10)), np.zeros((3, 5)))
