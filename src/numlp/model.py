"""``Sequential``: a list of layers run forward in order and backward in reverse.

It feels like Keras and scikit-learn (``fit``, ``evaluate``, ``predict``, ``predict_proba``,
``summary``) while staying a thin list: the math lives in the layers, the loop in
``numlp.train``, files in ``numlp.io``.
"""

from __future__ import annotations

import html
import math

import numpy as np

from numlp.checks import check_inputs
from numlp.layers import (
    LAYERS,
    BatchNorm,
    Dense,
    Dropout,
    Flatten,
    Layer,
    Sigmoid,
    Softmax,
    activation,
    sigmoid,
    softmax,
)
from numlp.losses import BCEWithLogits, Loss, SoftmaxCrossEntropy
from numlp.registry import MODEL_FILES
from numlp.scoring import Scorer
from numlp.threads import small_batch_threads
from numlp.train import fit


class Sequential:
    """A stack of layers.

    Parameters
    ----------
    layers : list of Layer
        Run in order by :meth:`forward`.
    input_shape : tuple of int, optional
        Per-sample input shape, e.g. ``(28, 28)``. Inferred from a first ``Dense`` or
        ``BatchNorm`` when omitted; with ``Flatten`` first, give it (or it is taken from the
        first batch seen by ``fit``).
    seed : int, optional
        Seeds weight initialisation and dropout masks; the same seed gives the same model.
    dtype : numpy dtype
        Parameter dtype, float32 by default (use :meth:`astype` for float64 checks).

    Raises
    ------
    ValueError
        When the layer sizes do not fit each other (checked here, before anything runs),
        naming both layers.
    """

    def __init__(self, layers, input_shape=None, seed: int | None = None, dtype=np.float32):
        self.layers: list[Layer] = list(layers)
        if not self.layers:
            raise ValueError("Sequential needs at least one layer")
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise ValueError(f"layer {i} is a {type(layer).__name__}, not a numlp Layer")
        if input_shape is None:
            input_shape = self.layers[0].expected_input_shape()
        self.input_shape = tuple(int(d) for d in input_shape) if input_shape is not None else None
        self.seed = seed
        self.stop_training = False
        self._check_chain()
        self._skip_data_gradient()
        self.dtype = np.dtype(np.float32)
        self.initialize(seed)
        if np.dtype(dtype) != self.dtype:
            self.astype(dtype)

    # -- structure ------------------------------------------------------------------------

    def _check_chain(self) -> None:
        """Every layer fits the one before it (see :meth:`output_shapes`)."""
        self.output_shapes()

    def set_input_shape(self, input_shape: tuple[int, ...]) -> None:
        """Fix the per-sample input shape (``fit`` does it from the data when it is unknown)
        and check every layer against it."""
        self.input_shape = tuple(int(d) for d in input_shape)
        self._check_chain()

    def _skip_data_gradient(self) -> None:
        """The first layer with parameters sees data: it need not compute its input gradient."""
        first = next((layer for layer in self.layers if layer.parameters()), None)
        for layer in self.layers:
            layer.needs_input_grad = layer is not first

    def output_shapes(self) -> list[tuple[int, ...] | None]:
        """Per-sample output shape of every layer, walked from the input shape; where it is
        unknown (``Flatten`` first), from the first layer that fixes its own input, with None
        before it. A mismatch raises ValueError naming the layer at fault."""
        shapes, shape = [], self.input_shape
        for i, layer in enumerate(self.layers):
            try:
                if shape is None:
                    fixed = layer.expected_input_shape()
                    shape = layer.output_shape(fixed) if fixed is not None else None
                else:
                    shape = layer.output_shape(shape)
            except ValueError as err:
                previous = f"layer {i - 1} ({self.layers[i - 1]!r})" if i else "the input"
                raise ValueError(
                    f"layer {i} ({layer!r}) does not fit after {previous}: {err}"
                ) from None
            shapes.append(shape)
        return shapes

    @property
    def classes(self) -> int:
        """Number of outputs (the width of the last layer's output)."""
        shape = self.output_shapes()[-1]
        if shape is None:
            raise ValueError("the model's number of outputs is unknown: no layer fixes a width")
        return shape[-1]

    def initialize(self, seed: int | None = None) -> None:
        """(Re)draw every parameter from ``seed``. Each layer is told which activation follows
        it, so that a Dense with ``init="auto"`` gets the initialiser that suits it (He before
        ReLU, Xavier before tanh...)."""
        rng = np.random.default_rng(seed)
        for i, layer in enumerate(self.layers):
            layer.reset_parameters(rng, self._next_activation(i))

    def _next_activation(self, i: int) -> str | None:
        for layer in self.layers[i + 1 :]:
            if layer.init_transparent:
                continue
            return None if layer.parameters() else type(layer).__name__
        return None

    def generators(self) -> list[np.random.Generator]:
        """Every layer's random generators, in order (see :meth:`Layer.generators`)."""
        return [g for layer in self.layers for g in layer.generators()]

    def parameters(self):
        """All trainable parameters, layer by layer (the optimizer's only view of the model)."""
        return [p for layer in self.layers for p in layer.parameters()]

    def count_parameters(self) -> int:
        return sum(p.value.size for p in self.parameters())

    def astype(self, dtype) -> Sequential:
        """Cast every parameter and buffer to ``dtype`` in place; returns the model."""
        for layer in self.layers:
            layer.astype(dtype)
        self.dtype = np.dtype(dtype)
        return self

    # -- the math ------------------------------------------------------------------------

    def forward(
        self, x: np.ndarray, training: bool = False, checked: bool = False, head: bool = True
    ) -> np.ndarray:
        """Outputs for ``x: (batch, *input_shape)``. ``x`` is validated first unless
        ``checked`` says the caller did so already (``fit`` checks the whole set once, not
        every batch). ``head=False`` stops before the last layer (a probability head that the
        loss has built in: see :meth:`numlp.losses.Loss.fuses`)."""
        if not checked:
            x = check_inputs(x, self.input_shape)
        x = x.astype(self.dtype, copy=False)
        for layer in self.layers if head else self.layers[:-1]:
            x = layer.forward(x, training)
        return x

    @property
    def output_layer(self) -> Layer | None:
        """The last layer: a loss may have it built in (``loss.fuses(model.output_layer)``)."""
        return self.layers[-1] if self.layers else None

    def default_loss(self) -> Loss:
        """What the outputs mean: the binary cross-entropy for a sigmoid head (each output a
        probability of its own), else the softmax cross-entropy."""
        return BCEWithLogits() if isinstance(self.output_layer, Sigmoid) else SoftmaxCrossEntropy()

    def backward(
        self, grad_out: np.ndarray, input_grad: bool = False, head: bool = True
    ) -> np.ndarray | None:
        """Backpropagate ``grad_out`` (d loss / d outputs) through every layer (all but the
        last with ``head=False``), setting each ``param.grad``. Returns d loss / d input when
        ``input_grad`` is true, else None (the first layer with parameters then skips the
        product it would need for that)."""
        if input_grad:
            for layer in self.layers:
                layer.needs_input_grad = True
        try:
            grad = grad_out
            for layer in reversed(self.layers if head else self.layers[:-1]):
                grad = layer.backward(grad)
                if grad is None:
                    return None
            return grad
        finally:
            if input_grad:
                self._skip_data_gradient()

    # -- using the model -----------------------------------------------------------------

    def predict_proba(self, x, batch_size: int = 8192) -> np.ndarray:
        """Class probabilities ``(batch, classes)``: the model's own when it ends with a
        probability head (a sigmoid head's are each class's own, not summing to 1), else the
        softmax of the logits; a single output gives ``[1 - p, p]``."""
        x = check_inputs(x, self.input_shape)
        with small_batch_threads(len(x)):
            return self._probabilities(x, batch_size)

    def _probabilities(self, x, batch_size: int) -> np.ndarray:
        parts = []
        for start in range(0, len(x), batch_size):
            out = self.forward(x[start : start + batch_size], checked=True)
            own = self.layers[-1].outputs_probabilities
            if out.shape[1] == 1:
                p = out if own else sigmoid(out)
                parts.append(np.hstack([1 - p, p]))
            elif own:
                parts.append(out)
            else:
                parts.append(softmax(out))
        if not parts:
            return np.zeros((0, max(self.classes, 2)), dtype=self.dtype)
        return np.concatenate(parts)

    def predict(self, x, batch_size: int = 8192) -> np.ndarray:
        """Predicted class ids ``(batch,)``."""
        return self.predict_proba(x, batch_size).argmax(axis=1)

    def evaluate(self, x, y, loss: Loss | None = None, batch_size: int = 8192) -> dict:
        """Mean loss and accuracy on ``(x, y)``, inference mode: ``{"loss": ..., "accuracy": ...}``.

        ``loss`` defaults to what the outputs mean (:meth:`default_loss`). Accuracy is given
        whenever ``y`` holds class ids (the top output is the prediction), whatever the loss,
        and for a single output against 0/1 targets.
        """
        loss = loss or self.default_loss()
        x = check_inputs(x, self.input_shape)
        y = np.asarray(y)
        if len(y) != len(x):
            raise ValueError(f"evaluate: x has {len(x)} samples but y has {len(y)}")
        if len(x) == 0:
            raise ValueError("evaluate: got an empty dataset")
        scorer = Scorer(self, loss, y)
        y = scorer.checked(y, "evaluate: y")
        total, correct = 0.0, 0
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size]
            yb = y[start : start + batch_size]
            loss.see_inputs(xb)
            out = self.forward(xb, checked=True, **scorer.forward_options)
            total += loss.forward(out, yb) * len(xb)
            correct += scorer.correct(out, yb)
        result = {"loss": total / len(x)}
        if scorer.scores:
            result["accuracy"] = correct / len(x)
        return result

    # The training loop, as a method: ``model.fit(x, y, epochs=..., optimizer=...)`` is
    # :func:`numlp.train.fit` with this model first, so help() shows its real signature.
    fit = fit

    @property
    def members(self) -> tuple[Sequential]:
        """The models whose probabilities this one gives: itself (a
        :class:`~numlp.committee.Committee` gives the mean of its members')."""
        return (self,)

    def describe(self) -> str:
        """One line for reports: the layers in order, ``Flatten → Dense → ReLU → ...``."""
        return " → ".join(type(layer).__name__ for layer in self.layers)

    def summary(self) -> str:
        """A table of layers, output shapes and parameter counts."""
        rows = [("#", "layer", "output shape", "params")]
        for i, (layer, shape) in enumerate(zip(self.layers, self.output_shapes())):
            count = sum(p.value.size for p in layer.parameters())
            shown = "(batch, " + ", ".join(map(str, shape)) + ")" if shape else "?"
            rows.append((str(i), repr(layer), shown, f"{count:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "-" * len(lines[0]))
        input_shape = ", ".join(map(str, self.input_shape)) if self.input_shape else "?"
        lines.append(
            f"input (batch, {input_shape}); {self.count_parameters():,} parameters, {self.dtype}"
        )
        return "\n".join(lines)

    def __repr__(self) -> str:
        inner = ",\n".join(f"    {layer!r}" for layer in self.layers)
        return f"Sequential([\n{inner}\n])"

    def _repr_html_(self) -> str:
        """What Jupyter shows for a model: its :meth:`summary` table."""
        return f"<pre>{html.escape(self.summary())}</pre>"

    def save(self, path, **metadata):
        """Write this model to the model file ``path`` (``.npz``, atomically) with
        ``metadata`` in its header (``class_names``, ``preprocessing``...); returns the path.
        ``numlp.load(path)`` reads it back."""
        return MODEL_FILES["npz"](path, self, **metadata)

    # -- state, for numlp.io -----------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every learned array under a dotted key: ``layers.0.W``, ``layers.2.running_mean``..."""
        return {
            f"layers.{i}.{name}": arr
            for i, layer in enumerate(self.layers)
            for name, arr in layer.state_dict().items()
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Copy arrays from ``state`` (keys as :meth:`state_dict`) in; all or nothing."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        extra = sorted(set(state) - set(own))
        if missing or extra:
            raise ValueError(
                f"state does not match the model: missing {missing}, unexpected {extra}"
            )
        for key, arr in own.items():  # check everything before changing anything
            new = np.asarray(state[key])
            if new.shape != arr.shape:
                raise ValueError(f"{key} has shape {new.shape}, the model's is {arr.shape}")
            if new.dtype.kind != "f":
                raise ValueError(f"{key} has dtype {new.dtype}, expected floating point")
        for i, layer in enumerate(self.layers):
            prefix = f"layers.{i}."
            layer.load_state_dict(
                {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            )

    def config(self) -> dict:
        """A JSON-ready description that :meth:`from_config` turns back into this architecture."""
        return {
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "layers": [{"type": type(layer).__name__, **layer.config()} for layer in self.layers],
        }

    @classmethod
    def from_config(cls, config: dict, dtype=np.float32) -> Sequential:
        layers = []
        for i, spec in enumerate(config["layers"]):
            spec = dict(spec)
            kind = spec.pop("type", None)
            if kind not in LAYERS:
                raise ValueError(f"layer {i}: unknown layer type {kind!r}")
            try:
                layers.append(LAYERS[kind](**spec))
            except TypeError as err:
                raise ValueError(f"layer {i} ({kind}): bad settings {spec}: {err}") from None
        return cls(layers, input_shape=config.get("input_shape"), seed=0, dtype=dtype)


OUTPUTS = ("logits", "softmax", "sigmoid")  # what the last Dense is followed by
# 400 MB of float32 weights, 1.2 GB with Adam's two moments: 30 times the largest published MLP
# for MNIST (12 million), and far below what would exhaust this machine's memory by a typo.
MAX_PARAMETERS = 400_000_000


def mlp(
    input_shape: tuple[int, ...],
    hidden,
    classes: int,
    activation_name: str = "relu",
    dropout: float = 0.0,
    batchnorm: bool = False,
    seed: int | None = None,
    init: str = "auto",
    bias_init: str = "zeros",
    output: str = "logits",
) -> Sequential:
    """The usual multilayer perceptron: ``[Flatten]`` for image inputs, then for each hidden
    width ``Dense, [BatchNorm], activation, [Dropout]``, then a ``Dense`` to ``classes``
    outputs: logits, or probabilities through a ``Softmax`` or ``Sigmoid`` (``output``). No
    hidden width gives a linear (or logistic) model. ``init`` and ``bias_init`` go to every
    ``Dense`` (see :mod:`numlp.init`)."""
    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}; choose one of {', '.join(OUTPUTS)}")
    widths = [math.prod(input_shape), *map(int, hidden), classes]
    count = sum((a + 1) * b for a, b in zip(widths, widths[1:]))
    if count > MAX_PARAMETERS:  # before a byte is allocated
        raise ValueError(
            f"an MLP {'-'.join(map(str, widths))} has {count:,} parameters "
            f"({count * 12 / 2**30:.1f} GiB with Adam's state), over numlp's limit of "
            f"{MAX_PARAMETERS:,}: use narrower or fewer layers"
        )
    layers: list[Layer] = [Flatten()] if len(input_shape) > 1 else []
    width = math.prod(input_shape)
    for size in hidden:
        layers.append(Dense(width, int(size), init=init, bias_init=bias_init))
        if batchnorm:
            layers.append(BatchNorm(int(size)))
        layers.append(activation(activation_name))
        if dropout:
            layers.append(Dropout(dropout))
        width = int(size)
    layers.append(Dense(width, classes, init=init, bias_init=bias_init))
    if output == "softmax":
        layers.append(Softmax())
    elif output == "sigmoid":
        layers.append(Sigmoid())
    return Sequential(layers, input_shape=input_shape, seed=seed)
