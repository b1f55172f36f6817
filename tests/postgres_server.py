"""A throwaway PostgreSQL server for tests: a new cluster in a temp folder, on 127.0.0.1 and a
free port, stopped and removed afterwards. PostgreSQL refuses to run as root, so as root the
server runs as the ``postgres`` user (Debian's package makes it)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path


def postgres_bin() -> Path | None:
    """The folder of initdb and pg_ctl: on PATH, or where Debian's package puts them."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return Path(folders[-1]) if folders and (Path(folders[-1]) / "initdb").exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server(database: str = "sweeps"):
    """Start a cluster and yield its URL, ``postgresql://numlp@127.0.0.1:PORT/DATABASE``."""
    binaries = postgres_bin()
    if binaries is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="numlp-pg-"))
    as_user = {}
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        as_user = {"user": "postgres", "group": "postgres"}
    data, port = folder / "data", _free_port()

    def run(*argv):
        subprocess.run(
            [str(binaries / argv[0]), *map(str, argv[1:])],
            check=True,
            capture_output=True,
            cwd=folder,
            **as_user,
        )

    run("initdb", "-D", data, "-U", "numlp", "-A", "trust", "--no-sync", "-E", "UTF8")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    run("pg_ctl", "-D", data, "-l", folder / "server.log", "-o", options, "-w", "start")
    try:
        run("createdb", "-h", "127.0.0.1", "-p", port, "-U", "numlp", database)
        yield f"postgresql://numlp@127.0.0.1:{port}/{database}"
    finally:
        run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)
