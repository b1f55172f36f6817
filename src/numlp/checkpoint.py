"""Checkpoints: everything needed to continue a run exactly, in one file written atomically.

A checkpoint is a model file of another format name (``numlp-checkpoint``): the model's arrays
under ``model.``, the optimizer's under ``optimizer.``, and in the header the training state
(``fit``'s :class:`~numlp.train.state.TrainState` with the generators' states) plus whatever
metadata the run adds. :class:`Checkpoint` is the callback that writes it after every epoch
and on Ctrl-C.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from numlp.io import (
    CHECKPOINT_FORMAT,
    ModelFileError,
    archive_header,
    build_from_header,
    open_archive,
    write_archive,
)
from numlp.model import Sequential
from numlp.train import Callback, TrainingDiverged


def save_checkpoint(path, model: Sequential, optimizer, state: dict, **metadata) -> Path:
    """Write everything needed to continue training exactly: the model's arrays
    (``model.layers.0.W``...), the optimizer's (``optimizer.0.velocity``...) and, in the header,
    ``state`` (epoch, batch, RNG states, history; JSON-ready) plus ``metadata``. Atomic."""
    path = Path(path)
    optimizer_config = {"type": type(optimizer).__name__, **optimizer.config()}
    header = archive_header(
        CHECKPOINT_FORMAT, model, {"optimizer": optimizer_config, "state": state, **metadata}
    )
    arrays = {f"model.{k}": v for k, v in model.state_dict().items()}
    arrays.update({f"optimizer.{k}": np.asarray(v) for k, v in optimizer.state_dict().items()})
    write_archive(path, header, arrays)
    return path


def load_checkpoint(path) -> tuple[Sequential, dict[str, np.ndarray], dict]:
    """Read a checkpoint: ``(model, optimizer_arrays, header)``; the model is rebuilt and loaded
    (validated like a model file), the optimizer arrays are for ``Optimizer.load_state_dict``."""
    header, arrays = open_archive(path, CHECKPOINT_FORMAT)
    model_arrays = {k[6:]: v for k, v in arrays.items() if k.startswith("model.")}
    optimizer_arrays = {k[10:]: v for k, v in arrays.items() if k.startswith("optimizer.")}
    if len(model_arrays) + len(optimizer_arrays) != len(arrays):
        raise ModelFileError(f"{path}: holds arrays that are neither model nor optimizer state")
    if not isinstance(header.get("state"), dict):
        raise ModelFileError(f"{path}: the checkpoint has no training state in its header")
    for key, arr in optimizer_arrays.items():
        if arr.dtype.kind not in "fiu" or not np.all(np.isfinite(arr)):
            raise ModelFileError(f"{path}: optimizer array {key} is not finite numbers")
    return build_from_header(path, header, model_arrays), optimizer_arrays, header


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
        state = self.context.snapshot()
        model = self.context.model
        for name, value in model.state_dict().items():
            if not np.all(np.isfinite(value)):
                raise TrainingDiverged(
                    f"{name} holds NaN or Inf after epoch {state['epoch']}; the checkpoint "
                    "was not overwritten. Try a lower learning rate or gradient clipping."
                )
        save_checkpoint(self.path, model, self.context.optimizer, state, **self.metadata)
        self.saved = {"epoch": state["epoch"], "batch": state["batch"]}

    def on_epoch_end(self, epoch, logs):
        self.save()

    def on_interrupt(self, context):
        self.save()
