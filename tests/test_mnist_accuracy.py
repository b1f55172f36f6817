"""Correctness on real data: a 784-256-10 MLP trained on MNIST for a few epochs."""

import numpy as np
import pytest

from numlp import Adam, Dense, Flatten, ReLU, Sequential
from numlp.schedules import make_schedule


@pytest.mark.slow
def test_784_256_10_reaches_97_5_percent_on_the_mnist_test_set(mnist_arrays):
    x_train, y_train, x_test, y_test = mnist_arrays
    model = Sequential([Flatten(), Dense(784, 256), ReLU(), Dense(256, 10)], seed=0)
    epochs, batch_size = 5, 128
    steps = epochs * -(-len(x_train) // batch_size)
    history = model.fit(
        x_train,
        y_train,
        epochs=epochs,
        batch_size=batch_size,
        seed=0,
        optimizer=Adam(model.parameters(), lr=2e-3),
        schedule=make_schedule("cosine", 2e-3, steps),
    )
    assert np.all(np.isfinite(history["loss"]))
    accuracy = model.evaluate(x_test, y_test)["accuracy"]
    assert accuracy >= 0.975, f"test accuracy {accuracy:.4f}"
