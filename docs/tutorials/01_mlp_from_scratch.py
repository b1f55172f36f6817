# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # An MLP from scratch, step by step
#
# A multilayer perceptron is a chain of two kinds of layers: a **Dense** layer computes
# `x @ W + b`, an **activation** such as ReLU bends the result. Training needs each layer's
# derivative too. In this notebook we write `Dense` and `ReLU` ourselves against numlp's
# `Layer` protocol, check their gradients against finite differences, and train them on MNIST
# with numlp's loss, optimizer and training loop.
#
# The protocol (see [the concepts page](../../concepts/protocol/)):
#
# - `forward(x, training)` returns the output for a batch `x: (batch, features)` and keeps what
#   backward needs;
# - `backward(grad_out)` sets `param.grad` of every parameter and returns the gradient for the
#   input;
# - `parameters()` lists the `Parameter` objects (value and grad).

# %%
import os

import numpy as np

import numlp
from numlp import Layer, Parameter

# CI builds this site on small slices of MNIST; a reader gets the whole of it.
QUICK = os.environ.get("NUMLP_DOCS_QUICK") == "1"
print("numlp", numlp.__version__, "| quick mode" if QUICK else "")

# %% [markdown]
# ## A Dense layer
#
# For `y = x W + b` with `x: (batch, in)` and `W: (in, out)`, the chain rule gives three
# matrix expressions, one product each over the whole batch: no loop over samples.


# %%
class MyDense(Layer):
    """y = x @ W + b; x: (batch, n_in), W: (n_in, n_out), b: (n_out,)."""

    def __init__(self, n_in, n_out, seed=0):
        rng = np.random.default_rng(seed)
        # He initialisation: keeps the variance of ReLU activations steady from layer to layer
        self.W = Parameter(rng.normal(0, np.sqrt(2 / n_in), (n_in, n_out)).astype(np.float32))
        self.b = Parameter(np.zeros(n_out, dtype=np.float32), decay=False)

    def forward(self, x, training=False):
        self.x = x  # backward needs the input
        return x @ self.W.value + self.b.value

    def backward(self, grad_out):
        self.W.grad[...] = self.x.T @ grad_out  # dL/dW
        self.b.grad[...] = grad_out.sum(axis=0)  # dL/db
        return grad_out @ self.W.value.T  # dL/dx

    def parameters(self):
        return [self.W, self.b]

    # Two optional parts of the protocol: the shapes, so that the model can check the chain of
    # layers, count its classes and print a summary.
    def expected_input_shape(self):
        return (self.W.value.shape[0],)

    def output_shape(self, input_shape):
        return (self.W.value.shape[1],)


class MyReLU(Layer):
    """max(x, 0), and its derivative: 1 where x > 0, else 0."""

    def forward(self, x, training=False):
        self.mask = x > 0
        return x * self.mask

    def backward(self, grad_out):
        return grad_out * self.mask


# %% [markdown]
# ## Is the gradient right?
#
# `numlp.gradcheck.check_layer` compares `backward` with the numerical derivative
# `(f(x + eps) - f(x - eps)) / 2 eps` for every input and every parameter, in float64. A
# relative error near 1e-9 means the calculus is right; a wrong transpose or a missing sum
# shows as an error near 1.

# %%
from numlp.gradcheck import check_layer

rng = np.random.default_rng(0)
print(check_layer(MyDense(5, 3), rng.normal(size=(4, 5))))
print(check_layer(MyReLU(), rng.normal(size=(4, 5))))


# %% [markdown]
# What a bug looks like: a Dense whose weight gradient is off by a factor of two (as when a
# 1/2 from a squared error is lost on the way). The check shows it at once.


# %%
class BuggyDense(MyDense):
    def backward(self, grad_out):
        grad = super().backward(grad_out)
        self.W.grad[...] = self.W.grad * 0.5  # a factor lost somewhere
        return grad


print(check_layer(BuggyDense(5, 3), rng.normal(size=(4, 5))))

# %% [markdown]
# ## MNIST
#
# `load_dataset` finds the MNIST files (or downloads them once) and checks their content
# hashes. The images come as `uint8 (n, 28, 28)`; we scale them to `[0, 1]` and flatten them
# into 784 features, because our Dense takes `(batch, features)`.

# %%
from numlp.data import load_dataset

data = load_dataset("mnist")
train_size = 10_000 if QUICK else 60_000
x_train = data.x_train[:train_size].reshape(-1, 784).astype(np.float32) / 255
y_train = data.y_train[:train_size]
x_test = data.x_test.reshape(-1, 784).astype(np.float32) / 255
y_test = data.y_test
print(x_train.shape, y_train.shape, x_test.shape)

# %% [markdown]
# ## Train our layers with numlp's loop
#
# `Sequential` chains the layers; the fused softmax cross-entropy turns logits into a loss
# without ever overflowing; Adam updates every `Parameter` the layers list. The model's
# summary is shown by Jupyter when the model is the last thing in a cell.
#
# In Jupyter with `ipywidgets` installed, `callbacks=[numlp.progress.ProgressBar()]` adds a
# live progress bar (tqdm's notebook widget; a text bar elsewhere). Here one line per epoch
# does, and `history.plot()` draws the curves.

# %%
import sys

from numlp import Adam, Sequential, SoftmaxCrossEntropy
from numlp.train import EpochLogger

model = Sequential([MyDense(784, 128, seed=1), MyReLU(), MyDense(128, 10, seed=2)])
model

# %%
history = model.fit(
    x_train,
    y_train,
    epochs=3 if QUICK else 5,
    batch_size=128,
    optimizer=Adam(model.parameters(), lr=1e-3),
    loss=SoftmaxCrossEntropy(),
    validation_split=0.1,
    seed=0,
    callbacks=[EpochLogger(sys.stdout)],  # one line per epoch
)
history.plot()
# %%
scores = model.evaluate(x_test, y_test)
print(f"test accuracy {scores['accuracy']:.2%} after {len(history)} epochs")

# %% [markdown]
# Two hand-written layers and about 100k weights give about 97 % on the test set with all
# 60,000 images and five epochs (the quick build of this site trains on a slice, for less).
# numlp's own `Dense` is the same idea with more care (initialisers, in-place buffers, the
# first layer skipping its input gradient); the [next tutorial](../02_seeds_revisited/) shows
# what went wrong in the notebooks numlp grew from.
