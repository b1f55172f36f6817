"""Where a sweep's study lives: a SQLite file in the sweep's folder, or a PostgreSQL database
that workers on many machines share.

Both go through Optuna's ``RDBStorage`` with heartbeats: each running trial's worker writes a
heartbeat every ``heartbeat`` seconds, and a trial silent for three of them (its worker killed,
its machine lost) is marked failed by the next worker that looks, so a study never waits for a
dead worker. SQLite is the embedded default rather than Optuna's journal file because its
locks are the kernel's (``fcntl``): a worker killed while writing leaves no lock behind, every
write is a transaction, and it has the heartbeats the journal file lacks. It wants a local
disk; on a network file system use PostgreSQL.
"""

from __future__ import annotations

import json
import random
import re
import time
import warnings
from pathlib import Path

from numlp.atomic import NOT_THROUGH_LINKS

STUDY_FILE = "study.db"
DEFAULT_HEARTBEAT = 20  # seconds; a trial silent for GRACE_BEATS of them is failed
GRACE_BEATS = 3
SCHEMA_RETRIES = 5
SETTINGS_ATTR = "numlp_space"  # the study's search space, as its first worker gave it


class StorageError(ValueError):
    """The study's storage cannot be reached or does not hold the study asked for."""


def require_optuna():
    """Import Optuna, or say how to install the sweep extra."""
    try:
        import optuna
    except ImportError:
        raise ImportError(
            "numlp sweep needs Optuna: pip install optuna 'psycopg[binary]' (numlp's sweep "
            "extra; training works without it)"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # numlp prints its own trial lines
    # Heartbeats and the plots are marked experimental; numlp pins what it uses in its tests.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def storage_url(storage: str | Path) -> str:
    """A SQLAlchemy URL: a folder or ``.db`` path becomes SQLite, ``postgresql://`` uses the
    psycopg (3) driver that the sweep extra installs."""
    text = str(storage)
    if re.match(r"^postgres(ql)?://", text):
        return re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", text)
    if "://" in text:
        return text
    path = Path(text)
    if path.is_dir():
        path = path / STUDY_FILE
    if path.is_symlink():
        raise StorageError(f"{path} {NOT_THROUGH_LINKS}")
    return f"sqlite:///{path.resolve()}"


def shown(url: str) -> str:
    """``url`` fit to print: any password replaced by ``***``."""
    return re.sub(r"(://[^/:@]+:)[^/@]*@", r"\1***@", url).replace("+psycopg", "")


def _missing_driver(url: str, err: ImportError) -> str:
    """What to install when SQLAlchemy finds no driver for ``url``'s database."""
    if url.startswith("postgresql"):
        return f"{err}; the PostgreSQL driver comes with 'numlp[sweep]'"
    scheme = url.split(":", 1)[0]
    return (
        f"no database driver for {scheme!r} URLs is installed; numlp's sweeps run on "
        "PostgreSQL (its driver comes with 'numlp[sweep]') or a SQLite file (give its path)"
    )


def open_storage(storage, heartbeat: float = DEFAULT_HEARTBEAT, on_lost=None):
    """Optuna's storage behind ``storage`` (a URL or a SQLite path), with heartbeats every
    ``heartbeat`` seconds; StorageError in one line if it cannot be reached. ``on_lost(study,
    trial)`` is called for each trial this process finds silent and marks failed."""
    optuna = require_optuna()
    url = storage_url(storage)
    interval = max(1, round(heartbeat))
    engine: dict = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        engine["connect_args"] = {"timeout": 60}  # wait for another worker's write, not fail
    elif url.startswith("postgresql"):
        engine["connect_args"] = {"connect_timeout": 10}
    for attempt in range(SCHEMA_RETRIES):
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=interval,
                grace_period=GRACE_BEATS * interval,
                heartbeat_stale_trial_callback=on_lost,
            )
        except ImportError as err:
            raise ImportError(_missing_driver(url, err)) from None
        except Exception as err:  # SQLAlchemy's and the driver's errors: "not reachable"
            reason = " ".join(str(getattr(err, "orig", None) or err).split())
            # Workers started together on an empty database race to create its tables: the
            # losers find them made and open it again.
            if "already exists" in reason and attempt + 1 < SCHEMA_RETRIES:
                time.sleep(0.2 + random.random())
                continue
            reason = re.sub(r"\(Background on this error.*", "", reason).strip()
            raise StorageError(
                f"cannot open the study storage {shown(url)}: {reason[:300]}; check the URL, "
                "and that the server runs and lets this user in"
            ) from None


def join_study(storage, name: str, fingerprint: dict, sampler, pruner):
    """Create study ``name`` (maximizing validation accuracy) or join it. Joining needs the
    same search space and fixed settings as the study's first worker had: else StorageError."""
    optuna = require_optuna()
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction="maximize",
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    mine = json.dumps(fingerprint, sort_keys=True)
    theirs = study.user_attrs.get(SETTINGS_ATTR)
    if theirs is None:
        study.set_user_attr(SETTINGS_ATTR, mine)
    elif theirs != mine:
        raise StorageError(
            f"study {name!r} was started with another search space or other fixed settings; "
            "give every worker the same space file and preset (or choose a new --study)"
        )
    return study


def load_existing(storage, name: str | None):
    """Study ``name`` (or the storage's only study); StorageError naming the studies there."""
    optuna = require_optuna()
    names = [s.study_name for s in optuna.study.get_all_study_summaries(storage)]
    if name is None and len(names) == 1:
        name = names[0]
    if name not in names:
        there = ", ".join(names) or "none"
        asked = f"no study {name!r}" if name else "several studies"
        raise StorageError(f"{asked} in {shown(storage.url)}; studies there: {there} (--study)")
    return optuna.load_study(study_name=name, storage=storage)
