"""W5's last part: ``predict_proba`` on small batches, quiet and beside two busy neighbours,
as numlp runs it (one BLAS thread up to ``numlp.threads.SMALL_BATCH_ROWS`` rows) and with
BLAS left on every core (how numlp ran it before).

    python benchmarks/small_batches.py --json small.json

Both ways run in this one process, alternating call by call, so both see the same machine.
The model is 784-512-256-10 with random weights (the time does not depend on the values).
Median and p99 of ``--calls`` calls per batch size, in microseconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from neighbours import busy_neighbours, emit


def model_784_512_256_10():
    from numlp import Dense, Flatten, ReLU, Sequential

    layers = [Flatten(), Dense(784, 512), ReLU(), Dense(512, 256), ReLU(), Dense(256, 10)]
    return Sequential(layers, (28, 28), seed=0)


def timings(model, rows_list, calls: int) -> dict:
    """``{rows: {"numlp": stats, "every core": stats}}`` with the two ways interleaved."""
    from threadpoolctl import threadpool_limits

    from numlp.threads import cpu_count

    def every_core(x):
        with threadpool_limits(cpu_count(), user_api="blas"):
            started = time.perf_counter()
            model._probabilities(x, 8192)  # predict_proba without its small-batch limit
            return time.perf_counter() - started

    def as_numlp_does(x):
        started = time.perf_counter()
        model.predict_proba(x)
        return time.perf_counter() - started

    rng = np.random.default_rng(0)
    results = {}
    for rows in rows_list:
        x = rng.random((rows, 28, 28), dtype=np.float32)
        seen = {"numlp": [], "every core": []}
        for _ in range(5):  # warm up both
            as_numlp_does(x), every_core(x)
        for _ in range(calls):
            seen["numlp"].append(as_numlp_does(x))
            seen["every core"].append(every_core(x))
        results[str(rows)] = {way: stats(values) for way, values in seen.items()}
    return results


def stats(seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    return {
        "median_us": round(1e6 * ordered[len(ordered) // 2], 1),
        "p99_us": round(1e6 * ordered[max(int(len(ordered) * 0.99) - 1, 0)], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[1, 8, 32, 64, 256])
    parser.add_argument("--calls", type=int, default=500, help="per batch size and way")
    parser.add_argument("--busy", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    model = model_784_512_256_10()
    results = {"cpus": os.cpu_count(), "calls": args.calls}
    results["quiet"] = timings(model, args.rows, args.calls)
    if args.busy:
        with busy_neighbours(2):
            time.sleep(0.5)  # let the neighbours take their cores
            results["busy"] = timings(model, args.rows, args.calls)
    emit(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
