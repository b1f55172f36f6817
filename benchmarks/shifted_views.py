"""Test-time shifts: does averaging a model's answers over an image and its one-pixel moves help?

    python benchmarks/shifted_views.py --data-dir ../shared/data/mnist \
        --group RUN RUN RUN --group RUN ... --json benchmarks/results/shifted-views-DATE.json

Each ``--group`` is one committee (runs trained with one seed, so they share a validation
split) or a single run. For 1, 5 and 9 views it reports the group's accuracy on the validation
split its runs were trained without, and on the test set. The views are the image itself, then
the image moved by one pixel up, down, left and right (5), then also along the four diagonals
(9); the freed edge is background (0), and the move happens on the raw pixels, before each
model's own preprocessing. A group's probabilities are the mean over its runs and the views.

Members trained with random shifts of up to 2 pixels have seen such moves, so this asks
whether their answers on moved copies still add information. Choose on the validation
figures; the test figures are there to be reported, not to choose by.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from committees import spread
from neighbours import emit

STRAIGHT = [(-1, 0), (1, 0), (0, -1), (0, 1)]
DIAGONAL = [(-1, -1), (-1, 1), (1, -1), (1, 1)]
VIEWS = {1: [(0, 0)], 5: [(0, 0), *STRAIGHT], 9: [(0, 0), *STRAIGHT, *DIAGONAL]}


def moved(images: np.ndarray, down: int, right: int) -> np.ndarray:
    """``images: (batch, height, width)`` moved by whole pixels (positive: down/right); what
    leaves the frame is cut and the freed edge is 0."""
    out = np.zeros_like(images)
    height, width = images.shape[1:]
    rows_to = slice(max(down, 0), height + min(down, 0))
    rows_from = slice(max(-down, 0), height + min(-down, 0))
    cols_to = slice(max(right, 0), width + min(right, 0))
    cols_from = slice(max(-right, 0), width + min(-right, 0))
    out[:, rows_to, cols_to] = images[:, rows_from, cols_from]
    return out


def training_config(run: Path) -> dict:
    """The settings ``run`` was trained with, from its model file's header."""
    from numlp.io import read_header

    return read_header(run / "model.npz")["training"]["config"]


def shared_split(runs: list[Path], data_dir) -> tuple:
    """``(data, validation indices)`` of the split every run in ``runs`` was trained without;
    runs of different datasets, seeds or split sizes are refused (they share no split)."""
    from numlp.data import load_dataset
    from numlp.train import validation_indices

    keys = {(c["dataset"], c["seed"], c["val_split"]) for c in map(training_config, runs)}
    if len(keys) != 1:
        raise SystemExit(f"a group's runs share no validation split: {sorted(keys)}")
    dataset, seed, fraction = keys.pop()
    data = load_dataset(dataset, data_dir=data_dir, download=False)
    _, val = validation_indices(len(data.x_train), fraction, np.random.default_rng(seed))
    return data, val


def accuracies(runs: list[Path], images: np.ndarray, labels: np.ndarray) -> dict:
    """``{views: accuracy}`` of the runs' mean probabilities over each set of views."""
    from numlp.io import load_model
    from numlp.preprocess import apply

    per_move = dict.fromkeys(VIEWS[9], 0.0)
    for run in runs:
        model, header = load_model(run / "model.npz")
        for move in per_move:
            x = apply(moved(images, *move), header.get("preprocessing"))
            per_move[move] = per_move[move] + model.predict_proba(x).astype(np.float64)
    return {
        views: float(np.mean(sum(per_move[m] for m in moves).argmax(axis=1) == labels))
        for views, moves in VIEWS.items()
    }


def score(runs: list[Path], data_dir) -> dict:
    """One group's figures: its runs, seed, and accuracies by views on validation and test."""
    data, val = shared_split(runs, data_dir)
    return {
        "runs": [str(run) for run in runs],
        "seed": training_config(runs[0])["seed"],
        "val_accuracy": accuracies(runs, data.x_train[val], data.y_train[val]),
        "test_accuracy": accuracies(runs, data.x_test, data.y_test),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", nargs="+", type=Path, action="append", required=True,
                        metavar="RUN", help="run folders of one committee, or one run")  # fmt: skip
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--json", type=Path)
    given = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    args = parser.parse_args(given)
    groups = [score(runs, args.data_dir) for runs in args.group]
    over_groups = {
        split: {views: spread([g[split][views] for g in groups]) for views in VIEWS}
        for split in ("val_accuracy", "test_accuracy")
    }
    emit({"command": " ".join(["python", "benchmarks/shifted_views.py", *given]),
          "groups": groups, "over_groups": over_groups}, args.json)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
