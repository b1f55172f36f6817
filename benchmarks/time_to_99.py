"""W4: wall time from the first training step to the first test evaluation at or above 99.0 %,
numlp against PyTorch with the same recipe (``numlp/presets/quick99.toml``): the same network,
initialisation, optimizer, learning-rate schedule (numlp's own schedule object drives both),
label smoothing, dropout and distortions (shift and rotation: numlp's Augment, and in PyTorch
``affine_grid`` + ``grid_sample`` on the whole batch in the training process).

    python benchmarks/time_to_99.py --seeds 3 --torch-python /path/to/venv-with-torch/bin/python
    python benchmarks/time_to_99.py --library numlp --seed 0 --epochs 1   # one run, JSON

Each run is a process of its own, numlp and PyTorch alternating, so only one library is alive
at a time. The test set is evaluated after every epoch for this benchmark only (the recipe was
chosen on the validation split). Each run also times its parts on one epoch's worth of steps:
forward + backward, the optimizer, the distortions.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TARGET = 0.99


def load(data_dir):
    from numlp.config import load_config, preset_path
    from numlp.data.datasets import load_dataset

    config = load_config(preset_path("quick99"))
    data = load_dataset("mnist", data_dir=data_dir)
    return config, data


def numlp_run(config, data, seed: int, epochs: int) -> dict:
    """The run as `numlp train` does it (run_training), a clock read after each test score."""
    import io
    import tempfile

    from numlp.data.datasets import DataSource
    from numlp.run import Console, run_training
    from numlp.train import Callback

    class Clock(Callback):
        def on_train_begin(self, context):
            self.start, self.marks = time.perf_counter(), []

        def on_epoch_end(self, epoch, logs):  # after the watcher scored the test set
            self.marks.append((time.perf_counter() - self.start, logs["watched_test_accuracy"]))

    clock = Clock()
    config = config.updated(seed=seed, epochs=epochs, val_split=0.0, watch_test=True)
    with tempfile.TemporaryDirectory() as out:
        run_training(config, Path(out) / "run", source=DataSource(data.source),
                     console=Console(io.StringIO()), callbacks=[clock],
                     threads=os.cpu_count())  # fmt: skip
    from numlp import kernels

    return {"marks": clock.marks, "parts": numlp_parts(config, data), "kernels": kernels.name()}


def numlp_parts(config, data) -> dict:
    """Seconds per epoch's worth of steps of each part, measured apart."""
    from numlp import preprocess
    from numlp.parts import build_loss, build_model, build_optimizer
    from numlp.threads import ThreadGovernor

    x = preprocess.apply(data.x_train, preprocess.IMAGE_SCALING)
    model = build_model(config, x.shape[1:], 10)
    optimizer, loss = build_optimizer(config, model), build_loss(config)
    steps = math.ceil(len(x) / config.batch_size)
    optimizer.plan_schedule(1, steps)
    xb, yb = x[: config.batch_size], data.y_train[: config.batch_size]
    with ThreadGovernor(os.cpu_count()):
        started = time.perf_counter()
        for _ in range(steps):
            loss.forward(model.forward(xb, training=True, checked=True), yb)
            model.backward(loss.backward())
        forward_backward = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(steps):
            optimizer.step()
        step = time.perf_counter() - started
    images = data.x_train.astype(np.float32) / 255
    started = time.perf_counter()
    config.augment(images, np.random.default_rng(0), out=images)
    augment = time.perf_counter() - started
    return {"forward_backward": forward_backward, "optimizer": step, "distortions": augment}


def torch_run(config, data, seed: int, epochs: int) -> dict:
    import torch
    import torch.nn.functional as F

    from numlp.schedules import plan

    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(seed)
    x = torch.from_numpy(data.x_train.astype(np.float32) / 255).unsqueeze(1)
    y = torch.from_numpy(data.y_train.astype(np.int64))
    xt = torch.from_numpy(data.x_test.astype(np.float32) / 255).reshape(-1, 784)
    yt = torch.from_numpy(data.y_test.astype(np.int64))
    model = torch_model(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.999),
                                  eps=1e-8, weight_decay=config.weight_decay)  # fmt: skip
    steps = math.ceil(len(x) / config.batch_size)
    schedule = plan(config.schedule, config.warmup_epochs).build(epochs, steps, config.lr)
    marks, start, step = [], time.perf_counter(), 0
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x))
        for i in range(0, len(x), config.batch_size):
            rows = order[i : i + config.batch_size]
            xb = distort(x[rows], config.augment, torch).reshape(-1, 784)
            for group in optimizer.param_groups:
                group["lr"] = schedule(step)
            loss = F.cross_entropy(model(xb), y[rows], label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        model.eval()
        with torch.no_grad():
            accuracy = (model(xt).argmax(1) == yt).float().mean().item()
        marks.append((time.perf_counter() - start, accuracy))
    return {"marks": marks, "parts": torch_parts(config, x, y, torch)}


def torch_model(config):
    import torch

    nn = torch.nn
    layers, width = [], 784
    for size in config.hidden:
        layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(config.dropout)]
        width = size
    layers.append(nn.Linear(width, 10))
    model = nn.Sequential(*layers)
    for i, layer in enumerate(model):  # numlp's init: He-normal before ReLU, Xavier last
        if isinstance(layer, nn.Linear):
            if i == len(model) - 1:
                nn.init.xavier_uniform_(layer.weight)
            else:
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
    return model


def distort(images, augment, torch):
    """Shift (pixels) and rotation (degrees) as numlp draws them, one affine map per image,
    applied by ``affine_grid`` + ``grid_sample`` (bilinear, zeros outside)."""
    n = len(images)
    angle = torch.deg2rad((torch.rand(n) * 2 - 1) * augment.rotation)
    shift = (torch.rand(n, 2) * 2 - 1) * augment.shift * (2 / 28)  # pixels -> [-1, 1] units
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    return torch.nn.functional.grid_sample(images, grid, align_corners=False)


def torch_parts(config, x, y, torch) -> dict:
    import torch.nn.functional as F

    model = torch_model(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.03)
    steps = math.ceil(len(x) / config.batch_size)
    xb, yb = x[: config.batch_size].reshape(-1, 784), y[: config.batch_size]
    started = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(xb), yb, label_smoothing=config.label_smoothing).backward()
    forward_backward = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    step = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(0, len(x), config.batch_size):
        distort(x[i : i + config.batch_size], config.augment, torch)
    return {"forward_backward": forward_backward, "optimizer": step,
            "distortions": time.perf_counter() - started}  # fmt: skip


def one(args) -> int:
    config, data = load(args.data_dir)
    epochs = args.epochs or config.epochs
    runner = numlp_run if args.library == "numlp" else torch_run
    result = runner(config, data, args.seed, epochs)
    epoch = first_epoch_at(TARGET, result["marks"])
    reached = result["marks"][epoch - 1][0] if epoch else None
    print(json.dumps({"library": args.library, "seed": args.seed, "seconds_to_99": reached,
                      **result}))  # fmt: skip
    return 0


def first_epoch_at(target: float, marks) -> int | None:
    """The epoch (1, 2, ...) of the first test score at or above ``target``, or None."""
    return next((i + 1 for i, (_, accuracy) in enumerate(marks) if accuracy >= target), None)


def epoch_seconds(marks) -> list[float]:
    """Each epoch's own seconds (training and its test score), from the cumulative clock."""
    clock = [seconds for seconds, _ in marks]
    return [b - a for a, b in zip([0.0, *clock], clock)]


def compare(args) -> int:
    pythons = {"numlp": sys.executable, "torch": args.torch_python}
    runs = {"numlp": [], "torch": []}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for library in ("numlp", "torch") if args.torch_python else ("numlp",):
            argv = [pythons[library], __file__, "--library", library, "--seed", str(seed)]
            if args.data_dir:
                argv += ["--data-dir", str(args.data_dir)]
            done = subprocess.run(argv, capture_output=True, text=True, check=True)
            runs[library].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(library, seed, runs[library][-1]["seconds_to_99"], file=sys.stderr)
    summary = {}
    for library, results in runs.items():
        times = [r["seconds_to_99"] for r in results]
        if not times:
            continue
        done = [t for t in times if t is not None]
        summary[library] = {
            "seconds_to_99": times,
            "median": statistics.median(done) if len(done) == len(times) else None,
            "epoch_of_99": [first_epoch_at(TARGET, r["marks"]) for r in results],
            "epoch_seconds_median": statistics.median(
                s for r in results for s in epoch_seconds(r["marks"])
            ),
            "final_test_accuracy": [r["marks"][-1][1] for r in results],
            "parts_median": {
                k: statistics.median(r["parts"][k] for r in results) for k in results[0]["parts"]
            },
        }
    if "torch" in summary and summary["torch"]["median"] and summary["numlp"]["median"]:
        summary["numlp_over_torch"] = summary["numlp"]["median"] / summary["torch"]["median"]
    if "torch" in summary:  # speed alone, apart from which epoch first reaches the target
        summary["numlp_over_torch_per_epoch"] = (
            summary["numlp"]["epoch_seconds_median"] / summary["torch"]["epoch_seconds_median"]
        )
    result = {"command": "python benchmarks/time_to_99.py " + " ".join(sys.argv[1:]),
              "summary": summary, "runs": runs}  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--library", choices=("numlp", "torch"), help="one run in this process")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="override the preset's epochs (smoke runs)")
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds (runs per library)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds from this one on")
    parser.add_argument("--torch-python", help="a Python that has torch==2.13.0 (and numlp)")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    return one(args) if args.library else compare(args)


if __name__ == "__main__":
    sys.exit(main())
