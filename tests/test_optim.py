"""Optimizers: one and three steps against hand-computed values, with state carried over."""

import math

import numpy as np
import pytest

from numlp.layers import Parameter
from numlp.optim import (
    FLUSH_EVERY,
    SGD,
    Adam,
    AdamW,
    clip_grad_norm,
    flush_subnormals,
    make_optimizer,
)


def param(value, decay=True):
    return Parameter(np.array(value, dtype=np.float64), decay=decay)


def run(optimizer, p, grads):
    values = []
    for g in grads:
        p.grad[...] = g
        optimizer.step()
        values.append(p.value.copy())
    return values


def test_plain_sgd_moves_against_the_gradient():
    p = param([1.0, -2.0])
    run(SGD([p], lr=0.1), p, [[0.5, -1.0]])
    np.testing.assert_allclose(p.value, [0.95, -1.9])


def test_sgd_momentum_three_steps_by_hand():
    p = param([1.0])
    values = run(SGD([p], lr=0.1, momentum=0.9), p, [[1.0]] * 3)
    # v: 1, 1.9, 2.71  ->  p: 0.9, 0.71, 0.439
    np.testing.assert_allclose(np.ravel(values), [0.9, 0.71, 0.439])


def test_sgd_nesterov_three_steps_by_hand():
    p = param([1.0])
    values = run(SGD([p], lr=0.1, momentum=0.9, nesterov=True), p, [[1.0]] * 3)
    # step = g + 0.9 v with v = 1, 1.9, 2.71  ->  1.9, 2.71, 3.439
    np.testing.assert_allclose(np.ravel(values), [0.81, 0.539, 0.1951])


def adam_reference(p, grads, lr, beta1, beta2, eps, weight_decay=0.0, decoupled=False):
    m = v = 0.0
    out = []
    for t, g in enumerate(grads, start=1):
        if decoupled:
            p *= 1 - lr * weight_decay
        else:
            g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
        p -= lr * m_hat / (math.sqrt(v_hat) + eps)
        out.append(p)
    return out


def test_adam_first_step_is_lr_times_the_sign_of_the_gradient():
    p = param([1.0, 1.0])
    run(Adam([p], lr=0.01), p, [[3.0, -0.002]])
    np.testing.assert_allclose(p.value, [0.99, 1.01], rtol=1e-6)


def test_adam_three_steps_match_the_paper_formula():
    grads = [1.0, -2.0, 0.5]
    p = param([0.3])
    values = run(Adam([p], lr=0.05, beta1=0.8, beta2=0.9, eps=1e-6), p, [[g] for g in grads])
    expected = adam_reference(0.3, grads, 0.05, 0.8, 0.9, 1e-6)
    np.testing.assert_allclose(np.ravel(values), expected, rtol=1e-12)


def test_adamw_decays_weights_apart_from_the_gradient():
    grads = [1.0, -2.0, 0.5]
    p = param([0.3])
    values = run(AdamW([p], lr=0.05, weight_decay=0.1), p, [[g] for g in grads])
    expected = adam_reference(0.3, grads, 0.05, 0.9, 0.999, 1e-8, 0.1, decoupled=True)
    np.testing.assert_allclose(np.ravel(values), expected, rtol=1e-12)


def test_adam_with_l2_weight_decay_adds_it_to_the_gradient():
    grads = [1.0, -2.0, 0.5]
    p = param([0.3])
    values = run(Adam([p], lr=0.05, weight_decay=0.1), p, [[g] for g in grads])
    expected = adam_reference(0.3, grads, 0.05, 0.9, 0.999, 1e-8, 0.1)
    np.testing.assert_allclose(np.ravel(values), expected, rtol=1e-12)


def test_sgd_weight_decay_is_the_l2_of_seed_004_and_spares_biases():
    w, b = param([2.0]), param([2.0], decay=False)
    opt = SGD([w, b], lr=0.1, weight_decay=0.1)
    assert opt.penalty() == pytest.approx(0.5 * 0.1 * 4)  # biases are not in the penalty
    w.grad[...] = 0
    b.grad[...] = 0
    opt.step()
    assert w.value[0] == pytest.approx(2 - 0.1 * 0.1 * 2)
    assert b.value[0] == 2.0


def test_adamw_reports_no_penalty_because_its_decay_is_not_a_loss_term():
    assert AdamW([param([2.0])], weight_decay=0.1).penalty() == 0.0


def test_global_norm_clipping_scales_all_gradients_together():
    a, b = param([0.0]), param([0.0])
    a.grad[...], b.grad[...] = 3.0, 4.0
    norm = clip_grad_norm([a, b], 1.0)
    assert norm == pytest.approx(5.0)
    np.testing.assert_allclose([a.grad[0], b.grad[0]], [0.6, 0.8])


def test_clipping_inside_the_optimizer_limits_the_step():
    p = param([0.0, 0.0])
    opt = SGD([p], lr=1.0, clip_norm=1.0)
    p.grad[...] = [30.0, 40.0]
    assert opt.step() == pytest.approx(50.0)
    np.testing.assert_allclose(p.value, [-0.6, -0.8])


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_state_saved_mid_run_and_restored_gives_the_same_steps(name):
    kwargs = {"lr": 0.1, "momentum": 0.9} if name == "sgd" else {"lr": 0.1}
    grads = [[1.0, -1.0], [0.5, 2.0], [-1.0, 0.25]]
    p = param([1.0, 2.0])
    straight = run(make_optimizer(name, [p], **kwargs), p, grads)

    q = param([1.0, 2.0])
    first = make_optimizer(name, [q], **kwargs)
    run(first, q, grads[:1])
    saved = {k: np.array(v) for k, v in first.state_dict().items()}
    second = make_optimizer(name, [q], **kwargs)
    second.load_state_dict(saved)
    resumed = run(second, q, grads[1:])
    np.testing.assert_array_equal(straight[-1], resumed[-1])


def test_adam_keeps_its_moments_as_running_sums_and_loads_textbook_moments():
    grads = [1.0, -2.0, 0.5, 0.25]
    beta1, beta2 = 0.8, 0.9
    m = v = 0.0
    for g in grads[:2]:
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
    p = param([0.3])
    adam = Adam([p], lr=0.05, beta1=beta1, beta2=beta2)
    run(adam, p, [[g] for g in grads[:2]])
    state = adam.state_dict()
    np.testing.assert_allclose(state["0.m_sum"], [m / (1 - beta1)], rtol=1e-14)
    np.testing.assert_allclose(state["0.v_sum"], [v / (1 - beta2)], rtol=1e-14)
    # A state in the textbook form (m, v) continues the same run.
    q = param(p.value.copy())
    textbook = Adam([q], lr=0.05, beta1=beta1, beta2=beta2)
    textbook.load_state_dict(
        {"steps": state["steps"], "lr": state["lr"], "0.m": np.array([m]), "0.v": np.array([v])}
    )
    straight = run(adam, p, [[g] for g in grads[2:]])
    resumed = run(textbook, q, [[g] for g in grads[2:]])
    np.testing.assert_allclose(resumed, straight, rtol=1e-14)
    expected = adam_reference(0.3, grads, 0.05, beta1, beta2, 1e-8)
    np.testing.assert_allclose(np.ravel(straight), expected[2:], rtol=1e-12)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda p: SGD(p, lr=0), "lr"),
        (lambda p: SGD(p, lr=float("nan")), "lr"),
        (lambda p: SGD(p, momentum=1.0), "momentum"),
        (lambda p: SGD(p, nesterov=True), "nesterov"),
        (lambda p: Adam(p, beta2=1.0), "beta2"),
        (lambda p: Adam(p, weight_decay=-1), "weight_decay"),
        (lambda p: SGD([], lr=0.1), "empty"),
        (lambda p: SGD(p + p, lr=0.1), "twice"),
        (lambda p: make_optimizer("rmsprop", p), "unknown optimizer"),
    ],
)
def test_bad_hyperparameters_are_refused(build, message):
    with pytest.raises(ValueError, match=message):
        build([param([1.0])])


def test_a_norm_passed_to_step_clips_exactly_as_one_computed_there():
    from numlp.optim import global_grad_norm

    a, b = param([0.0, 0.0]), param([0.0, 0.0])
    for p in (a, b):
        p.grad[...] = [30.0, 40.0]
    SGD([a], lr=1.0, clip_norm=1.0).step()
    SGD([b], lr=1.0, clip_norm=1.0).step(grad_norm=global_grad_norm([b]))
    np.testing.assert_array_equal(a.value, b.value)
    np.testing.assert_allclose(b.value, [-0.6, -0.8])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flushing_zeroes_subnormals_and_leaves_every_other_value_bit_for_bit(dtype):
    info = np.finfo(dtype)
    normal = [1.0, -2.5, info.tiny, -info.tiny, info.max, 0.0, np.inf, -np.inf, np.nan]
    subnormal = [info.tiny / 2, -info.tiny / 4, info.smallest_subnormal, -info.smallest_subnormal]
    subnormal.append(-0.0)  # becomes +0.0: the same number
    a = np.array(normal + subnormal, dtype=dtype).reshape(2, 7)
    before = a.copy()
    flush_subnormals(a, np.empty_like(a))
    flat, old = a.ravel(), before.ravel()
    assert flat[: len(normal)].tobytes() == old[: len(normal)].tobytes()
    assert (flat[len(normal) :] == 0).all()


@pytest.mark.parametrize("make", [lambda ps: Adam(ps, lr=1e-3), lambda ps: SGD(ps, 0.1, 0.9)])
def test_momentum_of_a_gradient_gone_to_zero_never_lingers_as_subnormals(make):
    # a unit that stopped firing: its momentum decays towards zero step by step, and must pass
    # the subnormal range, which slows every later update on many x86 CPUs, without stopping
    p = Parameter(np.ones(4, dtype=np.float32))
    optimizer = make([p])
    name = "m_sum" if isinstance(optimizer, Adam) else "velocity"
    tiny = np.finfo(np.float32).tiny
    p.grad[...] = [1e-30, 1e-35, 1.0, 0.0]
    optimizer.step()
    for step in range(2, 202):
        p.grad[...] = [0.0, 0.0, 1.0, 0.0]
        optimizer.step()
        momentum = optimizer.state[p][name]
        if step % FLUSH_EVERY == 0:  # cleared every FLUSH_EVERY steps, not more often
            assert not ((momentum != 0) & (np.abs(momentum) < tiny)).any()
    assert momentum[0] == momentum[1] == momentum[3] == 0 and momentum[2] > 0.5
