"""What ``fit`` reports to, and how it can be steered: ``History``, the ``Callback`` hooks and
the callbacks numlp ships (early stopping, one line per epoch). Callbacks are called through
one :class:`CallbackList`, in the order given."""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass, field
from typing import Any


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

    def plot(self, keys=("loss", "accuracy")):
        """Training and validation curves per epoch, one panel per key; returns the matplotlib
        figure (shown inline in Jupyter). Needs matplotlib (``pip install numlp[plots]``)."""
        try:
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError(
                "History.plot needs matplotlib: pip install matplotlib (numlp's plots extra)"
            ) from None
        fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.5), squeeze=False)
        epochs = self["epoch"] if "epoch" in self.history else list(range(1, len(self) + 1))
        for ax, key in zip(axes[0], keys):
            for prefix, label in (("", "train"), ("val_", "validation")):
                values = self.history.get(prefix + key)
                if values and any(v is not None for v in values):
                    ax.plot(epochs, values, marker="o", label=label)
            ax.set_xlabel("epoch")
            ax.set_ylabel(key)
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend()
        fig.tight_layout()
        return fig


@dataclass
class TrainingContext:
    """What callbacks may look at (and, for ``model.stop_training``, change): the model, its
    optimizer, loss and schedule, the plan (epochs, steps per epoch, samples), the history so
    far, and ``snapshot()``, the whole training state as a checkpoint saves it."""

    model: Any
    optimizer: Any
    loss: Any
    schedule: Any
    epochs: int
    steps_per_epoch: int
    samples: int
    history: History = field(default_factory=History)
    snapshot: Any = None  # () -> dict


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
    for key in logs:  # figures a callback watches (never used to choose): `watched_NAME`
        if key.startswith("watched_") and key.endswith("accuracy"):
            label = key.removeprefix("watched_").replace("_accuracy", " acc")
            parts.append(f"{label} (watched) {logs[key]:.2%}")
    parts.append(f"lr {logs['lr']:.3g}")
    parts.append(f"{logs['seconds']:.1f}s")
    return "  ".join(parts)


class CallbackList:
    """Callbacks called as one: ``callbacks.on_epoch_end(epoch, logs)`` calls each in order."""

    def __init__(self, callbacks=()):
        self.callbacks = list(callbacks)

    def __getattr__(self, hook: str):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def call(*args):
            for callback in self.callbacks:
                getattr(callback, hook)(*args)

        return call

    def __bool__(self) -> bool:
        return bool(self.callbacks)
