"""The training loop: batching, the per-step sequence, History and callbacks.

One training step is exactly: forward, loss, loss backward, model backward, optimizer step.
The order is drawn once per epoch and rows are gathered into a reused buffer a block of
batches at a time, so batches are contiguous views and no rows are gathered per batch.
Nothing here prints: progress goes through callbacks.
"""

from __future__ import annotations

import copy
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from numlp.layers import Dropout, Softmax
from numlp.losses import BCEWithLogits, Loss, SoftmaxCrossEntropy, check_labels
from numlp.model import Sequential, check_inputs
from numlp.optim import Adam, Optimizer, global_grad_norm
from numlp.schedules import Schedule


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the step that caused it was not applied."""


MAX_GRAD_NORM = 1e6  # far above any healthy gradient of a mean loss; beyond it, training exploded


class History:
    """Per-epoch metrics of a ``fit``: ``history.history["val_accuracy"]`` is a list, one value
    per epoch (Keras' layout); ``history.records`` holds one dict per epoch."""

    def __init__(self):
        self.records: list[dict] = []

    def append(self, logs: dict) -> None:
        self.records.append(dict(logs))

    @property
    def history(self) -> dict[str, list]:
        keys = dict.fromkeys(k for record in self.records for k in record)
        return {k: [record.get(k) for record in self.records] for k in keys}

    def __getitem__(self, key: str) -> list:
        return self.history[key]

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        last = self.records[-1] if self.records else {}
        return f"History(epochs={len(self)}, last={last})"


@dataclass
class TrainingContext:
    """What callbacks may look at (and, for ``model.stop_training``, change)."""

    model: Sequential
    optimizer: Optimizer
    loss: Loss
    schedule: Schedule | None
    epochs: int
    steps_per_epoch: int
    samples: int
    history: History = field(default_factory=History)
    snapshot: Callable[[], dict] | None = None  # the full training state, for checkpoints


class Callback:
    """Hooks called by ``fit``; override the ones you need."""

    def on_train_begin(self, context: TrainingContext) -> None: ...

    def on_epoch_begin(self, epoch: int) -> None: ...

    def on_batch_end(self, step: int, logs: dict) -> None: ...

    def on_epoch_end(self, epoch: int, logs: dict) -> None: ...

    def on_train_end(self, history: History) -> None: ...

    def on_interrupt(self, context: TrainingContext) -> None:
        """Ctrl-C arrived: ``fit`` stopped between two steps and raises KeyboardInterrupt next."""


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs, and
    (with ``restore_best``) put back the weights of the best epoch."""

    def __init__(
        self, monitor="val_loss", patience=5, min_delta=0.0, mode="auto", restore_best=True
    ):
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'min', 'max' or 'auto', got {mode!r}")
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.mode, self.restore_best = mode, restore_best
        self.best_epoch: int | None = None

    def on_train_begin(self, context):
        self.model = context.model
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_state = None
        self.wait = 0

    def on_epoch_end(self, epoch, logs):
        if self.monitor not in logs:
            raise ValueError(
                f"EarlyStopping monitors {self.monitor!r}, which fit does not report "
                f"(it reports {', '.join(logs)}); give validation data or monitor 'loss'"
            )
        value = logs[self.monitor]
        better = (
            value < self.best - self.min_delta
            if self.mode == "min"
            else value > self.best + self.min_delta
        )
        if better:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_state = copy.deepcopy(self.model.state_dict())
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.model.stop_training = True

    def on_train_end(self, history):
        if self.restore_best and self.best_state is not None:
            self.model.load_state_dict(self.best_state)


class EpochLogger(Callback):
    """Write one plain line per epoch to ``stream`` (stderr by default)."""

    def __init__(self, stream=None):
        self.stream = stream

    def on_train_begin(self, context):
        self.epochs = context.epochs

    def on_epoch_end(self, epoch, logs):
        print(format_epoch(epoch, self.epochs, logs), file=self.stream or sys.stderr, flush=True)


def format_epoch(epoch: int, epochs: int, logs: dict) -> str:
    """``epoch 3/10  loss 0.1234  acc 96.51%  val_loss ...  2.1s`` from an epoch's logs."""
    width = len(str(epochs))
    parts = [f"epoch {epoch:>{width}}/{epochs}"]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        if key in logs:
            value = logs[key]
            label = key.replace("accuracy", "acc")
            parts.append(f"{label} {value:.2%}" if "acc" in key else f"{label} {value:.4f}")
    parts.append(f"lr {logs['lr']:.3g}")
    parts.append(f"{logs['seconds']:.1f}s")
    return "  ".join(parts)


def validation_indices(n: int, fraction: float, rng: np.random.Generator):
    """Random disjoint sorted ``(train_index, val_index)``, holding out ``fraction`` of ``n``."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation_split must be in (0, 1), got {fraction}")
    n_val = int(round(n * fraction))
    if n_val < 1 or n_val >= n:
        raise ValueError(f"validation_split {fraction} of {n} samples leaves an empty part")
    order = rng.permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def split_validation(x, y, fraction: float, rng: np.random.Generator):
    """Hold out a random ``fraction`` of ``(x, y)``: ``(x_train, y_train), (x_val, y_val)``."""
    train, val = validation_indices(len(x), fraction, rng)
    return (x[train], y[train]), (x[val], y[val])


class BatchStream:
    """Mini-batches of ``(x[index], y[index])`` in a fresh random order each epoch.

    The order is drawn once per epoch; rows are then gathered a block of batches at a time
    (about ``block_bytes``) into buffers allocated once, and batches are views of them. This
    keeps the gather large and contiguous (no per-batch fancy indexing) without a full-size
    shuffled copy of the data. Each batch is valid until the next one is requested.

    With ``augment`` (a callable ``augment(images, rng, out=images)``, such as
    :class:`numlp.data.augment.Augment`), every block is distorted after it is gathered, on a
    background thread that prepares the next block while the current one trains (two buffers
    take turns). Each block's random draws come from its own generator, seeded by
    ``(augment_key, epoch, first row)``, so the images are the same whatever the thread timing
    and an epoch resumed half-way sees exactly what it would have seen. ``background=False``
    augments on the calling thread instead (the same images): measured on two cores, where
    BLAS keeps both busy, the thread hides none of the augmentation's cost but costs no more.
    """

    def __init__(
        self,
        x,
        y,
        index,
        batch_size,
        rng,
        shuffle=True,
        block_bytes=16 << 20,
        augment=None,
        augment_key: int = 0,
        background: bool = True,
    ):
        self.x, self.y, self.index = x, y, index
        self.background = background
        self.batch_size, self.rng, self.shuffle = batch_size, rng, shuffle
        self.augment, self.augment_key = augment, augment_key
        self.contiguous = not shuffle and len(index) == len(x) and augment is None
        if augment is not None:
            block_bytes = min(block_bytes, 2 << 20)  # small blocks: little wait at epoch start
        row_bytes = max(x[0].nbytes if len(x) else 1, 1)
        per_block = max(1, block_bytes // (row_bytes * batch_size)) * batch_size
        self.block = min(per_block, len(index))
        if not self.contiguous:
            slots = 2 if augment is not None else 1
            self.x_buffers = [
                np.empty((self.block, *x.shape[1:]), dtype=x.dtype) for _ in range(slots)
            ]
            self.y_buffers = [
                np.empty((self.block, *y.shape[1:]), dtype=y.dtype) for _ in range(slots)
            ]

    def __len__(self) -> int:
        return math.ceil(len(self.index) / self.batch_size)

    def epoch(self, skip: int = 0, epoch: int = 0):
        """Yield ``(xb, yb)`` for one pass over the data, leaving out the first ``skip`` batches
        (to resume an epoch: the order is drawn as usual, so what follows is the same).
        ``epoch`` (1, 2, ...) seeds the augmentation."""
        first_row = skip * self.batch_size
        if self.contiguous:
            for start in range(first_row, len(self.x), self.batch_size):
                yield (
                    self.x[start : start + self.batch_size],
                    self.y[start : start + self.batch_size],
                )
            return
        order = self.index[self.rng.permutation(len(self.index))] if self.shuffle else self.index
        starts = range(first_row - first_row % self.block, len(order), self.block)

        def prepare(number: int):
            block_start = starts[number]
            rows = order[block_start : block_start + self.block]
            slot = number % len(self.x_buffers)
            xs, ys = self.x_buffers[slot][: len(rows)], self.y_buffers[slot][: len(rows)]
            # mode="clip" matters: with the default "raise", np.take buffers `out` (30x slower).
            np.take(self.x, rows, axis=0, out=xs, mode="clip")
            np.take(self.y, rows, axis=0, out=ys, mode="clip")
            if self.augment is not None:
                seed = np.random.SeedSequence([self.augment_key, epoch, block_start])
                self.augment(xs, np.random.default_rng(seed), out=xs)
            return block_start, xs, ys

        def batches_of(block_start, xs, ys):
            for start in range(max(first_row - block_start, 0), len(xs), self.batch_size):
                yield xs[start : start + self.batch_size], ys[start : start + self.batch_size]

        if self.augment is None or not self.background:
            for number in range(len(starts)):
                yield from batches_of(*prepare(number))
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="numlp-augment") as worker:
            pending = worker.submit(prepare, 0)
            for number in range(len(starts)):
                block = pending.result()
                if number + 1 < len(starts):  # the other buffer, while this one trains
                    pending = worker.submit(prepare, number + 1)
                yield from batches_of(*block)


def fit(
    model: Sequential,
    x,
    y,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    optimizer: Optimizer | None = None,
    loss: Loss | None = None,
    schedule: Schedule | None = None,
    validation_data=None,
    validation_split: float = 0.0,
    shuffle: bool = True,
    seed: int | None = None,
    callbacks=(),
    verbose: bool = False,
    resume: dict | None = None,
    max_grad_norm: float | None = MAX_GRAD_NORM,
    augment: Callable | None = None,
) -> History:
    """Train ``model`` on ``x: (samples, *input_shape)`` and ``y`` (class ids for cross-entropy).

    Parameters
    ----------
    epochs, batch_size : int
        Passes over the data and samples per step (the last batch may be smaller).
    optimizer : Optimizer, default ``Adam(model.parameters())``
    loss : Loss, default ``SoftmaxCrossEntropy()``
    schedule : Schedule, optional
        Asked for the learning rate before every step (step 0, 1, ...).
    validation_data : (x_val, y_val), optional
        Evaluated after every epoch, in inference mode.
    validation_split : float
        Instead of ``validation_data``, hold out this random fraction of ``(x, y)``.
    shuffle : bool
        Reshuffle the training data every epoch.
    seed : int, optional
        Seeds the split, the shuffling and the dropout masks: the same seed on the same machine
        gives bit-identical weights.
    callbacks : list of Callback
    verbose : bool
        Print one line per epoch to stderr.
    resume : dict, optional
        A training state from ``context.snapshot()`` (as a :class:`Checkpoint` saves it):
        training continues where it stopped, with the same data order and dropout masks, so
        the result is bit-identical to a run that was never interrupted. The model and
        optimizer must already hold the state saved with it; ``seed`` must be the same.
    max_grad_norm : float or None
        Stop with :class:`TrainingDiverged` when the global gradient norm exceeds this (or is
        not finite), before the step is applied; None turns the check off.
    augment : callable, optional
        ``augment(images, rng, out=images)`` distorts a block of training images ``(batch,
        height, width)`` in place, e.g. :class:`numlp.data.augment.Augment`. It runs on a
        background thread, ahead of training; validation data are never augmented. Its
        random draws follow from ``seed`` (or from a key kept in the training state), so
        seeded runs and resumed runs are reproducible.

    Returns
    -------
    History
        ``loss`` (mean training loss over the epoch, plus the optimizer's weight-decay penalty),
        ``accuracy`` (on the training batches as they were trained, dropout included),
        ``val_loss``, ``val_accuracy``, ``lr`` and ``seconds`` per epoch.

    Everything is validated before the first step, so a bad argument changes no weight.
    Ctrl-C (SIGINT) is taken between two steps: callbacks' ``on_interrupt`` run (a
    :class:`Checkpoint` saves), then KeyboardInterrupt is raised.
    """
    loss = loss or SoftmaxCrossEntropy()
    optimizer = optimizer or Adam(model.parameters())
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(loss, SoftmaxCrossEntropy) and isinstance(model.layers[-1], Softmax):
        raise ValueError(
            "the model ends with Softmax but SoftmaxCrossEntropy expects logits: remove the "
            "Softmax layer (predict_proba applies softmax for you)"
        )
    model_params = {id(p) for p in model.parameters()}
    if {id(p) for p in optimizer.params} != model_params:
        raise ValueError("the optimizer was built for other parameters than this model's")
    rng = np.random.default_rng(seed)

    x, y = _check_data(model, x, y, loss, "x")
    if augment is not None and x.ndim != 3:
        raise ValueError(
            f"augmentation works on images (samples, height, width), but x has shape {x.shape}; "
            "reshape it, e.g. x.reshape(-1, 28, 28), and start the model with Flatten()"
        )
    if validation_data is not None and validation_split:
        raise ValueError("give validation_data or validation_split, not both")
    index = np.arange(len(x))
    if validation_split:
        index, val_index = validation_indices(len(x), validation_split, rng)
        validation_data = (x[val_index], y[val_index])
    elif validation_data is not None:
        if len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (x_val, y_val)")
        validation_data = _check_data(model, *validation_data, loss, "validation x")

    if model.input_shape is None:
        model.input_shape = x.shape[1:]
        model._check_chain()
    x = np.ascontiguousarray(x, dtype=model.dtype)
    classification = isinstance(loss, SoftmaxCrossEntropy)
    binary = isinstance(loss, BCEWithLogits) and model.classes == 1
    dropouts = [layer for layer in model.layers if isinstance(layer, Dropout)]
    for layer in dropouts:  # the fit seed decides the dropout masks too
        layer.rng = rng.spawn(1)[0]

    n = len(index)
    # The augmentation key is not drawn from rng, so that runs without augmentation keep
    # exactly the random stream they always had.
    augment_key = seed if seed is not None else int(np.random.SeedSequence().entropy % 2**63)
    if resume is not None and resume.get("augment_key") is not None:
        augment_key = int(resume["augment_key"])
    batches = BatchStream(
        x, y, index, batch_size, rng, shuffle, augment=augment, augment_key=augment_key
    )
    context = TrainingContext(model, optimizer, loss, schedule, epochs, len(batches), n)
    history = context.history
    # Where the loop is; a snapshot of this plus the arrays is a checkpoint.
    position = {
        "epoch": 0,
        "batch": 0,
        "loss_sum": 0.0,
        "correct": 0,
        "seen": 0,
        "epoch_seconds": 0.0,
        "rng_epoch_start": rng.bit_generator.state,
    }
    if resume is not None:
        _restore(resume, position, history, rng, dropouts, len(batches))

    def snapshot() -> dict:
        return {
            **position,
            "rng": rng.bit_generator.state,
            "dropout_rngs": [layer.rng.bit_generator.state for layer in dropouts],
            "history": history.records,
            "optimizer_steps": optimizer.steps,
            "augment_key": augment_key if augment is not None else None,
        }

    context.snapshot = snapshot
    model.stop_training = False
    for callback in callbacks:
        callback.on_train_begin(context)
    logger = EpochLogger() if verbose else None
    if logger:
        logger.on_train_begin(context)

    with _deferred_sigint() as interrupted:
        for epoch in range(position["epoch"] + 1, epochs + 1):
            for callback in callbacks:
                callback.on_epoch_begin(epoch)
            started = time.perf_counter() - position["epoch_seconds"]
            skip = position["batch"]
            if skip:
                rng.bit_generator.state = position["rng_epoch_start"]
            else:
                position["rng_epoch_start"] = rng.bit_generator.state
            for xb, yb in batches.epoch(skip, epoch):
                if schedule is not None:
                    optimizer.lr = schedule(optimizer.steps)
                batch_loss, outputs = train_step(model, loss, optimizer, xb, yb, max_grad_norm)
                position["loss_sum"] += batch_loss * len(xb)
                position["seen"] += len(xb)
                position["batch"] += 1
                if classification:
                    position["correct"] += int(np.count_nonzero(outputs.argmax(axis=1) == yb))
                elif binary:
                    hits = (outputs[:, 0] > 0) == (yb.reshape(-1) > 0.5)
                    position["correct"] += int(np.count_nonzero(hits))
                if callbacks:
                    step_logs = {"loss": batch_loss, "batch_size": len(xb)}
                    for callback in callbacks:
                        callback.on_batch_end(optimizer.steps, step_logs)
                if interrupted():
                    position["epoch_seconds"] = time.perf_counter() - started
                    for callback in callbacks:
                        callback.on_interrupt(context)
                    raise KeyboardInterrupt
            logs = {"epoch": epoch, "loss": position["loss_sum"] / n + optimizer.penalty()}
            if classification or binary:
                logs["accuracy"] = position["correct"] / n
            if validation_data is not None:
                scores = model.evaluate(*validation_data, loss=loss)
                logs.update({f"val_{k}": v for k, v in scores.items()})
            logs["lr"] = optimizer.lr
            logs["seconds"] = time.perf_counter() - started
            history.append(logs)
            position.update(
                epoch=epoch,
                batch=0,
                loss_sum=0.0,
                correct=0,
                seen=0,
                epoch_seconds=0.0,
                rng_epoch_start=rng.bit_generator.state,
            )
            for callback in callbacks:
                callback.on_epoch_end(epoch, logs)
            if logger:
                logger.on_epoch_end(epoch, logs)
            if model.stop_training or interrupted():
                break
        if interrupted():  # arrived during validation or a callback: the epoch is complete
            for callback in callbacks:
                callback.on_interrupt(context)
            raise KeyboardInterrupt
    for callback in callbacks:
        callback.on_train_end(history)
    return history


def _restore(state: dict, position: dict, history: History, rng, dropouts, steps_per_epoch):
    """Put a snapshot back: loop position, RNG states, history."""
    try:
        for key in position:
            position[key] = state[key]
        rng.bit_generator.state = state["rng"]
        if len(state["dropout_rngs"]) != len(dropouts):
            raise ValueError("the checkpoint has a different number of Dropout layers")
        for layer, rng_state in zip(dropouts, state["dropout_rngs"]):
            layer.rng.bit_generator.state = rng_state
        records = list(state["history"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"cannot resume from this training state: {err}") from None
    if not 0 <= position["batch"] <= steps_per_epoch:
        raise ValueError("cannot resume: the checkpoint's batch position does not fit this data")
    for record in records:
        history.append(record)


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


class Checkpoint(Callback):
    """Save the whole training state to ``path`` after every epoch and on Ctrl-C, atomically,
    so that ``fit(..., resume=...)`` continues exactly. ``metadata`` goes into the header."""

    def __init__(self, path, **metadata):
        self.path = path
        self.metadata = metadata
        self.saved: dict | None = None  # epoch and batch of the last save

    def on_train_begin(self, context):
        self.context = context

    def save(self) -> None:
        from numlp.io import save_checkpoint

        state = self.context.snapshot()
        model = self.context.model
        for name, value in model.state_dict().items():
            if not np.all(np.isfinite(value)):
                raise TrainingDiverged(
                    f"{name} holds NaN or Inf after epoch {state['epoch']}; the checkpoint "
                    "was not overwritten. Try a lower learning rate or gradient clipping."
                )
        try:
            save_checkpoint(self.path, model, self.context.optimizer, state, **self.metadata)
        except OSError as err:
            raise OSError(
                err.errno, f"{err.strerror} while writing {self.path} (the previous one is kept)"
            ) from None
        self.saved = {"epoch": state["epoch"], "batch": state["batch"]}

    def on_epoch_end(self, epoch, logs):
        self.save()

    def on_interrupt(self, context):
        self.save()


def train_step(
    model: Sequential, loss: Loss, optimizer: Optimizer, xb, yb, max_grad_norm=MAX_GRAD_NORM
) -> tuple[float, np.ndarray]:
    """Forward, loss, loss backward, model backward, optimizer step. Returns the batch loss and
    the outputs. A NaN/Inf loss, or a gradient norm that is not finite or above
    ``max_grad_norm`` (None: no check), raises :class:`TrainingDiverged` before any weight
    changes."""
    outputs = model._forward(xb, training=True)
    batch_loss = loss.forward(outputs, yb)
    advice = (
        f"the weights are those before that step. Try a lower learning rate (now "
        f"{optimizer.lr:g}) or gradient clipping (clip_norm)."
    )
    if not math.isfinite(batch_loss):
        raise TrainingDiverged(
            f"the loss became {batch_loss} at step {optimizer.steps + 1}; {advice}"
        )
    model.backward(loss.backward())
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


def _check_data(model: Sequential, x, y, loss: Loss, who: str):
    x = check_inputs(x, model.input_shape, who)
    y = np.asarray(y)
    if len(y) != len(x):
        raise ValueError(f"{who} has {len(x)} samples but its labels have {len(y)}")
    if len(x) == 0:
        raise ValueError(f"{who} is empty")
    if isinstance(loss, SoftmaxCrossEntropy):
        y = check_labels(y, len(y), model.classes, f"labels of {who}")
    elif y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise ValueError(f"targets of {who} contain NaN or Inf")
    return x, y
