"""Input preprocessing recorded in model files, so that a saved model sees inputs as in training."""

from __future__ import annotations

import numpy as np

# Pixels 0..255 to 0..1: the only transform the MNIST recipes need; stored in every model file.
IMAGE_SCALING = {"scale": 1 / 255}


def scaling(scale: float = 1 / 255, shift: float = 0.0) -> dict:
    """The spec of ``x * scale + shift`` (the shift only when there is one: files of the
    default stay as older versions wrote them)."""
    return {"scale": scale, **({"shift": shift} if shift else {})}


def check(spec) -> dict | None:
    """Validate a preprocessing spec read from a file: None or ``{"scale": s}`` with ``s`` a
    finite positive number, and optionally ``"shift": b``, a finite number. Raises ValueError
    saying what is wrong."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ValueError(f"preprocessing must be a table such as {{'scale': 1/255}}, got {spec!r}")
    unknown = set(spec) - {"scale", "shift"}
    if unknown:
        raise ValueError(f"unknown preprocessing steps {sorted(unknown)}")
    scale, shift = spec.get("scale", 1.0), spec.get("shift", 0.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < 1e30:
        raise ValueError(f"preprocessing scale must be a positive number, got {scale!r}")
    if isinstance(shift, bool) or not isinstance(shift, (int, float)) or not abs(shift) < 1e30:
        raise ValueError(f"preprocessing shift must be a finite number, got {shift!r}")
    return spec


def apply(x: np.ndarray, spec: dict | None) -> np.ndarray:
    """Apply a preprocessing ``spec`` (``x * scale + shift``) to raw integer inputs, as float32.

    Float inputs are taken as already preprocessed and passed through as float32.
    """
    x = np.asarray(x)
    if spec is None or x.dtype.kind == "f":
        return x.astype(np.float32, copy=False)
    check(spec)
    out = x.astype(np.float32)
    out *= np.float32(spec.get("scale", 1.0))
    if spec.get("shift"):
        out += np.float32(spec["shift"])
    return out
