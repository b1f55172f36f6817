"""Weight initialisers (He, Xavier/Glorot, LeCun; normal and uniform) and which suits which."""

from __future__ import annotations

import numpy as np

# scale = gain / fan: He keeps the variance of ReLU outputs (half are zero, so gain 2),
# LeCun keeps the variance of linear/SELU-like outputs, Xavier averages fan-in and fan-out
# so that both the forward signal and the backward gradient keep their variance (tanh, sigmoid).
_SCHEMES = {"he": (2.0, "in"), "lecun": (1.0, "in"), "xavier": (2.0, "avg")}

INITIALIZERS = tuple(f"{s}_{d}" for s in _SCHEMES for d in ("normal", "uniform"))


def variance(name: str, in_features: int, out_features: int) -> float:
    """Target variance of the weights for initialiser ``name`` (e.g. ``"he_normal"``)."""
    scheme, _ = _split(name)
    gain, fan = _SCHEMES[scheme]
    denominator = in_features if fan == "in" else (in_features + out_features)
    return gain / denominator


def initialize(
    name: str,
    in_features: int,
    out_features: int,
    rng: np.random.Generator,
    dtype=np.float32,
) -> np.ndarray:
    """Draw a weight matrix of shape ``(in_features, out_features)`` for initialiser ``name``.

    Both the normal and the uniform variant have the variance given by :func:`variance`;
    the uniform one draws from ``[-a, a]`` with ``a = sqrt(3 * variance)``.
    """
    _, distribution = _split(name)
    var = variance(name, in_features, out_features)
    shape = (in_features, out_features)
    if distribution == "normal":
        w = rng.normal(0.0, np.sqrt(var), size=shape)
    else:
        limit = np.sqrt(3.0 * var)
        w = rng.uniform(-limit, limit, size=shape)
    return w.astype(dtype)


def recommended(activation: str | None) -> str:
    """The initialiser that keeps signal variance through ``activation`` (a layer class name).

    ReLU-like activations get He, saturating ones (tanh, sigmoid) and the output layer
    (``None``) get Xavier.
    """
    if activation in ("ReLU", "LeakyReLU", "GELU"):
        return "he_normal"
    return "xavier_uniform"


def _split(name: str) -> tuple[str, str]:
    scheme, _, distribution = name.partition("_")
    if scheme not in _SCHEMES or distribution not in ("normal", "uniform"):
        raise ValueError(
            f"unknown initialiser {name!r}; choose one of {', '.join(INITIALIZERS)} or 'auto'"
        )
    return scheme, distribution
