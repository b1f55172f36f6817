"""A sweep of the `fast` recipe on MNIST: how many trials fit in a time budget with 2 local
workers, how many were pruned, how much time pruning saved, and whether the best recipe found
on the validation split beats the hand-tuned `fast` preset at the same epoch budget (10 epochs).

    python benchmarks/sweep_fast.py --minutes 30 --out /tmp/sweep-fast    # the measurement
    python benchmarks/sweep_fast.py --minutes 0.2 --epochs 2 --seeds 1    # a smoke run

Phases: the `fast` preset's own validation accuracy (seed 0, like every trial); the sweep
(`numlp sweep`, the space below over `--preset fast`, epochs fixed); the analysis; and, if the
winner's validation accuracy is higher, the winner and `fast` retrained on the whole training
set (val_split 0) on `--seeds` seeds each, each scored once on test. Prints one JSON object.
Time saved by pruning is estimated from each pruned trial's own seconds per epoch times the
epochs it did not train.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

SPACE = """# the fast recipe's knobs; epochs stay at the preset's budget
lr = {log = [3e-4, 3e-3]}
weight_decay = [0.0, 0.05]
dropout = [0.0, 0.4]
label_smoothing = [0.0, 0.2]
batch_size = {choice = [64, 128, 256]}
hidden = {choice = ["512,256", "800", "1024,512", "1024,1024"]}
warmup_epochs = [0.0, 1.0]
[augment]
shift = [0.0, 2.5]
rotation = [0.0, 12.0]
"""


def numlp(*args) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "numlp", *map(str, args)], capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"numlp {' '.join(map(str, args))} failed: {done.stderr.strip()}")
    return done.stdout


def summary_of(run: Path) -> dict:
    import numpy as np

    header = json.loads(np.load(run / "model.npz")["__header__"].tobytes())
    return header["training"]


def train(run: Path, data_dir, *flags) -> dict:
    """`numlp train FLAGS` into ``run`` (quietly, no plots); the summary its model records."""
    extra = ["--data-dir", data_dir] if data_dir else []
    numlp("train", *flags, "--out", run, "--overwrite", "--no-plots", "--quiet", *extra)
    return summary_of(run)


def fast_reference(out: Path, data_dir, epochs: int) -> dict:
    """The `fast` preset as a trial sees it: seed 0, 10 % validation, test not looked at."""
    run = out / "fast-reference"
    training = train(run, data_dir, "--preset", "fast", "--epochs", epochs)
    return {"val_accuracy": training["val_accuracy"], "seconds": training["seconds"]}


def sweep(out: Path, data_dir, minutes: float, epochs: int, text: str) -> float:
    space = out / "space.toml"
    space.write_text(text.replace("lr =", f"epochs = {epochs}\nlr =", 1))
    started = time.monotonic()
    numlp(
        "sweep",
        space,
        "--preset",
        "fast",
        "--timeout",
        minutes * 60,
        "--workers",
        2,
        "--out",
        out / "sweep",
        *(["--data-dir", data_dir] if data_dir else []),
    )
    return time.monotonic() - started


def study_wall_seconds(folder: Path) -> float:
    """From the first trial's start to the last one's end, as the study recorded them."""
    from numlp.sweep import open_sweep

    trials = open_sweep(folder).get_trials(deepcopy=False)
    start = min(t.datetime_start for t in trials)
    end = max(t.datetime_complete or t.datetime_start for t in trials)
    return (end - start).total_seconds()


def analyse(folder: Path, epochs: int) -> dict:
    from numlp.sweep import open_sweep

    study = open_sweep(folder)
    trials = study.get_trials(deepcopy=False)
    by = {}
    for t in trials:
        by.setdefault(t.user_attrs.get("outcome", "lost"), []).append(t)
    ran = sum(t.user_attrs.get("seconds", 0) for t in trials)
    saved = 0.0
    for t in by.get("pruned", []):
        done = t.user_attrs["epochs"]
        saved += (epochs - done) * t.user_attrs["seconds"] / done
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    best = max(complete, key=lambda t: t.value) if complete else None
    return {
        "trials": len(trials),
        "complete": len(by.get("complete", [])),
        "pruned": len(by.get("pruned", [])),
        "failed": len(by.get("failed", [])) + len(by.get("lost", [])),
        "pruned_after_epochs": sorted(t.user_attrs["epochs"] for t in by.get("pruned", [])),
        "trial_seconds": round(ran, 1),
        "seconds_saved_by_pruning": round(saved, 1),
        "saved_fraction": round(saved / (ran + saved), 3) if ran else 0.0,
        "best_trial": best.number if best else None,
        "best_val_accuracy": best.value if best else None,
        "best_params": best.params if best else None,
    }


def retrain(config: Path, out: Path, seeds: int, data_dir, name: str, epochs: int) -> dict:
    tests, seconds = [], []
    for seed in range(seeds):
        run = out / f"{name}-seed{seed}"
        source = ["--config", config] if config.suffix == ".toml" else ["--preset", str(config)]
        flags = ("--val-split", 0, "--seed", seed, "--epochs", epochs)
        training = train(run, data_dir, *source, *flags)
        tests.append(training["test_accuracy"])
        seconds.append(training["seconds"])
    return {
        "test_accuracy": tests,
        "mean": statistics.fmean(tests),
        "std": statistics.stdev(tests) if len(tests) > 1 else 0.0,
        "seconds_median": statistics.median(seconds),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--epochs", type=int, default=10, help="the preset's epoch budget")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmark-sweep-fast"))
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--space", type=Path, help="another search space (with an lr line)")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="analyse (and retrain from) the sweep and reference already in --out",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.reuse:
        reference = {"val_accuracy": summary_of(args.out / "fast-reference")["val_accuracy"]}
        wall = study_wall_seconds(args.out / "sweep")
    else:
        if (args.out / "sweep").exists():
            raise SystemExit(f"{args.out / 'sweep'} exists: give a new --out (or --reuse)")
        reference = fast_reference(args.out, args.data_dir, args.epochs)
        text = args.space.read_text() if args.space else SPACE
        wall = sweep(args.out, args.data_dir, args.minutes, args.epochs, text)
    result = {
        "command": "python benchmarks/sweep_fast.py " + " ".join(sys.argv[1:]),
        "minutes": args.minutes,
        "workers": 2,
        "sweep_wall_seconds": round(wall, 1),
        "fast_preset": reference,
        "sweep": analyse(args.out / "sweep", args.epochs),
    }
    if (result["sweep"]["best_val_accuracy"] or 0) > reference["val_accuracy"]:
        best = args.out / "sweep" / "best.toml"
        numlp("sweep", "show", args.out / "sweep", "--no-plots")
        result["retrained"] = {
            "winner": retrain(best, args.out, args.seeds, args.data_dir, "winner", args.epochs),
            "fast": retrain(Path("fast"), args.out, args.seeds, args.data_dir, "fast", args.epochs),
        }
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
