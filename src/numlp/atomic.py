"""Atomic file writes: a temporary file beside the target, fsync, then one rename; and files
opened in place (a lock, a log appended to) without following a link.

A reader sees the old file or the new one, never half of one, even if the process is killed.
A link planted where numlp writes is never written through: the rename replaces the link
itself, and :func:`open_in_place` refuses one.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` atomically, creating parent folders as needed. A failure
    (a full disk...) raises OSError naming ``path`` and saying whether a previous file there is
    kept; nothing half-written is left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.exists()
    mode = ordinary_mode(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fchmod(f.fileno(), mode)  # mkstemp's 0600 would lock out everyone else
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        kept = " (the previous one is kept)" if existed else ""
        raise OSError(err.errno, f"{err.strerror} while writing {path}{kept}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows (threads may be
    creating files meanwhile)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def ordinary_mode(path: Path) -> int:
    """The permissions ``open(path, "w")`` would leave: those of the file already there (not
    of a link, which the rename replaces), else 0666 less the umask."""
    try:
        return os.lstat(path).st_mode & 0o7777 if not path.is_symlink() else 0o666 & ~_umask()
    except FileNotFoundError:
        return 0o666 & ~_umask()


NOT_THROUGH_LINKS = "is a symbolic link; numlp does not write through links: remove it"


def open_in_place(path, mode: str = "a", encoding: str | None = "utf-8"):
    """``path`` opened for writing where it is (``"a"``: appending, ``"a+"``: reading too,
    ``"w"``: from empty), created if missing, never through a symbolic link: OSError (ELOOP)
    naming the file if ``path`` is one."""
    flags = {"a": os.O_WRONLY | os.O_APPEND, "a+": os.O_RDWR | os.O_APPEND,
             "w": os.O_WRONLY | os.O_TRUNC}[mode.replace("b", "")]  # fmt: skip
    flags |= os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError:
        if Path(path).is_symlink():
            raise OSError(errno.ELOOP, NOT_THROUGH_LINKS, str(path)) from None
        raise
    return os.fdopen(fd, mode, encoding=None if "b" in mode else encoding)


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
