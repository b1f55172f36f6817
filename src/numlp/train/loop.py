"""The training loop: ``fit`` and the step it repeats.

One training step is exactly: forward, loss, loss backward, model backward, optimizer step
(:func:`train_step`). ``fit`` checks everything once, then runs epochs of steps over batches
from :class:`~numlp.train.batches.BatchStream`, keeps its position in a
:class:`~numlp.train.state.TrainState` and reports through callbacks. It trains any model with
numlp's model protocol (``forward(x, training, checked)``, ``backward``, ``parameters``,
``evaluate``, ``generators``, ``input_shape``, ``classes``), so it needs nothing from
:mod:`numlp.model`. Nothing here prints: progress goes through callbacks.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np

from numlp import kernels
from numlp.checks import check_inputs
from numlp.losses import Loss, SoftmaxCrossEntropy
from numlp.optim import Adam, Optimizer, global_grad_norm
from numlp.schedules import Schedule, SchedulePlan
from numlp.scoring import Scorer
from numlp.threads import ThreadGovernor
from numlp.train.batches import BatchStream, validation_indices
from numlp.train.callbacks import CallbackList, EpochLogger, History, TrainingContext
from numlp.train.state import TrainState


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the step that caused it was not applied."""


MAX_GRAD_NORM = 1e6  # far above any healthy gradient of a mean loss; beyond it, training exploded


def fit(
    model,
    x,
    y,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    optimizer: Optimizer | None = None,
    loss: Loss | None = None,
    schedule: Schedule | SchedulePlan | None = None,
    validation_data=None,
    validation_split: float = 0.0,
    shuffle: bool = True,
    seed: int | None = None,
    callbacks=(),
    verbose: bool = False,
    resume: dict | None = None,
    max_grad_norm: float | None = MAX_GRAD_NORM,
    augment: Callable | None = None,
    threads: int | str | None = "auto",
) -> History:
    """Train ``model`` on ``x: (samples, *input_shape)`` and ``y`` (class ids for cross-entropy).

    Parameters
    ----------
    epochs, batch_size : int
        Passes over the data and samples per step (the last batch may be smaller).
    optimizer : Optimizer, default ``Adam(model.parameters())``
    loss : Loss, default ``SoftmaxCrossEntropy()``
    schedule : Schedule or SchedulePlan, optional
        Handed to the optimizer, which owns it (the same as ``Adam(..., schedule=...)``): it
        gives the learning rate of every step (step 0, 1, ...). A
        :func:`numlp.schedules.plan` is built from the optimizer's ``lr`` once the number of
        steps is known.
    validation_data : (x_val, y_val), optional
        Evaluated after every epoch, in inference mode.
    validation_split : float
        Instead of ``validation_data``, hold out this random fraction of ``(x, y)``.
    shuffle : bool
        Reshuffle the training data every epoch.
    seed : int, optional
        Seeds the split, the shuffling and the layers' own generators (dropout masks): the
        same seed on the same machine gives bit-identical weights.
    callbacks : list of Callback
    verbose : bool
        Print one line per epoch to stderr.
    resume : dict, optional
        A training state from ``context.snapshot()`` (as a checkpoint saves it): training
        continues where it stopped, with the same data order and dropout masks, so the result
        is bit-identical to a run that was never interrupted. The model and optimizer must
        already hold the state saved with it; ``seed`` must be the same.
    max_grad_norm : float or None
        Stop with :class:`TrainingDiverged` when the global gradient norm exceeds this (or is
        not finite), before the step is applied; None turns the check off.
    augment : callable, optional
        ``augment(images, rng, out=images)`` distorts a block of training images ``(batch,
        height, width)`` in place, e.g. :class:`numlp.data.augment.Augment`. It runs on a
        background thread, ahead of training; validation data are never augmented. Its
        random draws follow from ``seed`` (or from a key kept in the training state), so
        seeded runs and resumed runs are reproducible.
    threads : int, "auto" or None
        BLAS threads while training (:mod:`numlp.threads`): ``"auto"`` (the default, as on
        the command line) takes the cores that other processes leave free, measured once
        while the run sets up and kept for the whole run (a resumed run keeps its first
        count), so that a seed gives one model; an int fixes the count; None leaves BLAS as
        it is. The original setting is restored at the end. Needs ``threadpoolctl`` (the
        ``speed`` extra): without it ``"auto"`` leaves BLAS as it is and a fixed count raises
        ImportError saying how to install it.

    Returns
    -------
    History
        ``loss`` (mean training loss over the epoch, plus the optimizer's weight-decay penalty),
        ``accuracy`` (on the training batches as they were trained, dropout included),
        ``val_loss``, ``val_accuracy``, ``lr`` and ``seconds`` per epoch.

    Everything is validated before the first step, so a bad argument changes no weight.
    Ctrl-C (SIGINT) is taken between two steps: callbacks' ``on_interrupt`` run (a checkpoint
    saves), then KeyboardInterrupt is raised.
    """
    # Made first: it watches how busy the machine is while the rest sets up.
    chosen = resume.get("threads") if isinstance(resume, dict) else None
    governor = ThreadGovernor(threads, chosen=chosen) if threads is not None else None
    kernels.fused()  # NUMLP_KERNELS is checked (and numba imported) before any step
    loss = loss or SoftmaxCrossEntropy()
    optimizer = optimizer or Adam(model.parameters())
    if schedule is not None:
        optimizer.schedule = schedule
    _check_settings(model, epochs, batch_size, optimizer, loss, augment, validation_data,
                    validation_split)  # fmt: skip
    rng = np.random.default_rng(seed)
    if model.input_shape is None and np.ndim(x) >= 2:
        model.set_input_shape(np.shape(x)[1:])
    x, y = _check_data(model, x, y, loss, "x")
    if augment is not None and x.ndim != 3:
        raise ValueError(
            f"augmentation works on images (samples, height, width), but x has shape {x.shape}; "
            "reshape it, e.g. x.reshape(-1, 28, 28), and start the model with Flatten()"
        )
    index = np.arange(len(x))
    if validation_split:
        index, val_index = validation_indices(len(x), validation_split, rng)
        validation_data = (x[val_index], y[val_index])
    elif validation_data is not None:
        validation_data = _check_data(model, *validation_data, loss, "validation x")
    x = np.ascontiguousarray(x, dtype=model.dtype)
    for generator in model.generators():  # the fit seed decides the layers' draws too
        generator.bit_generator.state = rng.spawn(1)[0].bit_generator.state

    # The augmentation key is not drawn from rng, so that runs without augmentation keep
    # exactly the random stream they always had.
    augment_key = seed if seed is not None else int(np.random.SeedSequence().entropy % 2**63)
    if resume is not None and resume.get("augment_key") is not None:
        augment_key = int(resume["augment_key"])
    batches = BatchStream(
        x, y, index, batch_size, rng, shuffle, augment=augment, augment_key=augment_key
    )
    optimizer.plan_schedule(epochs, len(batches))
    loop = _Loop(model, optimizer, loss, batches, rng, max_grad_norm)
    loop.governor = governor
    loop.state = TrainState(
        rng_epoch_start=rng.bit_generator.state,
        augment_key=augment_key if augment is not None else None,
    )
    if resume is not None:
        loop.state = TrainState.from_dict(resume, rng, model.generators(), len(batches))
    shown = [*callbacks, EpochLogger()] if verbose else list(callbacks)
    return loop.run(epochs, validation_data, CallbackList(shown), len(index))


class _Loop:
    """One fit's moving parts: the epochs, the steps within them, and the training state."""

    def __init__(self, model, optimizer, loss, batches, rng, max_grad_norm):
        self.model, self.optimizer, self.loss = model, optimizer, loss
        self.batches, self.rng, self.max_grad_norm = batches, rng, max_grad_norm
        self.state = TrainState()
        self.governor: ThreadGovernor | None = None
        self.scorer = Scorer(model, loss, batches.y)

    def snapshot(self) -> dict:
        """The whole training state, JSON-ready (what a checkpoint saves)."""
        return self.state.to_dict(self.rng, self.model.generators(), self.optimizer.steps)

    def run(self, epochs: int, validation_data, callbacks: CallbackList, samples: int):
        context = TrainingContext(
            self.model, self.optimizer, self.loss, self.optimizer.schedule, epochs,
            len(self.batches),
            samples, snapshot=self.snapshot,
        )  # fmt: skip
        history = context.history
        history.records = self.state.history  # one list: what callbacks see is what is saved
        self.model.stop_training = False
        callbacks.on_train_begin(context)
        with self.governor or nullcontext(), _deferred_sigint() as interrupted:
            if self.governor is not None:
                self.state.threads = self.governor.threads_used
            for epoch in range(self.state.epoch + 1, epochs + 1):
                callbacks.on_epoch_begin(epoch)
                started = time.perf_counter() - self.state.epoch_seconds
                self._train_epoch(epoch, callbacks, interrupted)
                if interrupted():  # stopped between two steps: save and go
                    self.state.epoch_seconds = time.perf_counter() - started
                    break
                logs = self._epoch_logs(epoch, samples, validation_data, started)
                if self.governor is not None and self.state.threads is not None:
                    logs["threads"] = self.state.threads  # as applied: not with threads=None
                self.state.finish_epoch(epoch, logs, self.rng)
                callbacks.on_epoch_end(epoch, logs)
                if self.model.stop_training or interrupted():
                    break
            if interrupted():  # mid-epoch, or during validation or a callback
                callbacks.on_interrupt(context)
                raise KeyboardInterrupt
        callbacks.on_train_end(history)
        return history

    def _train_epoch(self, epoch: int, callbacks: CallbackList, interrupted) -> None:
        state = self.state
        skip = state.batch
        if skip:  # resuming mid-epoch: draw the epoch's order again, then skip what was done
            self.rng.bit_generator.state = state.rng_epoch_start
        else:
            state.rng_epoch_start = self.rng.bit_generator.state
        for xb, yb in self.batches.epoch(skip, epoch):
            batch_loss, outputs = train_step(
                self.model, self.loss, self.optimizer, xb, yb, self.max_grad_norm,
                self.scorer.fused,
            )  # fmt: skip
            state.count_batch(batch_loss, len(xb), self.scorer.correct(outputs, yb))
            if callbacks:
                step_logs = {"loss": batch_loss, "batch_size": len(xb)}
                callbacks.on_batch_end(self.optimizer.steps, step_logs)
            if interrupted():
                return

    def _epoch_logs(self, epoch: int, samples: int, validation_data, started: float) -> dict:
        state = self.state
        logs = {"epoch": epoch, "loss": state.loss_sum / samples + self.optimizer.penalty()}
        if self.scorer.scores:
            logs["accuracy"] = state.correct / samples
        if validation_data is not None:
            scores = self.model.evaluate(*validation_data, loss=self.loss)
            logs.update({f"val_{k}": v for k, v in scores.items()})
        logs["lr"] = self.optimizer.lr
        logs["seconds"] = time.perf_counter() - started
        return logs


def train_step(
    model, loss: Loss, optimizer: Optimizer, xb, yb, max_grad_norm=MAX_GRAD_NORM, fused=False
) -> tuple[float, np.ndarray]:
    """Forward, loss, loss backward, model backward, optimizer step. Returns the batch loss and
    the outputs. A NaN/Inf loss, or a gradient norm that is not finite or above
    ``max_grad_norm`` (None: no check), raises :class:`TrainingDiverged` before any weight
    changes. ``xb`` must be checked already (``fit`` checks the whole set once). ``fused``:
    the loss has the model's last layer built in and takes that layer's input."""
    head = {"head": False} if fused else {}
    loss.see_inputs(xb)
    outputs = model.forward(xb, training=True, checked=True, **head)
    batch_loss = loss.forward(outputs, yb)
    advice = (
        f"the weights are those before that step. Try a lower learning rate (now "
        f"{optimizer.lr:g}) or gradient clipping (clip_norm)."
    )
    if not math.isfinite(batch_loss):
        raise TrainingDiverged(
            f"the loss became {batch_loss} at step {optimizer.steps + 1}; {advice}"
        )
    model.backward(loss.backward(), **head)
    norm = None
    if max_grad_norm is not None:
        norm = global_grad_norm(optimizer.params)
        if not norm <= max_grad_norm:  # also catches NaN
            raise TrainingDiverged(
                f"the gradient norm exploded to {norm:.3g} (limit {max_grad_norm:g}) at step "
                f"{optimizer.steps + 1}; {advice}"
            )
    optimizer.step(grad_norm=norm)  # clipping reuses the norm instead of a second pass
    return batch_loss, outputs


def _check_settings(
    model, epochs, batch_size, optimizer, loss, augment, validation_data, validation_split
) -> None:
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if {id(p) for p in optimizer.params} != {id(p) for p in model.parameters()}:
        raise ValueError("the optimizer was built for other parameters than this model's")
    if validation_data is not None and validation_split:
        raise ValueError("give validation_data or validation_split, not both")
    if validation_data is not None and len(validation_data) != 2:
        raise ValueError("validation_data must be a pair (x_val, y_val)")


def _check_data(model, x, y, loss: Loss, who: str):
    x = check_inputs(x, model.input_shape, who)
    y = np.asarray(y)
    if len(y) != len(x):
        raise ValueError(f"{who} has {len(x)} samples but its labels have {len(y)}")
    if len(x) == 0:
        raise ValueError(f"{who} is empty")
    y = Scorer(model, loss, y).checked(y, f"labels of {who}")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise ValueError(f"targets of {who} contain NaN or Inf")
    return x, y


class _deferred_sigint:
    """Within the block, SIGINT sets a flag instead of raising; ``interrupted()`` reads it.

    This keeps Ctrl-C from landing between a backward pass and an optimizer step, where the
    model would be half updated. Outside the main thread it does nothing.
    """

    def __enter__(self):
        self.flag = False
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return lambda: self.flag

    def _handle(self, signum, frame):
        self.flag = True

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False
