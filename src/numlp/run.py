"""A whole training run from a :class:`~numlp.config.TrainConfig`: the ONE path of single
runs, committees (``members > 1``), distillation and sweep trials.

:func:`run_training` reads top-down: check the settings, claim the run folder, load the data
once, build the parts once (:mod:`numlp.parts`), fit, score the test set once, save. A run
folder receives ``config.toml``, ``metrics.jsonl`` (one line per epoch), ``checkpoint.npz``
(every epoch and on Ctrl-C: enough to resume exactly) and ``model.npz`` (at the end); a
committee's folder holds one such run per member in ``members/`` and the committee's
``model.npz``. Every file is written atomically, the folder is claimed exclusively
(:mod:`numlp.rundir`) while anything is written, and a new run that fails before it saved a
checkpoint leaves nothing behind.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from numlp import preprocess
from numlp.atomic import atomic_write_text, open_in_place
from numlp.checkpoint import Checkpoint, load_checkpoint
from numlp.config import TrainConfig, to_toml
from numlp.data.datasets import Dataset, DataSource
from numlp.ensemble import gather, member_folder, score, summary_line
from numlp.io import check_reference, load_model, save_committee, save_model
from numlp.losses import Loss, SoftmaxCrossEntropy, check_labels
from numlp.model import Sequential
from numlp.optim import Optimizer
from numlp.parts import build_loss, build_model, build_optimizer, loss_words, reported_loss
from numlp.rundir import RunClaim, claim_run_dir
from numlp.threads import parse_threads
from numlp.train import Callback, EpochLogger, TrainingDiverged


class TrainingInterrupted(Exception):
    """Ctrl-C stopped training after saving a checkpoint; the message says how to go on."""

    def __init__(self, out: Path, epoch: int, batch: int):
        self.out, self.epoch, self.batch = out, epoch, batch
        super().__init__(
            f"interrupted in epoch {epoch + 1} after {batch} batches; checkpoint saved in "
            f"{out / 'checkpoint.npz'}. Resume with: numlp train --resume {out}"
        )


class CommitteeInterrupted(TrainingInterrupted):
    """Ctrl-C stopped a member; the message says how to resume the whole committee."""

    def __init__(self, out: Path, member: int, stop: TrainingInterrupted):
        self.out, self.epoch, self.batch = out, stop.epoch, stop.batch
        Exception.__init__(
            self,
            f"interrupted in member {member + 1}, epoch {stop.epoch + 1} (its checkpoint is "
            f"saved). Resume the committee with: numlp train --resume {out}",
        )


class Console:
    """What a run shows on ``stream`` (default stdout): a first line, a line per epoch, a live
    bar on terminals (``progress_bar``, with tqdm) and a last line; ``quiet``: the last line
    only."""

    def __init__(self, stream=None, quiet: bool = False, progress_bar: bool = False):
        self.stream = stream or sys.stdout
        self.quiet, self.progress_bar = quiet, progress_bar

    def say(self, line: str, always: bool = False) -> None:
        if always or not self.quiet:
            print(line, file=self.stream, flush=True)

    def callbacks(self) -> list[Callback]:
        if self.quiet:
            return []
        shown: list[Callback] = [EpochLogger(self.stream)]
        if self.progress_bar:
            from numlp.progress import ProgressBar, tqdm_available

            if tqdm_available():
                shown.insert(0, ProgressBar())
        return shown


@dataclass
class Prepared:
    """What a run trains: its model and optimizer (new or resumed), the training state to resume
    from (None for a new run), its loss and the data, scaled as the model sees it."""

    model: Sequential
    optimizer: Optimizer
    state: dict | None
    data: Dataset
    x_train: np.ndarray
    x_test: np.ndarray
    loss: Loss
    note: str = ""  # said in the first line (a resumed run's schedule planned again...)


def default_run_dir(config: TrainConfig) -> Path:
    """``runs/DATASET-TIMESTAMP`` (``DATASET-committee-TIMESTAMP`` for a committee), with
    ``-2``, ``-3``... when that folder is already there."""
    kind = "-committee" if config.members > 1 else ""
    base = Path("runs") / f"{config.dataset}{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, number = base, 1
    while candidate.exists():
        number += 1
        candidate = base.with_name(f"{base.name}-{number}")
    return candidate


def run_training(
    config: TrainConfig,
    out=None,
    *,
    source: DataSource | None = None,
    console: Console | None = None,
    overwrite: bool = False,
    resume: bool = False,
    threads: int | str = "auto",
    callbacks=(),
    on_finish=None,
    score_test: bool = True,
) -> dict:
    """Train as ``config`` says into the run folder ``out`` (default:
    :func:`default_run_dir`) and return a summary dict (``test_accuracy``, ``test_loss``,
    ``seconds``, ``epochs``, ``model_path``...).

    ``source`` says where the data come from, ``console`` what is shown. The folder is
    claimed for this run alone until the end, ``on_finish(out, prepared)`` included (the CLI
    draws its plots there from the :class:`Prepared` model and test set). Every setting and
    the data are checked before anything is written. With ``overwrite`` the previous run's
    files are removed only when training begins; with ``resume``, the run in ``out`` goes on
    from its ``checkpoint.npz`` (``config`` must be its own; only ``epochs`` may differ).
    ``threads``: BLAS threads (:func:`numlp.threads.parse_threads`). ``score_test=False``
    (a sweep's trials, which choose on validation alone) never scores the test set.

    Raises :class:`TrainingInterrupted` after Ctrl-C (a checkpoint is saved first) and
    ``TrainingDiverged`` if the loss becomes NaN/Inf (the last good checkpoint is kept).
    """
    config.validate()
    threads = parse_threads(threads)
    source, console = source or DataSource(), console or Console()
    newest = out is None  # a default folder: runs/latest will name it
    out = Path(out) if out else default_run_dir(config)
    with claim_run_dir(out, overwrite=overwrite, resume=resume) as claim:
        data = source.load(config.dataset)
        run = _Run(console, threads, list(callbacks), overwrite, score_test)
        if config.members > 1:
            summary = run.committee(config, claim, data)
        else:
            summary, prepared = run.single(config, claim, data)
            if on_finish is not None:
                on_finish(claim.path, prepared)
    if newest:
        point_latest(out)
    return summary


def point_latest(run: Path) -> None:
    """``runs/latest`` -> the newest run in ``runs/``: a link replaced atomically (never a
    folder or file of the user's, which stays as it is)."""
    latest = run.parent / "latest"
    if latest.exists() and not latest.is_symlink():
        return
    temporary = run.parent / f".latest.{os.getpid()}.tmp"
    try:
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(run.name, target_is_directory=True)
        os.replace(temporary, latest)
    except OSError:  # a file system without links: the folder's own name still works
        temporary.unlink(missing_ok=True)


@dataclass
class _Run:
    """How this run is carried out (shown, threads, callbacks), for its model or members."""

    console: Console
    threads: int | str
    callbacks: list
    overwrite: bool
    score_test: bool

    def single(self, config: TrainConfig, claim: RunClaim, data: Dataset):
        """One model: prepared (new or resumed), fitted, scored once, saved."""
        prepared = _prepare(config, claim.path, claim.resume, data)
        self.console.say(_first_line(config, claim.path, prepared))
        summary = self._fit_and_save(config, claim, prepared)
        return summary, prepared

    def committee(self, config: TrainConfig, claim: RunClaim, data: Dataset) -> dict:
        """``config.members`` runs from seeds ``seed``, ``seed + 1``... in ``members/``, each a
        resumable run of its own (finished members are kept), joined into ``model.npz`` and
        scored on the test set once."""
        started = time.perf_counter()
        members = [config.updated(members=1, seed=config.seed + i) for i in range(config.members)]
        claim.begin()
        atomic_write_text(claim.path / "config.toml", to_toml(config))
        folders = []
        for i, member in enumerate(members):
            folder = member_folder(claim.path, i, member.seed)
            self.console.say(f"member {i + 1}/{config.members} (seed {member.seed}): {folder}")
            try:
                self._member(member, folder, data)
            except TrainingInterrupted as stop:
                raise CommitteeInterrupted(claim.path, i, stop) from None
            folders.append(folder)
        committee, facts, training = gather(folders)
        x_test = preprocess.apply(data.x_test, facts.get("preprocessing"))
        seconds = round(time.perf_counter() - started, 2)
        summary = score(committee, facts, training, (x_test, data.y_test), seconds)
        save_committee(claim.path / "model.npz", committee, training, **facts, training=summary)
        summary["model_path"] = str(claim.path / "model.npz")
        self.console.say(summary_line(summary), always=True)
        return summary

    def _member(self, config: TrainConfig, folder: Path, data: Dataset) -> None:
        """One member: kept when already trained this far, resumed from its checkpoint, or new."""
        done = folder / "model.npz"
        if done.is_file() and not self.overwrite:
            epochs = load_model(done)[1].get("training", {}).get("epochs", 0)
            if epochs >= config.epochs:
                self.console.say(f"  already trained ({epochs} epochs)")
                return
        resume = (folder / "checkpoint.npz").is_file() and not self.overwrite
        # a member folder without a checkpoint holds nothing to keep
        with claim_run_dir(folder, overwrite=not resume, resume=resume) as claim:
            self.single(config, claim, data)

    def _callbacks(self, config, claim: RunClaim, prepared: Prepared, facts, checkpoint) -> list:
        """What watches the run, in the order it must: the test watcher first (the checkpoint,
        the metrics file and the log see its figures), the checkpoint before the metrics file
        (a metrics line means its epoch is saved), what is shown and the caller's last."""
        out = claim.path
        watched = [TestWatcher(prepared.x_test, prepared.data.y_test, prepared.loss)]
        best = [BestEpoch(out / "best.npz", config, facts)]
        return [
            *(watched if config.watch_test else []),
            RunFiles(claim, config),
            *(best if config.patience or config.keep_best else []),
            checkpoint,
            MetricsWriter(out / "metrics.jsonl"),
            *self.console.callbacks(),
            *self.callbacks,
        ]

    def _fit_and_save(self, config: TrainConfig, claim: RunClaim, prepared: Prepared) -> dict:
        """Fit, score the test set once (unless ``config``'s run never scores it), save
        ``model.npz``; the final line goes to the console."""
        out, model, data = claim.path, prepared.model, prepared.data
        facts = _facts(config, data)
        checkpoint = Checkpoint(out / "checkpoint.npz", **facts, config=config.flat())
        callbacks = self._callbacks(config, claim, prepared, facts, checkpoint)
        started = time.perf_counter()
        try:
            history = model.fit(
                prepared.x_train,
                data.y_train,
                epochs=config.epochs,
                batch_size=config.batch_size,
                optimizer=prepared.optimizer,
                loss=prepared.loss,
                validation_split=config.val_split or 0.0,
                shuffle=config.shuffle,
                seed=config.seed,
                resume=prepared.state,
                augment=config.augment if config.augment.active else None,
                threads=self.threads,
                callbacks=callbacks,
            )
        except KeyboardInterrupt:
            if checkpoint.saved is None:
                raise
            raise TrainingInterrupted(out, **checkpoint.saved) from None
        except TrainingDiverged as err:
            if (out / "checkpoint.npz").exists() and checkpoint.saved is not None:
                err.args = (f"{err} The last good checkpoint is kept in {out / 'checkpoint.npz'}.",)
            raise
        seconds = time.perf_counter() - started
        chosen = history.records[-1]
        if config.keep_best and (out / "best.npz").is_file():  # the best epoch, not the last
            best, header = load_model(out / "best.npz")
            model.load_state_dict(best.state_dict())
            chosen = history.records[header["training"]["epoch"] - 1]
        summary = _summary(config, prepared, history.records, chosen, seconds, self.score_test)
        training = {**summary, "config": config.flat()}
        path = save_model(out / "model.npz", model, **_facts(config, data), training=training)
        (out / "best.npz").unlink(missing_ok=True)  # model.npz holds it now
        self.console.say(_last_line(config, summary, path), always=True)
        return {**summary, "model_path": str(path), "history": history.records}


class RunFiles(Callback):
    """When training begins (every check passed): a new run clears the run it replaces, and the
    folder gets its ``config.toml`` (rewritten on resume: ``epochs`` may grow)."""

    def __init__(self, claim: RunClaim, config: TrainConfig):
        self.claim, self.config = claim, config

    def on_train_begin(self, context):
        self.claim.begin()
        atomic_write_text(self.claim.path / "config.toml", to_toml(self.config))


class BestEpoch(Callback):
    """Watch validation accuracy: with ``keep_best``, save each new best epoch's weights to
    ``path`` (which the run then saves as its model); with ``patience``, stop training when
    that many epochs have passed without a new best. A resumed run takes up the count from its
    metrics so far."""

    def __init__(self, path: Path, config: TrainConfig, facts: dict):
        self.path, self.config, self.facts = path, config, facts

    def on_train_begin(self, context):
        self.model, self.best, self.wait = context.model, -math.inf, 0
        for record in context.history.records:
            self._judge(record["epoch"], record.get("val_accuracy", -math.inf), save=False)

    def on_epoch_end(self, epoch, logs):
        self._judge(epoch, logs["val_accuracy"], save=self.config.keep_best)
        if self.config.patience and self.wait >= self.config.patience:
            self.model.stop_training = True

    def _judge(self, epoch: int, accuracy: float, save: bool) -> None:
        if accuracy > self.best:
            self.best, self.wait = accuracy, 0
            if save:
                training = {"epoch": epoch, "val_accuracy": accuracy}
                save_model(self.path, self.model, **self.facts, training=training)
        else:
            self.wait += 1


class MetricsWriter(Callback):
    """Append one JSON object per epoch to ``path`` (flushed, so a crash keeps finished epochs)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_train_begin(self, context):
        # On resume the history so far is rewritten, so the file matches the checkpoint.
        lines = "".join(json.dumps(record) + "\n" for record in context.history.records)
        atomic_write_text(self.path, lines)

    def on_epoch_end(self, epoch, logs):
        with open_in_place(self.path, "a") as f:
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


def _prepare(config: TrainConfig, out: Path, resume: bool, data: Dataset) -> Prepared:
    """The parts (resumed from ``out`` or new) and the checked data; nothing is written."""
    inputs = _preprocessing(config, data)
    x_train = preprocess.apply(data.x_train, inputs)
    x_test = preprocess.apply(data.x_test, inputs)
    note = ""
    if resume:
        model, optimizer, state, planned = _resume_state(out, config, data)
        if planned != config.epochs:
            note = _replanned(config, optimizer, state, len(x_train))
    else:
        model = build_model(config, x_train.shape[1:], len(data.class_names))
        optimizer, state = build_optimizer(config, model), None
    _check_splits(config, model, data)
    teacher = _load_teacher(config, model, data) if config.teacher else None
    loss = build_loss(config, teacher)
    return Prepared(model, optimizer, state, data, x_train, x_test, loss, note)


def _replanned(config: TrainConfig, optimizer: Optimizer, state: dict, samples: int) -> str:
    """What training longer means, said up front: the schedule is planned again over the new
    number of epochs (so a finished cosine picks up where that longer plan is), and the rate
    the next step takes."""
    trained = samples - (round(samples * config.val_split) if config.val_split else 0)
    steps = math.ceil(trained / config.batch_size)
    schedule = optimizer.schedule.build(config.epochs, steps, optimizer.base_lr)
    rate = schedule(optimizer.steps)
    return (
        f"the {config.schedule} schedule is planned again over {config.epochs} epochs: "
        f"lr {rate:.3g} at the next step"
    )


def _load_teacher(config: TrainConfig, model: Sequential, data: Dataset):
    """The model or committee file ``config.teacher`` names, checked like every model
    reference (:func:`numlp.io.check_reference`)."""
    who = f"teacher {config.teacher}"
    try:
        teacher, header = load_model(config.teacher)
    except ValueError as err:  # the file's own one-line reason, said to be the teacher's
        raise ValueError(f"teacher: {err}") from None
    check_reference(who, header, teacher, _facts(config, data), model.input_shape, model.classes)
    return teacher


def _check_splits(config: TrainConfig, model: Sequential, data: Dataset) -> None:
    """Both splits fit the model (shape, labels in range) before anything is written: a bad
    test label must not surface only after all of training."""
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
    if state and state["epoch"] >= config.epochs and not state["batch"]:
        where = f"trained {state['epoch']} epochs already: writing its model file"
    elif state:
        where = f"resuming at epoch {state['epoch'] + 1}, batch {state['batch']}"
    else:
        where = f"model {prepared.model.count_parameters():,} parameters"
    if prepared.note:
        where += f"; {prepared.note}"
    if config.augment.active:
        where += f"; augmented ({config.augment.describe()})"
    return (
        f"{data.name}: {len(prepared.x_train):,} training images from {data.source}; {where}; "
        f"output in {out}"
    )


def _preprocessing(config: TrainConfig, data: Dataset) -> dict:
    """How the run feeds its inputs: a table's columns standardized as its import measured
    them, else pixels scaled as ``input_scale`` and ``input_shift`` say."""
    inputs = data.inputs or {}
    if inputs.get("kind") == "table":
        return preprocess.standardizing(inputs["mean"], inputs["std"])
    return preprocess.scaling(config.input_scale, config.input_shift)


def _facts(config: TrainConfig, data: Dataset) -> dict:
    """What model and checkpoint headers say about the data the model expects."""
    return {
        "dataset": data.name,
        "class_names": list(data.class_names),
        "preprocessing": _preprocessing(config, data),
        "data_source": str(Path(data.source).resolve()),  # a hint for scoring it later
        **({"inputs": data.inputs} if data.inputs else {}),  # how predict prepares a file
    }


def _summary(config: TrainConfig, prepared: Prepared, records, last: dict, seconds: float,
             score_test) -> dict:  # fmt: skip
    """The run's figures (those of the epoch ``last`` it keeps); the test set is scored here,
    once (or not at all)."""
    summary = {
        "dataset": prepared.data.name,
        "epochs": len(records),
        "kept_epoch": last["epoch"],
        "seconds": round(seconds, 2),
        "train_loss": last["loss"],
        "train_accuracy": last.get("accuracy"),
        "val_loss": last.get("val_loss"),
        "val_accuracy": last.get("val_accuracy"),
    }
    if not score_test:
        return summary
    model, x_test, y_test = prepared.model, prepared.x_test, prepared.data.y_test
    test = model.evaluate(x_test, y_test, loss=prepared.loss)
    summary.update(test_loss=test["loss"], test_accuracy=test.get("accuracy"))
    reported = reported_loss(config.flat())
    if isinstance(reported, SoftmaxCrossEntropy):  # as `numlp evaluate` reports it
        plain = test if plain_loss(config) else model.evaluate(x_test, y_test, loss=reported)
        summary["test_cross_entropy"] = plain["loss"]
    return summary


def plain_loss(config: TrainConfig) -> bool:
    """Whether the training loss is the one ``numlp evaluate`` reports (no label smoothing, no
    teacher)."""
    return not config.label_smoothing and not config.teacher


def _last_line(config: TrainConfig, summary: dict, path: Path) -> str:
    if "test_accuracy" not in summary:
        val = summary["val_accuracy"]
        scored = f"validation accuracy {val:.2%}" if val is not None else "no validation split"
        return (
            f"{scored} (test set not scored) after {summary['epochs']} epochs in "
            f"{summary['seconds']:.1f}s; model saved to {path}"
        )
    reported = summary.get("test_cross_entropy", summary["test_loss"])
    loss = f"{loss_words(config.loss)} {reported:.4f}"
    if not plain_loss(config):
        trained = "distillation" if config.teacher else (
            f"label smoothing {config.label_smoothing:.2g}")  # fmt: skip
        loss += f", training loss with {trained}: {summary['test_loss']:.4f}"
    kept = summary["kept_epoch"]
    best = f" (kept epoch {kept}, the best on validation)" if kept != summary["epochs"] else ""
    return (
        f"test accuracy {summary['test_accuracy']:.2%} ({loss}) after "
        f"{summary['epochs']} epochs{best} in {summary['seconds']:.1f}s; model saved to {path}"
    )


def _resume_state(out: Path, config: TrainConfig, data: Dataset):
    """The model, optimizer and training state saved in ``out/checkpoint.npz``, checked to be
    this run's (settings) and to fit its data (like every model reference)."""
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
    facts = _facts(config, data)
    check_reference(f"checkpoint {path}", header, model, facts, data.x_train.shape[1:],
                    len(data.class_names))  # fmt: skip
    optimizer = build_optimizer(config, model)
    try:
        optimizer.load_state_dict(optimizer_arrays)
    except (KeyError, ValueError) as err:
        raise ValueError(f"{path}: optimizer state does not fit: {err}") from None
    state = header["state"]
    finished = state.get("epoch", 0) >= config.epochs and not state.get("batch")
    if finished and not (out / "model.npz").is_file():
        return model, optimizer, state, saved["epochs"]  # trained, model file lost: finish
    if finished:
        raise ValueError(
            f"{out} already trained {state['epoch']} epochs; pass --epochs N with N > "
            f"{state['epoch']} to train further"
        )
    return model, optimizer, state, saved["epochs"]
