"""What on-the-fly augmentation costs per epoch, and how much of it the background thread hides.

For one model (by default the `best` preset's) it alternates training epochs without and with
the preset's augmentation, on the real MNIST training set, and reports the median epoch time of
each. It also times the augmentation alone on this thread (one epoch's worth of images), so that
the hidden share is 1 - (with - without) / alone. Usage:

    python benchmarks/augment_overhead.py --data-dir ../shared/data/mnist --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

from numlp.config import load_config, preset_path
from numlp.data import load_dataset
from numlp.losses import SoftmaxCrossEntropy
from numlp.parts import build_model, build_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("NUMLP_DATA", "../shared/data/mnist"))
    parser.add_argument("--preset", default="best")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    config = load_config(preset_path(args.preset))
    augment = config.augment
    data = load_dataset("mnist", data_dir=args.data_dir, download=False)
    x = data.x_train.astype(np.float32) / 255
    model = build_model(config, x.shape[1:], 10)
    optimizer = build_optimizer(config, model)
    loss = SoftmaxCrossEntropy(config.label_smoothing)

    def epoch(with_augment: bool) -> float:
        started = time.perf_counter()
        model.fit(
            x,
            data.y_train,
            epochs=1,
            batch_size=config.batch_size,
            optimizer=optimizer,
            loss=loss,
            augment=augment if with_augment else None,
        )
        return time.perf_counter() - started

    def alone() -> float:
        images = np.empty((5248, 28, 28), np.float32)
        rng = np.random.default_rng(0)
        started = time.perf_counter()
        for start in range(0, len(x), len(images)):
            part = x[start : start + len(images)]
            augment(part, rng, out=images[: len(part)])
        return time.perf_counter() - started

    epoch(False), epoch(True), alone()  # warm-up
    times = {"without": [], "with": [], "alone": []}
    for round_ in range(args.rounds):
        order = ("without", "with") if round_ % 2 == 0 else ("with", "without")
        for kind in order:
            times[kind].append(epoch(kind == "with"))
        times["alone"].append(alone())
    median = {k: statistics.median(v) for k, v in times.items()}
    overhead = median["with"] - median["without"]
    hidden = 1 - overhead / median["alone"]
    print(f"preset {args.preset}: {config.hidden}, augmentation {augment.config()}")
    print("| epoch without | epoch with | overhead | augmentation alone (1 thread) | hidden |")
    print("|---|---|---|---|---|")
    print(
        f"| {median['without']:.2f} s | {median['with']:.2f} s | {overhead:+.2f} s "
        f"({overhead / median['without']:+.0%}) | {median['alone']:.2f} s | {hidden:.0%} |"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"times": times, "median": median}, f, indent=1)


if __name__ == "__main__":
    main()
