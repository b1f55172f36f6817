"""``numlp bench``: how fast numlp trains on this machine, against the machine's own ceiling.

W1 is one training epoch of a 784-512-256-10 ReLU MLP on MNIST (batch 128, SGD momentum 0.9);
its FLOPs over its seconds, beside the GFLOP/s of a large float32 matrix product (the
practical peak of this machine's BLAS), say how much of the machine numlp uses. The peak RSS
of the process is reported too. Timings are never asserted anywhere: they drift with the
machine. Side by side with PyTorch and scikit-learn: ``python benchmarks/speed.py`` in a
checkout of numlp (each library in a process of its own).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time

import numpy as np

from numlp.atomic import atomic_write_text

HIDDEN = (512, 256)
BATCH = 128
LR = 0.01
MOMENTUM = 0.9


def w1_flops(samples: int, sizes=(784, *HIDDEN, 10)) -> float:
    """FLOPs of one training epoch: forward 2*n*in*out per layer, backward twice that,
    except the first layer, which needs no gradient for its input."""
    per_sample = 0
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        per_sample += 2 * a * b * (3 if i else 2)
    return per_sample * samples


def matmul_ceiling(n: int = 4096, repeats: int = 5) -> float:
    """GFLOP/s of an ``n x n`` float32 matrix product (median of ``repeats``, after a warm-up)."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def load_mnist(data_dir):
    """MNIST as flat float32 ``(x_train, y_train, x_test, y_test)`` in [0, 1]."""
    from numlp.data import load_dataset

    data = load_dataset("mnist", data_dir=data_dir, download=False)
    x_train = data.x_train.reshape(len(data.x_train), -1).astype(np.float32)
    x_train /= 255  # in place: no second full-size temporary in the RSS figures
    x_test = data.x_test.reshape(len(data.x_test), -1).astype(np.float32)
    x_test /= 255
    return x_train, data.y_train, x_test, data.y_test


class NumlpW1:
    """The W1 workload: each :meth:`epoch` trains one more epoch and returns its seconds."""

    name = "numlp"

    def __init__(self, x, y):
        from numlp.layers import Dense, ReLU
        from numlp.losses import SoftmaxCrossEntropy
        from numlp.model import Sequential
        from numlp.optim import SGD

        self.x, self.y = x, y
        self.model = Sequential(
            [Dense(784, HIDDEN[0]), ReLU(), Dense(*HIDDEN), ReLU(), Dense(HIDDEN[1], 10)], seed=0
        )
        self.optimizer = SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)
        self.loss = SoftmaxCrossEntropy()
        self.seed = 0

    def epoch(self) -> float:
        self.seed += 1
        history = self.model.fit(
            self.x,
            self.y,
            epochs=1,
            batch_size=BATCH,
            optimizer=self.optimizer,
            loss=self.loss,
            seed=self.seed,
        )
        return history["seconds"][0]


def run(data_dir, rounds: int = 5) -> dict:
    """Ceiling, then ``rounds`` W1 epochs after a warm-up, then the ceiling again (drift)."""
    x, y, _, _ = load_mnist(data_dir)
    ceiling = [matmul_ceiling()]
    w1 = NumlpW1(x, y)
    w1.epoch()  # warm-up: caches, BLAS threads, allocator
    seconds = [w1.epoch() for _ in range(rounds)]
    ceiling.append(matmul_ceiling())
    return {
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
        "ceiling_gflops": ceiling,
        "w1_epoch_seconds": seconds,
        "w1_gflops": w1_flops(len(x)) / statistics.median(seconds) / 1e9,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def report(result: dict) -> str:
    ceiling = statistics.median(result["ceiling_gflops"])
    seconds = result["w1_epoch_seconds"]
    return "\n".join(
        [
            f"machine: {result['cpus']} CPUs, NumPy {result['numpy']}; float32 matmul ceiling "
            f"{ceiling:.0f} GFLOP/s",
            f"W1 epoch (784-512-256-10, batch {BATCH}, SGD momentum): median "
            f"{statistics.median(seconds):.3f} s (from {min(seconds):.3f} to {max(seconds):.3f}, "
            f"{len(seconds)} epochs)",
            f"W1 {result['w1_gflops']:.0f} GFLOP/s, {result['w1_gflops'] / ceiling:.0%} of the "
            "ceiling",
            f"peak RSS {result['peak_rss_mib']} MiB (data included)",
            "with PyTorch and scikit-learn side by side: python benchmarks/speed.py (a checkout)",
        ]
    )


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="numlp bench", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("NUMLP_DATA"))
    parser.add_argument("--rounds", type=int, default=5, help="W1 epochs measured")
    parser.add_argument("--json", help="write the results here as JSON")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    result = run(args.data_dir, args.rounds)
    print(report(result))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
