"""Training configuration: every knob of ``numlp train``, its default, TOML in and out, and
the presets shipped with numlp.

A run folder's ``config.toml`` holds the full resolved configuration, so
``numlp train --config runs/NAME/config.toml`` reruns it exactly. A preset is such a file in
``numlp/presets/`` (``numlp train --preset best`` or ``--config`` with its path).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, published as tomli
    import tomli as tomllib

from numlp import init as initializers
from numlp.data.augment import Augment
from numlp.data.catalog import NAME_PATTERN
from numlp.data.datasets import DATASETS
from numlp.layers import ACTIVATIONS
from numlp.losses import LOSSES, SoftmaxCrossEntropy
from numlp.model import MAX_PARAMETERS, OUTPUTS
from numlp.optim import OPTIMIZERS
from numlp.schedules import SCHEDULES

DATASET_NAMES = tuple(DATASETS)


def setting(default, help: str, choices=None):
    """A field of :class:`TrainConfig` with the help its ``numlp train`` flag shows."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class TrainConfig:
    """What to train and how: every setting of ``numlp train``, defined once. Each field carries
    its default and help; the command-line flags, the TOML keys and the checks all come from
    here. The defaults are the ``fast`` recipe: >= 98 % on MNIST."""

    dataset: str = setting(
        "mnist",
        "dataset: mnist, fashion-mnist, kmnist, or one imported with `numlp data import FILE "
        "--name NAME` (its name, or its folder)",
    )
    hidden: tuple[int, ...] = setting(
        (512, 256), "hidden layer widths, e.g. 512,256 (0 or nothing: no hidden layer)"
    )
    activation: str = setting("relu", "activation after each hidden Dense", ACTIVATIONS)
    dropout: float = setting(0.1, "dropout probability after each hidden activation")
    batchnorm: bool = setting(False, "batch normalisation after each hidden Dense")
    output: str = setting(
        "logits", "after the last Dense: logits, or probabilities (softmax, sigmoid)", OUTPUTS
    )
    init: str = setting(
        "auto",
        "weight initialiser: auto (He before ReLU-like, else Xavier), he_normal, he_uniform, "
        "lecun_..., xavier_..., normal:STD or uniform:LOW,HIGH",
    )
    bias_init: str = setting("zeros", "bias initialiser: zeros, constant:V, normal:STD or "
                             "uniform:LOW,HIGH")  # fmt: skip
    loss: str = setting(
        "cross_entropy", "loss: cross_entropy (softmax), mse or bce (one-hot targets)", LOSSES
    )
    optimizer: str = setting("adamw", "update rule", OPTIMIZERS)
    lr: float = setting(1e-3, "peak learning rate")
    momentum: float = setting(0.9, "SGD momentum (Nesterov when > 0)")
    weight_decay: float = setting(0.0, "weight decay (decoupled for AdamW)")
    schedule: str = setting("cosine", "learning-rate schedule", SCHEDULES)
    warmup_epochs: float = setting(0.0, "linear warm-up, in epochs")
    label_smoothing: float = setting(0.1, "label smoothing of the cross-entropy")
    clip_norm: float = setting(0.0, "global gradient-norm limit (0: off)")
    batch_size: int = setting(128, "samples per step")
    shuffle: bool = setting(True, "reshuffle the training data every epoch")
    epochs: int = setting(10, "passes over the training data")
    val_split: float = setting(0.1, "fraction of the training data held out for validation")
    patience: int = setting(
        0, "stop when validation accuracy has not improved for this many epochs (0: never)"
    )
    keep_best: bool = setting(
        False, "save the epoch with the best validation accuracy as model.npz, not the last"
    )
    input_scale: float = setting(1 / 255, "pixels are fed as pixel * input_scale + input_shift")
    input_shift: float = setting(0.0, "added after input_scale (e.g. -0.5 to centre 0..1)")
    watch_test: bool = setting(
        False, "also score the test set after every epoch, to watch (never to choose by)"
    )
    seed: int = setting(0, "seeds the weights, the split, the order, dropout and distortions")
    members: int = setting(
        1,
        "train a committee of this many models (seeds seed, seed+1, ...) that answer by "
        "averaging their probabilities; each member is a resumable run of its own",
    )
    teacher: str = setting(
        "",
        "distil: a model or committee file whose probabilities on each (distorted) "
        "training batch the model learns besides the labels ('' : none)",
    )
    distill_temperature: float = setting(
        4.0, "distillation temperature: above 1 softens the teacher's and the model's outputs"
    )
    distill_weight: float = setting(
        0.5, "weight of the teacher's soft targets against the labels' cross-entropy (0 to 1)"
    )
    # Random distortions of the training images, drawn afresh each epoch (all 0: none); its
    # settings are Augment's own fields, and a [augment] table in TOML.
    augment: Augment = field(default_factory=Augment)

    def validate(self) -> TrainConfig:
        """Check every value; raise ValueError naming the key, the value and what is allowed."""

        def need(ok: bool, key: str, allowed: str):
            if not ok:
                raise ValueError(f"config: {key} = {getattr(self, key)!r} is invalid; {allowed}")

        need(
            isinstance(self.dataset, str)
            and (bool(NAME_PATTERN.match(self.dataset)) or os.sep in self.dataset),
            "dataset",
            f"name one of {', '.join(DATASET_NAMES)} or an imported dataset",
        )
        for name, f in TRAIN_FIELDS.items():
            choices = f.metadata["choices"]
            if choices is not None:
                need(getattr(self, name) in choices, name, f"choose one of {', '.join(choices)}")
        need(
            len(self.hidden) <= MAX_LAYERS
            and all(type(h) is int and 0 < h <= MAX_WIDTH for h in self.hidden),  # no `true`
            "hidden",
            f"give up to {MAX_LAYERS} layer widths from 1 to {MAX_WIDTH:,}, such as 512,256",
        )
        between = sum(a * b for a, b in zip(self.hidden, self.hidden[1:]))
        need(
            between <= MAX_PARAMETERS,
            "hidden",
            f"these widths alone make {between:,} weights, over numlp's limit of "
            f"{MAX_PARAMETERS:,}: use narrower or fewer layers",
        )
        for key, check in (("init", initializers.check_weight_init),
                           ("bias_init", initializers.check_bias_init)):  # fmt: skip
            try:
                check(getattr(self, key))
            except ValueError as err:
                need(False, key, str(err).split("; ", 1)[-1])
        loss = LOSSES.entry(self.loss)  # registered: checked with the choices above
        need(
            self.output in loss.facts.get("outputs", OUTPUTS),
            "loss",
            f"it does not go with output = {self.output!r}: {self.loss} takes "
            f"{' or '.join(loss.facts.get('outputs', OUTPUTS))}",
        )
        need(
            not self.label_smoothing or "label_smoothing" in loss.settings,
            "loss",
            f"label_smoothing does not apply to {self.loss}: set label_smoothing = 0",
        )
        need(0 <= self.dropout < 1, "dropout", "it must be in [0, 1)")
        need(_positive(self.lr), "lr", "it must be a positive number")
        need(0 <= self.momentum < 1, "momentum", "it must be in [0, 1)")
        need(self.weight_decay >= 0, "weight_decay", "it must be >= 0")
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
        need(
            type(self.patience) is int and 0 <= self.patience <= MAX_EPOCHS,
            "patience",
            f"it must be an integer from 0 (never stop early) to {MAX_EPOCHS:,}",
        )
        for key in ("patience", "keep_best"):
            need(
                not getattr(self, key) or self.val_split > 0,
                key,
                "it judges epochs on the validation split: set val_split above 0",
            )
        need(_positive(self.input_scale) and self.input_scale < 1e6, "input_scale",
             "it must be a positive number")  # fmt: skip
        need(
            isinstance(self.input_shift, (int, float)) and abs(self.input_shift) < 1e6,
            "input_shift",
            "it must be a finite number",
        )
        need(isinstance(self.seed, int) and self.seed >= 0, "seed", "it must be an integer >= 0")
        need(
            isinstance(self.members, int) and 0 < self.members <= MAX_MEMBERS,
            "members",
            f"it must be an integer from 1 to {MAX_MEMBERS} (1: a single model)",
        )
        need(
            not self.teacher or (LOSSES[self.loss], self.output) == (SoftmaxCrossEntropy, "logits"),
            "teacher",
            'distillation trains logits with the cross-entropy: set loss = "cross_entropy" '
            'and output = "logits"',
        )
        need(_positive(self.distill_temperature) and self.distill_temperature <= 100,
             "distill_temperature", "it must be a number in (0, 100]")  # fmt: skip
        need(0 <= self.distill_weight <= 1, "distill_weight", "it must be in [0, 1]")
        return self

    def updated(self, **changes) -> TrainConfig:
        """A copy with ``changes`` applied (``None`` values are ignored; augmentation keys such
        as ``shift`` go to :attr:`augment`) and validated."""
        changes = {k: v for k, v in changes.items() if v is not None}
        distortions = {k: changes.pop(k) for k in list(changes) if k in AUGMENT_FIELDS}
        augment = _augment(dataclasses.replace, self.augment, **distortions)
        return dataclasses.replace(self, **changes, augment=augment).validate()

    def flat(self) -> dict:
        """Every setting under its own key, augmentation included, lists for tuples: the form
        model and checkpoint headers record (and the one resume compares)."""
        values = {name: getattr(self, name) for name in TRAIN_FIELDS}
        values.update(self.augment.config())
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _augment(make, *args, **values) -> Augment:
    """``Augment`` built by ``make``, its complaints turned into a config error."""
    try:
        return make(*args, **values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"config: {str(err).replace('Augment: ', '')}") from None


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


# Far beyond any sensible run, and small enough that a typo cannot ask for terabytes or years.
MAX_EPOCHS = 100_000
MAX_WIDTH = 65_536
MAX_LAYERS = 64
MAX_BATCH = 1 << 20
MAX_MEMBERS = 100

TRAIN_FIELDS = {f.name: f for f in fields(TrainConfig) if f.name != "augment"}
AUGMENT_FIELDS = {f.name: f for f in fields(Augment) if f.metadata.get("setting", True)}
# Every setting by key, as flags and flat TOML keys name them.
SETTINGS = {**TRAIN_FIELDS, **AUGMENT_FIELDS}


def load_config(path, base: TrainConfig | None = None) -> TrainConfig:
    """Read a TOML file of settings (keys as in :class:`TrainConfig`, distortions in an
    ``[augment]`` table or, as older files have them, at the top) over ``base``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"cannot read config {path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ValueError(f"config {path} is not UTF-8 text; save it as UTF-8 TOML") from None
    return parse_config(text, base, where=path)


def settings_from_toml(
    text: str, where: str, noun: str = "keys", known: str = "known keys are"
) -> dict:
    """The settings in TOML ``text`` as one dict by key: top-level keys (or a ``[train]``
    table) and the distortions of an ``[augment]`` table. ValueError, naming ``where``, for
    text that is not TOML and for keys that are no setting."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{where} is not valid TOML: {err}") from None
    data = dict(data.get("train", data))
    table = data.pop("augment", {})
    if not isinstance(table, dict):
        raise ValueError(f"{where}: augment must be a table ([augment])")
    unknown = sorted(set(data) - set(SETTINGS)) + [
        f"augment.{k}" for k in table if k not in AUGMENT_FIELDS
    ]
    if unknown:
        raise ValueError(f"{where}: unknown {noun} {unknown}; {known} {', '.join(SETTINGS)}")
    return {**data, **table}


def parse_config(text: str, base: TrainConfig | None = None, where="config") -> TrainConfig:
    """The settings in TOML ``text`` over ``base`` (see :func:`load_config`); errors name
    ``where`` the text came from."""
    path = where
    data = settings_from_toml(text, f"config {path}")
    values = {key: _coerce(key, value, path) for key, value in data.items()}
    try:
        return (base or TrainConfig()).updated(**values)
    except ValueError as err:
        raise ValueError(f"config {path}: {str(err).removeprefix('config: ')}") from None


def _coerce(key: str, value, path):
    default = SETTINGS[key].default
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
    """The configuration as TOML (``key = value`` lines and an ``[augment]`` table), which
    :func:`load_config` reads back to the same configuration."""
    lines = ["# numlp training configuration: rerun with `numlp train --config THIS_FILE`"]
    lines += [f"{name} = {toml_value(getattr(config, name))}" for name in TRAIN_FIELDS]
    lines += ["", "[augment]  # random distortions of the training images (0: none)"]
    lines += [f"{name} = {toml_value(getattr(config.augment, name))}" for name in AUGMENT_FIELDS]
    return "\n".join(lines) + "\n"


def toml_value(value) -> str:
    """One value in TOML syntax (strings quoted, tuples as arrays)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
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
