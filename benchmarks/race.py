"""W1 epochs, numlp beside its peers, one whole process at a time, alternated round by round.

Each round starts one process per library, in turn (the order reversed every other round), so
only one library is ever alive: an idle library's spinning threads would slow the other. A
process loads MNIST, trains one warm-up epoch and ``--epochs`` timed ones, and reports their
seconds. Per library: the median epoch of each process, the median over rounds and the spread;
per round, each library's ratio to PyTorch's process of that round (drift hits both alike).

W1: 784-512-256-10 ReLU, batch 128, SGD momentum 0.9 (lr 0.01), cross-entropy, 60,000 images.

    python benchmarks/race.py --rounds 5 --epochs 3 --json race.json
    python benchmarks/race.py --busy 2 --libraries numlp numlp-cli torch   # and beside 2 busy loops

Libraries: ``numlp`` (``fit`` as a user calls it; fused kernels when numba is installed),
``numlp-fixed`` (``threads`` = every core: the busy-machine protection off), ``numlp-numpy``
(``NUMLP_KERNELS=numpy``: the NumPy reference), ``numlp-before`` (another version's ``src``
folder, given with ``--before``, e.g. a ``git worktree``), ``numlp-cli`` (``numlp train`` with
the W1 recipe; epoch seconds from its metrics), ``numpy`` (a bare NumPy loop doing the same
step: forward, loss, backward, momentum update; no framework), ``products`` (only the step's
eight matrix products, through NumPy's BLAS: the floor of any library that leaves them to
BLAS), ``torch`` (needs ``pip install torch==2.13.0``) and ``jax`` (``jit`` of the whole step,
which XLA fuses; needs ``pip install jax``). With ``--busy N`` each library is measured quiet
and then beside N busy Python loops (started before its process, ended after it), and the
summary gives busy over quiet per round.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from neighbours import busy_neighbours, emit

HERE = Path(__file__).resolve().parent
W1_SIZES = (784, 512, 256, 10)  # the layer widths of the bare loops (numlp builds its own)
LIBRARIES = (
    "numlp", "numlp-fixed", "numlp-numpy", "numlp-before", "numlp-cli", "numpy", "products",
    "torch", "jax",
)  # fmt: skip


def numlp_epochs(x, y, epochs: int, threads="auto") -> dict:
    from numlp import SGD, Dense, ReLU, Sequential, SoftmaxCrossEntropy

    try:
        from numlp import kernels
    except ImportError:  # numlp-before: a version without fused kernels
        kernels = None

    model = Sequential([Dense(784, 512), ReLU(), Dense(512, 256), ReLU(), Dense(256, 10)], seed=0)
    history = model.fit(
        x, y, epochs=epochs + 1, batch_size=128, seed=0, loss=SoftmaxCrossEntropy(),
        optimizer=SGD(model.parameters(), lr=0.01, momentum=0.9),
        **({"threads": threads} if threads != "auto" else {}),
    )  # fmt: skip
    return {"seconds": history["seconds"][1:], "kernels": kernels.name() if kernels else "numpy",
            "threads": history.records[-1].get("threads")}  # fmt: skip


def cli_epochs(data_dir: str, epochs: int) -> dict:
    from numlp.cli import main as numlp_main

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run"
        numlp_main([
            "train", "--data-dir", data_dir, "--out", str(out), "--epochs", str(epochs + 1),
            "--hidden", "512,256", "--dropout", "0", "--optimizer", "sgd", "--momentum", "0.9",
            "--lr", "0.01", "--schedule", "constant", "--label-smoothing", "0", "--val-split",
            "0", "--quiet", "--no-plots", "--seed", "0",
        ])  # fmt: skip
        lines = (out / "metrics.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
    records = [r for r in records if "seconds" in r and "epoch" in r]
    return {"seconds": [r["seconds"] for r in records][1:],
            "threads": records[-1].get("threads")}  # fmt: skip


def numpy_epochs(x, y, epochs: int) -> dict:
    """The W1 step in plain NumPy, written as directly as we can: the floor numlp is held to."""
    import time

    import numpy as np

    rng = np.random.default_rng(0)
    sizes = W1_SIZES
    weights = [
        (rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(np.float32)
        for a, b in zip(sizes, sizes[1:])
    ]
    biases = [np.zeros(b, np.float32) for b in sizes[1:]]
    params = weights + biases
    velocity = [np.zeros_like(p) for p in params]
    seconds = []
    for _ in range(epochs + 1):
        start = time.perf_counter()
        order = rng.permutation(len(x))
        xs, ys = x[order], y[order]
        for i in range(0, len(xs), 128):
            xb, yb = xs[i : i + 128], ys[i : i + 128]
            h1 = np.maximum(xb @ weights[0] + biases[0], 0)
            h2 = np.maximum(h1 @ weights[1] + biases[1], 0)
            z = h2 @ weights[2] + biases[2]
            z -= z.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(yb)), yb] -= 1
            p /= len(yb)
            g2 = (p @ weights[2].T) * (h2 > 0)
            g1 = (g2 @ weights[1].T) * (h1 > 0)
            grads = [xb.T @ g1, h1.T @ g2, h2.T @ p, g1.sum(0), g2.sum(0), p.sum(0)]
            for param, grad, v in zip(params, grads, velocity):
                v *= 0.9
                v += grad
                param -= 0.01 * v
        seconds.append(time.perf_counter() - start)
    return {"seconds": seconds[1:]}


def products_epochs(x, epochs: int) -> dict:
    """Only W1's matrix products, on batches of 128 taken in order (no shuffle, no gather):
    forward (3), weight gradients (3) and input gradients (2; the first layer needs none).
    Everything else in a step is left out, so this is what the products alone cost, whoever
    calls BLAS for them."""
    import time

    import numpy as np

    rng = np.random.default_rng(0)
    sizes = W1_SIZES
    weights = [rng.standard_normal((a, b)).astype(np.float32) * 0.05
               for a, b in zip(sizes, sizes[1:])]  # fmt: skip
    grads = [np.empty_like(w) for w in weights]
    seconds = []
    for _ in range(epochs + 1):
        start = time.perf_counter()
        for i in range(0, len(x), 128):
            xb = x[i : i + 128]
            h1 = xb @ weights[0]
            h2 = h1 @ weights[1]
            z = h2 @ weights[2]
            g2 = z @ weights[2].T
            g1 = g2 @ weights[1].T
            np.matmul(xb.T, g1, out=grads[0])
            np.matmul(h1.T, g2, out=grads[1])
            np.matmul(h2.T, z, out=grads[2])
        seconds.append(time.perf_counter() - start)
    return {"seconds": seconds[1:]}


def jax_epochs(x, y, epochs: int) -> dict:
    """W1 in JAX: the whole step (forward, loss, gradient, momentum update) under ``jit``."""
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    sizes = W1_SIZES
    params = [(jnp.asarray((rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(np.float32)),
               jnp.zeros(b, jnp.float32)) for a, b in zip(sizes, sizes[1:])]  # fmt: skip
    velocity = jax.tree_util.tree_map(jnp.zeros_like, params)

    def loss(params, xb, yb):
        h = xb
        for w, b in params[:-1]:
            h = jax.nn.relu(h @ w + b)
        z = h @ params[-1][0] + params[-1][1]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), yb[:, None], axis=1))

    @jax.jit
    def step(params, velocity, xb, yb):
        grads = jax.grad(loss)(params, xb, yb)
        velocity = jax.tree_util.tree_map(lambda v, g: 0.9 * v + g, velocity, grads)
        params = jax.tree_util.tree_map(lambda p, v: p - 0.01 * v, params, velocity)
        return params, velocity

    seconds = []
    full = len(x) // 128 * 128  # one shape: a last short batch would compile a second step
    for _ in range(epochs + 1):
        start = time.perf_counter()
        order = rng.permutation(len(x))
        xs, ys = jnp.asarray(x[order[:full]]), jnp.asarray(y[order[:full]].astype(np.int32))
        for i in range(0, full, 128):
            params, velocity = step(params, velocity, xs[i : i + 128], ys[i : i + 128])
        jax.block_until_ready(params)
        seconds.append(time.perf_counter() - start)
    return {"seconds": seconds[1:]}


def worker(library: str, data_dir: str, epochs: int) -> dict:
    sys.path.insert(0, str(HERE))
    from numlp.bench import load_mnist

    if library == "numlp-cli":
        return cli_epochs(data_dir, epochs)
    x, y, _, _ = load_mnist(data_dir)
    if library == "torch":
        from peers import TorchW1

        runner = TorchW1(x, y)
        return {"seconds": [runner.epoch() for _ in range(epochs + 1)][1:]}
    if library == "numpy":
        return numpy_epochs(x, y, epochs)
    if library == "products":
        return products_epochs(x, epochs)
    if library == "jax":
        return jax_epochs(x, y, epochs)
    if library == "numlp-fixed":  # every core, nothing measured: the protection off
        return numlp_epochs(x, y, epochs, threads=os.cpu_count())
    return numlp_epochs(x, y, epochs)


def run_process(library: str, args, busy: int) -> dict:
    env = dict(os.environ)
    if library in ("numlp-numpy", "numlp-before"):
        env["NUMLP_KERNELS"] = "numpy"
    if library == "numlp-before":
        if not args.before:
            return {"error": "numlp-before needs --before SRC (another version's src folder)"}
        env["PYTHONPATH"] = str(Path(args.before).resolve())
    command = [sys.executable, __file__, "--worker", library, "--data-dir", args.data_dir,
               "--epochs", str(args.epochs)]  # fmt: skip
    with busy_neighbours(busy):
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {done.returncode}"}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["median"] = statistics.median(result["seconds"])
    return result


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def ratios(rounds: list[dict], top: tuple[str, str], bottom: tuple[str, str]) -> list[float]:
    """Per round: the median epoch of ``top`` (library, condition) over ``bottom``'s."""
    found = []
    for result in rounds:
        a = result.get(top[0], {}).get(top[1], {}).get("median")
        b = result.get(bottom[0], {}).get(bottom[1], {}).get("median")
        if a and b:
            found.append(a / b)
    return found


def summary(rounds: list[dict], libraries: list[str], conditions: list[str]) -> dict:
    """Per library and condition: median epoch (median over rounds, with the spread) and, per
    round, the ratio to PyTorch's in the same condition and busy over quiet."""
    out = {}
    for library in libraries:
        entry = {}
        for condition in conditions:
            medians = [r[library][condition]["median"] for r in rounds
                       if "median" in r.get(library, {}).get(condition, {})]  # fmt: skip
            if not medians:
                continue
            entry[condition] = spread(medians)
            over = ratios(rounds, (library, condition), ("torch", condition))
            if over and library != "torch":
                entry[condition]["over_torch"] = spread(over)
        busy_over_quiet = ratios(rounds, (library, "busy"), (library, "quiet"))
        if busy_over_quiet:
            entry["busy_over_quiet"] = spread(busy_over_quiet)
        out[library] = entry
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("NUMLP_DATA"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per process")
    parser.add_argument("--libraries", nargs="*", default=["numlp", "numlp-numpy", "torch"],
                        choices=LIBRARIES)  # fmt: skip
    parser.add_argument("--busy", type=int, default=0,
                        help="also measure each library beside this many busy loops")  # fmt: skip
    parser.add_argument("--before", help="numlp-before: the src folder of another numlp version")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.data_dir, args.epochs)))
        return 0
    conditions = {"quiet": 0, **({"busy": args.busy} if args.busy else {})}
    rounds = []
    for number in range(args.rounds):
        order = args.libraries if number % 2 == 0 else args.libraries[::-1]
        result = {}
        for library in order:
            for condition, busy in conditions.items():
                measured = run_process(library, args, busy)
                result.setdefault(library, {})[condition] = measured
                print(f"round {number + 1}: {library} {condition} {measured}", file=sys.stderr,
                      flush=True)  # fmt: skip
        rounds.append(result)
    emit({
        "workload": "W1", "cpu": _cpu(), "cpus": os.cpu_count(), "busy_loops": args.busy,
        "epochs_per_process": args.epochs,
        "summary": summary(rounds, args.libraries, list(conditions)), "rounds": rounds,
    }, args.json)  # fmt: skip
    return 0


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
