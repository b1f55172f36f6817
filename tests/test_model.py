"""Sequential: whole-model gradient checks, a hand-worked network, shapes, bad input."""

import numpy as np
import pytest

from numlp import (
    GELU,
    MSE,
    BatchNorm,
    BCEWithLogits,
    Dense,
    Dropout,
    Flatten,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    SoftmaxCrossEntropy,
    Tanh,
)
from numlp.gradcheck import check_model, numeric_gradient
from numlp.init import variance

rng = np.random.default_rng(11)


def test_whole_model_gradient_with_every_kind_of_layer():
    model = Sequential(
        [
            Flatten(),
            Dense(12, 8),
            BatchNorm(8),
            ReLU(),
            Dropout(0.3),
            Dense(8, 6),
            Tanh(),
            Dense(6, 5),
            GELU(),
            Dense(5, 4),
        ],
        input_shape=(3, 4),
        seed=0,
    )

    def same_masks(m):
        for layer in m.layers:
            if isinstance(layer, Dropout):
                layer.rng = np.random.default_rng(5)

    x = rng.standard_normal((6, 3, 4))
    y = np.array([0, 1, 2, 3, 1, 0])
    result = check_model(model, SoftmaxCrossEntropy(0.1), x, y, before_forward=same_masks)
    assert len(result.errors) == 1 + 10  # the input and all ten parameter arrays were checked
    # The bias of the Dense before BatchNorm has a zero gradient (BatchNorm subtracts the batch
    # mean), so its finite difference is rounding noise (~1e-10) and a relative error means
    # nothing there: its analytic gradient must be zero, and everything else must agree.
    errors = {k: v for k, v in result.errors.items() if k != "layers.1.b"}
    assert max(errors.values()) <= result.rtol, str(result)
    model.astype(np.float64)
    same_masks(model)
    loss = SoftmaxCrossEntropy(0.1)
    loss.forward(model.forward(x, training=True), y)
    model.backward(loss.backward())
    assert np.abs(model.layers[1].W.grad).max() > 1e-3  # a real backward pass...
    assert np.abs(model.layers[1].b.grad).max() < 1e-12  # ...and this gradient is zero


def test_whole_model_gradient_with_mse_and_sigmoid():
    model = Sequential([Dense(3, 5), Sigmoid(), Dense(5, 2)], seed=1)
    result = check_model(model, MSE(), rng.standard_normal((4, 3)), rng.standard_normal((4, 2)))
    assert result.ok, str(result)


def test_whole_model_gradient_with_bce():
    model = Sequential([Dense(3, 4), Tanh(), Dense(4, 1)], seed=2)
    result = check_model(model, BCEWithLogits(), rng.standard_normal((5, 3)), rng.random((5, 1)))
    assert result.ok, str(result)


def test_gradient_check_catches_a_wrong_backward():
    class BrokenTanh(Tanh):
        def backward(self, grad_out):
            return grad_out * (1 - self._out)  # forgot the square

    model = Sequential([Dense(3, 4), BrokenTanh(), Dense(4, 2)], seed=0)
    result = check_model(model, SoftmaxCrossEntropy(), rng.standard_normal((3, 3)), [0, 1, 1])
    assert not result.ok
    assert "layers.0.W" in str(result)


def test_a_hand_worked_tiny_network():
    model = Sequential([Dense(2, 2), ReLU(), Dense(2, 1)], seed=0, dtype=np.float64)
    d1, d2 = model.layers[0], model.layers[2]
    d1.W.value[...] = [[1, -1], [0.5, 2]]
    d1.b.value[...] = [0, 1]
    d2.W.value[...] = [[1], [-1]]
    d2.b.value[...] = [0.5]
    x = np.array([[1.0, 2.0]])
    out = model.forward(x, training=True)  # hidden [2, 4] -> 2 - 4 + 0.5
    assert out.tolist() == [[-1.5]]
    loss = MSE()
    assert loss.forward(out, np.array([[0.5]])) == 4.0
    model.backward(loss.backward())  # d loss / d out = -4
    assert d2.W.grad.tolist() == [[-8], [-16]]
    assert d2.b.grad.tolist() == [-4]
    assert d1.W.grad.tolist() == [[-4, 4], [-8, 8]]
    assert d1.b.grad.tolist() == [-4, 4]


def test_auto_init_follows_the_next_activation():
    model = Sequential([Dense(500, 400), ReLU(), Dense(400, 300), Tanh(), Dense(300, 10)], seed=0)
    he = model.layers[0].W.value
    xavier = model.layers[2].W.value
    assert he.var() == pytest.approx(variance("he_normal", 500, 400), rel=0.03)
    assert xavier.var() == pytest.approx(variance("xavier_uniform", 400, 300), rel=0.03)


def test_layer_size_mismatch_names_both_layers_at_construction():
    with pytest.raises(ValueError, match=r"layer 2 \(Dense\(in_features=128.*after layer 1"):
        Sequential([Dense(784, 256), ReLU(), Dense(128, 10)])


def test_unflattened_images_get_a_hint_to_flatten():
    model = Sequential([Dense(784, 10)], seed=0)
    with pytest.raises(
        ValueError, match=r"expects shape \(batch, 784\), got \(2, 28, 28\).*reshape"
    ):
        model.predict(np.zeros((2, 28, 28)))


def test_n_28_28_input_trains_through_flatten():
    # Seed 001 crashed feeding 28x28 images straight into the first matrix product.
    x = rng.random((40, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 40)
    model = Sequential([Flatten(), Dense(784, 16), ReLU(), Dense(16, 10)], seed=0)
    history = model.fit(x, y, epochs=2, batch_size=8, seed=0)
    assert model.input_shape == (28, 28)
    assert len(history) == 2
    assert model.predict(x[:3]).shape == (3,)


@pytest.mark.parametrize(
    "x, message",
    [
        (np.full((2, 4), np.nan), "NaN or Inf"),
        (np.array([[1, 2, np.inf, 4]]), "NaN or Inf"),
        (np.array([["a", "b", "c", "d"]]), "real numbers"),
        (np.zeros((2, 5)), r"expects shape \(batch, 4\)"),
        (np.zeros(4), "for one sample use x\\[None\\]"),
    ],
)
def test_bad_input_gives_a_clear_error_and_changes_no_parameter(x, message):
    model = Sequential([Dense(4, 3), ReLU(), Dense(3, 2)], seed=0)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        model.fit(x, np.zeros(len(x), dtype=int), epochs=1)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_labels_outside_the_classes_are_refused_before_any_step():
    model = Sequential([Dense(4, 3)], seed=0)
    before = model.layers[0].W.value.copy()
    with pytest.raises(ValueError, match=r"class id 3 is outside \[0, 3\)"):
        model.fit(np.zeros((5, 4)), np.array([0, 1, 2, 3, 0]), epochs=1)
    np.testing.assert_array_equal(model.layers[0].W.value, before)


def test_predict_proba_rows_are_probabilities_and_predict_is_their_argmax():
    model = Sequential([Dense(4, 8), ReLU(), Dense(8, 3)], seed=0)
    x = rng.standard_normal((50, 4))
    proba = model.predict_proba(x, batch_size=7)
    assert proba.shape == (50, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(model.predict(x), proba.argmax(axis=1))


def test_single_logit_model_gives_two_column_probabilities():
    model = Sequential([Dense(2, 1)], seed=0)
    proba = model.predict_proba(np.ones((3, 2)))
    assert proba.shape == (3, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1)


def test_evaluate_returns_loss_and_accuracy_in_inference_mode():
    model = Sequential([Dense(4, 3), Dropout(0.9)], seed=0)
    x = rng.standard_normal((20, 4))
    y = model.predict(x)
    scores = model.evaluate(x, y, batch_size=6)
    assert scores["accuracy"] == 1.0  # dropout is off, so predictions match themselves
    assert scores["loss"] > 0


def test_summary_lists_layers_shapes_and_parameter_counts():
    model = Sequential([Flatten(), Dense(784, 256), ReLU(), Dense(256, 10)], input_shape=(28, 28))
    text = model.summary()
    assert "(batch, 256)" in text and "200,960" in text and "2,570" in text
    assert "203,530 parameters" in text


def test_state_dict_uses_dotted_keys_and_round_trips():
    model = Sequential([Dense(4, 3), BatchNorm(3), ReLU(), Dense(3, 2)], seed=0)
    state = model.state_dict()
    assert sorted(state) == sorted(
        [
            "layers.0.W",
            "layers.0.b",
            "layers.1.gamma",
            "layers.1.beta",
            "layers.1.running_mean",
            "layers.1.running_var",
            "layers.3.W",
            "layers.3.b",
        ]
    )
    other = Sequential.from_config(model.config())
    other.load_state_dict({k: v.copy() for k, v in state.items()})
    x = rng.standard_normal((5, 4))
    np.testing.assert_array_equal(model.predict_proba(x), other.predict_proba(x))


def test_load_state_dict_with_a_wrong_shape_changes_nothing():
    model = Sequential([Dense(4, 3), ReLU(), Dense(3, 2)], seed=0)
    state = {k: v + 1 for k, v in model.state_dict().items()}
    state["layers.2.W"] = np.zeros((3, 5))
    before = model.layers[0].W.value.copy()
    with pytest.raises(ValueError, match="layers.2.W"):
        model.load_state_dict(state)
    np.testing.assert_array_equal(model.layers[0].W.value, before)


def test_a_softmax_head_trains_fused_exactly_like_the_logits_model():
    # Seed 000 ends its model with Softmax: the loss takes the logits below it.
    x = rng.standard_normal((64, 4))
    y = rng.integers(0, 3, 64)
    with_head = Sequential([Dense(4, 5), ReLU(), Dense(5, 3), Softmax()], seed=0)
    plain = Sequential([Dense(4, 5), ReLU(), Dense(5, 3)], seed=0)
    for model in (with_head, plain):
        history = model.fit(x, y, epochs=3, batch_size=8, seed=1)
    for a, b in zip(with_head.parameters(), plain.parameters()):
        np.testing.assert_array_equal(a.value, b.value)
    assert len(history["accuracy"]) == 3  # a probability head still reports accuracy
    np.testing.assert_allclose(with_head.predict_proba(x), plain.predict_proba(x), rtol=1e-6)
    assert with_head.evaluate(x, y)["loss"] == pytest.approx(plain.evaluate(x, y)["loss"])


def test_the_fused_softmax_head_gradient_is_that_of_the_cross_entropy_on_probabilities():
    model = Sequential([Dense(4, 5), Tanh(), Dense(5, 3), Softmax()], seed=0)
    model.astype(np.float64)
    x, y = rng.standard_normal((6, 4)), rng.integers(0, 3, 6)
    loss = SoftmaxCrossEntropy()
    assert check_model(model, loss, x, y).ok
    # the same gradient, by finite differences of -mean(log p[y]) through the Softmax layer
    loss.forward(model.forward(x, head=False), y)
    model.backward(loss.backward(), head=False)
    weights = model.layers[0].W

    def on_probabilities():
        p = model.forward(x)
        return -np.mean(np.log(p[np.arange(len(y)), y]))

    numeric = numeric_gradient(on_probabilities, weights.value)
    np.testing.assert_allclose(weights.grad, numeric, rtol=1e-6, atol=1e-9)


def test_sigmoid_bce_net_on_a_separable_set_converges_without_nan():
    # Seed 002: sigmoid + BCE with the wrong sign trained silently to NaN and 9.8 %.
    x = rng.standard_normal((400, 2)).astype(np.float32)
    y = (x[:, 0] + 2 * x[:, 1] > 0).astype(np.float32)[:, None]
    model = Sequential([Dense(2, 8), Sigmoid(), Dense(8, 1)], seed=0)
    from numlp import SGD

    history = model.fit(
        x,
        y,
        epochs=60,
        batch_size=32,
        loss=BCEWithLogits(),
        optimizer=SGD(model.parameters(), lr=0.5),
        seed=0,
    )
    assert np.all(np.isfinite(history["loss"]))
    assert history["loss"][-1] < 0.1
    assert history["accuracy"][-1] > 0.97
    assert np.mean(model.predict(x) == y[:, 0]) > 0.97


def test_load_state_dict_with_a_wrong_dtype_in_a_later_layer_changes_nothing():
    model = Sequential([Dense(4, 3), ReLU(), Dense(3, 2)], seed=0)
    state = {k: v + 1 for k, v in model.state_dict().items()}
    state["layers.2.b"] = np.zeros(2, dtype=np.int32)
    before = model.layers[0].W.value.copy()
    with pytest.raises(ValueError, match="dtype int32"):
        model.load_state_dict(state)
    np.testing.assert_array_equal(model.layers[0].W.value, before)


def test_mlp_builds_the_usual_stack_with_the_optional_layers():
    from numlp.model import mlp

    model = mlp((28, 28), (64, 32), 10, "tanh", dropout=0.1, batchnorm=True, seed=0)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == [
        "Flatten",
        "Dense",
        "BatchNorm",
        "Tanh",
        "Dropout",
        "Dense",
        "BatchNorm",
        "Tanh",
        "Dropout",
        "Dense",
    ]
    assert model.input_shape == (28, 28) and model.classes == 10
    assert [type(layer).__name__ for layer in mlp((5,), (3,), 2).layers] == [
        "Dense",
        "ReLU",
        "Dense",
    ]


@pytest.mark.parametrize("loss", [MSE(), BCEWithLogits(), SoftmaxCrossEntropy()])
@pytest.mark.parametrize("head", [Sigmoid, Softmax, None])
def test_every_head_and_loss_pair_has_the_right_gradient(loss, head):
    # Seeds 002 and 003: sigmoid outputs with BCE (fused) and MSE (through the sigmoid).
    layers = [Dense(4, 5), Tanh(), Dense(5, 3)] + ([head()] if head else [])
    model = Sequential(layers, seed=0)
    x, y = rng.standard_normal((6, 4)), rng.integers(0, 3, 6)
    assert check_model(model, loss, x, y).ok


def test_a_sigmoid_model_reports_its_own_loss_and_accuracy_for_every_loss():
    model = Sequential([Dense(4, 3), Sigmoid()], seed=0)
    x, y = rng.standard_normal((20, 4)), rng.integers(0, 3, 20)
    assert isinstance(model.default_loss(), BCEWithLogits)
    logits = model.forward(x, head=False)
    expected = BCEWithLogits().forward(logits, y)
    assert model.evaluate(x, y)["loss"] == pytest.approx(expected)
    top = np.mean(logits.argmax(axis=1) == y)
    for loss in (MSE(), BCEWithLogits()):
        assert model.evaluate(x, y, loss=loss)["accuracy"] == pytest.approx(top)
    history = model.fit(x, y, loss=MSE(), epochs=2, batch_size=5, seed=0)
    assert len(history["accuracy"]) == 2


def test_fixed_scale_initialisers_draw_at_the_scale_they_name():
    big = Dense(400, 500, init="normal:0.01", bias_init="uniform:0,0.01", rng=rng)
    assert big.W.value.std() == pytest.approx(0.01, rel=0.02)
    assert big.b.value.min() >= 0 and big.b.value.max() < 0.01
    uniform = Dense(400, 500, init="uniform:-0.1,0.1", bias_init="constant:0.5", rng=rng)
    assert -0.1 <= uniform.W.value.min() and uniform.W.value.max() < 0.1
    assert np.all(uniform.b.value == 0.5)
    he = Dense(400, 500, bias_init="he_normal", rng=rng)  # seed 000 drew its biases like this
    assert he.b.value.std() == pytest.approx(np.sqrt(2 / 400), rel=0.1)
    assert Dense(4, 3).config().get("bias_init") is None  # default files stay as they were
    restored = Sequential.from_config(Sequential([uniform], seed=0).config())
    assert restored.layers[0].bias_init == "constant:0.5"
