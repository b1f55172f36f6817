"""Where one W1 training step's time goes: each layer's forward and backward, the loss, the
gradient-norm check and the optimizer, timed separately (median over many steps).

W1 is the speed benchmark's workload: 784-512-256-10 ReLU, batch 128, SGD momentum 0.9, float32.
The parts are called exactly as ``numlp.train.train_step`` calls them. Usage:

    python benchmarks/step_profile.py --data-dir ../shared/data/mnist --steps 1500
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from numlp import SGD, Dense, ReLU, Sequential, SoftmaxCrossEntropy
from numlp.bench import load_mnist
from numlp.optim import global_grad_norm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("NUMLP_DATA", "../shared/data/mnist"))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--json", help="also write the medians here (ms per step, by part)")
    args = parser.parse_args()

    x, y, _, _ = load_mnist(args.data_dir)
    model = Sequential([Dense(784, 512), ReLU(), Dense(512, 256), ReLU(), Dense(256, 10)], seed=0)
    optimizer = SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss = SoftmaxCrossEntropy()
    model.forward(x[:128], True, checked=True)
    model.backward(np.zeros((128, 10), np.float32))  # marks the first Dense: no input gradient
    parts: dict[str, list[float]] = {}

    def tick(name: str, since: float) -> float:
        now = time.perf_counter()
        parts.setdefault(name, []).append(now - since)
        return now

    for step in range(args.steps):
        start = (step * 128) % (len(x) - 128)
        xb, yb = x[start : start + 128], y[start : start + 128]
        began = t = time.perf_counter()
        h = xb
        for i, layer in enumerate(model.layers):
            h = layer.forward(h, True)
            t = tick(f"forward {i} {type(layer).__name__}", t)
        loss.forward(h, yb)
        t = tick("loss forward", t)
        grad = loss.backward()
        t = tick("loss backward", t)
        for i in range(len(model.layers) - 1, -1, -1):
            grad = model.layers[i].backward(grad)
            t = tick(f"backward {i} {type(model.layers[i]).__name__}", t)
            if grad is None:
                break
        norm = global_grad_norm(optimizer.params)
        t = tick("gradient norm", t)
        optimizer.step(grad_norm=norm)
        t = tick("optimizer", t)
        tick("whole step", began)

    medians = {name: statistics.median(times[args.warmup :]) * 1e3 for name, times in parts.items()}
    print("| part | ms per step (median) |\n|---|---|")
    for name, ms in medians.items():
        print(f"| {name} | {ms:.3f} |")
    if args.json:
        import json

        from numlp.atomic import atomic_write_text

        record = {"steps": args.steps, "warmup": args.warmup, "ms_per_step": medians}
        atomic_write_text(args.json, json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
