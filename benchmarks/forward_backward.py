"""One forward+backward pass of a (60000, 784) float32 batch through 784-256-10, against the
machine's large-matmul ceiling (the figure issue 2 asks for).

    python benchmarks/forward_backward.py
"""

import statistics
import time

import numpy as np

from numlp import Dense, ReLU, Sequential, SoftmaxCrossEntropy
from numlp.bench import matmul_ceiling

N = 60000


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((N, 784), dtype=np.float32)
    y = rng.integers(0, 10, N)
    model = Sequential([Dense(784, 256), ReLU(), Dense(256, 10)], seed=0)
    loss = SoftmaxCrossEntropy()

    def forward_backward():
        loss.forward(model.forward(x, training=True, checked=True), y)
        model.backward(loss.backward())

    forward_backward()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        forward_backward()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    # forward: both layers; backward: both weight gradients and the second layer's input
    # gradient (the first layer needs none for its input).
    flops = 2 * N * (784 * 256 + 256 * 10) + 2 * N * (784 * 256 + 2 * 256 * 10)
    ceiling = matmul_ceiling()
    achieved = flops / median / 1e9
    print(
        f"forward+backward of (60000, 784) through 784-256-10: median {median:.3f} s of "
        f"{[round(t, 3) for t in times]}"
    )
    print(
        f"{flops / 1e9:.1f} GFLOP -> {achieved:.0f} GFLOP/s; 4096x4096 float32 matmul "
        f"ceiling {ceiling:.0f} GFLOP/s; {achieved / ceiling:.0%} of it"
    )


if __name__ == "__main__":
    main()
