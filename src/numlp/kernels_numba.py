"""Fused elementwise kernels, compiled by numba: the hot loop's arithmetic in one pass.

Each function here does what a few NumPy lines beside its layer or optimizer do (named in its
docstring), with the same float32 operations in the same order: no fused multiply-add (numba
contracts nothing without ``fastmath``), scalars given in the arrays' dtype. So the bits are
NumPy's, and ``tests/test_kernels.py`` holds them to it. What is gained is memory traffic: an
SGD step with momentum reads and writes the parameters, gradients and velocities once instead
of in four NumPy passes with a work array, and Adam's ten passes become one.

Every kernel runs on the calling thread, without the GIL. Splitting them over threads gained
nothing here (they wait on memory, not on arithmetic: a 1.85M-parameter Adam step took 0.45
ms on one thread and on two) and cost much: numba's OpenMP threads spin after each parallel
loop, beside OpenBLAS's, and three busy threads on two cores stalled the training thread for
8 to 12 ms at a time (a quick99 epoch took 8.6 s against NumPy's 6.3 s). Arrays come
flattened and C-contiguous (the callers in :mod:`numlp.optim` and :mod:`numlp.layers` check);
everything is compiled on first use and cached on disk.
"""

from __future__ import annotations

import numba
import numpy as np

_compiled = numba.njit(cache=True, nogil=True, error_model="numpy")


@_compiled
def _sgd(value, grad, velocity, lr, momentum, decay, nesterov, flush, tiny, zero):
    for i in range(value.size):
        g = grad[i]
        if decay != 0:
            g = g + value[i] * decay
        if momentum != 0:
            v = velocity[i] * momentum
            v = v + g
            if flush and abs(v) < tiny:
                v = zero
            velocity[i] = v
            if nesterov:
                g = g + v * momentum
            else:
                g = v
        value[i] = value[i] - g * lr


def sgd_update(value, grad, velocity, lr, momentum, decay, nesterov, flush) -> None:
    """One SGD step on flat arrays, in place: :meth:`numlp.optim.SGD._update` (with the
    coupled weight decay of ``Optimizer.step`` when ``decay`` is not 0). ``velocity`` is
    ignored without momentum; ``flush`` clears its subnormals (see ``flush_subnormals``)."""
    t = value.dtype.type
    _sgd(
        value, grad, velocity, t(lr), t(momentum), t(decay), nesterov, flush, t(_tiny(value)),
        t(0),
    )  # fmt: skip


@_compiled
def _adam(value, grad, m_sum, v_sum, beta1, beta2, eps_c, factor, decay, keep, flush, tiny,
          zero):  # fmt: skip
    for i in range(value.size):
        g = grad[i]
        w = value[i]
        if decay != 0:
            g = g + w * decay
        w = w * keep
        m = m_sum[i] * beta1
        m = m + g
        if flush and abs(m) < tiny:
            m = zero
        m_sum[i] = m
        v = v_sum[i] * beta2
        v = v + g * g
        v_sum[i] = v
        s = np.sqrt(v) + eps_c
        s = m / s
        value[i] = w - s * factor


def adam_update(value, grad, m_sum, v_sum, beta1, beta2, eps_c, factor, decay, keep, flush):
    """One Adam step on flat arrays, in place: :meth:`numlp.optim.Adam._update`, with the
    running sums it keeps, ``eps_c`` its ``eps / c`` and ``factor`` its step scale; ``decay``
    the coupled weight decay (Adam), ``keep`` the decoupled one's ``1 - lr * decay`` (AdamW;
    1 otherwise)."""
    t = value.dtype.type
    _adam(
        value, grad, m_sum, v_sum, t(beta1), t(beta2), t(eps_c), t(factor), t(decay), t(keep),
        flush, t(_tiny(value)), t(0),
    )  # fmt: skip


@_compiled
def _relu_backward(grad_out, out, grad_in, zero):
    for i in range(grad_out.size):
        grad_in[i] = grad_out[i] if out[i] > 0 else zero


def relu_backward(grad_out, out):
    """``grad_out * (out > 0)`` (:meth:`numlp.layers.ReLU.backward`) in one pass: a new array."""
    grad_in = np.empty_like(grad_out)
    flat = grad_in.reshape(-1)
    _relu_backward(grad_out.reshape(-1), out.reshape(-1), flat, grad_out.dtype.type(0))
    return grad_in


@_compiled
def _dropout(x, bits, threshold, scale, out, mask, zero):
    for i in range(x.size):
        kept = scale if bits[i] >= threshold else zero
        mask[i] = kept
        out[i] = x[i] * kept


def dropout_forward(x, bits, threshold: int, scale: float):
    """Dropout's mask and output (:meth:`numlp.layers.Dropout.forward`) from its random 16-bit
    ``bits``: ``(x * mask, mask)`` in one pass instead of four."""
    out, mask = np.empty_like(x), np.empty_like(x)
    _dropout(
        x.reshape(-1), bits.reshape(-1), np.uint16(threshold), x.dtype.type(scale),
        out.reshape(-1), mask.reshape(-1), x.dtype.type(0),
    )  # fmt: skip
    return out, mask


@_compiled
def _bilinear(images, rows, cols, out):
    height, width = images.shape[1], images.shape[2]
    # One image at a time in a zero border, as the reference pads them all: no bounds checks.
    padded = np.zeros((height + 2, width + 2), dtype=np.float32)
    flat = padded.reshape(-1)
    for b in range(out.shape[0]):
        padded[1:-1, 1:-1] = images[b]
        for i in range(out.shape[1]):
            for j in range(out.shape[2]):
                out[b, i, j] = _sample(flat, rows[b, i, j], cols[b, i, j], height, width)


@_compiled
def _sample(padded, row, col, height, width):
    """sample_bilinear's arithmetic at one point of a zero-bordered image, ``padded`` flat
    (unsigned indices: numba checks signed ones for wrapping around)."""
    r = min(max(np.float32(row), np.float32(-1)), np.float32(height))
    c = min(max(np.float32(col), np.float32(-1)), np.float32(width))
    r0 = min(np.floor(r), np.float32(height - 1))
    c0 = min(np.floor(c), np.float32(width - 1))
    r = r - r0  # the fractions, in [0, 1]
    c = c - c0
    stride = width + 2
    top_left = np.uint64((int(r0) + 1) * stride + int(c0) + 1)
    bottom_left = top_left + np.uint64(stride)
    one = np.uint64(1)
    upper = padded[top_left] + c * (padded[top_left + one] - padded[top_left])
    lower = padded[bottom_left] + c * (padded[bottom_left + one] - padded[bottom_left])
    return upper + r * (lower - upper)


def bilinear(images, rows, cols):
    """:func:`numlp.data.augment.sample_bilinear` in one pass per image: no index arrays, no
    four gathers (0.8 ms instead of 1.7 ms for 256 MNIST images here). ``images: (batch,
    height, width)``, ``rows``/``cols: (batch, out_height, out_width)``; a new float32 array of
    the coordinates' shape."""
    out = np.empty(rows.shape, dtype=np.float32)
    _bilinear(images.astype(np.float32, copy=False), rows, cols, out)
    return out


def _tiny(array):
    """The smallest normal number of ``array``'s dtype: below it, a number is subnormal."""
    return np.finfo(array.dtype).tiny
