"""Side-by-side speed benchmark: numlp against PyTorch and scikit-learn on the same machine.

Workloads (MNIST, float32, BLAS threads = cores for every library):

* ceiling: GFLOP/s of a large square float32 matmul (the machine's practical peak);
* W1: seconds per training epoch of a 784-512-256-10 ReLU MLP, batch 128, SGD momentum 0.9;
  libraries are interleaved epoch by epoch so that drift in machine speed hits them alike;
* W2: wall seconds until the test accuracy reaches 98 %, evaluations included, each library
  with its best honest recipe (documented in ``RECIPES``);
* W3: inference images per second at batch 1 and at batch 10,000;
* peak RSS of each library's training process.

The peers are optional: without torch or scikit-learn the benchmark says so and measures the
rest. Results are a markdown table and a JSON document. Nothing here is imported by the library:
numlp's own machine check is ``numlp bench`` (:mod:`numlp.bench`), whose W1 workload and
arithmetic this builds on. Run it as ``python benchmarks/speed.py``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from numlp.bench import BATCH, HIDDEN, LR, MOMENTUM, NumlpW1, load_mnist, matmul_ceiling, w1_flops

_load = load_mnist

RECIPES = {
    "numlp": "`numlp train` defaults: 784-512-256-10 ReLU, dropout 0.1, AdamW lr 1e-3 cosine, "
    "label smoothing 0.1, batch 128 (trains on all 60k here: no validation split)",
    "torch": "the same recipe in PyTorch: nn.Linear/ReLU/Dropout(0.1), AdamW lr 1e-3 "
    "(weight_decay 0, fused=True), CosineAnnealingLR per step, "
    "CrossEntropyLoss(label_smoothing=0.1)",
    "sklearn": "MLPClassifier(hidden_layer_sizes=(512, 256), solver='adam', "
    "learning_rate_init=1e-3, batch_size=128, alpha=1e-4) with partial_fit, one epoch per call",
}


class TorchW1:
    name = "torch"

    def __init__(self, x, y):
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        torch.manual_seed(0)
        self.torch = torch
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
        nn = torch.nn
        self.model = nn.Sequential(
            nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10)
        )
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)
        self.loss = nn.CrossEntropyLoss()

    def epoch(self) -> float:
        torch = self.torch
        start = time.perf_counter()
        order = torch.randperm(len(self.x))
        xs, ys = self.x[order], self.y[order]
        for i in range(0, len(xs), BATCH):
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss(self.model(xs[i : i + BATCH]), ys[i : i + BATCH])
            loss.backward()
            self.optimizer.step()
        return time.perf_counter() - start


class SklearnW1:
    name = "sklearn"

    def __init__(self, x, y):
        from sklearn.neural_network import MLPClassifier

        self.x, self.y = x, y
        self.model = MLPClassifier(
            hidden_layer_sizes=HIDDEN,
            solver="sgd",
            learning_rate_init=LR,
            momentum=MOMENTUM,
            nesterovs_momentum=False,
            batch_size=BATCH,
            alpha=0.0,
            shuffle=True,
            random_state=0,
        )
        self.classes = np.arange(10)

    def epoch(self) -> float:
        start = time.perf_counter()
        self.model.partial_fit(self.x, self.y, classes=self.classes)
        return time.perf_counter() - start


def available_peers() -> tuple[list[str], list[str]]:
    """The libraries to measure (numlp, then each installed peer) and the peers not installed."""
    names, missing = ["numlp"], []
    for module in ("torch", "sklearn"):
        try:
            __import__(module)
            names.append(module)
        except ImportError:
            missing.append(module)
    return names, missing


def run_w1(libraries: dict[str, LibraryProcess], rounds: int, samples: int) -> dict:
    """``rounds`` W1 epochs per library after one warm-up epoch each, interleaved: in each
    round every library trains one epoch, the order reversed every other round."""
    names = list(libraries)
    for name in names:  # warm-up: caches, BLAS threads, allocator
        libraries[name].call("w1")
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:  # alternate who goes first
            times[name].append(libraries[name].call("w1"))
    flops = w1_flops(samples)
    return {
        name: {
            "epoch_seconds": ts,
            "median": statistics.median(ts),
            "gflops": flops / statistics.median(ts) / 1e9,
        }
        for name, ts in times.items()
    }


# -- one process per library ----------------------------------------------------------------


class LibraryProcess:
    """One library's workloads, run in a process of its own that lives for the whole benchmark.

    Libraries must not share a process: PyTorch's OpenMP threads keep spinning after its work
    is done and stole the cores from numlp's OpenBLAS threads that came next (measured: numlp's
    epoch went from 1.2 s to 2.1 s right after a PyTorch epoch in the same process, and stayed
    at 1.2 s when PyTorch ran in another). Workers load the data themselves and keep their W1
    model between calls, so that W1 epochs can still be interleaved one by one.
    """

    def __init__(self, name: str, data_dir: str):
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # a clean interpreter: no forked threads
        self.name = name
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_library_worker, args=(name, str(data_dir), child), daemon=True
        )
        self._process.start()
        child.close()
        self.samples = self._expect()  # the worker has loaded the data: its training size

    def call(self, workload: str, *args):
        """Run ``workload`` ("w1": one epoch, "w2", "w3") in the worker; returns its result."""
        self._conn.send((workload, args))
        return self._expect()

    def _expect(self):
        try:
            status, value = self._conn.recv()
        except EOFError:
            raise RuntimeError(f"the {self.name} benchmark process died") from None
        if status == "error":
            raise RuntimeError(f"{self.name} failed in its benchmark process:\n{value}")
        return value

    def close(self) -> None:
        if self._process.is_alive():
            self._conn.send(("stop", ()))
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
        self._conn.close()


def _library_worker(name: str, data_dir: str, conn) -> None:
    import traceback

    try:
        data = _load(data_dir)
        w1 = None
        conn.send(("ok", len(data[0])))
        while True:
            workload, args = conn.recv()
            if workload == "stop":
                return
            try:
                if workload == "w1":
                    if w1 is None:
                        w1 = W1_RUNNERS[name](data[0], data[1])
                    result = w1.epoch()
                elif workload == "w2":
                    result = W2_FUNCTIONS[name](data, *args)
                elif workload == "w3":
                    result = W3_FUNCTIONS[name](data[2])
                else:
                    raise ValueError(f"unknown workload {workload!r}")
                conn.send(("ok", result))
            except Exception:
                conn.send(("error", traceback.format_exc()))
    except Exception:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


# -- W2: time to 98 % test accuracy -------------------------------------------------------------


def w2_numlp(data, target: float, max_epochs: int) -> dict:
    from numlp.config import TrainConfig
    from numlp.losses import SoftmaxCrossEntropy
    from numlp.parts import build_model, build_optimizer
    from numlp.train import Callback

    x_train, y_train, x_test, y_test = data
    config = TrainConfig(val_split=0.0)
    start = time.perf_counter()
    model = build_model(config, (784,), 10)
    optimizer = build_optimizer(config, model)  # with the config's schedule
    record = {}

    class StopAtTarget(Callback):
        def on_epoch_end(self, epoch, logs):
            accuracy = model.evaluate(x_test, y_test)["accuracy"]
            record.setdefault("curve", []).append((epoch, time.perf_counter() - start, accuracy))
            if accuracy >= target:
                model.stop_training = True

    model.fit(
        x_train,
        y_train,
        epochs=min(config.epochs, max_epochs),
        batch_size=config.batch_size,
        optimizer=optimizer,
        loss=SoftmaxCrossEntropy(config.label_smoothing),
        seed=0,
        callbacks=[StopAtTarget()],
    )
    return _w2_result(record["curve"], target)


def w2_torch(data, target: float, max_epochs: int) -> dict:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    x_train, y_train, x_test, y_test = (torch.from_numpy(a) for a in data)
    y_train, y_test = y_train.long(), y_test.long()
    start = time.perf_counter()
    nn = torch.nn
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 512),
        nn.ReLU(),
        nn.Dropout(0.1),
        nn.Linear(512, 256),
        nn.ReLU(),
        nn.Dropout(0.1),
        nn.Linear(256, 10),
    )
    epochs = 10
    steps = epochs * math.ceil(len(x_train) / BATCH)
    # fused=True: PyTorch's fastest AdamW on the CPU (1.9 s per epoch here against 2.4 s for
    # the default loop over parameters and 2.2 s for foreach, measured side by side).
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0, fused=True)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    curve = []
    for epoch in range(1, min(epochs, max_epochs) + 1):
        model.train()
        order = torch.randperm(len(x_train))
        xs, ys = x_train[order], y_train[order]
        for i in range(0, len(xs), BATCH):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(xs[i : i + BATCH]), ys[i : i + BATCH]).backward()
            optimizer.step()
            scheduler.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
        curve.append((epoch, time.perf_counter() - start, accuracy))
        if accuracy >= target:
            break
    return _w2_result(curve, target)


def w2_sklearn(data, target: float, max_epochs: int) -> dict:
    from sklearn.neural_network import MLPClassifier

    x_train, y_train, x_test, y_test = (a.reshape(len(a), -1) if a.ndim > 1 else a for a in data)
    start = time.perf_counter()
    model = MLPClassifier(
        hidden_layer_sizes=HIDDEN,
        solver="adam",
        learning_rate_init=1e-3,
        batch_size=BATCH,
        alpha=1e-4,
        random_state=0,
    )
    curve = []
    for epoch in range(1, max_epochs + 1):
        model.partial_fit(x_train, y_train, classes=np.arange(10))
        accuracy = model.score(x_test, y_test)
        curve.append((epoch, time.perf_counter() - start, accuracy))
        if accuracy >= target:
            break
    return _w2_result(curve, target)


def _w2_result(curve, target) -> dict:
    reached = next(((e, t) for e, t, a in curve if a >= target), None)
    return {
        "reached": reached is not None,
        "epochs": reached[0] if reached else None,
        "seconds": reached[1] if reached else None,
        "curve": [{"epoch": e, "seconds": round(t, 2), "test_accuracy": a} for e, t, a in curve],
    }


# -- W3: inference -------------------------------------------------------------------------------


def w3_numlp(x) -> dict:
    from numlp import Dense, ReLU, Sequential

    model = Sequential([Dense(784, 512), ReLU(), Dense(512, 256), ReLU(), Dense(256, 10)], seed=0)
    return _throughput(lambda batch: model.predict_proba(batch), x)


def w3_torch(x) -> dict:
    import torch

    nn = torch.nn
    model = nn.Sequential(
        nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10)
    ).eval()
    xt = torch.from_numpy(x)

    def predict(batch):
        with torch.inference_mode():
            return torch.softmax(model(batch), dim=1)

    return _throughput(predict, xt)


def w3_sklearn(x) -> dict:
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(hidden_layer_sizes=HIDDEN, max_iter=1, random_state=0)
    model.partial_fit(x[:256], np.arange(256) % 10, classes=np.arange(10))
    return _throughput(lambda batch: model.predict_proba(batch), x)


def _throughput(predict, x, seconds: float = 1.0) -> dict:
    out = {}
    for batch_size in (1, 10_000):
        batch = x[:batch_size]
        predict(batch)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            predict(batch)
            count += 1
        out[f"batch_{batch_size}"] = count * batch_size / (time.perf_counter() - start)
    return out


W1_RUNNERS = {"numlp": NumlpW1, "torch": TorchW1, "sklearn": SklearnW1}
W2_FUNCTIONS = {"numlp": w2_numlp, "torch": w2_torch, "sklearn": w2_sklearn}
W3_FUNCTIONS = {"numlp": w3_numlp, "torch": w3_torch, "sklearn": w3_sklearn}


# -- the whole benchmark ------------------------------------------------------------------


def peak_rss_of_training(library: str, data_dir: str, epochs: int = 2) -> float | None:
    """Peak RSS (MiB) while ``library`` trains ``epochs`` W1 epochs in a fresh process, data
    included (215 MiB of float32 MNIST). The high-water mark is reset after loading (Linux
    ``clear_refs``) so that the figure is training's peak, not the loader's."""
    code = (
        f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from peers import _load, W1_RUNNERS\n"
        f"x, y, _, _ = _load({data_dir!r})\n"
        f"r = W1_RUNNERS[{library!r}](x, y)\n"
        "open('/proc/self/clear_refs', 'w').write('5')\n"
        f"for _ in range({epochs}): r.epoch()\n"
        "status = open('/proc/self/status').read().split('\\n')\n"
        "print(json.dumps({l.split(':')[0]: int(l.split()[1]) for l in status "
        "if l.startswith(('VmHWM', 'VmRSS'))}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        return None
    return round(json.loads(done.stdout.strip().splitlines()[-1])["VmHWM"] / 1024, 1)


def run(
    data_dir, rounds: int = 5, skip=(), target: float = 0.98, max_epochs: int = 30, log=print
) -> dict:
    """Run every workload; returns a JSON-ready dict. ``skip`` names workloads to leave out."""
    names, missing = available_peers()
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "platform": platform.platform(),
        },
        "missing_peers": missing,
        "recipes": RECIPES,
    }
    try:
        from threadpoolctl import threadpool_info

        result["machine"]["blas"] = [
            {k: info.get(k) for k in ("internal_api", "num_threads", "version")}
            for info in threadpool_info()
        ]
    except ImportError:
        pass
    for module in missing:
        log(f"{module} is not installed: measuring without it (pip install {module})")
    log("ceiling: large float32 matmul ...")
    result["ceiling_gflops"] = [matmul_ceiling()]
    log(f"starting one process per library: {', '.join(names)} ...")
    libraries = {name: LibraryProcess(name, data_dir) for name in names}
    try:
        if "w1" not in skip:
            log(f"W1: {rounds} interleaved epochs per library after a warm-up ...")
            samples = libraries["numlp"].samples
            result["w1"] = run_w1(libraries, rounds, samples)
            result["w1_gflop_per_epoch"] = w1_flops(samples) / 1e9
        if "w2" not in skip:
            result["w2"] = {}
            for name in names:
                log(f"W2: {name} to {target:.0%} test accuracy ...")
                result["w2"][name] = libraries[name].call("w2", target, max_epochs)
        if "w3" not in skip:
            result["w3"] = {}
            for name in names:
                log(f"W3: {name} inference ...")
                result["w3"][name] = libraries[name].call("w3")
    finally:
        for library in libraries.values():
            library.close()
    if "rss" not in skip:
        result["peak_rss_mib"] = {}
        for name in names:
            log(f"peak RSS: {name} training in a fresh process ...")
            result["peak_rss_mib"][name] = peak_rss_of_training(name, str(data_dir))
    result["ceiling_gflops"].append(matmul_ceiling())
    return result


def markdown(result: dict) -> str:
    ceiling = statistics.median(result["ceiling_gflops"])
    lines = [
        f"Machine: {result['machine']['cpus']} CPUs, NumPy {result['machine']['numpy']}; "
        f"float32 matmul ceiling {ceiling:.0f} GFLOP/s "
        f"(measured {', '.join(f'{c:.0f}' for c in result['ceiling_gflops'])})."
    ]
    if result["missing_peers"]:
        lines.append(f"Not installed, so not measured: {', '.join(result['missing_peers'])}.")
    names = list(
        result.get("w1") or result.get("w2") or result.get("w3") or result.get("peak_rss_mib") or {}
    )
    lines += ["", "| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    if "w1" in result:
        w1 = result["w1"]
        lines.append(
            "| W1 s/epoch (median) | " + " | ".join(f"{w1[n]['median']:.3f}" for n in names) + " |"
        )
        lines.append(
            "| W1 GFLOP/s (% of ceiling) | "
            + " | ".join(f"{w1[n]['gflops']:.0f} ({w1[n]['gflops'] / ceiling:.0%})" for n in names)
            + " |"
        )
        if "torch" in w1:
            lines.append(
                "| W1 time / torch's | "
                + " | ".join(f"{w1[n]['median'] / w1['torch']['median']:.2f}" for n in names)
                + " |"
            )
    if "w2" in result:
        lines.append(
            "| W2 s to 98 % test (epochs) | "
            + " | ".join(
                f"{r['seconds']:.1f} ({r['epochs']})" if r["reached"] else "not reached"
                for r in (result["w2"][n] for n in names)
            )
            + " |"
        )
    if "w3" in result:
        for key, label in (("batch_1", "batch 1"), ("batch_10000", "batch 10,000")):
            lines.append(
                f"| W3 images/s, {label} | "
                + " | ".join(f"{result['w3'][n][key]:,.0f}" for n in names)
                + " |"
            )
    if "peak_rss_mib" in result:
        lines.append(
            "| peak RSS MiB, training | "
            + " | ".join(str(result["peak_rss_mib"][n]) for n in names)
            + " |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="benchmarks/speed.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--data-dir", default=os.environ.get("NUMLP_DATA"))
    parser.add_argument("--rounds", type=int, default=5, help="W1 epochs per library")
    parser.add_argument("--skip", nargs="*", default=[], choices=["w1", "w2", "w3", "rss"])
    parser.add_argument("--json", help="write the results here as JSON")
    args = parser.parse_args(argv)
    result = run(
        args.data_dir,
        rounds=args.rounds,
        skip=set(args.skip),
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    print(markdown(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
