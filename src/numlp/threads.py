"""How many BLAS threads numlp uses: for training, every core on a quiet machine and fewer
when other processes already keep cores busy; for a small batch, one.

OpenBLAS threads spin while they wait for each other. On cores that another process holds,
that waiting costs far more than the work: with two busy neighbours on two cores a W1 epoch
took 6 to 36 s on 2 threads against 2.7 to 3.1 s on one. :class:`ThreadGovernor` measures how
many cores other processes use (``/proc/stat`` less this process's own CPU time) before
training and after every epoch, and sets the thread count for what follows to the cores left
free, at least one. A fixed count (``threads=N``) is applied as it is. Either way the
original settings are restored when training ends, however it ends.

Small batches are the other case: :func:`small_batch_threads` gives one BLAS thread to a batch
of a few rows (``predict`` on a handful of images, a server's single answer). Measured here
(``benchmarks/small_batches.py``) beside two busy loops, a 784-512-256-10 model's
``predict_proba`` on 8 to 64 rows took a median of 31 to 46 ms on two threads against 0.45
to 1.05 ms on one; on a quiet machine one thread costs at most 0.35 ms more (64 rows).

Limiting threads at run time needs ``threadpoolctl`` (the ``speed`` extra); without it the
automatic mode leaves BLAS as it is, and a fixed count is refused with how to get it.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import nullcontext

AUTO = "auto"
PROBE_SECONDS = 0.2  # before the first epoch: how busy the machine is without us


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
                    "setting the number of threads needs threadpoolctl: pip install "
                    "threadpoolctl (numlp's speed extra)"
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
