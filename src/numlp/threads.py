"""How many BLAS threads training uses: every core on a quiet machine, fewer when other
processes already keep cores busy.

OpenBLAS threads spin while they wait for each other. On cores that another process holds,
that waiting costs far more than the work: with two busy neighbours on two cores a W1 epoch
took 6 to 36 s on 2 threads against 2.7 to 3.1 s on one. :class:`ThreadGovernor` measures how
many cores other processes use (``/proc/stat`` less this process's own CPU time) before
training and after every epoch, and sets the thread count for what follows to the cores left
free, at least one. A fixed count (``threads=N``) is applied as it is. Either way the
original settings are restored when training ends, however it ends.

Limiting threads at run time needs ``threadpoolctl`` (the ``speed`` extra); without it the
automatic mode leaves BLAS as it is, and a fixed count is refused with how to get it.
"""

from __future__ import annotations

import os
import time

AUTO = "auto"
PROBE_SECONDS = 0.2  # before the first epoch: how busy the machine is without us


def cpu_count() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def parse_threads(value) -> int | str | None:
    """``None``/``"auto"`` -> automatic, or a positive int; ValueError for anything else."""
    if value is None or value == AUTO:
        return AUTO
    try:
        threads = int(value)
    except (TypeError, ValueError):
        threads = 0
    if threads < 1 or str(value).strip() not in (str(threads), f"{threads}.0"):
        raise ValueError(f"threads must be a positive integer or 'auto', got {value!r}")
    return threads


class CpuMeter:
    """Cores kept busy by other processes, averaged since the last :meth:`read` (Linux)."""

    def __init__(self):
        self.ticks = os.sysconf("SC_CLK_TCK")
        self._last = self._sample()

    @staticmethod
    def available() -> bool:
        return os.path.exists("/proc/stat")

    def _sample(self) -> tuple[float, float, float]:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        busy = (sum(fields[:8]) - idle) / self.ticks  # user..steal, all cores
        own = sum(os.times()[:2])  # this process's user + system time, all its threads
        return time.monotonic(), busy, own

    def read(self) -> float:
        """Other processes' busy cores since the previous read, and start a new interval."""
        now = self._sample()
        wall, busy, own = (b - a for a, b in zip(self._last, now))
        self._last = now
        return max(busy - own, 0.0) / wall if wall > 0 else 0.0


class ThreadGovernor:
    """Sets the BLAS thread count for training and puts the original back afterwards.

    Use as a context manager around training, calling :meth:`next_epoch` between epochs
    (``fit(..., threads=...)`` does both). ``threads``: ``"auto"`` or a positive int.
    ``history`` lists the count chosen for each stretch, for logs and tests.
    """

    def __init__(self, threads="auto", cores: int | None = None):
        self.threads = parse_threads(threads)
        self.cores = cores or cpu_count()
        self.history: list[int] = []
        self._controller = self._limiter = self._meter = None

    def __enter__(self) -> ThreadGovernor:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            if self.threads != AUTO:
                raise ImportError(
                    "setting the number of threads needs threadpoolctl: pip install 'numlp[speed]'"
                ) from None
            return self  # automatic without the means: leave BLAS as it is
        self._controller = ThreadpoolController()
        if self.threads == AUTO and CpuMeter.available():
            self._meter = CpuMeter()
            time.sleep(PROBE_SECONDS)
        self._apply(self._choose())
        return self

    def next_epoch(self) -> None:
        """Re-measure (automatic mode) and set the count for the next epoch."""
        if self._controller is not None and self._meter is not None:
            self._apply(self._choose())

    def _choose(self) -> int:
        if self.threads != AUTO:
            return self.threads
        if self._meter is None:
            return self.cores
        others = self._meter.read()
        return max(1, min(self.cores, self.cores - round(others)))

    def _apply(self, threads: int) -> None:
        if self.history and self.history[-1] == threads:
            return
        if self._limiter is not None:
            self._limiter.restore_original_limits()
        self._limiter = self._controller.limit(limits=threads, user_api="blas")
        self.history.append(threads)

    def __exit__(self, *exc) -> bool:
        if self._limiter is not None:
            self._limiter.restore_original_limits()
            self._limiter = None
        return False
