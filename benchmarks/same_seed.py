"""The same seed on the same machine, several times: how many different models come out?

Runs ``numlp train --seed S`` (the default recipe, ``--threads auto`` as a user runs it) ``--runs``
times, one process after another, and hashes each model's arrays. With ``--busy-after T`` two
busy Python loops start T seconds into every other run and stay until it ends: a thread count
that followed the machine's load would then change mid-run and give those runs other bits.

    python benchmarks/same_seed.py --runs 3 --epochs 3 --json same-seed.json
    python benchmarks/same_seed.py --runs 4 --epochs 3 --busy-after 8
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
from neighbours import busy_neighbours, emit


def model_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with np.load(path) as arrays:
        for name in sorted(arrays.files):
            if name != "__header__":
                digest.update(name.encode() + arrays[name].tobytes())
    return digest.hexdigest()[:16]


def one_run(args, out: Path, busy: bool) -> dict:
    command = [sys.executable, "-m", "numlp", "train", "--data-dir", args.data_dir, "--out",
               str(out), "--epochs", str(args.epochs), "--seed", str(args.seed), "--no-plots",
               "--quiet"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = threading.Event()
    neighbours = threading.Thread(target=_neighbours, args=(args.busy_after, done), daemon=True)
    if busy:
        neighbours.start()
    stdout, stderr = process.communicate()
    done.set()
    if busy:
        neighbours.join()
    if process.returncode != 0:
        return {"error": stderr.strip().splitlines()[-1] if stderr.strip() else "failed"}
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    threads = sorted({r["threads"] for r in records if "threads" in r})
    return {"busy_after": args.busy_after if busy else None, "threads": threads,
            "model": model_hash(out / "model.npz"), "last_line": stdout.strip()[-120:]}  # fmt: skip


def _neighbours(after: float, done: threading.Event) -> None:
    if done.wait(after):
        return
    with busy_neighbours(2):
        done.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("NUMLP_DATA"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--busy-after", type=float, help="busy neighbours from this second on, "
                        "in every other run")  # fmt: skip
    parser.add_argument("--json")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for number in range(args.runs):
            busy = args.busy_after is not None and number % 2 == 1
            runs.append(one_run(args, Path(folder) / f"run{number}", busy))
            print(f"run {number + 1}: {runs[-1]}", file=sys.stderr, flush=True)
    models = {run["model"] for run in runs if "model" in run}
    emit({"seed": args.seed, "epochs": args.epochs, "runs": runs,
          "different_models": len(models)}, args.json)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
