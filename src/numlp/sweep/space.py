"""A search space: which ``numlp train`` settings a sweep fixes and which it searches, read from
TOML.

Every key is a setting of :class:`numlp.config.TrainConfig` (distortions also in an
``[augment]`` table, as in a config file). A plain value fixes the setting; these forms search
it::

    lr = {log = [1e-4, 3e-3]}             # log-uniform between the bounds
    dropout = [0.0, 0.3]                  # uniform (integers for integer settings)
    epochs = {range = [4, 12], step = 2}  # the same, with a step
    hidden = {choice = ["512,256", "1024,1024"]}
    optimizer = ["adamw", "sgd"]          # a list of words is a choice too

A list for ``hidden`` is a fixed value (``hidden = [512, 256]``). Everything is checked when
the file is read, bounds included (``dropout = [0, 1.5]`` is refused then, not in trial 7).
Suggesting values needs only an object with Optuna's ``suggest_*`` methods.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from numlp.config import SETTINGS, TrainConfig, settings_from_toml


class SpaceError(ValueError):
    """The search space cannot be used; the message names the file, the key and the fix."""


@dataclass(frozen=True)
class Param:
    """One searched setting: ``kind`` is "float", "int" or "choice"; ``choices`` hold what
    Optuna stores (hidden widths as "512,256" text)."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def suggest(self, trial):
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(
                self.name, self.low, self.high, step=self.step or 1, log=self.log
            )
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(map(str, self.choices))
        words = f"{self.low:g} to {self.high:g}"
        if self.log:
            words += ", log scale"
        if self.step:
            words += f", step {self.step:g}"
        return words


@dataclass(frozen=True)
class SearchSpace:
    """Fixed settings and searched ones, over a base configuration (a preset or config file)."""

    base: TrainConfig
    fixed: dict
    params: dict[str, Param]

    def suggest(self, trial) -> dict:
        """The searched settings' values for ``trial`` (``hidden`` as Optuna stores it)."""
        return {name: param.suggest(trial) for name, param in self.params.items()}

    def config(self, values: dict) -> TrainConfig:
        """The full configuration of a trial whose searched settings took ``values``."""
        chosen = {k: _setting_value(k, v) for k, v in values.items() if k in SETTINGS}
        return self.base.updated(**self.fixed, **chosen)

    def describe(self) -> list[str]:
        """One line per searched setting, for the sweep's first lines."""
        return [f"{name}: {param.describe()}" for name, param in self.params.items()]

    def fingerprint(self) -> dict:
        """What must be equal for two workers to share a study: the fixed configuration and the
        searched settings with their ranges (JSON-able)."""
        return {
            "config": self.base.updated(**self.fixed).flat(),
            "params": {n: _param_dict(p) for n, p in self.params.items()},
        }


def _param_dict(param: Param) -> dict:
    values = {k: v for k, v in asdict(param).items() if k != "name" and v is not None}
    return {**values, "choices": list(param.choices)}


def load_space(path, base: TrainConfig | None = None) -> SearchSpace:
    """Read and check the search space in TOML file ``path`` over ``base`` (default: the
    defaults of ``numlp train``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SpaceError(f"cannot read search space {path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise SpaceError(f"search space {path} is not UTF-8 text") from None
    return parse_space(text, base, where=str(path))


def parse_space(text: str, base: TrainConfig | None = None, where="search space") -> SearchSpace:
    """The search space in TOML ``text`` (see the module's docstring)."""
    known = "a search space names settings of numlp train:"
    try:
        data = settings_from_toml(text, where, noun="settings", known=known)
    except ValueError as err:
        raise SpaceError(str(err)) from None
    base = base or TrainConfig()
    fixed, params = {}, {}
    for key, value in data.items():
        if _is_searched(key, value):
            params[key] = _param(key, value, base, where)
        else:
            fixed[key] = _setting_value(key, value, where)
    try:
        base.updated(**fixed)
    except ValueError as err:
        raise SpaceError(f"{where}: {str(err).removeprefix('config: ')}") from None
    if not params:
        raise SpaceError(
            f"{where} searches nothing: give at least one setting a range, such as "
            "lr = {log = [1e-4, 3e-3]}"
        )
    space = SearchSpace(base, fixed, params)
    _check_validation_split(space, where)
    return space


def _is_searched(key: str, value) -> bool:
    if isinstance(value, dict):
        return True
    if not isinstance(value, list):
        return False
    return not isinstance(SETTINGS[key].default, tuple)  # hidden = [512, 256] is a value


def _param(key: str, value, base: TrainConfig, where: str) -> Param:
    """The searched setting ``key = value``, every bound checked against the setting."""
    default = SETTINGS[key].default
    if isinstance(value, list):
        if value and all(isinstance(v, str) for v in value):
            value = {"choice": value}
        else:
            value = {"range": value}
    forms = [k for k in ("log", "range", "choice") if k in value]
    extra = sorted(set(value) - {"log", "range", "choice", "step"})
    if len(forms) != 1 or extra:
        raise SpaceError(
            f"{where}: {key} = {value!r}: give exactly one of log = [low, high], "
            "range = [low, high] (or just [low, high]) and choice = [...], and optionally step"
        )
    form = forms[0]
    if form == "choice":
        param = _choice(key, value["choice"], where)
    else:
        param = _numeric(key, form, value[form], value.get("step"), default, where)
    for probe in param.choices or (param.low, param.high):
        try:
            base.updated(**{key: _setting_value(key, probe, where)})
        except ValueError as err:
            raise SpaceError(f"{where}: {key}: {str(err).removeprefix('config: ')}") from None
    return param


def _choice(key: str, values, where: str) -> Param:
    if not isinstance(values, list) or not values:
        raise SpaceError(f"{where}: {key}: choice needs a non-empty list of values")
    default = SETTINGS[key].default
    if isinstance(default, tuple):  # widths are stored as "512,256" (Optuna wants scalars)
        choices = tuple(_widths_text(_setting_value(key, v, where)) for v in values)
    else:
        choices = tuple(_setting_value(key, v, where) for v in values)
    if len(set(choices)) != len(choices):
        raise SpaceError(f"{where}: {key}: choice lists a value twice")
    return Param(key, "choice", choices=choices)


def _numeric(key: str, form: str, bounds, step, default, where: str) -> Param:
    integer = isinstance(default, int) and not isinstance(default, bool)
    if isinstance(default, (bool, str, tuple)):
        raise SpaceError(f"{where}: {key} is not a number: search it with choice = [...]")
    numbers = isinstance(bounds, list) and len(bounds) == 2
    if not numbers or not all(_is_number(b) for b in bounds):
        raise SpaceError(f"{where}: {key}: {form} needs two numbers [low, high], got {bounds!r}")
    low, high = bounds
    if integer and not all(isinstance(b, int) for b in bounds):
        raise SpaceError(f"{where}: {key} takes whole numbers; got {bounds!r}")
    if not low < high:
        raise SpaceError(
            f"{where}: {key} = [{low}, {high}] is an empty range; give low < high (or one "
            "value to fix the setting)"
        )
    if form == "log" and low <= 0:
        raise SpaceError(
            f"{where}: {key}: a log range needs bounds above 0, got [{low}, {high}]; use "
            "range = [...] to include 0"
        )
    if step is not None:
        if not _is_number(step) or step <= 0 or (integer and not isinstance(step, int)):
            raise SpaceError(f"{where}: {key}: step must be a positive number, got {step!r}")
        if form == "log":
            raise SpaceError(f"{where}: {key}: give a log range or a step, not both")
    if integer:
        return Param(key, "int", int(low), int(high), form == "log", step)
    return Param(key, "float", float(low), float(high), form == "log", step)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _setting_value(key: str, value, where: str = "search space"):
    """``value`` as setting ``key`` holds it: widths from "512,256" or a list, ints as floats
    for float settings; anything else is left to the configuration's own checks."""
    default = SETTINGS[key].default
    if isinstance(default, tuple):
        if isinstance(value, str):
            try:
                return tuple(int(v) for v in value.replace(" ", "").split(",") if v)
            except ValueError:
                raise SpaceError(f"{where}: {key}: expected widths such as 512,256") from None
        if isinstance(value, list) and all(isinstance(v, int) for v in value):
            return tuple(value)
        raise SpaceError(f'{where}: {key}: expected widths such as [512, 256] or "512,256"')
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not type(default):
        raise SpaceError(f"{where}: {key} must be a {type(default).__name__}, got {value!r}")
    return value


def short_value(value, digits: int = 4) -> str:
    """A searched value for tables and lines: floats to ``digits`` significant digits."""
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _widths_text(widths: tuple[int, ...]) -> str:
    return ",".join(map(str, widths))


def _check_validation_split(space: SearchSpace, where: str) -> None:
    """A sweep chooses on validation: every trial must hold some training data out, and none
    may look at the test set."""
    if "watch_test" in space.params or space.base.updated(**space.fixed).watch_test:
        raise SpaceError(
            f"{where}: watch_test must stay false in a sweep: its trials never read the test set"
        )
    param = space.params.get("val_split")
    low = param.low if param and param.kind == "float" else None
    if param is None:
        low = space.base.updated(**space.fixed).val_split
    elif param.kind == "choice":
        low = min(param.choices)
    if not low or low <= 0:
        raise SpaceError(
            f"{where}: val_split must be above 0 in every trial: a sweep chooses on the "
            "validation split and never reads the test set"
        )
