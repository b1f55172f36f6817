"""Benchmark `numlp train` with its defaults: wall seconds, peak RSS and MNIST test accuracy.

Each seed runs `numlp train` in its own process (so peak RSS is that run's alone) with the data
read from --data-dir. Usage:

    python benchmarks/default_train.py --data-dir ../shared/data/mnist --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(seed: int, data_dir: str, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        argv = [
            sys.executable,
            "-m",
            "numlp.cli",
            "train",
            "--data-dir",
            data_dir,
            "--seed",
            str(seed),
            "--out",
            str(out),
            "--no-download",
            *extra,
        ]
        started = time.perf_counter()
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        if status != 0:
            raise SystemExit(f"seed {seed} failed:\n{output}")
        from numlp.io import read_header

        training = read_header(out / "model.npz")["training"]
    return {
        "seed": seed,
        "wall_seconds": round(wall, 2),
        "fit_seconds": training["seconds"],
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "val_accuracy": training["val_accuracy"],
        "test_accuracy": training["test_accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("NUMLP_DATA", "../shared/data/mnist"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", type=Path)
    parser.add_argument("extra", nargs="*", help="more `numlp train` flags, after --")
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        rows.append(run_once(seed, args.data_dir, args.extra))
        print(json.dumps(rows[-1]), flush=True)
    acc = [r["test_accuracy"] * 100 for r in rows]
    wall = [r["wall_seconds"] for r in rows]
    rss = [r["peak_rss_mib"] for r in rows]
    spread = statistics.stdev(acc) if len(acc) > 1 else 0.0
    print()
    print("| seeds | wall s (median) | peak RSS MiB (max) | MNIST test accuracy % |")
    print("|---|---|---|---|")
    print(
        f"| {len(rows)} | {statistics.median(wall):.1f} | {max(rss):.0f} | "
        f"{statistics.mean(acc):.2f} ± {spread:.2f} (min {min(acc):.2f}) |"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
