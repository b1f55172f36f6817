"""Export a model to ONNX, so that it runs where numlp does not (onnxruntime, other tools).

Each layer becomes the ONNX operators that compute the same function in inference mode:
Dense -> Gemm, ReLU/LeakyReLU/Sigmoid/Tanh/Softmax -> their ops, GELU -> its tanh formula
(the ``Gelu`` op only exists from opset 20), Flatten -> Flatten, BatchNorm ->
BatchNormalization with the running statistics, Dropout -> nothing (it is the identity at
inference). Class names, preprocessing and versions go into the model's metadata.

Needs the optional ``onnx`` package (``pip install numlp[onnx]``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from numlp._version import __version__
from numlp.atomic import atomic_write_bytes
from numlp.committee import Committee
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
)
from numlp.model import Sequential

DEFAULT_OPSET = 17
# The opsets whose operators and semantics this exporter writes (Softmax over the last axis
# from 13 on) and that the tests check in onnxruntime; others are refused, never half-written.
OPSETS = range(13, 22)


def to_onnx(
    model: Sequential | Committee,
    metadata: dict | None = None,
    softmax: bool = False,
    opset: int = DEFAULT_OPSET,
):
    """Build the ``onnx.ModelProto`` of ``model``: input ``input`` of shape
    ``(batch, *input_shape)`` float32, output ``logits`` (or ``probabilities`` with
    ``softmax=True``). A :class:`~numlp.committee.Committee` becomes one graph that runs every
    member and averages their probabilities (output ``probabilities``). ``metadata`` values
    are stored as JSON strings."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise ImportError(
            "ONNX export needs the onnx package: pip install onnx (numlp's onnx extra)"
        ) from None
    if model.input_shape is None:
        raise ValueError("the model's input shape is unknown; build it with input_shape=...")
    if isinstance(opset, bool) or opset not in OPSETS:
        raise ValueError(
            f"ONNX opset {opset!r} is not supported by numlp's exporter: choose "
            f"{OPSETS.start} to {OPSETS.stop - 1} (default {DEFAULT_OPSET})"
        )
    nodes, initializers = [], []

    def constant(name: str, value) -> str:
        initializers.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def node(op: str, inputs: list[str], name: str, **attributes) -> str:
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attributes))
        return name

    if len(model.members) > 1:  # a committee: the mean of its members' probabilities
        output = "probabilities"
        means = [
            _probabilities(member, f"members.{i}", node, constant)
            for i, member in enumerate(model.members)
        ]
        total = node("Sum", means, "members.sum")
        scale = constant("members.weight", 1.0 / len(means))
        nodes.append(helper.make_node("Mul", [total, scale], [output], name="average"))
    else:
        output = "probabilities" if softmax else "logits"
        current = _layers(model, "layers", node, constant)
        # a probability head (Softmax, or a Sigmoid's per-class probabilities) is what it means
        if softmax and not model.layers[-1].outputs_probabilities:
            nodes.append(helper.make_node("Softmax", [current], [output], name="softmax", axis=1))
        else:
            nodes.append(helper.make_node("Identity", [current], [output], name="output"))
    graph = helper.make_graph(
        nodes,
        "numlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *model.input_shape])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", model.classes])],
        initializers,
    )
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, producer_name="numlp", opset_imports=opsets)
    # The oldest IR version that has this opset, not the newest the onnx package knows: a
    # runtime older than that package (onnxruntime 1.23 reads IR 11 at most) still loads it.
    proto.ir_version = helper.find_min_ir_version_for(opsets)

    props = {"numlp_version": __version__, **(metadata or {})}
    helper.set_model_props(proto, {k: json.dumps(v) for k, v in props.items()})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _probabilities(model: Sequential, prefix: str, node, constant) -> str:
    """A committee member's class probabilities (a softmax over its logits, unless it has a
    softmax head of its own)."""
    current = _layers(model, f"{prefix}.layers", node, constant)
    if model.layers[-1].outputs_probabilities:
        return current
    return node("Softmax", [current], f"{prefix}.softmax", axis=1)


def _layers(model: Sequential, prefix: str, node, constant) -> str:
    """Every layer's operators, from the graph input; returns the name of the last output."""
    current = "input"
    for i, layer in enumerate(model.layers):
        tag = f"{prefix}.{i}"
        if isinstance(layer, Dense):
            w = constant(f"{tag}.W", layer.W.value)
            b = constant(f"{tag}.b", layer.b.value)
            current = node("Gemm", [current, w, b], f"{tag}.gemm")
        elif isinstance(layer, Flatten):
            current = node("Flatten", [current], f"{tag}.flatten", axis=1)
        elif isinstance(layer, ReLU):
            current = node("Relu", [current], f"{tag}.relu")
        elif isinstance(layer, LeakyReLU):
            current = node("LeakyRelu", [current], f"{tag}.leaky_relu", alpha=layer.negative_slope)
        elif isinstance(layer, Sigmoid):
            current = node("Sigmoid", [current], f"{tag}.sigmoid")
        elif isinstance(layer, Tanh):
            current = node("Tanh", [current], f"{tag}.tanh")
        elif isinstance(layer, Softmax):
            current = node("Softmax", [current], f"{tag}.softmax", axis=1)
        elif isinstance(layer, GELU):
            current = _gelu(current, tag, node, constant)
        elif isinstance(layer, BatchNorm):
            current = node(
                "BatchNormalization",
                [
                    current,
                    constant(f"{tag}.gamma", layer.gamma.value),
                    constant(f"{tag}.beta", layer.beta.value),
                    constant(f"{tag}.running_mean", layer.running_mean),
                    constant(f"{tag}.running_var", layer.running_var),
                ],
                f"{tag}.batchnorm",
                epsilon=layer.eps,
            )
        elif isinstance(layer, Dropout):
            continue  # the identity at inference
        else:
            raise ValueError(f"layer {i} ({layer!r}) has no ONNX translation")
    return current


def _gelu(x: str, tag: str, node, constant) -> str:
    """0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x**3))), as numlp's GELU computes it."""
    cube = node("Mul", [node("Mul", [x, x], f"{tag}.x2"), x], f"{tag}.x3")
    inner = node(
        "Add",
        [x, node("Mul", [cube, constant(f"{tag}.k", 0.044715)], f"{tag}.kx3")],
        f"{tag}.inner",
    )
    scaled = node("Mul", [inner, constant(f"{tag}.c", math.sqrt(2 / math.pi))], f"{tag}.scaled")
    one_plus = node(
        "Add", [node("Tanh", [scaled], f"{tag}.t"), constant(f"{tag}.one", 1.0)], f"{tag}.one_plus"
    )
    half_x = node("Mul", [x, constant(f"{tag}.half", 0.5)], f"{tag}.half_x")
    return node("Mul", [half_x, one_plus], f"{tag}.gelu")


def export_onnx(
    model: Sequential | Committee,
    path,
    metadata: dict | None = None,
    softmax: bool = False,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write ``model`` as an ONNX file at ``path`` (atomically); returns the path."""
    proto = to_onnx(model, metadata, softmax, opset)
    path = Path(path)
    atomic_write_bytes(path, proto.SerializeToString())
    return path
