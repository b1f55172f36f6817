"""W5: answers from `numlp serve` under load, beside the same server on onnxruntime.

An open-loop generator: requests are sent at a fixed offered rate over ``--clients`` kept-alive
connections, and each is timed from its *scheduled* start, so a server that falls behind is
charged for the wait (no coordinated omission). A rate of 0 is a closed loop instead (each
connection sends again when answered): the server's throughput. Workloads: a 28x28 JSON
digit, and a drawing as the page sends it (a 280x280 canvas PNG). Each server runs in a
process of its own, one at a time, quiet or beside two busy Python loops. Only 127.0.0.1;
every run is bounded in requests and seconds.

    python benchmarks/serve_load.py --model runs/NAME/model.npz --json serve.json
    python benchmarks/serve_load.py --model M --loads png --rounds 5 --no-busy   # one question

With ``--rounds N`` the servers take turns N times and each load reports the medians over
the rounds (and every round's figures); closed-loop throughput is also compared round by
round, numlp's requests/s over onnxruntime's, since the machine drifts between rounds.

The peer, ``onnx``, is the very same Starlette app with onnxruntime computing the model's
outputs from ``numlp export``'s ONNX file (needs the ``onnx`` extra and onnxruntime).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from neighbours import busy_neighbours, emit

ONNX_SERVER = """
import sys
import numpy as np
import onnxruntime as ort
import uvicorn
from numlp.io import load_model
from numlp.serve import bind, create_app

class OnnxModel:
    # What the app asks of a model, computed by onnxruntime on numlp's ONNX export.
    def __init__(self, model, path):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input_shape, self.classes = model.input_shape, model.classes

    def predict_proba(self, x):
        return self.session.run(None, {"input": np.asarray(x, dtype=np.float32)})[0]

model, header = load_model(sys.argv[1])
app = create_app(OnnxModel(model, sys.argv[2]), header)
config = uvicorn.Config(app, log_level="warning", timeout_keep_alive=5)
uvicorn.Server(config).run(sockets=[bind("127.0.0.1", int(sys.argv[3]))])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bodies() -> dict[str, tuple[bytes, str]]:
    """The two workloads: (body, content type)."""
    yy, xx = np.mgrid[0:28, 0:28]
    digit = (np.exp(-((xx - 14) ** 2 / 8 + (yy - 14) ** 2 / 60)) * 255).round().astype(int)
    from PIL import Image, ImageDraw

    canvas = Image.new("RGBA", (280, 280), (255, 255, 255, 255))
    ImageDraw.Draw(canvas).line([(140, 50), (150, 230)], fill=(0, 0, 0, 255), width=18)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return {
        "json": (json.dumps({"pixels": digit.tolist()}).encode(), "application/json"),
        "png": (buffer.getvalue(), "image/png"),
    }


async def _request(reader, writer, body: bytes, kind: str) -> int:
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {kind}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    writer.write(head + body)
    await writer.drain()
    status_line = await reader.readline()
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(status_line.split()[1])


async def open_loop(port: int, body: bytes, kind: str, rate: float, clients: int, count: int):
    """Send ``count`` requests at ``rate`` per second over ``clients`` connections; returns
    (latencies from scheduled start in seconds, errors, elapsed)."""
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(clients)]
    free: asyncio.Queue = asyncio.Queue()
    for connection in connections:
        free.put_nowait(connection)
    latencies, errors = [], 0
    start = time.perf_counter()

    async def one(scheduled: float):
        nonlocal errors
        connection = await free.get()
        try:
            status = await asyncio.wait_for(_request(*connection, body, kind), 10)
            errors += status != 200
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            connection = await asyncio.open_connection("127.0.0.1", port)
        latencies.append(time.perf_counter() - scheduled)
        free.put_nowait(connection)

    if rate == 0:  # closed loop: every connection sends again as soon as it is answered

        async def client():
            while len(latencies) + errors < count:
                await one(time.perf_counter())

        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - start
        for _, writer in connections:
            writer.close()
        return latencies, errors, elapsed
    tasks = []
    for i in range(count):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    for _, writer in connections:
        writer.close()
    return latencies, errors, elapsed


def summary(latencies, errors, elapsed) -> dict:
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "errors": errors,
        "per_second": round(len(ordered) / elapsed, 1),
        "p50_ms": round(1000 * ordered[len(ordered) // 2], 2),
        "p99_ms": round(1000 * ordered[max(int(len(ordered) * 0.99) - 1, 0)], 2),
    }


def start_server(kind: str, model: Path, onnx_path: Path | None, port: int):
    if kind == "numlp":
        argv = [sys.executable, "-m", "numlp", "serve", str(model), "--port", str(port)]
    else:
        argv = [sys.executable, "-c", ONNX_SERVER, str(model), str(onnx_path), str(port)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
            return process
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(process.stderr.read().decode()) from None
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def run_server(kind, model, onnx_path, plan, busy: bool) -> dict:
    """Start one server (and the busy neighbours), run every load of ``plan``, stop all."""
    port = free_port()
    server = start_server(kind, model, onnx_path, port)
    results = {}
    try:
        with busy_neighbours(2 * busy):
            payloads = bodies()
            for workload, clients, rate, seconds in plan:
                body, content_type = payloads[workload]
                count = max(int((rate or 3000) * seconds), 1)
                warm_up = min(count, 200)
                asyncio.run(open_loop(port, body, content_type, rate, clients, warm_up))
                measured = asyncio.run(open_loop(port, body, content_type, rate, clients, count))
                offered = f"{rate:g}/s" if rate else "as fast as answered"
                results[f"{workload} {clients} clients {offered}"] = summary(*measured)
    finally:
        server.terminate()
        server.wait(timeout=10)
    return results


def combine(rounds: list[dict]) -> dict:
    """One server's loads over several rounds: medians of the rates and latencies, totals of
    requests and errors, and every round's figures."""
    combined = {}
    for load in rounds[0]:
        runs = [one[load] for one in rounds]
        combined[load] = {
            "requests": sum(run["requests"] for run in runs),
            "errors": sum(run["errors"] for run in runs),
            **{
                key: statistics.median(run[key] for run in runs)
                for key in ("per_second", "p50_ms", "p99_ms")
            },
            "rounds": {key: [run[key] for run in runs] for key in ("per_second", "p99_ms")},
        }
    return combined


def throughput_ratios(rounds: dict) -> dict:
    """numlp's closed-loop requests/s over onnxruntime's, round by round, and their median."""
    ratios = {}
    for load in rounds["numlp"][0]:
        if load.endswith("as fast as answered"):
            each = [
                a[load]["per_second"] / b[load]["per_second"]
                for a, b in zip(rounds["numlp"], rounds["onnx"])
            ]
            ratios[load] = {"median": statistics.median(each), "rounds": each}
    return ratios


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a numlp model.npz")
    parser.add_argument("--seconds", type=float, default=10, help="per load")
    parser.add_argument("--busy", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--servers", nargs="*", default=["numlp", "onnx"])
    parser.add_argument(
        "--rounds", type=int, default=1, help="run the servers in turn this many times"
    )
    parser.add_argument(
        "--loads", choices=["json", "png"], nargs="*", default=["json", "png"], help="workloads"
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    onnx_path = None
    if "onnx" in args.servers:
        from numlp.export import export_onnx
        from numlp.io import load_model

        model, _ = load_model(args.model)
        onnx_path = Path(tempfile.mkdtemp()) / "model.onnx"
        export_onnx(model, onnx_path, softmax=True)
    s = args.seconds
    quiet_plan = [
        ("json", 1, 500, s), ("json", 8, 1000, s), ("json", 32, 1000, s), ("json", 32, 0, s),
        ("png", 1, 100, s), ("png", 8, 200, s), ("png", 32, 200, s), ("png", 32, 0, s),
    ]  # fmt: skip
    busy_plan = [("json", 8, 400, s), ("json", 32, 400, s), ("json", 32, 0, s), ("png", 8, 100, s)]
    results = {"cpus": os.cpu_count(), "seconds_per_load": s, "rounds": args.rounds}
    for busy, plan in ((False, quiet_plan), (True, busy_plan))[: 2 if args.busy else 1]:
        plan = [load for load in plan if load[0] in args.loads]
        if not plan:
            continue
        condition = "busy" if busy else "quiet"
        rounds = {kind: [] for kind in args.servers}
        for number in range(args.rounds):  # servers alternate, one alive at a time,
            for kind in args.servers[:: -1 if number % 2 else 1]:  # first one way, then back
                print(f"{condition}: {kind}, round {number + 1}", file=sys.stderr, flush=True)
                rounds[kind].append(run_server(kind, args.model, onnx_path, plan, busy))
        results[condition] = {kind: combine(each) for kind, each in rounds.items()}
        if {"numlp", "onnx"} <= set(args.servers):
            results[condition]["numlp_over_onnx_throughput"] = throughput_ratios(rounds)
    emit(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
