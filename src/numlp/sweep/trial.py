"""One trial of a sweep: a normal ``numlp train`` run, in its own run folder, judged on its
validation accuracy.

The trial runs :func:`numlp.run.run_training`, the code path of ``numlp train``, with the
test set never scored. After every epoch it reports the validation accuracy to Optuna; when the
pruner says the trial is hopeless, training stops at the end of that epoch (the run folder
stays a complete run: its model, metrics and checkpoint) and the trial is marked pruned.
"""

from __future__ import annotations

import io
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from numlp.data.datasets import DataSource
from numlp.run import Console, run_training
from numlp.sweep.space import SearchSpace
from numlp.train import Callback, TrainingDiverged


class TrialError(Exception):
    """The trial itself failed (settings that do not go together, training diverged): it is
    marked failed with the reason and counts toward the sweep's trials."""


class SurplusTrial(Exception):
    """Another worker took the last trial of the budget at the same moment: this one is
    dropped unrun and does not count."""


# Recorded on every trial that ended on its own (finished, pruned or failed by its settings);
# a failed trial without it was lost (worker killed, Ctrl-C) and is replaced.
OUTCOME_ATTR = "outcome"


@dataclass
class TrialPlan:
    """What every trial of a sweep shares: the space, where run folders go, the data."""

    space: SearchSpace
    trials_dir: Path
    budget: int | None  # trials that count, over all workers; None: until the timeout
    data_dir: Path | None = None
    threads: int | str = 1
    interrupted: Callable[[], bool] = lambda: False  # Ctrl-C seen where it could not act

    def __call__(self, trial) -> float:
        return run_trial(self, trial)


class PruningReporter(Callback):
    """Report each epoch's validation accuracy; stop training when the pruner says so. A
    Ctrl-C that came before training began is passed on to it (``fit`` stops between steps)."""

    def __init__(self, trial, interrupted=lambda: False):
        self.trial = trial
        self.interrupted = interrupted
        self.pruned_after: int | None = None

    def on_train_begin(self, context):
        self.model = context.model

    def on_batch_end(self, step, logs):
        if self.interrupted():
            os.kill(os.getpid(), signal.SIGINT)  # to fit's own handler, which stops cleanly

    def on_epoch_end(self, epoch, logs):
        self.trial.report(logs["val_accuracy"], epoch)  # epochs count from 1
        if self.trial.should_prune():
            self.pruned_after = epoch
            self.model.stop_training = True


def run_trial(plan: TrialPlan, trial) -> float:
    """Train the configuration ``trial`` suggests; its final validation accuracy."""
    import optuna

    if plan.interrupted():
        raise KeyboardInterrupt
    _check_budget(plan, trial)
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    values = plan.space.suggest(trial)
    out = plan.trials_dir / f"{trial.number:05d}"
    trial.set_user_attr("run", str(out))
    reporter = PruningReporter(trial, plan.interrupted)
    try:
        config = plan.space.config(values)
        summary = run_training(
            config,
            out,
            source=DataSource(plan.data_dir, download=False),
            console=Console(io.StringIO(), quiet=True),
            callbacks=[reporter],
            threads=plan.threads,
            score_test=False,
        )
    except (ValueError, TrainingDiverged) as err:
        trial.set_user_attr(OUTCOME_ATTR, "failed")
        trial.set_user_attr("error", " ".join(str(err).split())[:500])
        raise TrialError(str(err)) from None
    if plan.interrupted():
        raise KeyboardInterrupt
    trial.set_user_attr("epochs", summary["epochs"])
    trial.set_user_attr("seconds", summary["seconds"])
    if reporter.pruned_after is not None:
        trial.set_user_attr(OUTCOME_ATTR, "pruned")
        raise optuna.TrialPruned(f"pruned after epoch {reporter.pruned_after}")
    trial.set_user_attr(OUTCOME_ATTR, "complete")
    return summary["val_accuracy"]


def outcome(trial) -> str:
    """ "complete", "pruned", "failed" (by its settings), "running", "surplus" or "lost"."""
    if trial.state.name in ("RUNNING", "WAITING"):
        return "running"
    if trial.user_attrs.get("surplus"):
        return "surplus"
    return trial.user_attrs.get(OUTCOME_ATTR, "lost")


def counts(trial) -> bool:
    """Whether a trial counts toward the budget: all but the lost and the surplus."""
    return trial.state.name != "FAIL" or trial.user_attrs.get(OUTCOME_ATTR) == "failed"


def _check_budget(plan: TrialPlan, trial) -> None:
    """Trial numbers are handed out one at a time (Optuna locks the study row), so every trial
    numbered below this one exists already: if the budget is taken by them, drop this one."""
    if plan.budget is None:
        return
    ahead = [t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number]
    if sum(map(counts, ahead)) >= plan.budget:
        trial.set_user_attr("surplus", True)
        raise SurplusTrial(f"trial {trial.number}: the {plan.budget} trials are taken")
