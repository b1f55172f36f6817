"""What the benchmarks of a busy machine share: busy neighbours, and how results are given."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

BUSY_LOOP = "while True: pass"


@contextlib.contextmanager
def busy_neighbours(count: int):
    """``count`` processes that each keep a core busy (a plain Python loop), ended on exit."""
    processes = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(count)]
    try:
        yield processes
    finally:
        for process in processes:
            process.kill()
            process.wait()


def emit(result: dict, json_path=None) -> None:
    """Print ``result`` as JSON, and write it to ``json_path`` too when given."""
    text = json.dumps(result, indent=1)
    print(text)
    if json_path:
        Path(json_path).write_text(text + "\n", encoding="utf-8")
