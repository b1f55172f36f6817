"""How many BLAS threads numlp uses: for training, every core on a quiet machine and fewer
when other processes already keep cores busy; for a small batch, one.

OpenBLAS threads spin while they wait for each other. On cores that another process holds,
that waiting costs far more than the work: with two busy neighbours on two cores a W1 epoch
took 6 to 36 s on 2 threads against 2.7 to 3.1 s on one. :class:`ThreadGovernor` measures how
many cores other processes use (``/proc/stat`` less this process's own CPU time) while a run
sets up, and sets the thread count to the cores left free, at least one, **once for the whole
run**: OpenBLAS's results depend on its thread count (a 128x784 by 784x512 product differs in
the last bits between one thread and two), so a count that changed between epochs gave one
seed three different models. The count is kept in the training state, and a resumed run takes
it up again, so that it too ends bit for bit where an uninterrupted run would. A fixed count
(``threads=N``) is applied as it is. Either way the original settings are restored when
training ends, however it ends.

Small batches are the other case: :func:`small_batch_threads` gives one BLAS thread to a batch
of a few rows (``predict`` on a handful of images, a server's single answer). Measured here
(``benchmarks/small_batches.py``) beside two busy loops, a 784-512-256-10 model's
``predict_proba`` on 8 to 64 rows took a median of 31 to 46 ms on two threads against 0.45
to 1.05 ms on one; on a quiet machine one thread costs at most 0.35 ms more (64 rows).

Limiting threads at run time needs ``threadpoolctl`` (the ``speed`` extra); without it the
automatic mode leaves BLAS as it is, and a fixed count is refused with how to get it.
"""

from __future__ import annotations

import math
import os
import threading
import time
from contextlib import nullcontext

AUTO = "auto"
# How long the machine is watched before the first step, counted from the governor's
# creation, so that a run's own set-up (checks, copies) overlaps it: /proc/stat counts in
# hundredths of a second, and 0.1 s of two cores is 20 ticks.
PROBE_SECONDS = 0.1
# A count measured this recently is taken again without watching: a script that calls fit
# once per epoch, or a test suite, does not wait before every call.
REUSE_SECONDS = 10.0
# Another process must keep this much of a core busy for a thread to give way to it: a short
# burst (a shell, the kernel) is not a neighbour, and one thread too few costs 40 % of a run.
NEIGHBOUR_SHARE = 0.7


def cpu_count() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def parse_threads(value) -> int | str:
    """The one check of a thread setting, wherever it comes from (``--threads``,
    ``NUMLP_THREADS``, ``fit(threads=...)``, a sweep's ``threads``): ``None``/``"auto"`` ->
    ``"auto"``, else an integer from 1 to the cores this process may use. ValueError, one
    line, for anything else: more threads than cores only spin against each other (4096 ran
    80x slower here), and a huge number overflows the BLAS library's C int."""
    if value is None or value == AUTO:
        return AUTO
    text = str(value).strip()
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e9:
        text = str(int(value))
    whole = text.isdigit() and len(text) < 10 and not isinstance(value, bool)
    threads = int(text) if whole else 0
    if threads < 1:
        raise ValueError(f"threads must be a positive integer or 'auto', got {value!r}")
    cores = cpu_count()
    if threads > cores:
        raise ValueError(
            f"threads must be a positive integer or 'auto', at most the {cores} cores this "
            f"process may use (more only spin against each other), got {value!r}"
        )
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
    """Sets the BLAS thread count for a run and puts the original back afterwards.

    Use as a context manager around training (``fit(..., threads=...)`` does it).
    ``threads``: ``"auto"`` or a positive int. ``chosen``: the count of an earlier part of
    the same run (a resumed run's), taken as it is instead of measuring again. ``history``
    lists the count applied (one entry), for logs and tests. Watching the machine starts when
    the governor is made, so make it before the run's set-up.
    """

    def __init__(self, threads="auto", cores: int | None = None, chosen: int | None = None):
        self.threads = parse_threads(threads)
        self.cores = cores or cpu_count()
        self.chosen = chosen if self.threads == AUTO else None
        self.history: list[int] = []
        self._limiter = None
        self._meter = None
        self._started = time.monotonic()
        if self.threads == AUTO and self.chosen is None:
            self.chosen = _recent_choice(self.cores)
        if self.threads == AUTO and self.chosen is None and CpuMeter.available():
            self._meter = CpuMeter()

    def __enter__(self) -> ThreadGovernor:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            if self.threads != AUTO:
                raise ImportError(
                    "setting the number of threads needs threadpoolctl: pip install "
                    "threadpoolctl (numlp's speed extra)"
                ) from None
            return self  # automatic without the means: leave BLAS as it is
        if self._meter is not None:
            time.sleep(max(0.0, PROBE_SECONDS - (time.monotonic() - self._started)))
        threads = self._choose()
        self._limiter = ThreadpoolController().limit(limits=threads, user_api="blas")
        self.history.append(threads)
        return self

    def _choose(self) -> int:
        if self.threads != AUTO:
            return self.threads
        if self.chosen is not None:
            return max(1, min(self.cores, int(self.chosen)))
        if self._meter is None:
            return self.cores
        others = self._meter.read()
        threads = max(1, self.cores - math.floor(others + 1 - NEIGHBOUR_SHARE))
        _RECENT[:] = [time.monotonic(), self.cores, threads]
        return threads

    @property
    def threads_used(self) -> int | None:
        """The count applied for this run, or None where BLAS was left as it was."""
        return self.history[-1] if self.history else None

    def __exit__(self, *exc) -> bool:
        if self._limiter is not None:
            self._limiter.restore_original_limits()
            self._limiter = None
        return False


_RECENT: list = []  # [when, cores, threads] of the latest automatic measurement


def _recent_choice(cores: int) -> int | None:
    if _RECENT and _RECENT[1] == cores and time.monotonic() - _RECENT[0] < REUSE_SECONDS:
        return _RECENT[2]
    return None


def forget_measurements() -> None:
    """Measure again at the next automatic choice (tests; after the machine changed)."""
    _RECENT.clear()


SMALL_BATCH_ROWS = 64  # at most this many rows: one thread (benchmarks/small_batches.py)


class _OneBlasThread:
    """While a block using it runs, every BLAS library has one thread; the count each had is
    put back when the outermost block leaves (blocks may nest). A block costs 5 us here (2 us
    when BLAS has one thread already), against 50 us for one image through a 784-512-256-10
    model. Main thread only: :func:`small_batch_threads` gives other threads no block.
    """

    def __init__(self):
        self._depth = 0
        self._saved: list[tuple[object, int]] = []
        self._libraries: list | None = None

    def libraries(self) -> list:
        """threadpoolctl's controllers of the loaded BLAS libraries (empty without it)."""
        if self._libraries is None:
            try:
                from threadpoolctl import ThreadpoolController
            except ImportError:
                self._libraries = []
            else:
                blas = ThreadpoolController().select(user_api="blas")
                self._libraries = list(blas.lib_controllers)
        return self._libraries

    def __enter__(self):
        if self._depth == 0:
            self._saved = []
            for library in self.libraries():
                threads = library.get_num_threads()
                if threads is not None and threads > 1:
                    library.set_num_threads(1)
                    self._saved.append((library, threads))
        self._depth += 1
        return self

    def __exit__(self, *exc) -> bool:
        self._depth -= 1
        if self._depth == 0:
            for library, threads in self._saved:
                library.set_num_threads(threads)
            self._saved = []
        return False


_ONE_BLAS_THREAD = _OneBlasThread()


def small_batch_threads(rows: int):
    """A context in which a batch of ``rows`` is computed: one BLAS thread for at most
    :data:`SMALL_BATCH_ROWS` rows, the library's own setting for more.

    Waking a second thread costs more than it saves on a few rows, and on a busy machine a
    thread that waits for a core costs milliseconds (see the module's figures). Only on the
    main thread: once its threads run, OpenBLAS ignores a new count set from another thread
    (measured with threadpoolctl), so there a block could not restore what it set."""
    if rows > SMALL_BATCH_ROWS or threading.current_thread() is not threading.main_thread():
        return nullcontext()
    return _ONE_BLAS_THREAD
