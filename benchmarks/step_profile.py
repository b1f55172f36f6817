"""Where one training step's time goes: each layer's forward and backward, the loss, the
gradient-norm check and the optimizer, timed separately (median over many steps), with NumPy's
kernels and with the fused ones side by side.

The two kernel sets take turns in one process, two steps each (``numlp.kernels.use``), so that
the machine's drift hits both alike; ``--kernels numpy`` (or ``numba``) times one alone. The
parts are called exactly as ``numlp.train.train_step`` calls them. Workloads:

* ``w1`` (the speed benchmark's): 784-512-256-10 ReLU, batch 128, SGD momentum 0.9;
* ``quick99`` (the preset's network and optimizer): 784-1024-1024-10 ReLU with dropout,
  batch 256, AdamW with weight decay.

    python benchmarks/step_profile.py --data-dir ../shared/data/mnist --steps 1500
    python benchmarks/step_profile.py --workload quick99 --steps 600 --json profile.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from numlp import SGD, AdamW, Dense, Dropout, ReLU, Sequential, SoftmaxCrossEntropy, kernels
from numlp.bench import load_mnist
from numlp.optim import global_grad_norm


def build(workload: str):
    """``(model, optimizer, batch size)`` of a workload."""
    if workload == "quick99":
        model = Sequential([Dense(784, 1024), ReLU(), Dropout(0.004), Dense(1024, 1024), ReLU(),
                            Dropout(0.004), Dense(1024, 10)], seed=0)  # fmt: skip
        return model, AdamW(model.parameters(), lr=1.9e-3, weight_decay=0.03), 256
    model = Sequential([Dense(784, 512), ReLU(), Dense(512, 256), ReLU(), Dense(256, 10)], seed=0)
    return model, SGD(model.parameters(), lr=0.01, momentum=0.9), 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("NUMLP_DATA", "../shared/data/mnist"))
    parser.add_argument("--workload", choices=("w1", "quick99"), default="w1")
    parser.add_argument("--kernels", choices=("both", "numpy", "numba"), default="both")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--json", help="also write the medians here (ms per step, by part)")
    args = parser.parse_args()

    choices = ["numpy", "numba"] if args.kernels == "both" else [args.kernels]
    if args.kernels == "both":
        try:
            kernels.use("numba")
        except ImportError:
            choices = ["numpy"]  # numba not installed: the reference alone
    x, y, _, _ = load_mnist(args.data_dir)
    model, optimizer, batch = build(args.workload)
    loss = SoftmaxCrossEntropy()
    model.forward(x[:batch], True, checked=True)
    model.backward(np.zeros((batch, 10), np.float32))  # marks the first Dense: no input gradient
    parts: dict[str, dict[str, list[float]]] = {choice: {} for choice in choices}

    for step in range(args.steps):
        choice = choices[(step // 2) % len(choices)]
        kernels.use(choice)
        times = parts[choice] if step >= args.warmup else {}

        def tick(name: str, since: float, times=times) -> float:
            now = time.perf_counter()
            times.setdefault(name, []).append(now - since)
            return now

        start = (step * batch) % (len(x) - batch)
        xb, yb = x[start : start + batch], y[start : start + batch]
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
    kernels.use("auto")

    medians = {
        choice: {name: statistics.median(times) * 1e3 for name, times in found.items()}
        for choice, found in parts.items()
    }
    print(f"| part ({args.workload}) | " + " | ".join(f"{c}: ms per step" for c in choices) + " |")
    print("|---|" + "---|" * len(choices))
    for name in medians[choices[0]]:
        print(f"| {name} | " + " | ".join(f"{medians[c][name]:.3f}" for c in choices) + " |")
    if args.json:
        import json

        from numlp.atomic import atomic_write_text

        record = {"workload": args.workload, "steps": args.steps, "warmup": args.warmup,
                  "ms_per_step": medians}  # fmt: skip
        atomic_write_text(args.json, json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
