"""Validation of input batches, shared by the model and the training loop."""

from __future__ import annotations

import math

import numpy as np


def check_inputs(x, input_shape: tuple[int, ...] | None, who: str = "input") -> np.ndarray:
    """Validate a batch ``x: (batch, *input_shape)`` of real numbers; return it as an ndarray.

    Raises ValueError naming what is wrong (dtype, shape, NaN/Inf) and how to fix it.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise ValueError(f"{who}: expected real numbers, got an array of dtype {x.dtype}")
    if x.ndim < 2:
        raise ValueError(
            f"{who}: expected a batch of shape (batch, features), got shape {x.shape}; "
            "for one sample use x[None]"
        )
    if input_shape is not None and x.shape[1:] != tuple(input_shape):
        expected = ", ".join(map(str, input_shape))
        hint = ""
        if math.prod(x.shape[1:]) == math.prod(input_shape):
            hint = f"; reshape it with x.reshape(len(x), {expected})"
        raise ValueError(f"{who}: the model expects shape (batch, {expected}), got {x.shape}{hint}")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"{who}: contains NaN or Inf (first at index {tuple(bad.tolist())})")
    return x


def as_model_input(x: np.ndarray, input_shape, who: str = "input") -> np.ndarray:
    """``x`` as a batch ``(batch, *input_shape)``: a batch, or one sample, whose per-sample
    size agrees is reshaped (28x28 images for a model that takes 784 values, or the reverse).
    Raises ValueError when the sizes do not agree."""
    shape = tuple(input_shape)
    size = math.prod(shape)
    if x.shape == shape:
        return x[None]
    if x.ndim >= 2 and math.prod(x.shape[1:]) == size:
        return x.reshape(len(x), *shape)
    if math.prod(x.shape) == size:
        return x.reshape(1, *shape)
    raise ValueError(
        f"{who}: array of shape {x.shape} does not hold {'x'.join(map(str, shape))} images "
        "for this model"
    )
