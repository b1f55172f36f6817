"""Weight and bias initialisers: He, Xavier/Glorot, LeCun (normal and uniform), which suits
which, and fixed-scale draws as hand-written networks use them (``normal:0.01`` is N(0, 0.01²),
``uniform:-0.1,0.1`` is U[-0.1, 0.1), ``constant:0.1`` for biases).

The named ones are registered in :data:`INITIALIZERS`: an initialiser of your own joins with
``INITIALIZERS.register("name", draw)``, where ``draw(in_features, out_features, shape, rng)``
returns an array of ``shape``; configs, layers and model files then take its name.
"""

from __future__ import annotations

import numpy as np

from numlp.registry import Registry

# scale = gain / fan: He keeps the variance of ReLU outputs (half are zero, so gain 2),
# LeCun keeps the variance of linear/SELU-like outputs, Xavier averages fan-in and fan-out
# so that both the forward signal and the backward gradient keep their variance (tanh, sigmoid).
_SCHEMES = {"he": (2.0, "in"), "lecun": (1.0, "in"), "xavier": (2.0, "avg")}


def _scheme(gain: float, fan: str, distribution: str):
    """The draw of a variance-keeping scheme: normal, or uniform on ``[-a, a]`` with
    ``a = sqrt(3 * variance)``, both of variance ``gain / fan``."""

    def draw(in_features: int, out_features: int, shape, rng: np.random.Generator):
        var = gain / (in_features if fan == "in" else in_features + out_features)
        if distribution == "normal":
            return rng.normal(0.0, np.sqrt(var), size=shape)
        limit = np.sqrt(3.0 * var)
        return rng.uniform(-limit, limit, size=shape)

    return draw


INITIALIZERS = Registry("weight initialiser")
for _name, (_gain, _fan) in _SCHEMES.items():
    for _distribution in ("normal", "uniform"):
        INITIALIZERS.register(f"{_name}_{_distribution}", _scheme(_gain, _fan, _distribution),
                              variance=(_gain, _fan))  # fmt: skip


def variance(name: str, in_features: int, out_features: int) -> float:
    """Target variance of the weights for the scheme ``name`` (e.g. ``"he_normal"``)."""
    gain, fan = INITIALIZERS.entry(name).facts["variance"]
    denominator = in_features if fan == "in" else (in_features + out_features)
    return gain / denominator


FIXED_FORMS = ("normal:STD", "uniform:LOW,HIGH")
BIAS_INITIALIZERS = ("zeros", "constant:VALUE", *FIXED_FORMS, "he_normal (or another scheme)")


def _fixed(spec: str) -> tuple[str, tuple[float, ...]] | None:
    """``"normal:0.01"`` -> ``("normal", (0.01,))``; None for a named scheme. ValueError for a
    fixed form with wrong numbers."""
    kind, colon, numbers = spec.partition(":")
    if not colon:
        return None
    try:
        values = tuple(float(v) for v in numbers.split(","))
    except ValueError:
        values = ()
    counts = {"normal": 1, "uniform": 2, "constant": 1}
    good = kind in counts and len(values) == counts[kind] and all(np.isfinite(values))
    if good and kind == "normal":
        good = values[0] > 0
    if good and kind == "uniform":
        good = values[0] < values[1]
    if not good:
        raise ValueError(
            f"initialiser {spec!r} is malformed; write normal:STD (STD > 0), "
            "uniform:LOW,HIGH (LOW < HIGH) or constant:VALUE"
        )
    return kind, values


def check_weight_init(spec: str) -> str:
    """``spec`` if it names a weight initialiser (``auto``, a scheme, or a fixed form)."""
    fixed = _fixed(spec) if isinstance(spec, str) else None
    if fixed is not None and fixed[0] != "constant":
        return spec
    if spec == "auto" or spec in INITIALIZERS:
        return spec
    raise ValueError(
        f"unknown weight initialiser {spec!r}; choose auto, {', '.join(INITIALIZERS)}, "
        f"{' or '.join(FIXED_FORMS)}"
    )


def check_bias_init(spec: str) -> str:
    """``spec`` if it names a bias initialiser: ``zeros``, a fixed form, or a scheme (drawn
    with the variance the scheme gives the layer's weights, as seed 000 drew its biases)."""
    if spec == "zeros" or spec in INITIALIZERS or (isinstance(spec, str) and _fixed(spec)):
        return spec
    raise ValueError(f"unknown bias initialiser {spec!r}; choose {', '.join(BIAS_INITIALIZERS)}")


def draw(spec: str, shape, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
    """An array of ``shape`` from a fixed form (``normal:STD``, ``uniform:LOW,HIGH``,
    ``constant:VALUE``) or ``zeros``; zeros and constants draw nothing from ``rng``."""
    if spec == "zeros":
        return np.zeros(shape, dtype=dtype)
    kind, values = _fixed(spec)
    if kind == "normal":
        return rng.normal(0.0, values[0], size=shape).astype(dtype)
    if kind == "uniform":
        return rng.uniform(values[0], values[1], size=shape).astype(dtype)
    return np.full(shape, values[0], dtype=dtype)


def initialize_bias(
    spec: str, in_features: int, out_features: int, rng: np.random.Generator, dtype=np.float32
) -> np.ndarray:
    """A bias vector ``(out_features,)`` for ``spec`` (see :func:`check_bias_init`)."""
    if spec in INITIALIZERS:
        return _scheme_draw(spec, in_features, out_features, (out_features,), rng, dtype)
    return draw(spec, out_features, rng, dtype)


def initialize(
    name: str,
    in_features: int,
    out_features: int,
    rng: np.random.Generator,
    dtype=np.float32,
) -> np.ndarray:
    """Draw a weight matrix of shape ``(in_features, out_features)`` for initialiser ``name``.

    Both the normal and the uniform variant have the variance given by :func:`variance`;
    the uniform one draws from ``[-a, a]`` with ``a = sqrt(3 * variance)``. A fixed form
    (``normal:0.01``, ``uniform:-0.1,0.1``) draws at the scale it names.
    """
    shape = (in_features, out_features)
    if ":" in name:  # a fixed form: the scale is given, not derived from the fans
        return draw(check_weight_init(name), shape, rng, dtype)
    return _scheme_draw(name, in_features, out_features, shape, rng, dtype)


def _scheme_draw(name, in_features, out_features, shape, rng, dtype) -> np.ndarray:
    return np.asarray(INITIALIZERS[name](in_features, out_features, shape, rng)).astype(dtype)


def recommended(activation: str | None) -> str:
    """The initialiser that keeps signal variance through ``activation`` (a layer class name).

    ReLU-like activations get He, saturating ones (tanh, sigmoid) and the output layer
    (``None``) get Xavier.
    """
    if activation in ("ReLU", "LeakyReLU", "GELU"):
        return "he_normal"
    return "xavier_uniform"
