"""Learning-rate schedules against hand-computed values."""

import math

import pytest

from numlp.schedules import Constant, Cosine, OneCycle, StepDecay, Warmup, make_schedule


def test_constant_is_constant():
    assert [Constant(0.1)(s) for s in (0, 10, 10_000)] == [0.1, 0.1, 0.1]


def test_step_decay_divides_every_step_size():
    schedule = StepDecay(1.0, step_size=10, gamma=0.5)
    assert [schedule(s) for s in (0, 9, 10, 19, 20, 35)] == [1, 1, 0.5, 0.5, 0.25, 0.125]


def test_cosine_goes_from_lr_through_the_midpoint_to_min_lr():
    schedule = Cosine(1.0, total_steps=100, min_lr=0.1)
    assert schedule(0) == pytest.approx(1.0)
    assert schedule(50) == pytest.approx(0.55)
    assert schedule(25) == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2)
    assert schedule(100) == pytest.approx(0.1)
    assert schedule(500) == pytest.approx(0.1)


def test_one_cycle_rises_to_max_then_falls_far_below_the_start():
    schedule = OneCycle(1.0, total_steps=101, pct_start=0.3, div_factor=25, final_div_factor=1e4)
    peak = 0.3 * 101 - 1
    assert schedule(0) == pytest.approx(1 / 25)
    assert schedule(math.floor(peak)) < 1.0 <= schedule(peak) + 1e-12
    assert schedule(100) == pytest.approx(1 / 25 / 1e4)
    values = [schedule(s) for s in range(101)]
    top = values.index(max(values))
    assert all(a <= b for a, b in zip(values[:top], values[1 : top + 1]))
    assert all(a >= b for a, b in zip(values[top:], values[top + 1 :]))


def test_warmup_is_linear_then_hands_over_to_the_schedule():
    schedule = Warmup(Cosine(1.0, total_steps=10), warmup_steps=4)
    assert [schedule(s) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert schedule(4) == pytest.approx(1.0)
    assert schedule(9) == pytest.approx(0.5)
    assert schedule(14) == pytest.approx(0.0)


def test_make_schedule_builds_each_name_for_a_run_length():
    assert make_schedule("cosine", 0.1, 100)(100) == pytest.approx(0.0)
    assert make_schedule("step", 0.1, 90)(60) == pytest.approx(0.001)
    assert make_schedule("cosine", 0.1, 100, warmup_steps=10)(0) == pytest.approx(0.01)
    assert make_schedule("onecycle", 0.1, 100)(99) < 1e-5
    assert make_schedule("constant", 0.1, 100)(99) == 0.1


@pytest.mark.parametrize(
    "args, message",
    [
        (("linear", 0.1, 100), "unknown schedule"),
        (("cosine", 0.1, 100, 100), "does not fit"),
        (("onecycle", 0.1, 100, 5), "warms up by itself"),
        (("cosine", -0.1, 100), "positive"),
    ],
)
def test_bad_schedules_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        make_schedule(*args)
