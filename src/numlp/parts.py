"""The parts of a run, built once from a :class:`~numlp.config.TrainConfig`: the model, the
loss and the optimizer (which owns its learning-rate schedule, so the rate is given once).

Each part is looked up in the registry of its kind (:data:`numlp.losses.LOSSES`,
:data:`numlp.optim.OPTIMIZERS`, :data:`numlp.schedules.SCHEDULES`, the activations and layers
of :mod:`numlp.layers`), and given the run settings its entry says it takes: a part
registered from outside numlp is built here like numlp's own. Nothing here reads files or
data; the run layer (:mod:`numlp.run`), the scikit-learn estimator and the benchmarks all
build their parts here.
"""

from __future__ import annotations

from numlp.config import TrainConfig
from numlp.losses import LOSSES, Distillation, Loss
from numlp.model import Sequential, mlp
from numlp.optim import OPTIMIZERS, Optimizer
from numlp.schedules import plan


def build_model(config: TrainConfig, input_shape: tuple[int, ...], classes: int) -> Sequential:
    """The MLP ``config`` describes (see :func:`numlp.model.mlp`), for inputs of
    ``input_shape`` (per sample) and ``classes`` outputs."""
    return mlp(
        input_shape,
        config.hidden,
        classes,
        config.activation,
        config.dropout,
        config.batchnorm,
        seed=config.seed,
        init=config.init,
        bias_init=config.bias_init,
        output=config.output,
    )


def build_loss(config: TrainConfig, teacher=None) -> Loss:
    """The loss ``config`` names with the settings it takes, or the distillation from
    ``teacher`` (a model or committee) when ``config.teacher`` names one."""
    if config.teacher:
        if teacher is None:
            raise ValueError(f"config names the teacher {config.teacher} but none was loaded")
        return Distillation(
            teacher.predict_proba,
            config.distill_temperature,
            config.distill_weight,
            config.label_smoothing,
        )
    return LOSSES.build(config.loss, settings=_settings(config))


def build_optimizer(config: TrainConfig, model) -> Optimizer:
    """The optimizer ``config`` names, over ``model``'s parameters, owning the schedule
    ``config`` names (built from ``lr`` once ``fit`` knows the run's length)."""
    schedule = plan(config.schedule, config.warmup_epochs)
    return OPTIMIZERS.build(
        config.optimizer, model.parameters(), schedule=schedule, settings=_settings(config)
    )


def reported_loss(settings: dict | None) -> Loss | None:
    """The loss reports give for a model trained with ``settings`` (a model header's
    ``training.config``): its training loss with no settings (so no label smoothing); None
    (the model's default, :meth:`numlp.Sequential.default_loss`) when the header names no
    loss, or one that is not registered here."""
    name = (settings or {}).get("loss")
    return LOSSES.build(name) if name in LOSSES else None


def loss_words(name, loss: Loss | None = None) -> str:
    """How reports name the loss registered as ``name`` (``cross-entropy``, ``MSE``...), or
    else the registered kind of ``loss``; the cross-entropy when neither says (a committee
    scores its mean probabilities with it)."""
    if name not in LOSSES and loss is not None:
        name = next((n for n in LOSSES if LOSSES[n] is type(loss)), None)
    return LOSSES.entry(name).facts.get("words", name) if name in LOSSES else "cross-entropy"


def _settings(config: TrainConfig) -> dict:
    """Every run setting by name, for an entry to take those it names."""
    return {**config.flat(), "clip_norm": config.clip_norm or None}
