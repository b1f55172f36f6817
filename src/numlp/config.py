"""Training configuration: every knob of ``numlp train``, its default, TOML in and out, and
the presets shipped with numlp.

A run folder's ``config.toml`` holds the full resolved configuration, so
``numlp train --config runs/NAME/config.toml`` reruns it exactly. A preset is such a file in
``numlp/presets/`` (``numlp train --preset best`` or ``--config`` with its path).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, published as tomli
    import tomli as tomllib

from numlp.data.augment import Augment
from numlp.layers import ACTIVATIONS
from numlp.optim import OPTIMIZERS
from numlp.schedules import SCHEDULES


@dataclass
class TrainConfig:
    """What to train and how. The defaults are the ``fast`` recipe: >= 98 % on MNIST."""

    dataset: str = "mnist"
    hidden: tuple[int, ...] = (512, 256)
    activation: str = "relu"
    dropout: float = 0.1
    batchnorm: bool = False
    optimizer: str = "adamw"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.1
    clip_norm: float = 0.0
    batch_size: int = 128
    epochs: int = 10
    val_split: float = 0.1
    seed: int = 0
    # On-the-fly augmentation of the training images (numlp.data.augment); all 0: none.
    shift: float = 0.0
    rotation: float = 0.0
    scale: float = 0.0
    shear: float = 0.0
    elastic_alpha: float = 0.0
    elastic_sigma: float = 4.0
    flip: float = 0.0

    def augment_settings(self) -> dict:
        """The augmentation keys, as :class:`numlp.data.augment.Augment` takes them."""
        return {name: getattr(self, name) for name in AUGMENT_KEYS}

    def validate(self) -> TrainConfig:
        """Check every value; raise ValueError naming the key, the value and what is allowed."""
        from numlp.data.datasets import DATASETS

        def need(ok: bool, key: str, allowed: str):
            if not ok:
                raise ValueError(f"config: {key} = {getattr(self, key)!r} is invalid; {allowed}")

        need(self.dataset in DATASETS, "dataset", f"choose one of {', '.join(DATASETS)}")
        need(
            0 < len(self.hidden) <= MAX_LAYERS
            and all(isinstance(h, int) and 0 < h <= MAX_WIDTH for h in self.hidden),
            "hidden",
            f"give 1 to {MAX_LAYERS} layer widths from 1 to {MAX_WIDTH:,}, such as 512,256",
        )
        need(
            self.activation in ACTIVATIONS, "activation", f"choose one of {', '.join(ACTIVATIONS)}"
        )
        need(0 <= self.dropout < 1, "dropout", "it must be in [0, 1)")
        need(self.optimizer in OPTIMIZERS, "optimizer", f"choose one of {', '.join(OPTIMIZERS)}")
        need(_positive(self.lr), "lr", "it must be a positive number")
        need(0 <= self.momentum < 1, "momentum", "it must be in [0, 1)")
        need(self.weight_decay >= 0, "weight_decay", "it must be >= 0")
        need(self.schedule in SCHEDULES, "schedule", f"choose one of {', '.join(SCHEDULES)}")
        need(0 <= self.label_smoothing < 1, "label_smoothing", "it must be in [0, 1)")
        need(self.clip_norm >= 0, "clip_norm", "it must be >= 0 (0 turns clipping off)")
        need(
            isinstance(self.batch_size, int) and 0 < self.batch_size <= MAX_BATCH,
            "batch_size",
            f"it must be an integer from 1 to {MAX_BATCH:,}",
        )
        need(
            isinstance(self.epochs, int) and 0 < self.epochs <= MAX_EPOCHS,
            "epochs",
            f"it must be an integer from 1 to {MAX_EPOCHS:,}",
        )
        need(0 <= self.warmup_epochs < self.epochs, "warmup_epochs", "it must be in [0, epochs)")
        need(0 <= self.val_split < 1, "val_split", "it must be in [0, 1) (0 means no validation)")
        need(isinstance(self.seed, int) and self.seed >= 0, "seed", "it must be an integer >= 0")
        try:
            Augment(**self.augment_settings())
        except (TypeError, ValueError) as err:
            raise ValueError(f"config: {str(err).replace('Augment: ', '')}") from None
        return self

    def updated(self, **changes) -> TrainConfig:
        """A copy with ``changes`` applied (``None`` values are ignored) and validated."""
        return dataclasses.replace(
            self, **{k: v for k, v in changes.items() if v is not None}
        ).validate()


# Far beyond any sensible run, and small enough that a typo cannot ask for terabytes or years.
MAX_EPOCHS = 100_000
MAX_WIDTH = 65_536
MAX_LAYERS = 64
MAX_BATCH = 1 << 20


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


FIELDS = {f.name: f for f in fields(TrainConfig)}
AUGMENT_FIELDS = [f.name for f in fields(Augment)]
# The augmentation keys are Augment's own settings (all but its work-chunk size).
AUGMENT_KEYS = tuple(name for name in AUGMENT_FIELDS if name != "chunk")


def load_config(path, base: TrainConfig | None = None) -> TrainConfig:
    """Read a TOML file of ``key = value`` lines (keys as in :class:`TrainConfig`) over ``base``."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ValueError(f"cannot read config {path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ValueError(f"config {path} is not UTF-8 text; save it as UTF-8 TOML") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config {path} is not valid TOML: {err}") from None
    data = data.get("train", data)  # a [train] table or top-level keys
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ValueError(
            f"config {path}: unknown keys {unknown}; known keys are {', '.join(FIELDS)}"
        )
    values = {}
    for key, value in data.items():
        values[key] = _coerce(key, value, path)
    return dataclasses.replace(base or TrainConfig(), **values).validate()


def _coerce(key: str, value, path):
    default = getattr(TrainConfig(), key)
    if isinstance(default, tuple):
        if not isinstance(value, list):
            raise ValueError(f"config {path}: {key} must be a list such as [512, 256]")
        return tuple(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"config {path}: {key} must be true or false")
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not type(default):
        raise ValueError(f"config {path}: {key} must be a {type(default).__name__}, got {value!r}")
    return value


def to_toml(config: TrainConfig) -> str:
    """The configuration as TOML (flat ``key = value`` lines, which :func:`load_config` reads)."""
    lines = ["# numlp training configuration: rerun with `numlp train --config THIS_FILE`"]
    for name in FIELDS:
        lines.append(f"{name} = {_toml_value(getattr(config, name))}")
    return "\n".join(lines) + "\n"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def preset_names() -> list[str]:
    """The presets shipped with numlp (``fast`` is the default of ``numlp train``)."""
    folder = resources.files("numlp") / "presets"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def preset_path(name: str) -> Path:
    """The file of preset ``name``; ValueError listing the presets if there is none."""
    names = preset_names()
    if name not in names:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(names)}")
    return Path(str(resources.files("numlp") / "presets" / f"{name}.toml"))


def preset_description(name: str) -> str:
    """The first comment line of a preset file, without the ``#``."""
    for line in preset_path(name).read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""
