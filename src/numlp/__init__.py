"""numlp: multilayer perceptrons from scratch in NumPy, readable, verified and fast."""

from numlp._version import __version__
from numlp.committee import Committee
from numlp.io import load, save
from numlp.layers import (
    GELU,
    BatchNorm,
    Dense,
    Dropout,
    Flatten,
    Layer,
    LeakyReLU,
    Parameter,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)
from numlp.losses import MSE, BCEWithLogits, Distillation, Loss, SoftmaxCrossEntropy
from numlp.model import Sequential
from numlp.optim import SGD, Adam, AdamW, Optimizer
from numlp.train import Callback, EarlyStopping, History, TrainingDiverged

__all__ = [
    "GELU",
    "MSE",
    "SGD",
    "Adam",
    "AdamW",
    "BCEWithLogits",
    "BatchNorm",
    "Callback",
    "Committee",
    "Dense",
    "Distillation",
    "Dropout",
    "EarlyStopping",
    "Flatten",
    "History",
    "Layer",
    "LeakyReLU",
    "Loss",
    "Optimizer",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "SoftmaxCrossEntropy",
    "Tanh",
    "TrainingDiverged",
    "__version__",
    "load",
    "save",
]
