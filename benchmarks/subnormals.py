"""What subnormal momentum costs an Adam step, with the optimizer's flushing and without it.

    python benchmarks/subnormals.py --json benchmarks/results/subnormals-DATE.json

One float32 parameter of ``--shape`` (a 2048x2048 hidden layer by default) takes Adam steps
with a gradient that is zero where the momentum is subnormal (a unit that stopped firing: its
momentum only decays) and ordinary elsewhere. Once, before the first timed step, a fraction
``--fractions`` of the momentum entries is set to subnormal values (0.23 is what a 2048x2
member's second layer held at epoch 42 on an Intel Xeon). Without flushing, every later step
multiplies and adds them again (they take about 150 steps to decay to zero); with it, the
first step clears them. The two ways alternate, ``--steps`` steps at a time, for ``--rounds``
rounds in this one process: median and range over all their steps, in milliseconds.

Whether subnormals are slow at all depends on the CPU: many x86 cores take a microcode assist
on each one, others handle them at full speed. Report the CPU beside the figures.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import sys
import time

import numpy as np
from neighbours import emit


def adam_step_seconds(fraction: float, shape, steps: int, flush: bool, seed=0) -> list[float]:
    """Seconds of each of ``steps`` Adam steps whose momentum starts ``fraction`` subnormal."""
    import numlp.optim
    from numlp.layers import Parameter

    rng = np.random.default_rng(seed)
    p = Parameter(rng.standard_normal(shape, dtype=np.float32) * 0.01)
    adam = numlp.optim.Adam([p], lr=1e-3)
    gone = rng.random(shape) < fraction  # the units that stopped firing
    p.grad[...] = np.where(gone, 0, rng.standard_normal(shape, dtype=np.float32) * 1e-3)
    adam.step()  # creates the moments
    kept = numlp.optim.flush_subnormals
    numlp.optim.flush_subnormals = kept if flush else (lambda a, scratch: None)
    adam.state[p]["m_sum"][gone] = np.float32(1e-39)  # subnormal: below 1.18e-38
    try:
        seconds = []
        for _ in range(steps):
            started = time.perf_counter()
            adam.step()
            seconds.append(time.perf_counter() - started)
        return seconds
    finally:
        numlp.optim.flush_subnormals = kept


def cpu_name() -> str:
    """The CPU's model name as Linux reports it, else what Python knows of the machine."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def spread_ms(seconds: list[float]) -> dict:
    ms = [s * 1e3 for s in seconds]
    return {"median": statistics.median(ms), "min": min(ms), "max": max(ms)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=2, default=[2048, 2048])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.0, 0.23])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json")
    given = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    args = parser.parse_args(given)
    results = {}
    for fraction in args.fractions:
        seen = {"flushed": [], "not flushed": []}
        for _ in range(args.rounds):  # alternate the two ways
            seen["flushed"] += adam_step_seconds(fraction, args.shape, args.steps, flush=True)
            seen["not flushed"] += adam_step_seconds(fraction, args.shape, args.steps, flush=False)
        results[str(fraction)] = {way: spread_ms(values) for way, values in seen.items()}
    emit(
        {
            "command": shlex.join(["python", "benchmarks/subnormals.py", *given]),
            "cpu": cpu_name(),
            "shape": args.shape,
            "steps": args.steps,
            "rounds": args.rounds,
            "ms_per_adam_step": results,
        },
        args.json,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
