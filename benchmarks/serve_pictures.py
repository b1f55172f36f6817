"""A burst of large pictures against `numlp serve`, while /health is asked every 0.1 s.

Starts a real server on 127.0.0.1 (a free port) with a small model, sends ``--clients``
concurrent uploads of a ``--side`` x ``--side`` PNG (mostly white: small file, many pixels),
and reports the answers by status, the slowest /health during the burst, and the server's
resident memory before and after (from /proc). Only loopback traffic; bounded in count and time.

    python benchmarks/serve_pictures.py --clients 200 --pictures 40 --side 5000
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from numlp import Dense, Flatten, ReLU, Sequential
from numlp.io import save_model


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


def png(side: int) -> bytes:
    image = Image.new("L", (side, side), 255)
    image.paste(0, (side // 2 - side // 40, side // 4, side // 2 + side // 40, 3 * side // 4))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url + "/predict", body, {"Content-Type": "image/png"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return -1  # no answer (timeout, reset)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200, help="concurrent connections")
    parser.add_argument("--pictures", type=int, default=40, help="large pictures among them")
    parser.add_argument("--side", type=int, default=5000, help="picture side in pixels")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    model = Sequential([Flatten(), Dense(784, 64), ReLU(), Dense(64, 10)], (28, 28), seed=0)
    save_model(folder / "model.npz", model, preprocessing={"scale": 1 / 255})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "numlp", "serve", str(folder / "model.npz"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/health", timeout=1).read()
            break
        except OSError:
            time.sleep(0.1)
    before = rss_mib(server.pid)
    big, small = png(args.side), png(280)
    bodies = [big] * args.pictures + [small] * (args.clients - args.pictures)
    health, done = [], threading.Event()

    def watch():
        while not done.is_set():
            start = time.perf_counter()
            try:
                urllib.request.urlopen(url + "/health", timeout=120).read()
            except OSError:
                pass
            health.append(time.perf_counter() - start)
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        statuses = list(pool.map(lambda body: post(url, body), bodies))
    seconds = time.perf_counter() - started
    done.set()
    watcher.join()
    after = rss_mib(server.pid)
    server.terminate()
    log = server.communicate(timeout=10)[1]
    result = {
        "clients": args.clients,
        "large_pictures": args.pictures,
        "side": args.side,
        "picture_bytes": len(big),
        "statuses": dict(Counter(statuses)),
        "burst_seconds": round(seconds, 2),
        "health_max_ms": round(1000 * max(health), 1),
        "health_median_ms": round(1000 * float(np.median(health)), 1),
        "rss_mib_before": round(before, 1),
        "rss_mib_after": round(after, 1),
        "tracebacks_in_log": log.count("Traceback"),
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
