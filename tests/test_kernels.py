"""The fused kernels (numba) against the NumPy reference: the same bits, step for step.

Each kernel computes the reference's float32 operations in the same order, so the tests ask
for equal arrays, not close ones: after many optimizer steps (subnormal flushes included), for
dropout masks drawn from the same generator, for distortions, and for whole training runs.
"""

import numpy as np
import pytest

from numlp import Dense, Dropout, Flatten, ReLU, Sequential, kernels
from numlp.data.augment import Augment, sample_bilinear
from numlp.layers import Parameter
from numlp.optim import SGD, Adam, AdamW

pytest.importorskip("numba")


@pytest.fixture(autouse=True)
def restore_kernels():
    yield
    kernels.use("auto")


def both(run):
    """``run()`` once with NumPy's kernels and once with the fused ones."""
    kernels.use("numpy")
    reference = run()
    kernels.use("numba")
    fused = run()
    return reference, fused


def assert_same(reference, fused):
    assert len(reference) == len(fused)
    for a, b in zip(reference, fused):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


OPTIMIZERS = {
    "sgd": lambda p: SGD(p, lr=0.05),
    "momentum": lambda p: SGD(p, lr=0.05, momentum=0.9),
    "nesterov + decay": lambda p: SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam + decay": lambda p: Adam(p, lr=1e-3, weight_decay=1e-2),
    "adamw": lambda p: AdamW(p, lr=3e-3, weight_decay=0.05),
    "adamw + clipping": lambda p: AdamW(p, lr=3e-3, weight_decay=0.05, clip_norm=0.5),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_optimizer_steps_give_the_reference_bits(name, dtype):
    def run():
        rng = np.random.default_rng(0)
        params = [Parameter(rng.standard_normal(shape).astype(dtype)) for shape in
                  [(37, 19), (19,), (5, 3, 4)]]  # fmt: skip
        params[1].decay = False
        optimizer = OPTIMIZERS[name](params)
        for step in range(20):  # steps 8 and 16 clear subnormals
            for p in params:
                p.grad[...] = rng.standard_normal(p.value.shape)
                p.grad[0] = 0  # a momentum that decays into the subnormal range ...
                if step == 0:
                    p.grad[0] = 1e-37  # ... from a first gradient close to it
            optimizer.step()
        state = [a for p in params for a in optimizer.state[p].values()]
        return [p.value for p in params] + state

    assert_same(*both(run))


def test_an_optimizer_of_your_own_keeps_its_update_when_the_kernels_are_fused():
    class Halved(SGD):
        def _update(self, p, grad, state, scratch):
            p.value -= 0.5 * self.lr * grad

    kernels.use("numba")
    p = Parameter(np.ones(3, np.float32))
    p.grad[...] = 1
    Halved([p], lr=1.0, momentum=0.9).step()
    np.testing.assert_array_equal(p.value, [0.5, 0.5, 0.5])


def test_relu_backward_and_dropout_give_the_reference_bits():
    def run():
        rng = np.random.default_rng(1)
        x = rng.standard_normal((64, 300)).astype(np.float32)
        relu, dropout = ReLU(), Dropout(0.3, rng=np.random.default_rng(7))
        h = relu.forward(x, training=True)
        out = dropout.forward(h, training=True)
        grad = rng.standard_normal(out.shape).astype(np.float32)
        grad_in = relu.backward(dropout.backward(grad))
        return [out, dropout._mask, grad_in]

    assert_same(*both(run))


def test_bilinear_sampling_gives_the_reference_bits_inside_on_and_beyond_the_border():
    rng = np.random.default_rng(2)
    images = rng.random((6, 28, 28)).astype(np.float32)
    rows = rng.uniform(-4, 32, (6, 28, 28))  # float64 coordinates, far outside too
    cols = rng.uniform(-4, 32, (6, 28, 28)).astype(np.float32)
    rows[0, 0, :6] = [-1, 0, 27, 27.99999, 28, -0.5]  # exactly on the border and next to it
    cols[0, 0, :6] = [28, -1, 0.5, 27, 100, -100]
    assert_same(*both(lambda: [sample_bilinear(images, rows, cols)]))


def test_every_distortion_gives_the_reference_bits():
    images = np.random.default_rng(3).random((300, 28, 28)).astype(np.float32)
    augment = Augment(shift=2, rotation=12, scale=0.1, shear=6, elastic_alpha=20,
                      elastic_sigma=4, flip=0.5, erase=0.5, chunk=128)  # fmt: skip
    assert_same(*both(lambda: [augment(images, np.random.default_rng(4))]))


def test_whole_training_runs_give_the_reference_weights():
    """Dropout, AdamW with a schedule, distortions on a background thread: the same model."""
    rng = np.random.default_rng(5)
    x = rng.random((512, 12, 12)).astype(np.float32)
    y = rng.integers(0, 4, 512)

    def run():
        model = Sequential([Flatten(), Dense(144, 64), ReLU(), Dropout(0.2), Dense(64, 4)],
                           seed=0)  # fmt: skip
        optimizer = AdamW(model.parameters(), lr=3e-3, weight_decay=0.02)
        model.fit(x, y, epochs=2, batch_size=64, seed=1, optimizer=optimizer, threads=1,
                  augment=Augment(shift=1.5, rotation=8))  # fmt: skip
        return [p.value for p in model.parameters()]

    assert_same(*both(run))


def test_the_kernel_choice_is_checked_in_one_line(monkeypatch):
    with pytest.raises(ValueError, match="kernels must be one of auto, numba, numpy, got 'fast'"):
        kernels.use("fast")
    monkeypatch.setattr(kernels, "_load", lambda: None)  # as without numba
    with pytest.raises(ImportError, match=r"pip install 'numlp\[speed\]'"):
        kernels.use("numba")
    kernels.use("auto")
    assert kernels.name() == "numpy"


def test_a_bad_environment_setting_stops_fit_before_any_step(monkeypatch):
    monkeypatch.setenv("NUMLP_KERNELS", "gpu")
    monkeypatch.setattr(kernels, "_choice", None)
    model = Sequential([Dense(4, 3)], seed=0)
    before = model.layers[0].W.value.copy()
    with pytest.raises(ValueError, match="kernels must be one of"):
        model.fit(np.zeros((8, 4), np.float32), np.zeros(8, int), epochs=1)
    np.testing.assert_array_equal(model.layers[0].W.value, before)


def test_arrays_the_kernels_are_not_built_for_take_the_numpy_path():
    kernels.use("numba")
    relu = ReLU()
    x = np.arange(-3, 3, dtype=np.longdouble).reshape(2, 3)  # no numba kernel for long double
    relu.forward(x, training=True)
    grad = relu.backward(np.ones_like(x))
    assert grad.dtype == np.longdouble
    np.testing.assert_array_equal(grad, [[0, 0, 0], [0, 1, 1]])
    strided = Parameter(np.ones((4, 6), np.float32)[:, ::2])  # not C-contiguous
    strided.grad[...] = 1
    SGD([strided], lr=0.5, momentum=0.9).step()
    np.testing.assert_array_equal(strided.value, np.full((4, 3), 0.5, np.float32))


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("choice", ["numpy", "numba"])
def test_a_step_allocates_no_parameter_sized_array_after_the_first(name, choice):
    """The optimizer's state and work arrays are made once: a fused SGD step once allocated
    (and zeroed) a fresh momentum buffer every step only to throw it away, a tenth of a
    millisecond of W1's step."""
    import tracemalloc

    kernels.use(choice)
    p = Parameter(np.zeros(1 << 18, np.float32))  # 1 MB
    p.grad[...] = 1e-3
    optimizer = OPTIMIZERS[name]([p])
    optimizer.step()
    tracemalloc.start()
    try:
        optimizer.step()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < p.value.nbytes // 4, f"{peak} bytes allocated in one step"
