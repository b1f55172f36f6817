"""Training: the loop (:func:`fit`, :func:`train_step`), its state, its batches and its
callbacks, each in a module of its own."""

from numlp.train.batches import BatchStream, split_validation, validation_indices
from numlp.train.callbacks import (
    Callback,
    CallbackList,
    EarlyStopping,
    EpochLogger,
    History,
    TrainingContext,
    format_epoch,
)
from numlp.train.loop import MAX_GRAD_NORM, TrainingDiverged, fit, train_step
from numlp.train.state import TrainState

__all__ = [
    "MAX_GRAD_NORM",
    "BatchStream",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "EpochLogger",
    "History",
    "TrainState",
    "TrainingContext",
    "TrainingDiverged",
    "fit",
    "format_epoch",
    "split_validation",
    "train_step",
    "validation_indices",
]
