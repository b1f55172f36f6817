"""Finite-difference gradient checks, in float64, of any layer, loss or whole model.

Every element of every gradient is compared with a central difference
``(f(a + eps) - f(a - eps)) / (2 eps)``; nothing is sampled. Checks work on a float64 copy,
so the object you pass is left as it was.

For a layer, the scalar being differentiated is ``sum(layer(x) * R)`` with a fixed random
``R``: its gradient with respect to the output is exactly ``R``, which exercises every
output element with a different weight.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from numlp.layers import Layer
from numlp.losses import Loss


@dataclass
class GradCheckResult:
    """Outcome of a check: the worst relative error per array and overall.

    The relative error of one element is ``|analytic - numeric| / max(|analytic|, |numeric|, atol)``
    so that gradients near zero are compared absolutely.
    """

    errors: dict[str, float] = field(default_factory=dict)
    rtol: float = 1e-6

    @property
    def max_error(self) -> float:
        return max(self.errors.values(), default=0.0)

    @property
    def ok(self) -> bool:
        return self.max_error <= self.rtol

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        rows = [f"{name}: {err:.2e}" for name, err in self.errors.items()]
        verdict = "ok" if self.ok else f"FAILED (tolerance {self.rtol:.0e})"
        return f"gradient check {verdict}; max relative error per array: " + ", ".join(rows)


def numeric_gradient(f: Callable[[], float], array: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar ``f()`` with respect to each element of ``array``,
    which is perturbed in place and restored."""
    grad = np.zeros_like(array, dtype=np.float64)
    flat = array.reshape(-1)  # a view: writes reach the array f reads
    out = grad.reshape(-1)
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        plus = f()
        flat[i] = original - eps
        minus = f()
        flat[i] = original
        out[i] = (plus - minus) / (2 * eps)
    return grad


def _relative_error(analytic, numeric, atol: float) -> float:
    analytic = np.asarray(analytic, dtype=np.float64)
    if analytic.shape != numeric.shape:
        raise ValueError(f"analytic gradient has shape {analytic.shape}, expected {numeric.shape}")
    scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), atol)
    return float(np.max(np.abs(analytic - numeric) / scale)) if analytic.size else 0.0


def check_layer(
    layer: Layer,
    x: np.ndarray,
    training: bool = True,
    before_forward: Callable[[Layer], None] | None = None,
    eps: float = 1e-6,
    rtol: float = 1e-6,
    atol: float = 1e-7,
    seed: int = 0,
) -> GradCheckResult:
    """Check ``layer.backward`` against finite differences for the input and every parameter.

    ``before_forward(layer)`` runs before each forward pass; use it to make a random layer
    repeatable (e.g. reseed a Dropout's ``rng`` so that every pass draws the same mask).
    """
    layer = copy.deepcopy(layer)
    layer.astype(np.float64)
    x = np.array(x, dtype=np.float64)
    rng = np.random.default_rng(seed)

    def run():
        if before_forward is not None:
            before_forward(layer)
        return layer.forward(x, training)

    weights = rng.standard_normal(run().shape)

    def f():
        return float(np.sum(run() * weights))

    run()
    if hasattr(layer, "needs_input_grad"):
        layer.needs_input_grad = True
    grad_in = layer.backward(weights)
    analytic = {"input": grad_in}
    analytic.update({f"param{i}": p.grad.copy() for i, p in enumerate(layer.parameters())})
    result = GradCheckResult(rtol=rtol)
    result.errors["input"] = _relative_error(grad_in, numeric_gradient(f, x, eps), atol)
    for i, p in enumerate(layer.parameters()):
        numeric = numeric_gradient(f, p.value, eps)
        result.errors[f"param{i}"] = _relative_error(analytic[f"param{i}"], numeric, atol)
    return result


def check_loss(
    loss: Loss,
    outputs: np.ndarray,
    targets,
    eps: float = 1e-6,
    rtol: float = 1e-6,
    atol: float = 1e-7,
) -> GradCheckResult:
    """Check ``loss.backward()`` (the gradient with respect to ``outputs``) for every element."""
    outputs = np.array(outputs, dtype=np.float64)
    loss.forward(outputs, targets)
    analytic = loss.backward()
    numeric = numeric_gradient(lambda: loss.forward(outputs, targets), outputs, eps)
    return GradCheckResult({"outputs": _relative_error(analytic, numeric, atol)}, rtol)


def check_model(
    model,
    loss: Loss,
    x: np.ndarray,
    y,
    training: bool = True,
    before_forward: Callable | None = None,
    eps: float = 1e-6,
    rtol: float = 1e-6,
    atol: float = 1e-7,
) -> GradCheckResult:
    """Check a whole :class:`~numlp.Sequential` with ``loss``: the gradient of the mean loss with
    respect to every element of every parameter and of the input ``x``. A probability head
    the loss has built in (``loss.fuses``) is trained fused, and checked the same way."""
    model = copy.deepcopy(model)
    model.astype(np.float64)
    x = np.array(x, dtype=np.float64)
    head = {"head": False} if loss.fuses(model.output_layer) else {}

    def f():
        if before_forward is not None:
            before_forward(model)
        return loss.forward(model.forward(x, training, checked=True, **head), y)

    f()
    grad_in = model.backward(loss.backward(), input_grad=True, **head)
    params = model.parameters()
    analytic = [p.grad.copy() for p in params]
    result = GradCheckResult(rtol=rtol)
    result.errors["input"] = _relative_error(grad_in, numeric_gradient(f, x, eps), atol)
    names = [
        f"layers.{i}.{name}"
        for i, layer in enumerate(model.layers)
        for name, arr in layer.state_dict().items()
        if any(arr is p.value for p in layer.parameters())
    ]
    for name, p, grad in zip(names, params, analytic):
        result.errors[name] = _relative_error(grad, numeric_gradient(f, p.value, eps), atol)
    return result
