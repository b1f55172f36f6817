"""Validation of input batches, shared by the model and the training loop."""

from __future__ import annotations

import math
import re

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
    if input_shape is None:
        raise ValueError(f"{who}: the model does not say which input shape it takes")
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


FOLDER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_folder_name(name, what: str) -> str:
    """``name`` if it can become one folder's name: letters, digits, ``.``, ``_`` and ``-``,
    starting with a letter or digit, at most 64 characters (so no separator and no ``..``);
    ValueError naming ``what`` otherwise. Names that become paths are names, not paths."""
    if not isinstance(name, str) or not FOLDER_NAME.match(name) or ".." in name:
        raise ValueError(
            f"{what} {name!r} cannot be a folder name: use letters, digits, '.', '_' and '-' "
            "(no '/' or '..'), at most 64 characters"
        )
    return name


def printable(text) -> str:
    """``text`` safe to print on a terminal: control characters (ESC, newline, carriage
    return, the C1 set...) written as escapes (``\\x1b``, ``\\n``), so that a name from a file
    can neither drive the terminal nor fake a line of output."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
