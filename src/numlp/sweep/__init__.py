"""Hyperparameter sweeps on Optuna: a search space of ``numlp train`` settings, trials that are
ordinary run folders, pruning on the validation accuracy, and a study shared by local worker
processes (SQLite in the sweep's folder) or by many machines (PostgreSQL).

From Python (a notebook, say)::

    from numlp.sweep import run_sweep, load_space
    from numlp.config import load_config, preset_path

    space = load_space("space.toml", base=load_config(preset_path("fast")))
    study = run_sweep(space, trials=20, out="sweeps/mine")
    study.best_params

Needs the ``sweep`` extra (``pip install 'numlp[sweep]'``).
"""

from numlp.sweep.driver import PRUNERS, SweepInterrupted, SweepSettings, open_sweep, run_sweep
from numlp.sweep.show import best_config, show
from numlp.sweep.space import Param, SearchSpace, SpaceError, load_space, parse_space
from numlp.sweep.storage import StorageError

__all__ = [
    "PRUNERS",
    "Param",
    "SearchSpace",
    "SpaceError",
    "StorageError",
    "SweepInterrupted",
    "SweepSettings",
    "best_config",
    "load_space",
    "open_sweep",
    "parse_space",
    "run_sweep",
    "show",
]
