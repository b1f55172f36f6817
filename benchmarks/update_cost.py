"""What an optimizer step costs depending on what ran just before it: W1's SGD update with
momentum (784-512-256-10, 535,818 parameters) through numlp's own ``SGD.step``, with NumPy's
kernels and the fused ones, timed right after

* ``nothing`` (the same arrays updated again: caches hot),
* ``matmul, 2 threads`` (the last product of W1's backward, ``x.T @ g`` for the first layer, on
  both cores: OpenBLAS's second thread then spins beside the update),
* ``matmul, 1 thread`` (the same product, BLAS held to one thread),
* ``32 MB sweep`` (a read of 32 MB: the parameters, gradients and momentum out of the caches),
* ``training`` (inside ``fit``: one epoch of W1, every step's ``optimizer.step`` timed).

It says why a fused update that runs twice as fast alone gains little inside training here:
the update waits on memory, and its arrays are no longer in the caches by then.

    python benchmarks/update_cost.py --data-dir ../shared/data/mnist --json update.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from neighbours import emit
from step_profile import build

from numlp import SoftmaxCrossEntropy, kernels
from numlp.bench import load_mnist


def w1():
    """W1's model and optimizer (step_profile's), with small gradients to step with."""
    model, optimizer, _ = build("w1")
    rng = np.random.default_rng(0)
    for p in model.parameters():  # small gradients: the weights stay where they are
        p.grad[...] = rng.standard_normal(p.grad.shape) * 1e-3
    return model, optimizer


def median_ms(before, step, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        before()
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def alone(repeats: int) -> dict:
    """Median ms of one ``SGD.step`` after each kind of preceding work (the caches' state)."""
    from threadpoolctl import threadpool_limits

    model, optimizer = w1()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((128, 784)).astype(np.float32)
    g = rng.standard_normal((128, 512)).astype(np.float32)
    product = np.empty((784, 512), np.float32)
    sweep = np.ones(8 << 20, np.float32)  # 32 MB, the size of this CPU's last-level cache

    def matmul():
        np.matmul(x.T, g, out=product)

    found = {
        "nothing": median_ms(lambda: None, optimizer.step, repeats),
        "matmul, 2 threads": median_ms(matmul, optimizer.step, repeats),
        "32 MB sweep": median_ms(sweep.sum, optimizer.step, repeats),
    }
    with threadpool_limits(1):
        found["matmul, 1 thread"] = median_ms(matmul, optimizer.step, repeats)
    return found


def in_training(x, y) -> float:
    """Median ms of ``optimizer.step`` over one epoch of W1 with ``fit``."""
    model, optimizer = w1()
    times = []
    step = optimizer.step

    def timed(grad_norm=None):
        started = time.perf_counter()
        step(grad_norm)
        times.append(time.perf_counter() - started)

    optimizer.step = timed
    model.fit(x, y, epochs=1, batch_size=128, seed=0, loss=SoftmaxCrossEntropy(),
              optimizer=optimizer)  # fmt: skip
    return statistics.median(times[len(times) // 10 :]) * 1e3  # past the first compiles


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("NUMLP_DATA"))
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--samples", type=int, default=60000, help="training images for fit")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    x, y, _, _ = load_mnist(args.data_dir)
    x, y = x[: args.samples], y[: args.samples]
    result = {}
    for choice in ("numpy", "numba"):
        try:
            kernels.use(choice)
        except ImportError:
            continue  # numba not installed: NumPy's kernels only
        result[choice] = {**alone(args.repeats), "training": in_training(x, y)}
    emit({"workload": "W1 SGD momentum update", "ms_per_step": result}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
