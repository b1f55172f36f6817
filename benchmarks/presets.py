"""Benchmark the training presets: wall seconds, peak RSS, validation and test accuracy.

Each (preset, seed) runs `numlp train --preset NAME --seed S` in its own process (so peak RSS
is that run's alone) and reads the test accuracy from the model file it saves; the test set is
scored once, at the end of each run, as `numlp train` always does. MNIST is read from
--data-dir; other datasets from numlp's usual lookup (e.g. Debian's dataset-fashion-mnist).
Prints one JSON line per run and a markdown table (mean ± std over seeds). Usage:

    python benchmarks/presets.py --data-dir ../shared/data/mnist --presets fast best --seeds 0 1 2
    python benchmarks/presets.py --presets fashion --seeds 0 1 2 -- --epochs 5   # extra flags
    python benchmarks/presets.py --presets frontier --jobs 2 -- --threads 1   # two at a time

With --jobs 2 two runs share the machine (give each `--threads 1`): on two cores that is faster
than one two-thread run after another, and each run's wall time is then its time beside another.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from numlp.config import load_config, preset_path


def run_once(
    preset: str, seed: int, data_dir: str | None, extra: list[str], keep: Path | None = None
) -> dict:
    # the run folder is kept in ``keep`` or made in a temporary folder that goes afterwards
    with contextlib.nullcontext(keep) if keep else tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / (f"{preset}-s{seed}" if keep else "run")
        argv = [sys.executable, "-m", "numlp.cli", "train", "--preset", preset]
        argv += ["--seed", str(seed), "--out", str(out), "--no-download", "--no-plots"]
        if data_dir:
            argv += ["--data-dir", data_dir]
        started = time.perf_counter()
        process = subprocess.Popen(
            [*argv, *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        if status != 0:
            raise SystemExit(f"{preset} seed {seed} failed:\n{output}")
        from numlp.io import read_header

        training = read_header(out / "model.npz")["training"]
    return {
        "preset": preset,
        "dataset": training["dataset"],
        "seed": seed,
        "epochs": training["epochs"],
        "wall_seconds": round(wall, 2),
        "fit_seconds": training["seconds"],
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "val_accuracy": training["val_accuracy"],
        "test_accuracy": training["test_accuracy"],
    }


def describe(preset: str) -> str:
    config = load_config(preset_path(preset))
    layers = "-".join(str(n) for n in (784, *config.hidden, 10))
    augment = config.augment.describe()
    return f"{layers}, dropout {config.dropout:g}; augmentation: {augment}"


def table(rows: list[dict]) -> str:
    lines = [
        "| preset | dataset | model; augmentation | epochs | wall s (median) | peak RSS MiB "
        "| val acc % (mean) | test acc % (mean ± std, min) | seeds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for preset in dict.fromkeys(r["preset"] for r in rows):
        runs = [r for r in rows if r["preset"] == preset]
        test = [100 * r["test_accuracy"] for r in runs]
        val = [100 * r["val_accuracy"] for r in runs if r["val_accuracy"] is not None]
        spread = statistics.stdev(test) if len(test) > 1 else 0.0
        val_mean = f"{statistics.mean(val):.2f}" if val else "–"
        lines.append(
            f"| {preset} | {runs[0]['dataset']} | {describe(preset)} | {runs[0]['epochs']} "
            f"| {statistics.median(r['wall_seconds'] for r in runs):.0f} "
            f"| {max(r['peak_rss_mib'] for r in runs):.0f} "
            f"| {val_mean} | {statistics.mean(test):.2f} ± {spread:.2f} "
            f"(min {min(test):.2f}) | {len(runs)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("NUMLP_DATA", "../shared/data/mnist"))
    parser.add_argument("--presets", nargs="+", default=["fast"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (1)")
    parser.add_argument("--json", type=Path, help="also write the runs here")
    parser.add_argument("--keep", type=Path, help="keep the run folders here (PRESET-sSEED)")
    parser.add_argument("extra", nargs="*", help="more `numlp train` flags, after --")
    args = parser.parse_args()
    runs = []
    for preset in args.presets:
        dataset = load_config(preset_path(preset)).dataset
        data_dir = args.data_dir if dataset == "mnist" else None
        runs += [(preset, seed, data_dir, args.extra, args.keep) for seed in args.seeds]
    rows = []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for row in pool.map(lambda run: run_once(*run), runs):
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
