"""Run folders claimed by one run at a time.

A run folder (``model.npz``, ``checkpoint.npz``, ``metrics.jsonl``, ``config.toml``, plots)
belongs to exactly one run. :func:`claim_run_dir` takes an exclusive lock on it (an
``flock`` on ``.numlp.lock``, held until the run ends and dropped by the kernel if the process
dies, even by ``kill -9``), so two ``numlp train --out X`` started together cannot both write
into X: the second is refused at once. Nothing is written or removed before the claim is
held. A new run that fails before it saved anything to resume from (its checks, its data, its
first epoch: whatever the cause) leaves the folder as it found it: what it wrote is removed,
and so is a folder it created; an ``--overwrite`` run removes the run it replaces only once
it begins (:meth:`RunClaim.begin`), after every check.
"""

from __future__ import annotations

import os
from pathlib import Path

from numlp.atomic import open_in_place

try:
    import fcntl
except ImportError:  # Windows: creating the lock file exclusively stands in for flock (a run
    fcntl = None  # killed there leaves it behind: delete it by hand)

RUN_FILES = ("model.npz", "metrics.jsonl", "config.toml", "checkpoint.npz")
# What a finished run may also hold (plots, the HTML report): removed too by --overwrite.
RUN_EXTRAS = (
    "best.npz",
    "curves.png",
    "confusion.png",
    "mistakes.png",
    "first_layer.png",
    "per_class.png",
    "report.html",
)
LOCK_NAME = ".numlp.lock"
MEMBERS_FOLDER = "members"  # a committee's member runs, each a run folder of its own


class RunDirError(ValueError):
    """A run folder cannot be used: taken by another run, holding a run already, or unwritable."""


class RunClaim:
    """An exclusive claim on a run folder; release it with :meth:`release` (or ``with``)."""

    def __init__(self, path: Path, lock_file, created: list[Path], previous: list[str],
                 resume: bool = False):  # fmt: skip
        self.path = path
        self._lock_file = lock_file
        self.created = created  # folders this claim made (the run folder, its new parents)
        self.previous = previous  # run files that were there when it was claimed
        self.resume = resume
        self.began = False  # the run has started writing its files

    def begin(self) -> None:
        """The run starts writing (every check passed): a new run first removes the files of
        the run this folder held (``--overwrite``)."""
        if not self.resume:
            self.clear_previous()
        self.began = True

    def resumable(self) -> bool:
        """Whether the folder holds a checkpoint to resume from (its own or a member's)."""
        return (self.path / "checkpoint.npz").is_file() or any(
            self.path.glob(f"{MEMBERS_FOLDER}/*/checkpoint.npz")
        )

    def undo_start(self) -> None:
        """Remove what a new run wrote before it failed (nothing of it can be resumed), and
        the folders this claim created; what was there before the run began stays."""
        if self.began and not self.resume:
            self.clear_previous()
            try:
                (self.path / MEMBERS_FOLDER).rmdir()
            except OSError:
                pass
        self.abandon()

    def clear_previous(self) -> None:
        """Remove the files of the run this folder held (``--overwrite``), so the new run never
        sits beside half of the old one. Called once the new run is sure to start."""
        for name in (*RUN_FILES, *RUN_EXTRAS):
            (self.path / name).unlink(missing_ok=True)
        for stale in self.path.glob(".*.tmp"):  # half-written files of a killed process
            stale.unlink(missing_ok=True)
        self.previous = []

    def abandon(self) -> None:
        """Give the folder back as it was: a folder this claim created and nothing else wrote
        into is removed (a failed start leaves no empty run folder)."""
        self.release()
        _remove_empty(self.created)

    def release(self) -> None:
        if self._lock_file is None:
            return
        lock_path = self.path / LOCK_NAME
        # Unlink while still holding the lock: a process that opened the old file then finds,
        # after locking it, that the path no longer names it, and tries again (see _lock).
        lock_path.unlink(missing_ok=True)
        self._lock_file.close()  # closing drops the flock
        self._lock_file = None

    def __enter__(self) -> RunClaim:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None and not self.resume and not self.resumable():
            self.undo_start()
        self.release()


def claim_run_dir(out, *, overwrite: bool = False, resume: bool = False) -> RunClaim:
    """Claim ``out`` for one run, creating it if needed.

    Refuses (``RunDirError``, one line) when ``out`` is a file, cannot be created, is in use by
    another numlp process, or already holds a run and neither ``overwrite`` nor ``resume`` is
    given. With ``resume`` the folder must exist. Nothing of an existing run is touched here.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out} is a file, not a folder; give --out a folder name")
    if resume and not out.is_dir():
        raise RunDirError(f"{out}: no such run folder to resume")
    created = [p for p in (out, *out.parents) if not p.exists()]  # innermost first
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunDirError(f"cannot create the run folder {out}: {err.strerror or err}") from None
    try:
        lock_file = _lock(out / LOCK_NAME)
    except OSError as err:
        _remove_empty(created)
        where = err.filename or out
        reason = err.strerror or err
        raise RunDirError(f"cannot write to the run folder: {where} {reason}") from None
    if lock_file is None:
        raise RunDirError(
            f"{out} is in use by another numlp run ({_holder(out)}); wait for it to finish or "
            "choose another --out"
        )
    previous = [name for name in RUN_FILES if (out / name).exists()]
    claim = RunClaim(out, lock_file, created, previous, resume)
    if previous and not (overwrite or resume):
        claim.release()
        raise RunDirError(
            f"{out} already holds a run ({', '.join(previous)}); choose another --out, "
            f"pass --overwrite to replace it, or --resume {out} to continue it"
        )
    return claim


def _lock(path: Path):
    """Open and exclusively lock ``path``; None if another process holds it."""
    if fcntl is None:  # Windows: the file's exclusive creation is the claim
        try:
            handle = os.fdopen(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY), "w")
        except FileExistsError:
            return None
        return _write_pid(handle)
    while True:
        handle = open_in_place(path, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        except BaseException:
            handle.close()
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return _write_pid(handle)
        handle.close()  # the holder released and removed it in between: lock the new one


def _write_pid(handle):
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _holder(out: Path) -> str:
    try:
        pid = (out / LOCK_NAME).read_text(encoding="utf-8").strip()
    except OSError:
        pid = ""
    return f"process {pid}" if pid.isdigit() else "another process"


def _remove_empty(folders: list[Path]) -> None:
    """Remove these folders, innermost first, as long as they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return
