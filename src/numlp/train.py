"""The training loop: batching, the per-step sequence, History and callbacks.

One training step is exactly: forward, loss, loss backward, model backward, optimizer step.
The data is shuffled once per epoch into a contiguous buffer and batches are views of it,
so no rows are gathered per batch. Nothing here prints: progress goes through callbacks.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from numlp.layers import Dropout, Softmax
from numlp.losses import BCEWithLogits, Loss, SoftmaxCrossEntropy, check_labels
from numlp.model import Sequential, check_inputs
from numlp.optim import Adam, Optimizer
from numlp.schedules import Schedule


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the step that caused it was not applied."""


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


class Callback:
    """Hooks called by ``fit``; override the ones you need."""

    def on_train_begin(self, context: TrainingContext) -> None: ...

    def on_epoch_begin(self, epoch: int) -> None: ...

    def on_batch_end(self, step: int, logs: dict) -> None: ...

    def on_epoch_end(self, epoch: int, logs: dict) -> None: ...

    def on_train_end(self, history: History) -> None: ...


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


def split_validation(x, y, fraction: float, rng: np.random.Generator):
    """Hold out a random ``fraction`` of ``(x, y)``: ``(x_train, y_train), (x_val, y_val)``."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation_split must be in (0, 1), got {fraction}")
    n_val = int(round(len(x) * fraction))
    if n_val < 1 or n_val >= len(x):
        raise ValueError(f"validation_split {fraction} of {len(x)} samples leaves an empty part")
    order = rng.permutation(len(x))
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    return (x[train], y[train]), (x[val], y[val])


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

    Returns
    -------
    History
        ``loss`` (mean training loss over the epoch, plus the optimizer's weight-decay penalty),
        ``accuracy`` (on the training batches as they were trained, dropout included),
        ``val_loss``, ``val_accuracy``, ``lr`` and ``seconds`` per epoch.

    Everything is validated before the first step, so a bad argument changes no weight.
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
    if validation_data is not None and validation_split:
        raise ValueError("give validation_data or validation_split, not both")
    if validation_split:
        (x, y), validation_data = split_validation(x, y, validation_split, rng)
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
    for layer in model.layers:  # the fit seed decides the dropout masks too
        if isinstance(layer, Dropout):
            layer.rng = rng.spawn(1)[0]

    n = len(x)
    steps_per_epoch = math.ceil(n / batch_size)
    context = TrainingContext(model, optimizer, loss, schedule, epochs, steps_per_epoch, n)
    history = context.history
    model.stop_training = False
    for callback in callbacks:
        callback.on_train_begin(context)
    logger = EpochLogger() if verbose else None
    if logger:
        logger.on_train_begin(context)

    x_epoch, y_epoch = (np.empty_like(x), np.empty_like(y)) if shuffle else (x, y)
    for epoch in range(1, epochs + 1):
        for callback in callbacks:
            callback.on_epoch_begin(epoch)
        started = time.perf_counter()
        if shuffle:
            order = rng.permutation(n)
            np.take(x, order, axis=0, out=x_epoch)
            np.take(y, order, axis=0, out=y_epoch)
        total_loss, correct = 0.0, 0
        for start in range(0, n, batch_size):
            xb = x_epoch[start : start + batch_size]
            yb = y_epoch[start : start + batch_size]
            if schedule is not None:
                optimizer.lr = schedule(optimizer.steps)
            batch_loss, outputs = train_step(model, loss, optimizer, xb, yb)
            total_loss += batch_loss * len(xb)
            if classification:
                correct += int(np.count_nonzero(outputs.argmax(axis=1) == yb))
            elif binary:
                correct += int(np.count_nonzero((outputs[:, 0] > 0) == (yb.reshape(-1) > 0.5)))
            if callbacks:
                step_logs = {"loss": batch_loss, "batch_size": len(xb)}
                for callback in callbacks:
                    callback.on_batch_end(optimizer.steps, step_logs)
        logs = {"epoch": epoch, "loss": total_loss / n + optimizer.penalty()}
        if classification or binary:
            logs["accuracy"] = correct / n
        if validation_data is not None:
            scores = model.evaluate(*validation_data, loss=loss)
            logs.update({f"val_{k}": v for k, v in scores.items()})
        logs["lr"] = optimizer.lr
        logs["seconds"] = time.perf_counter() - started
        history.append(logs)
        for callback in callbacks:
            callback.on_epoch_end(epoch, logs)
        if logger:
            logger.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    for callback in callbacks:
        callback.on_train_end(history)
    return history


def train_step(
    model: Sequential, loss: Loss, optimizer: Optimizer, xb, yb
) -> tuple[float, np.ndarray]:
    """Forward, loss, loss backward, model backward, optimizer step. Returns the batch loss and
    the outputs. A NaN/Inf loss raises :class:`TrainingDiverged` before any weight changes."""
    outputs = model._forward(xb, training=True)
    batch_loss = loss.forward(outputs, yb)
    if not math.isfinite(batch_loss):
        raise TrainingDiverged(
            f"the loss became {batch_loss} at step {optimizer.steps + 1}; the weights are those "
            f"before that step. Try a lower learning rate (now {optimizer.lr:g}) or gradient "
            "clipping (clip_norm)."
        )
    model.backward(loss.backward())
    optimizer.step()
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
