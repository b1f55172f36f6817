"""Learning-rate schedules: functions of the optimizer step (0, 1, 2, ...) that return a rate.

An optimizer owns its schedule and asks it before every step; schedules hold no state, so
resuming a run only needs the step number. ``SCHEDULES`` names them for configs: a schedule of
your own joins with ``SCHEDULES.register("name", factory)``, where ``factory(lr, total_steps)``
returns a :class:`Schedule` (warm-up is added around it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from numlp.registry import Registry


class Schedule:
    """Base class: ``schedule(step) -> lr``."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def _positive(who: str, **values) -> None:
    for name, value in values.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{who}: {name} must be a positive number, got {value!r}")


class Constant(Schedule):
    """The same rate at every step."""

    def __init__(self, lr: float):
        _positive("Constant", lr=lr)
        self.lr = lr

    def __call__(self, step):
        return self.lr


class StepDecay(Schedule):
    """Multiply the rate by ``gamma`` every ``step_size`` steps (``lr * gamma**(step // size)``)."""

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1):
        _positive("StepDecay", lr=lr, step_size=step_size, gamma=gamma)
        self.lr, self.step_size, self.gamma = lr, int(step_size), gamma

    def __call__(self, step):
        return self.lr * self.gamma ** (step // self.step_size)


class Cosine(Schedule):
    """Half a cosine from ``lr`` at step 0 down to ``min_lr`` at ``total_steps`` (then flat)."""

    def __init__(self, lr: float, total_steps: int, min_lr: float = 0.0):
        _positive("Cosine", lr=lr, total_steps=total_steps)
        self.lr, self.total_steps, self.min_lr = lr, int(total_steps), min_lr

    def __call__(self, step):
        progress = min(step / self.total_steps, 1.0)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


class OneCycle(Schedule):
    """Smith's one-cycle policy as PyTorch's ``OneCycleLR`` (cosine annealing in both phases):
    from ``max_lr / div_factor`` up to ``max_lr`` over the first ``pct_start`` of the steps, then
    down to ``max_lr / (div_factor * final_div_factor)`` at ``total_steps - 1``."""

    def __init__(
        self,
        max_lr: float,
        total_steps: int,
        pct_start: float = 0.3,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
    ):
        _positive(
            "OneCycle",
            max_lr=max_lr,
            total_steps=total_steps,
            div_factor=div_factor,
            final_div_factor=final_div_factor,
        )
        if not 0 < pct_start < 1:
            raise ValueError(f"OneCycle: pct_start must be in (0, 1), got {pct_start}")
        self.max_lr, self.total_steps, self.pct_start = max_lr, int(total_steps), pct_start
        self.div_factor, self.final_div_factor = div_factor, final_div_factor

    def __call__(self, step):
        initial = self.max_lr / self.div_factor
        final = initial / self.final_div_factor
        peak = self.pct_start * self.total_steps - 1
        end = self.total_steps - 1
        if step <= peak:
            return _cosine_between(initial, self.max_lr, step / peak if peak > 0 else 1.0)
        return _cosine_between(self.max_lr, final, min((step - peak) / max(end - peak, 1), 1.0))


def _cosine_between(start: float, end: float, fraction: float) -> float:
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * fraction))


class Warmup(Schedule):
    """Linear warm-up over ``warmup_steps`` to the rate where ``schedule`` starts, then ``schedule``
    (shifted so that its step 0 comes right after the warm-up): step ``t < warmup_steps`` gets
    ``schedule(0) * (t + 1) / warmup_steps``."""

    def __init__(self, schedule: Schedule, warmup_steps: int):
        _positive("Warmup", warmup_steps=warmup_steps)
        self.schedule, self.warmup_steps = schedule, int(warmup_steps)

    def __call__(self, step):
        if step < self.warmup_steps:
            return self.schedule(0) * (step + 1) / self.warmup_steps
        return self.schedule(step - self.warmup_steps)


# ``own_warmup``: the schedule warms up by itself, so a run's warm-up must be 0 with it.
SCHEDULES = Registry("schedule")
SCHEDULES.register("constant", lambda lr, total_steps: Constant(lr))
SCHEDULES.register(
    "step", lambda lr, total_steps: StepDecay(lr, step_size=max(total_steps // 3, 1), gamma=0.1)
)
SCHEDULES.register("cosine", lambda lr, total_steps: Cosine(lr, total_steps))
SCHEDULES.register("onecycle", lambda lr, total_steps: OneCycle(lr, total_steps), own_warmup=True)


def make_schedule(name: str, lr: float, total_steps: int, warmup_steps: int = 0) -> Schedule:
    """Build a registered schedule by name for a run of ``total_steps`` optimizer steps.

    ``step`` divides the rate by ten after each third of the run (after warm-up); ``cosine``
    anneals to zero at the last step; ``onecycle`` has its own warm-up phase, so
    ``warmup_steps`` must be 0 with it.
    """
    entry = SCHEDULES.entry(name)
    if warmup_steps < 0 or warmup_steps >= total_steps:
        raise ValueError(
            f"warm-up of {warmup_steps} steps does not fit in a run of {total_steps} steps"
        )
    if warmup_steps and entry.facts.get("own_warmup"):
        raise ValueError(f"the {name} schedule warms up by itself: use warmup 0 with it")
    schedule = entry.factory(lr, total_steps - warmup_steps)
    return Warmup(schedule, warmup_steps) if warmup_steps else schedule


@dataclass(frozen=True)
class SchedulePlan:
    """A schedule by name whose length is not known yet: the optimizer builds it from its own
    learning rate once ``fit`` knows how many steps the run has (after the validation split,
    at its batch size), so that no caller has to work the step count out for itself."""

    name: str
    warmup_epochs: float = 0.0

    def build(self, epochs: int, steps_per_epoch: int, lr: float) -> Schedule:
        warmup = int(round(self.warmup_epochs * steps_per_epoch))
        return make_schedule(self.name, lr, epochs * steps_per_epoch, warmup)


def plan(name: str, warmup_epochs: float = 0.0) -> SchedulePlan:
    """``SGD(params, lr=0.1, schedule=plan("cosine", warmup_epochs=1))``: the rate peaks at the
    optimizer's ``lr``; see :class:`SchedulePlan`."""
    SCHEDULES.entry(name)  # refuses an unknown name now, not when training starts
    return SchedulePlan(name, warmup_epochs)
