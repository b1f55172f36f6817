"""W6: W1 training epochs on a quiet machine and beside busy neighbours, numlp and PyTorch.

Each library trains in a process of its own, one at a time (an idle library's spinning threads
would slow the other). "Busy" means two more processes, each a plain Python busy loop, started
before the library's process and killed after it. Per library and condition: one warm-up
epoch, then ``--epochs`` timed ones; medians and spreads go to stdout as JSON.

    python benchmarks/busy.py --data-dir ../shared/data/mnist --epochs 3 --json busy.json

Libraries: ``numlp`` (``threads="auto"``, what ``numlp train`` does), ``numlp-fixed`` (every
core: numlp before the thread governor), ``numlp-1`` (one thread), ``torch`` (its defaults;
needs ``pip install torch==2.13.0``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from neighbours import busy_neighbours, emit

HERE = Path(__file__).resolve().parent


def worker(library: str, data_dir: str, epochs: int) -> dict:
    """Train one warm-up and ``epochs`` timed W1 epochs; seconds per epoch (and threads)."""
    sys.path.insert(0, str(HERE))
    from numlp.bench import load_mnist
    from numlp.threads import cpu_count

    x, y, _, _ = load_mnist(data_dir)
    if library == "torch":
        from peers import TorchW1

        runner = TorchW1(x, y)
        seconds = [runner.epoch() for _ in range(epochs + 1)][1:]
        return {"seconds": seconds}
    from numlp import SGD, Dense, ReLU, Sequential, SoftmaxCrossEntropy

    threads = {"numlp": "auto", "numlp-fixed": cpu_count(), "numlp-1": 1}[library]
    model = Sequential([Dense(784, 512), ReLU(), Dense(512, 256), ReLU(), Dense(256, 10)], seed=0)
    history = model.fit(
        x,
        y,
        epochs=epochs + 1,
        batch_size=128,
        optimizer=SGD(model.parameters(), lr=0.01, momentum=0.9),
        loss=SoftmaxCrossEntropy(),
        seed=0,
        threads=threads,
    )
    return {"seconds": history["seconds"][1:], "threads": history["threads"]}


def measure(library: str, data_dir: str, epochs: int, busy: bool, timeout: float) -> dict:
    with busy_neighbours(2 * busy):
        done = subprocess.run(
            [sys.executable, __file__, "--worker", library, "--data-dir", data_dir,
             "--epochs", str(epochs)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )  # fmt: skip
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    result = json.loads(done.stdout)
    result["median"] = statistics.median(result["seconds"])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("NUMLP_DATA"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--libraries", nargs="*", default=["numlp", "numlp-fixed", "torch"])
    parser.add_argument("--timeout", type=float, default=900, help="seconds per measurement")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.data_dir, args.epochs)))
        return 0
    results = {}
    for busy in (False, True):  # quiet first: nothing left over from the busy loops
        condition = "busy" if busy else "quiet"
        for library in args.libraries:
            print(f"{condition}: {library} ...", file=sys.stderr, flush=True)
            result = measure(library, args.data_dir, args.epochs, busy, args.timeout)
            results.setdefault(library, {})[condition] = result
    for conditions in results.values():
        quiet, busy = conditions["quiet"].get("median"), conditions["busy"].get("median")
        if quiet and busy:
            conditions["busy_over_quiet"] = round(busy / quiet, 2)
    emit({"cpus": os.cpu_count(), "epochs": args.epochs, "results": results}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
