"""Which elementwise kernels the hot loop uses: NumPy's (the reference) or fused ones.

Each optimizer update, dropout mask and activation derivative is written in NumPy beside its
layer or optimizer; that code is the reference, the default and the oracle of the tests. With
numba installed (``pip install 'numlp[speed]'``) the same arithmetic also exists as fused loops
(:mod:`numlp.kernels_numba`): one pass over the parameters instead of four to ten, on the
calling thread (split over the cores, they ran slower beside BLAS's threads). They compute the
same float32 operations in the same order, so they give the same bits as NumPy (tested), and
they draw no random numbers of their own: a dropout mask's bits still come from the layer's
NumPy generator.

Chosen once per process by ``NUMLP_KERNELS``: ``auto`` (the default: fused when numba
imports), ``numba`` (fused, or an ImportError saying how to install it) or ``numpy``.
:func:`use` switches from Python (tests compare the two). numba is imported on the first
training step that asks, not when numlp is imported: ``numlp predict`` never pays for it.
"""

from __future__ import annotations

import os

import numpy as np

CHOICES = ("auto", "numba", "numpy")

_fused = None  # the numba module once loaded
_choice: str | None = None  # None: not decided yet


def use(choice: str) -> None:
    """Use ``choice`` (``auto``, ``numba`` or ``numpy``) from now on; ``numba`` fails with
    ImportError when numba is not installed."""
    global _choice, _fused
    if choice not in CHOICES:
        raise ValueError(f"kernels must be one of {', '.join(CHOICES)}, got {choice!r}")
    _fused = _load() if choice != "numpy" else None
    if choice == "numba" and _fused is None:
        raise ImportError(
            "fused kernels need numba: pip install 'numlp[speed]' (or NUMLP_KERNELS=numpy)"
        )
    _choice = choice


def fused():
    """The fused kernels module, or None when NumPy's reference code is to run."""
    if _choice is None:
        use(os.environ.get("NUMLP_KERNELS", "auto").strip().lower() or "auto")
    return _fused


def name() -> str:
    """``numba`` or ``numpy``: what runs now (for logs and benchmarks)."""
    return "numba" if fused() is not None else "numpy"


# Compared as dtypes, not by name: dtype.name is computed in Python, at 3 us a call.
_COMPILED_FOR = (np.dtype(np.float32), np.dtype(np.float64))


def takes(first, *others) -> bool:
    """Whether the fused kernels take these arrays: C-contiguous, float32 or float64 (what
    they are compiled for), all of ``first``'s shape and dtype."""
    dtype, shape = first.dtype, first.shape
    if dtype not in _COMPILED_FOR or not first.flags.c_contiguous:
        return False
    for a in others:  # a plain loop: this runs for every parameter of every step
        if a.dtype != dtype or a.shape != shape or not a.flags.c_contiguous:
            return False
    return True


def _load():
    try:
        from numlp import kernels_numba
    except ImportError:
        return None
    return kernels_numba
