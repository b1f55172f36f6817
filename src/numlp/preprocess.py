"""Input preprocessing recorded in model files, so that a saved model sees inputs as in training."""

from __future__ import annotations

import math

import numpy as np

# Pixels 0..255 to 0..1: the only transform the MNIST recipes need; stored in every model file.
IMAGE_SCALING = {"scale": 1 / 255}


def scaling(scale: float = 1 / 255, shift: float = 0.0) -> dict:
    """The spec of ``x * scale + shift`` (the shift only when there is one: files of the
    default stay as older versions wrote them)."""
    return {"scale": scale, **({"shift": shift} if shift else {})}


def standardizing(mean, std) -> dict:
    """The spec of ``(x - mean) / std`` per feature (the last axis): a table's columns."""
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}


def check(spec) -> dict | None:
    """Validate a preprocessing spec read from a file: None, ``{"scale": s}`` with ``s`` a
    finite positive number and optionally ``"shift": b``, a finite number; or ``{"mean": [...],
    "std": [...]}`` of one finite mean and positive deviation per feature. Raises ValueError
    saying what is wrong."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ValueError(f"preprocessing must be a table such as {{'scale': 1/255}}, got {spec!r}")
    if set(spec) == {"mean", "std"}:
        mean, std = spec["mean"], spec["std"]
        ok = isinstance(mean, list) and isinstance(std, list) and 0 < len(mean) == len(std)
        ok = ok and all(type(v) in (int, float) and math.isfinite(v) for v in mean)
        ok = ok and all(type(v) in (int, float) and 0 < v < 1e30 for v in std)
        if not ok:
            raise ValueError("preprocessing mean and std must be lists of finite numbers")
        return spec
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
    if spec is not None and "mean" in spec:  # a table's columns, raw whatever their dtype
        check(spec)
        if x.shape[-1:] != (len(spec["mean"]),):
            raise ValueError(
                f"inputs have {x.shape[-1] if x.ndim else 0} columns, the model's scaling "
                f"{len(spec['mean'])}"
            )
        mean, std = (np.asarray(spec[k], np.float32) for k in ("mean", "std"))
        return (x.astype(np.float32) - mean) / std
    if spec is None or x.dtype.kind == "f":
        return x.astype(np.float32, copy=False)
    check(spec)
    out = x.astype(np.float32)
    out *= np.float32(spec.get("scale", 1.0))
    if spec.get("shift"):
        out += np.float32(spec["shift"])
    return out


def check_raw(x: np.ndarray, spec: dict | None) -> np.ndarray:
    """``x`` if it holds inputs a model with preprocessing ``spec`` can take: raw pixels as
    integers in 0..255, or floats already preprocessed (within what ``spec`` makes of 0..255);
    ValueError saying what is wrong otherwise (not numbers, no images, out of range), since a
    model fed unscaled numbers answers "100 %" for nonsense."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiu":
        raise ValueError(f"holds {x.dtype} values, not pixel numbers")
    if x.size == 0:
        raise ValueError("holds no images (the array is empty)")
    low, high = x.min(), x.max()
    if spec is not None and "mean" in spec:  # a table's raw columns: any finite numbers
        if not np.all(np.isfinite(x)):
            raise ValueError("holds NaN or Inf")
        return x
    if x.dtype.kind in "iu":
        if low < 0 or high > 255:
            raise ValueError(f"integer pixels must be in 0..255, these go from {low} to {high}")
        return x
    if not np.all(np.isfinite(x)):
        raise ValueError("holds NaN or Inf")
    spec = spec or {}
    ends = sorted(
        v * float(spec.get("scale", 1.0)) + float(spec.get("shift", 0.0)) for v in (0, 255)
    )
    slack = 1e-3 * (ends[1] - ends[0])
    if low < ends[0] - slack or high > ends[1] + slack:
        raise ValueError(
            f"float values go from {low:g} to {high:g}, outside the {ends[0]:g}..{ends[1]:g} "
            "this model's preprocessing makes of pixels: save raw pixels as integers 0..255, or "
            "preprocess them as the model does"
        )
    return x
