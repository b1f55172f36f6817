"""ONNX export, checked by onnxruntime (a client numlp did not write) on the MNIST test set."""

import json

import numpy as np
import pytest

from numlp import (
    GELU,
    BatchNorm,
    Dense,
    Dropout,
    Flatten,
    LeakyReLU,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
)
from numlp.layers import softmax

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from numlp.export import export_onnx  # noqa: E402


def run_onnx(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


@pytest.fixture(scope="module")
def trained(mnist_arrays):
    x_train, y_train, x_test, y_test = mnist_arrays
    model = Sequential(
        [
            Flatten(),
            Dense(784, 128),
            BatchNorm(128),
            ReLU(),
            Dropout(0.1),
            Dense(128, 64),
            GELU(),
            Dense(64, 32),
            Tanh(),
            Dense(32, 32),
            LeakyReLU(0.05),
            Dense(32, 16),
            Sigmoid(),
            Dense(16, 10),
        ],
        input_shape=(28, 28),
        seed=0,
    )
    model.fit(x_train[:20000], y_train[:20000], epochs=1, batch_size=128, seed=0)
    return model, x_test, y_test


@pytest.mark.parametrize("opset", [13, 17, 21])
def test_onnxruntime_agrees_with_numlp_on_the_whole_mnist_test_set(trained, tmp_path, opset):
    model, x_test, _ = trained
    path = export_onnx(model, tmp_path / "m.onnx", {"class_names": list("0123456789")}, opset=opset)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    # the oldest IR version with that opset, so that older runtimes load it too
    assert proto.ir_version == {13: 7, 17: 8, 21: 10}[opset]
    logits_onnx = run_onnx(path, x_test)
    logits = model.forward(x_test)
    np.testing.assert_allclose(logits_onnx, logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(softmax(logits_onnx), softmax(logits), atol=1e-5)
    assert np.array_equal(logits_onnx.argmax(axis=1), logits.argmax(axis=1))


def test_softmax_output_and_metadata(trained, tmp_path):
    model, x_test, _ = trained
    path = export_onnx(
        model, tmp_path / "p.onnx", {"preprocessing": {"scale": 1 / 255}}, softmax=True
    )
    probabilities = run_onnx(path, x_test[:500])
    np.testing.assert_allclose(probabilities, model.predict_proba(x_test[:500]), atol=1e-5)
    props = {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}
    assert props["preprocessing"] == {"scale": 1 / 255} and props["numlp_version"]


def test_the_cli_exports_a_saved_model(trained, tmp_path, capsys):
    from numlp.cli import main
    from numlp.io import save_model

    model, x_test, _ = trained
    save_model(tmp_path / "model.npz", model, class_names=list("abcdefghij"))
    assert main(["export", str(tmp_path / "model.npz"), "--onnx", str(tmp_path / "o.onnx")]) == 0
    props = {p.key: json.loads(p.value) for p in onnx.load(str(tmp_path / "o.onnx")).metadata_props}
    assert props["class_names"] == list("abcdefghij")
    assert run_onnx(tmp_path / "o.onnx", x_test[:3]).shape == (3, 10)


@pytest.mark.parametrize("opset", [1, 12, 22, 99])
def test_opsets_the_exporter_does_not_write_are_refused_and_nothing_is_written(
    trained, tmp_path, capsys, opset
):
    from numlp.cli import main
    from numlp.io import save_model

    model, _, _ = trained
    save_model(tmp_path / "model.npz", model)
    argv = ["export", str(tmp_path / "model.npz"), "--onnx", str(tmp_path / "o.onnx")]
    assert main([*argv, "--opset", str(opset)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"numlp: error: ONNX opset {opset} is not supported by numlp's exporter: choose 13 to 21 "
        "(default 17)"
    )
    assert not (tmp_path / "o.onnx").exists()
