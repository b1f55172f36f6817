"""``numlp sweep``: a search over a space of ``numlp train`` settings, as one function.

A sweep folder holds ``sweep.json`` (the sweep's own settings), ``space.toml`` and
``base.toml`` (the search space and the configuration it starts from), ``study.db`` (the
embedded study, unless ``storage`` names a database) and ``trials/NNNNN/``, one run folder per
trial. The folder is claimed like a run folder while the sweep runs. ``workers`` local
processes share the study; workers on other machines join it through the same PostgreSQL
``storage`` and ``study`` name.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from numlp.atomic import atomic_write_text
from numlp.checks import check_folder_name
from numlp.config import load_config, parse_config, to_toml, toml_value
from numlp.data.datasets import load_dataset
from numlp.run import TrainingInterrupted
from numlp.rundir import claim_run_dir
from numlp.sweep.space import SearchSpace, load_space, parse_space, short_value
from numlp.sweep.storage import (
    DEFAULT_HEARTBEAT,
    StorageError,
    join_study,
    open_storage,
    require_optuna,
    shown,
    storage_url,
)
from numlp.sweep.trial import TrialPlan, outcome
from numlp.sweep.worker import census, work
from numlp.threads import parse_threads

PRUNERS = ("median", "hyperband", "halving", "none")
EMBEDDED_STUDY = "numlp"


class SweepInterrupted(Exception):
    """Ctrl-C stopped the sweep; finished trials are kept and the message says how to go on."""


@dataclass
class SweepSettings:
    """How a sweep runs; saved in ``sweep.json`` so that ``--resume`` goes on the same way."""

    trials: int | None = None
    timeout: float | None = None
    workers: int = 1
    storage: str | None = None  # None: the embedded study.db; passwords are never saved
    study: str = EMBEDDED_STUDY
    pruner: str = "median"
    threads: int | None = None  # BLAS threads per worker; None: the cores shared out
    heartbeat: float = DEFAULT_HEARTBEAT
    data_dir: str | None = None  # where the dataset was found (--resume looks there again)

    def check(self) -> SweepSettings:
        kinds = {"trials": (int, None), "timeout": (int, float, None), "workers": (int,),
                 "storage": (str, None), "study": (str,), "pruner": (str,),
                 "heartbeat": (int, float), "data_dir": (str, None)}  # fmt: skip
        for name, allowed in kinds.items():
            value = getattr(self, name)
            if not (value is None and None in allowed) and (
                isinstance(value, bool) or type(value) not in [k for k in allowed if k]
            ):
                raise ValueError(f"sweep setting {name} = {value!r} is not of the right kind")
        if self.trials is None and self.timeout is None:
            raise ValueError("give --trials N or --timeout SECONDS (or both)")
        if self.trials is not None and not 0 < self.trials <= 100_000:
            raise ValueError(f"--trials must be from 1 to 100,000, got {self.trials}")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"--timeout must be a positive number of seconds, got {self.timeout}")
        if not 0 < self.workers <= 256:
            raise ValueError(f"--workers must be from 1 to 256, got {self.workers}")
        if self.pruner not in PRUNERS:
            raise ValueError(f"unknown pruner {self.pruner!r}; choose one of {', '.join(PRUNERS)}")
        if self.threads is not None:
            self.threads = parse_threads(self.threads)  # the one thread check, bounds included
        if not self.heartbeat > 0:
            raise ValueError(
                f"--heartbeat must be a positive number of seconds, got {self.heartbeat}"
            )
        return self


def default_sweep_dir(study: str | None) -> Path:
    """``sweeps/STUDY`` or ``sweeps/sweep-TIMESTAMP``."""
    if study:
        return Path("sweeps") / check_folder_name(study, "study")
    return Path("sweeps") / f"sweep-{time.strftime('%Y%m%d-%H%M%S')}"


def run_sweep(
    space: SearchSpace | str | Path | None = None,
    *,
    out=None,
    resume: bool = False,
    data_dir=None,
    stream=None,
    **settings,
):
    """Search ``space`` (a :class:`SearchSpace` or the path of its TOML file) and return the
    Optuna study. ``settings`` are :class:`SweepSettings`' fields (``trials``, ``timeout``,
    ``workers``, ``storage``, ``study``, ``pruner``, ``threads``, ``heartbeat``).

    With ``resume``, go on with the sweep in ``out`` (its space and settings as saved; given
    ``trials``, ``timeout``, ``workers`` or a ``storage`` URL with its password replace
    them). Finished trials are kept; trials a crash left running are failed and replaced.
    """
    stream = stream or sys.stdout
    out = Path(out) if out else default_sweep_dir(settings.get("study"))
    if data_dir is not None:
        settings["data_dir"] = str(Path(data_dir).resolve())
    with claim_run_dir(out, resume=resume) as claim:
        try:  # everything is checked before the first file is written
            space, config = _start(claim.path, space, resume, settings)
            data_dir = config.data_dir
            _check_data(space, data_dir)
            storage = _storage(claim.path, config)
            study = join_study(storage, config.study, space.fingerprint(), *_search(config))
        except BaseException:
            claim.abandon()
            raise
        if not resume:
            _save_settings(claim.path, space, config)
        if resume and config.storage is None:
            _fail_left_running(study)
        _first_lines(stream, out, space, config, study)
        started = time.monotonic()
        _run_workers(out, space, config, data_dir, stream)
        _last_line(stream, out, study, time.monotonic() - started)
        return study


def _start(out: Path, space, resume: bool, settings: dict):
    """The space and settings of the sweep in ``out``: checked for a new sweep, read back
    (and updated) for a resumed one."""
    if resume:
        return _read_saved(out, settings)
    if (out / "sweep.json").exists():
        raise StorageError(
            f"{out} already holds a sweep; continue it with --resume {out}, or choose another --out"
        )
    if space is None:
        raise ValueError("give a search space file (numlp sweep SPACE.toml)")
    if not isinstance(space, SearchSpace):
        space = load_space(space)
    if settings.get("storage") is None:
        settings["study"] = EMBEDDED_STUDY
    elif not settings.get("study"):
        raise ValueError("a shared --storage needs --study NAME, the same on every machine")
    return space, SweepSettings(**settings).check()


def _save_settings(out: Path, space: SearchSpace, config: SweepSettings) -> None:
    """What ``--resume`` and ``show`` read back; ``sweep.json`` last, as the sign of a sweep."""
    saved = {**asdict(config), "storage": shown(config.storage) if config.storage else None}
    atomic_write_text(out / "space.toml", _space_text(space))
    atomic_write_text(out / "base.toml", to_toml(space.base))
    atomic_write_text(out / "sweep.json", json.dumps(saved, indent=2) + "\n")


def _read_saved(out: Path, settings: dict):
    if not (out / "sweep.json").is_file():
        raise StorageError(f"{out} holds no sweep (no sweep.json) to resume")
    try:
        saved = json.loads((out / "sweep.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        saved = None
    known = {f.name for f in dataclasses.fields(SweepSettings)}
    if not isinstance(saved, dict) or set(saved) - known:
        raise StorageError(
            f"{out / 'sweep.json'} is not a sweep's settings (a JSON table of "
            f"{', '.join(sorted(known))}); it was changed by hand or damaged"
        )
    given = {k: v for k, v in settings.items() if v is not None}
    try:
        config = SweepSettings(**{**saved, **given}).check()
    except (TypeError, ValueError) as err:  # a value of the wrong kind ("trials": "ten"...)
        raise StorageError(f"{out / 'sweep.json'}: {err}") from None
    if config.storage and "***" in config.storage and "storage" not in given:
        raise ValueError(
            f"{out} runs on {config.storage}: give --storage URL again with its password "
            "(passwords are not written to disk)"
        )
    base = load_config(out / "base.toml")
    space = parse_space((out / "space.toml").read_text(encoding="utf-8"), base, str(out))
    return space, config


def _space_text(space: SearchSpace) -> str:
    """The space as TOML that :func:`parse_space` reads back to the same space."""
    lines = ["# the search space of this sweep (numlp sweep --resume reads it back)"]
    for key, value in space.fixed.items():
        lines.append(f"{key} = {toml_value(value)}")
    for key, param in space.params.items():
        if param.kind == "choice":
            lines.append(f"{key} = {{choice = {toml_value(list(param.choices))}}}")
            continue
        form = "log" if param.log else "range"
        step = f", step = {param.step!r}" if param.step else ""
        lines.append(f"{key} = {{{form} = [{param.low!r}, {param.high!r}]{step}}}")
    return "\n".join(lines) + "\n"


def _check_data(space: SearchSpace, data_dir) -> None:
    """Load each dataset once here (downloading it if needed), before any worker starts."""
    param = space.params.get("dataset")
    names = param.choices if param else [space.base.updated(**space.fixed).dataset]
    for name in names:
        load_dataset(name, data_dir=data_dir)


def _storage(out: Path, config: SweepSettings):
    return open_storage(config.storage or out / "study.db", config.heartbeat, on_lost=_say_lost)


def _say_lost(study, trial) -> None:
    print(
        f"trial {trial.number:>3}  lost     its worker stopped answering; it does not count and "
        "another trial takes its place",
        flush=True,
    )


def _search(config: SweepSettings):
    """The sampler and pruner: TPE (lying constant for trials still running, so parallel
    workers do not all try the same point) and the pruner named."""
    optuna = require_optuna()
    sampler = optuna.samplers.TPESampler(constant_liar=True)
    pruner = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=2),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1),
        "halving": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1),
        "none": optuna.pruners.NopPruner,
    }[config.pruner]()
    return sampler, pruner


def _fail_left_running(study) -> None:
    """Trials left running by a crashed or interrupted sweep of this folder: nobody else works
    on its embedded study (the folder is claimed), so they are lost; mark them failed now."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)


def _first_lines(stream, out: Path, space: SearchSpace, config: SweepSettings, study) -> None:
    where = shown(storage_url(config.storage)) if config.storage else str(out / "study.db")
    budget = f"{config.trials} trials" if config.trials else "no trial limit"
    if config.timeout:
        budget += f", {config.timeout:g} s"
    now = census(study)
    print(
        f"sweep {config.study!r} in {where}: {budget}, {config.workers} worker(s), pruner "
        f"{config.pruner}; {now.counted} trials there already; run folders in {out / 'trials'}",
        file=stream,
        flush=True,
    )
    for line in space.describe():
        print(f"  searching {line}", file=stream, flush=True)


def _last_line(stream, out: Path, study, seconds: float) -> None:
    states = [outcome(t) for t in study.get_trials(deepcopy=False)]
    kinds = ("complete", "pruned", "failed", "lost")
    tally = ", ".join(f"{states.count(s)} {s}" for s in kinds if s in states)
    try:
        best = study.best_trial
        found = f"best val {best.value:.2%} (trial {best.number}): " + " ".join(
            f"{k}={short_value(v)}" for k, v in best.params.items()
        )
    except ValueError:
        found = "no trial finished"
    print(f"sweep done in {seconds:.0f} s: {tally}; {found}", file=stream, flush=True)
    print(f"numlp sweep show {out} for the table, the winner's config and plots", file=stream)


def _worker_settings(out: Path, space: SearchSpace, config: SweepSettings, data_dir) -> dict:
    """What a worker process needs, as plain values (workers are spawned, not forked)."""
    cores = os.cpu_count() or 1
    # One worker follows the machine's load like `numlp train`; several share the cores out.
    threads = config.threads or ("auto" if config.workers == 1 else max(1, cores // config.workers))
    deadline = time.time() + config.timeout if config.timeout else None
    return {
        "out": str(out),
        "space": _space_text(space),
        "base": to_toml(space.base),
        "settings": asdict(config),
        "data_dir": str(data_dir) if data_dir else None,
        "threads": threads,
        "deadline": deadline,
    }


def _run_workers(out: Path, space: SearchSpace, config: SweepSettings, data_dir, stream) -> None:
    job = _worker_settings(out, space, config, data_dir)
    if config.workers == 1:
        _work_here(job, space, config, stream)
        return
    context = multiprocessing.get_context("spawn")  # a fresh process: no forked BLAS threads
    workers = [context.Process(target=worker_main, args=(job,)) for _ in range(config.workers)]
    for process in workers:
        process.start()
    try:
        for process in workers:
            process.join()
    except KeyboardInterrupt:
        _stop(workers)
        raise SweepInterrupted(_resume_hint(out)) from None
    if any(p.exitcode == 130 for p in workers):
        raise SweepInterrupted(_resume_hint(out))
    dead = [f"{p.pid} ({_exit_words(p.exitcode)})" for p in workers if p.exitcode]
    if dead:
        print(f"numlp: workers ended early: {', '.join(dead)}", file=sys.stderr, flush=True)


def _work_here(job: dict, space: SearchSpace, config: SweepSettings, stream) -> None:
    plan = TrialPlan(
        space, Path(job["out"]) / "trials", config.trials, job["data_dir"], job["threads"]
    )
    storage = open_storage(
        config.storage or Path(job["out"]) / "study.db", config.heartbeat, _say_lost
    )
    study = join_study(storage, config.study, space.fingerprint(), *_search(config))
    deadline = _monotonic_deadline(job["deadline"])
    try:
        work(study, plan, deadline, stream)
    except (KeyboardInterrupt, TrainingInterrupted):
        raise SweepInterrupted(_resume_hint(Path(job["out"]))) from None


def worker_main(job: dict) -> None:
    """A worker process: join the study and take trials; Ctrl-C ends it quietly (its trial is
    left failed, and does not count)."""
    try:
        config = SweepSettings(**job["settings"])
        space = parse_space(job["space"], parse_config(job["base"], where="base.toml"))
        _work_here(job, space, config, sys.stdout)
    except (KeyboardInterrupt, SweepInterrupted):
        sys.exit(130)


def _monotonic_deadline(wall: float | None) -> float | None:
    return None if wall is None else time.monotonic() + (wall - time.time())


def _stop(workers) -> None:
    """After Ctrl-C: the workers got it too (same terminal); give them time to mark their
    trials, then end any that is left."""
    deadline = time.monotonic() + 30
    for process in workers:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.terminate()
            process.join()


def _resume_hint(out: Path) -> str:
    return f"sweep interrupted; finished trials are kept. Go on with: numlp sweep --resume {out}"


def _exit_words(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit status {code}"


def open_sweep(folder=None, storage=None, study: str | None = None):
    """The study of the sweep in ``folder`` (its own study.db or the storage it names), or of
    ``storage`` and ``study``: what ``numlp sweep show`` reads. Nothing is created."""
    from numlp.sweep.storage import load_existing

    if folder is not None and storage is None:
        folder = Path(folder)
        if not (folder / "sweep.json").is_file():
            raise StorageError(f"{folder} holds no sweep (no sweep.json); give a sweep folder")
        saved = json.loads((folder / "sweep.json").read_text(encoding="utf-8"))
        if saved.get("storage") and "***" in saved["storage"]:
            raise ValueError(f"{folder} runs on {saved['storage']}: give --storage URL too")
        storage, study = saved.get("storage") or folder / "study.db", saved.get("study")
    if storage is None:
        raise ValueError("give a sweep folder, or --storage URL and --study NAME")
    if "://" not in str(storage) and not Path(storage).exists():
        raise StorageError(f"{storage}: no such study file")
    return load_existing(open_storage(storage), study)
