"""A whole training run from a :class:`~numlp.config.TrainConfig`: data, model, fit, test, files.

This is what ``numlp train`` does, as one Python function, :func:`run_training`, so that the
CLI stays a thin shell. It reads top-down: claim the run folder, load and check the data, build
(or resume) the model, fit, score the test set once, save. A run folder receives
``config.toml``, ``metrics.jsonl`` (one line per epoch), ``checkpoint.npz`` (every epoch and on
Ctrl-C: enough to resume exactly) and ``model.npz`` (at the end); every file is written
atomically, so a crash never leaves a broken one.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from numlp import preprocess
from numlp.atomic import atomic_write_text
from numlp.checkpoint import Checkpoint, load_checkpoint
from numlp.config import TrainConfig, to_toml
from numlp.data.datasets import Dataset, load_dataset
from numlp.io import load_model, save_model
from numlp.losses import MSE, BCEWithLogits, Distillation, Loss, SoftmaxCrossEntropy, check_labels
from numlp.model import Sequential, mlp
from numlp.optim import SGD, Optimizer, make_optimizer
from numlp.rundir import claim_run_dir
from numlp.schedules import plan
from numlp.train import Callback, EpochLogger, TrainingDiverged


class TrainingInterrupted(Exception):
    """Ctrl-C stopped training after saving a checkpoint; the message says how to go on."""

    def __init__(self, out: Path, epoch: int, batch: int):
        self.out, self.epoch, self.batch = out, epoch, batch
        super().__init__(
            f"interrupted in epoch {epoch + 1} after {batch} batches; checkpoint saved in "
            f"{out / 'checkpoint.npz'}. Resume with: numlp train --resume {out}"
        )


def build_model(config: TrainConfig, input_shape: tuple[int, ...], classes: int) -> Sequential:
    """The MLP ``config`` describes (see :func:`numlp.model.mlp`)."""
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


LOSS_WORDS = {"cross_entropy": "cross-entropy", "mse": "MSE", "bce": "binary cross-entropy"}


def evaluation_loss(settings: dict | None) -> Loss | None:
    """The loss ``numlp evaluate`` reports for a model trained with ``settings`` (a model
    header's ``training.config``): its own training loss without label smoothing; None (the
    model's default, see :meth:`numlp.Sequential.default_loss`) when it does not say."""
    name = (settings or {}).get("loss")
    return {"mse": MSE, "bce": BCEWithLogits}.get(name, lambda: None)()


def make_loss(config: TrainConfig, teacher=None) -> Loss:
    """The loss ``config`` names (cross-entropy with its label smoothing, MSE or BCE), or the
    distillation from ``teacher`` (a model or committee) when ``config.teacher`` names one."""
    if config.teacher:
        if teacher is None:
            raise ValueError(f"config names the teacher {config.teacher} but none was loaded")
        return Distillation(
            teacher.predict_proba,
            config.distill_temperature,
            config.distill_weight,
            config.label_smoothing,
        )
    if config.loss == "mse":
        return MSE()
    if config.loss == "bce":
        return BCEWithLogits()
    return SoftmaxCrossEntropy(config.label_smoothing)


def make_optimizer_for(config: TrainConfig, model: Sequential) -> Optimizer:
    """The optimizer ``config`` names, over ``model``'s parameters (SGD: Nesterov momentum)."""
    kwargs = {"lr": config.lr, "weight_decay": config.weight_decay}
    if config.clip_norm:
        kwargs["clip_norm"] = config.clip_norm
    if config.optimizer == "sgd":
        return SGD(
            model.parameters(), momentum=config.momentum, nesterov=config.momentum > 0, **kwargs
        )
    return make_optimizer(config.optimizer, model.parameters(), **kwargs)


class MetricsWriter(Callback):
    """Append one JSON object per epoch to ``path`` (flushed, so a crash keeps finished epochs)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_train_begin(self, context):
        # On resume the history so far is rewritten, so the file matches the checkpoint.
        lines = "".join(json.dumps(record) + "\n" for record in context.history.records)
        atomic_write_text(self.path, lines)

    def on_epoch_end(self, epoch, logs):
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(logs) + "\n")


class TestWatcher(Callback):
    """Score the test set after every epoch, as ``watched_test_loss`` and
    ``watched_test_accuracy``: for watching a run as the seeds did, never for choosing a
    recipe (that is the validation split's job)."""

    def __init__(self, x_test, y_test, loss: Loss):
        self.x, self.y, self.loss = x_test, y_test, loss

    def on_train_begin(self, context):
        self.model = context.model

    def on_epoch_end(self, epoch, logs):
        scores = self.model.evaluate(self.x, self.y, loss=self.loss)
        logs.update({f"watched_test_{k}": v for k, v in scores.items()})


@dataclass
class Prepared:
    """What a run trains: its model and optimizer (new or resumed), the training state to resume
    from (None for a new run) and the data, scaled as the model sees it."""

    model: Sequential
    optimizer: Optimizer
    state: dict | None
    data: Dataset
    x_train: np.ndarray
    x_test: np.ndarray
    teacher: object = None  # the model or committee distilled from (config.teacher)


def default_run_dir(dataset: str) -> Path:
    """``runs/DATASET-TIMESTAMP``, with ``-2``, ``-3``... when that folder is already there."""
    base = Path("runs") / f"{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, number = base, 1
    while candidate.exists():
        number += 1
        candidate = base.with_name(f"{base.name}-{number}")
    return candidate


def run_training(
    config: TrainConfig,
    out=None,
    data_dir=None,
    download: bool = True,
    overwrite: bool = False,
    stream=None,
    progress=None,
    callbacks=(),
    resume: bool = False,
    quiet: bool = False,
    progress_bar: bool = False,
    on_finish=None,
    threads: int | str | None = "auto",
    score_test: bool = True,
) -> dict:
    """Train as ``config`` says, write the run folder ``out`` (default: a new folder
    ``runs/DATASET-TIMESTAMP``) and return a summary dict
    (``test_accuracy``, ``test_loss``, ``seconds``, ``epochs``, ``model_path``...).

    The folder is claimed for this run alone (:func:`numlp.rundir.claim_run_dir`) until the end,
    ``on_finish(out, prepared)`` included (the CLI draws its plots there from the trained model
    and test set in ``prepared``, a :class:`Prepared`). The data are loaded and both
    splits checked before anything is written: a failed start leaves what was there as it was
    (and no new folder). With ``overwrite`` the previous run's files are removed only then.

    With ``resume``, continue the run in ``out`` from its ``checkpoint.npz`` (``config`` must
    be the run's own; only ``epochs`` may differ). Raises :class:`TrainingInterrupted` after
    Ctrl-C (a checkpoint is saved first) and ``TrainingDiverged`` if the loss becomes NaN/Inf
    (the last good checkpoint is kept). ``quiet`` prints only the final line; ``progress_bar``
    adds a live tqdm bar per epoch (for terminals). ``threads`` goes to ``fit`` (see
    :mod:`numlp.threads`): by default the BLAS threads follow the cores left free.

    ``score_test=False`` never scores the test set (a sweep's trials choose on validation
    alone): the summary and the model's header then carry no test figures.
    """
    config.validate()
    if config.members > 1:
        raise ValueError(
            f"members = {config.members} asks for a committee: train it with "
            "numlp.ensemble.train_committee (numlp train --members N)"
        )
    stream = stream or sys.stdout
    out = out or default_run_dir(config.dataset)
    with claim_run_dir(out, overwrite=overwrite, resume=resume) as claim:
        try:
            prepared = _prepare(config, claim.path, resume, data_dir, download, progress)
        except BaseException:
            claim.abandon()
            raise
        if not resume:
            claim.clear_previous()
        atomic_write_text(claim.path / "config.toml", to_toml(config))  # epochs may grow
        if not quiet:
            print(_first_line(config, claim.path, prepared), file=stream, flush=True)
        shown = _progress_callbacks(stream, quiet, progress_bar)
        callbacks = [*shown, *callbacks]
        summary = _fit_and_save(
            config, claim.path, prepared, callbacks, stream, threads, score_test
        )
        if on_finish is not None:
            on_finish(claim.path, prepared)
        return summary


def _prepare(config, out: Path, resume: bool, data_dir, download, progress) -> Prepared:
    """The model (resumed from ``out`` or new) and the checked data; nothing is written."""
    model, optimizer, state = _resume_state(out, config) if resume else (None, None, None)
    data = load_dataset(config.dataset, data_dir=data_dir, download=download, progress=progress)
    inputs = preprocess.scaling(config.input_scale, config.input_shift)
    x_train = preprocess.apply(data.x_train, inputs)
    x_test = preprocess.apply(data.x_test, inputs)
    if model is None:
        model = build_model(config, x_train.shape[1:], len(data.class_names))
        optimizer = make_optimizer_for(config, model)
    _check_splits(model, data)
    teacher = load_teacher(config, model) if config.teacher else None
    return Prepared(model, optimizer, state, data, x_train, x_test, teacher)


def load_teacher(config: TrainConfig, model: Sequential):
    """The model or committee file ``config.teacher`` names, checked to take the same inputs
    (shape and pixel scaling) and name as many classes as ``model``."""
    try:
        teacher, header = load_model(config.teacher)
    except ValueError as err:  # the file's own one-line reason, said to be the teacher's
        raise ValueError(f"teacher: {err}") from None
    own = preprocess.scaling(config.input_scale, config.input_shift)
    if (header.get("preprocessing") or {}) != own:
        raise ValueError(
            f"teacher {config.teacher}: it was trained on pixels scaled as "
            f"{header.get('preprocessing')}, this run feeds {own}: set input_scale and "
            "input_shift as the teacher's"
        )
    if tuple(teacher.input_shape) != tuple(model.input_shape) or teacher.classes != model.classes:
        raise ValueError(
            f"teacher {config.teacher} takes {tuple(teacher.input_shape)} and gives "
            f"{teacher.classes} classes; this model takes {tuple(model.input_shape)} and gives "
            f"{model.classes}"
        )
    return teacher


def _check_splits(model: Sequential, data: Dataset) -> None:
    """Both splits fit the model (shape, labels in range) before the first step: a bad test
    label must not surface only after all of training."""
    for split in ("train", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        if x.shape[1:] != tuple(model.input_shape):
            raise ValueError(
                f"{data.name} {split} images have shape {x.shape[1:]}, the model expects "
                f"{tuple(model.input_shape)}"
            )
        check_labels(y, len(x), model.classes, f"{data.name} {split} labels ({data.source})")


def _first_line(config: TrainConfig, out: Path, prepared: Prepared) -> str:
    state, data = prepared.state, prepared.data
    where = (
        f"resuming at epoch {state['epoch'] + 1}, batch {state['batch']}"
        if state
        else f"model {prepared.model.count_parameters():,} parameters"
    )
    if config.augment.active:
        where += f"; augmented ({config.augment.describe()})"
    return (
        f"{data.name}: {len(prepared.x_train):,} training images from {data.source}; {where}; "
        f"output in {out}"
    )


def _progress_callbacks(stream, quiet: bool, progress_bar: bool) -> list[Callback]:
    """A line per epoch, and a live bar on terminals (tqdm, when installed)."""
    if quiet:
        return []
    shown: list[Callback] = [EpochLogger(stream)]
    if progress_bar:
        from numlp.progress import ProgressBar, tqdm_available

        if tqdm_available():
            shown.insert(0, ProgressBar())
    return shown


def _metadata(config: TrainConfig, data: Dataset) -> dict:
    """What model and checkpoint headers say about the data the model expects."""
    return {
        "dataset": data.name,
        "class_names": list(data.class_names),
        "preprocessing": preprocess.scaling(config.input_scale, config.input_shift),
    }


def _fit_and_save(
    config, out: Path, prepared: Prepared, callbacks, stream, threads, score_test: bool
) -> dict:
    """Fit, score the test set once (if asked), save ``model.npz``; the final line goes to
    ``stream``."""
    model, data = prepared.model, prepared.data
    loss = make_loss(config, prepared.teacher)
    # The watcher first: the checkpoint, the metrics file and the log all see its figures.
    watch = [TestWatcher(prepared.x_test, data.y_test, loss)] if config.watch_test else []
    checkpoint = Checkpoint(out / "checkpoint.npz", **_metadata(config, data), config=config.flat())
    started = time.perf_counter()
    try:
        history = model.fit(
            prepared.x_train,
            data.y_train,
            epochs=config.epochs,
            batch_size=config.batch_size,
            optimizer=prepared.optimizer,
            loss=loss,
            schedule=plan(config.schedule, config.lr, config.warmup_epochs),
            validation_split=config.val_split or 0.0,
            shuffle=config.shuffle,
            seed=config.seed,
            resume=prepared.state,
            augment=config.augment if config.augment.active else None,
            threads=threads,
            # the checkpoint first: a metrics line means its epoch is saved
            callbacks=[*watch, checkpoint, MetricsWriter(out / "metrics.jsonl"), *callbacks],
        )
    except KeyboardInterrupt:
        if checkpoint.saved is None:
            raise
        raise TrainingInterrupted(out, **checkpoint.saved) from None
    except TrainingDiverged as err:
        if (out / "checkpoint.npz").exists():
            err.args = (f"{err} The last good checkpoint is kept in {out / 'checkpoint.npz'}.",)
        raise
    seconds = time.perf_counter() - started
    summary = _summary(config, model, loss, prepared, history.records, seconds, score_test)
    training = {**summary, "config": config.flat()}
    path = save_model(out / "model.npz", model, **_metadata(config, data), training=training)
    print(_last_line(config, summary, path), file=stream, flush=True)
    return {**summary, "model_path": str(path), "history": history.records}


def _summary(config, model, loss, prepared: Prepared, records, seconds: float, score_test) -> dict:
    """The run's figures; the test set is scored here, once (or not at all)."""
    last = records[-1]
    summary = {
        "dataset": prepared.data.name,
        "epochs": len(records),
        "seconds": round(seconds, 2),
        "train_loss": last["loss"],
        "train_accuracy": last.get("accuracy"),
        "val_loss": last.get("val_loss"),
        "val_accuracy": last.get("val_accuracy"),
    }
    if not score_test:
        return summary
    y_test = prepared.data.y_test
    test = model.evaluate(prepared.x_test, y_test, loss=loss)
    summary.update(test_loss=test["loss"], test_accuracy=test.get("accuracy"))
    if config.loss == "cross_entropy":  # what `numlp evaluate` reports: no label smoothing
        plain = test if plain_loss(config) else model.evaluate(prepared.x_test, y_test)
        summary["test_cross_entropy"] = plain["loss"]
    return summary


def plain_loss(config: TrainConfig) -> bool:
    """Whether the training loss is the plain cross-entropy ``numlp evaluate`` reports."""
    return config.loss == "cross_entropy" and not config.label_smoothing and not config.teacher


def _last_line(config: TrainConfig, summary: dict, path: Path) -> str:
    if "test_accuracy" not in summary:
        val = summary["val_accuracy"]
        scored = f"validation accuracy {val:.2%}" if val is not None else "no validation split"
        return (
            f"{scored} (test set not scored) after {summary['epochs']} epochs in "
            f"{summary['seconds']:.1f}s; model saved to {path}"
        )
    if config.loss != "cross_entropy":
        loss_words = f"{LOSS_WORDS[config.loss]} {summary['test_loss']:.4f}"
    else:
        loss_words = f"cross-entropy {summary['test_cross_entropy']:.4f}"
    if config.loss == "cross_entropy" and not plain_loss(config):
        trained = f"label smoothing {config.label_smoothing:g}"
        if config.teacher:
            trained = "distillation"
        loss_words += (
            f", as numlp evaluate reports it; training loss with {trained}: "
            f"{summary['test_loss']:.4f}"
        )
    return (
        f"test accuracy {summary['test_accuracy']:.2%} ({loss_words}) after "
        f"{summary['epochs']} epochs in {summary['seconds']:.1f}s; model saved to {path}"
    )


def _resume_state(out: Path, config: TrainConfig):
    """The model, optimizer and training state saved in ``out/checkpoint.npz``."""
    path = out / "checkpoint.npz"
    if not path.is_file():
        raise ValueError(
            f"{out} has no checkpoint.npz to resume from (the run stopped before its first "
            "epoch ended); start it again with --overwrite"
        )
    for stale in out.glob(".*.tmp"):  # half-written files of a killed process: never renamed
        stale.unlink(missing_ok=True)
    model, optimizer_arrays, header = load_checkpoint(path)
    # Keys added after the run was saved (augmentation...) count as their defaults.
    saved = {**TrainConfig().flat(), **(header.get("config") or {})}
    changed = sorted(k for k, v in config.flat().items() if k != "epochs" and saved.get(k) != v)
    if changed:
        raise ValueError(
            f"cannot resume {out} with different settings ({', '.join(changed)}): only --epochs "
            "may change; start a new run to change the rest"
        )
    optimizer = make_optimizer_for(config, model)
    try:
        optimizer.load_state_dict(optimizer_arrays)
    except (KeyError, ValueError) as err:
        raise ValueError(f"{path}: optimizer state does not fit: {err}") from None
    state = header["state"]
    if state.get("epoch", 0) >= config.epochs and not state.get("batch"):
        raise ValueError(
            f"{out} already trained {state['epoch']} epochs; pass --epochs N with N > "
            f"{state['epoch']} to train further"
        )
    return model, optimizer, state


def load_split(model_header: dict, dataset: str | None, data_dir=None, download=True):
    """Test images (preprocessed as the model expects) and labels of the model's dataset."""
    name = dataset or model_header.get("dataset") or "mnist"
    data = load_dataset(name, data_dir=data_dir, download=download)
    x = preprocess.apply(data.x_test, model_header.get("preprocessing"))
    return data, x, np.asarray(data.y_test)
