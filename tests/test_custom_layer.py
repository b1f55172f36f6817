"""A layer written outside numlp, with parameters and randomness of its own, goes through the
whole life of a model through the layer protocol alone: gradient check, training, saving,
loading, exact resume after Ctrl-C, and a clear refusal at ONNX export."""

import numpy as np
import pytest
from conftest import InterruptAt

from numlp import SGD, Dense, Layer, Parameter, ReLU, Sequential
from numlp.checkpoint import Checkpoint, load_checkpoint
from numlp.gradcheck import check_layer
from numlp.io import load_model, save_model
from numlp.layers import LAYERS, register_layer


class NoisyScale(Layer):
    """``y = x * scale (+ Gaussian noise of std sigma in training)``; ``scale: (features,)``."""

    def __init__(self, features: int, sigma: float = 0.1):
        self.features, self.sigma = int(features), float(sigma)
        self.scale = Parameter(np.ones(self.features, dtype=np.float32), decay=False)
        self.rng = np.random.default_rng()

    @classmethod
    def state_shapes(cls, config):
        return {"scale": (config["features"],)}

    def reset_parameters(self, rng, next_activation=None):
        self.scale.value[...] = 1
        self.rng = rng.spawn(1)[0]

    def generators(self):
        return [self.rng]

    def forward(self, x, training=False):
        self._x = x
        out = x * self.scale.value
        if training and self.sigma:
            out += self.sigma * self.rng.standard_normal(x.shape).astype(x.dtype)
        return out

    def backward(self, grad_out):
        self.scale.grad[...] = np.sum(grad_out * self._x, axis=0)
        return grad_out * self.scale.value

    def parameters(self):
        return [self.scale]

    def config(self):
        return {"features": self.features, "sigma": self.sigma}

    def state_dict(self):
        return {"scale": self.scale.value}


register_layer(NoisyScale)


def blobs(n=600, seed=0):
    r = np.random.default_rng(seed)
    centres = r.standard_normal((4, 6)) * 2
    y = r.integers(0, 4, n)
    return (centres[y] + r.standard_normal((n, 6))).astype(np.float32), y


def setup():
    model = Sequential([Dense(6, 16), NoisyScale(16, 0.2), ReLU(), Dense(16, 4)], seed=1)
    return model, SGD(model.parameters(), lr=0.05, momentum=0.9)


FIT = dict(epochs=3, batch_size=32, validation_split=0.2, seed=4)


def test_its_gradient_checks_in_float64():
    x = np.random.default_rng(0).standard_normal((5, 7))
    assert check_layer(NoisyScale(7, 0.0), x).ok


def test_it_trains_and_its_noise_follows_the_fit_seed():
    x, y = blobs()
    runs = []
    for _ in range(2):
        model, optimizer = setup()
        history = model.fit(x, y, optimizer=optimizer, **FIT)
        runs.append(model.state_dict())
    assert history["val_accuracy"][-1] > 0.8
    assert not np.array_equal(runs[0]["layers.1.scale"], np.ones(16))  # it learned
    for key in runs[0]:
        np.testing.assert_array_equal(runs[0][key], runs[1][key])


def test_it_saves_and_loads_by_its_registered_name(tmp_path):
    model, optimizer = setup()
    x, y = blobs()
    model.fit(x, y, optimizer=optimizer, **FIT)
    loaded, _ = load_model(save_model(tmp_path / "m.npz", model))
    assert isinstance(loaded.layers[1], NoisyScale) and LAYERS["NoisyScale"] is NoisyScale
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))


@pytest.mark.parametrize("step", [7, 31])
def test_ctrl_c_then_resume_is_bit_identical(tmp_path, step):
    x, y = blobs()
    model, optimizer = setup()
    model.fit(x, y, optimizer=optimizer, **FIT)
    expected = model.state_dict()

    model, optimizer = setup()
    path = tmp_path / "checkpoint.npz"
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, optimizer=optimizer, callbacks=[Checkpoint(path), InterruptAt(step)], **FIT)
    model, arrays, header = load_checkpoint(path)
    optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9)
    optimizer.load_state_dict(arrays)
    model.fit(x, y, optimizer=optimizer, resume=header["state"], **FIT)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, expected[key], err_msg=key)


def test_onnx_export_says_it_has_no_translation():
    pytest.importorskip("onnx")
    from numlp.export import to_onnx

    with pytest.raises(ValueError, match=r"layer 1 \(NoisyScale\(.*\)\) has no ONNX translation"):
        to_onnx(setup()[0])


def test_a_name_already_taken_cannot_be_registered_again():
    imposter = type("Dense", (Layer,), {})
    with pytest.raises(ValueError, match="'Dense' is already registered"):
        register_layer(imposter)
    with pytest.raises(TypeError):
        register_layer(int)
