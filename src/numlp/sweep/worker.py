"""A sweep worker: takes trials of a shared study one at a time until the study has its trials.

Any number of workers, on one machine or many, run this same loop on one study. The budget
(``--trials``) is the study's, not a worker's: a worker starts a trial while fewer than that
many count, and when none are left to start it waits for the others' running trials, so that
if one of their workers dies (its heartbeat stops) the lost trial is failed and replaced here.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass

from numlp.sweep.space import short_value
from numlp.sweep.trial import SurplusTrial, TrialError, TrialPlan, counts, outcome


@dataclass
class Census:
    """The study's trials by what they mean for the budget."""

    counted: int
    running: int
    finished: int


def census(study) -> Census:
    trials = study.get_trials(deepcopy=False)
    running = sum(t.state.name == "RUNNING" for t in trials)
    counted = sum(map(counts, trials))
    return Census(counted, running, counted - running)


def work(study, plan: TrialPlan, deadline: float | None = None, stream=None, poll=None) -> int:
    """Run trials of ``study`` until it has ``plan.budget`` that count (or ``deadline``, a
    ``time.monotonic()`` value, passes: no trial starts after it). Returns how many trials
    this worker ran. One line per finished trial goes to ``stream``."""

    stream = stream or sys.stdout
    poll = poll or _heartbeat(study)
    with CtrlC() as ctrl_c:
        plan.interrupted = ctrl_c.seen
        return _work(study, plan, deadline, stream, poll, ctrl_c)


def _work(study, plan: TrialPlan, deadline, stream, poll, ctrl_c) -> int:
    import optuna

    ran = 0
    while deadline is None or time.monotonic() < deadline:
        if ctrl_c.seen():
            raise KeyboardInterrupt
        optuna.storages.fail_stale_trials(study)  # a dead worker's trial: failed, not counted
        now = census(study)
        if plan.budget is None or now.counted < plan.budget:
            study.optimize(
                plan,
                n_trials=1,
                catch=(TrialError, SurplusTrial),
                callbacks=[TrialLine(stream)],
            )
            ran += 1
        elif now.running:
            for _ in range(10):  # others' trials may still be lost and need replacing
                if not ctrl_c.seen():
                    time.sleep(poll / 10)
        else:
            break
    return ran


class CtrlC:
    """While a worker runs, Ctrl-C is remembered instead of raised wherever it lands: cut in
    the middle of Optuna's own bookkeeping it would leave that half done (Optuna 5.0 then
    fails with an UnboundLocalError). The worker acts on it between trials; inside a trial,
    ``fit``'s own handler takes over while training (it stops between two steps)."""

    def __enter__(self) -> CtrlC:
        self._seen = False
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self._seen = True

    def seen(self) -> bool:
        return self._seen

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _heartbeat(study) -> float:
    storage = study._storage  # Optuna keeps no public accessor for a study's storage
    interval = getattr(storage, "heartbeat_interval", None) or 5
    return max(0.5, interval / 2)


class TrialLine:
    """Print one line per finished trial: number, outcome, validation accuracy, best so far,
    the trial's settings."""

    def __init__(self, stream):
        self.stream = stream

    def __call__(self, study, trial) -> None:
        if trial.user_attrs.get("surplus"):
            return
        print(trial_line(study, trial), file=self.stream, flush=True)


def trial_line(study, trial) -> str:
    values = trial.intermediate_values
    val = trial.value if trial.value is not None else values.get(max(values, default=-1))
    val_text = f"val {val:.2%}" if val is not None else "val –"
    epochs = trial.user_attrs.get("epochs", len(values))
    try:
        best = f"best {study.best_value:.2%} (trial {study.best_trial.number})"
    except ValueError:  # no trial has finished yet
        best = "best –"
    params = " ".join(f"{k}={short_value(v, 3)}" for k, v in trial.params.items())
    line = f"trial {trial.number:>3}  {outcome(trial):<8} {val_text:<11} {epochs:>3} ep  {best}"
    line += f"  {params}"
    if trial.user_attrs.get("error"):
        line += f"  ({trial.user_attrs['error'][:120]})"
    return line
